"""The torch execution of every rule unit against its float64 specification.

(a) Every registered subspace rule's tensor bodies (``torch_gradients`` on rows, including
    (batch, tokens, features) inputs, and ``torch_conv_gradients`` on grouped, strided, dilated
    convolutions) equal its numpy ``gradients`` on the same rows; built-in dense and transport
    bodies equal their specification. The convolution rows come from an im2col written with loops
    here, not from the library.
(b) Rules registered here, defined only by their float64 specification (a subspace rule that
    learns P by <z delta^T>, a sign-symmetric transport, a plastic dense rule), run exactly in
    FeedbackLinear, FeedbackConv2d, attention through ``convert`` and the circuit runner; what a
    backend cannot run (plastic dense direct feedback) is refused naming what is supported, and a
    rule whose torch gradient contradicts its ``learns`` raises instead of leaving ``P.grad`` empty.
(c) The new forms of the circuit runner (ldfa with ``q_only``, low-rank dfa) equal the reference
    in float64 over several steps.

Tolerances: float64 throughout, rtol 1e-10 (the same products in another order differ by ~1e-15).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close
from torch import nn

import bioplastic
import circuits
from bioplastic import rules
from bioplastic.backends import UnsupportedCircuitError
from bioplastic.rules import Rule, SubspaceRule
from bioplastic.torch import FeedbackLinear, convert
from bioplastic.torch.conv import ConvGeometry, feedback_conv2d

DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def t(a) -> torch.Tensor:
    return torch.tensor(a, dtype=DT)


def np_(x) -> np.ndarray:
    return x.detach().cpu().double().numpy()


def delta_of(name: str, factor: str, n_rows: int, n_samples: int) -> int:
    """Scale from g to the spec's delta on rows of samples x positions: every rule's batch mean is
    over rows with delta = n_rows g, except oja's P, whose error covariance is a mean of the
    per-sample error delta = n_samples g over rows (its documented convention)."""
    return n_samples if (name, factor) == ("oja", "P") else n_rows


def spec_on_rows(sub: SubspaceRule, P, Q, W, x_rows, g_rows, n_samples):
    """The numpy specification on rows: (grad_P, grad_Q) with each factor's delta scale."""
    n = len(x_rows)
    out = []
    for i, factor in enumerate("PQ"):
        grads = sub.gradients(P, Q, W, x_rows, delta_of(sub.name, factor, n, n_samples) * g_rows)
        out.append(grads[i])
    return out


def check_pair(got, want, what):
    for factor, a, b in zip("PQ", got, want):
        if b is None:
            assert a is None, f"{what}: {factor} should get no gradient"
        else:
            assert_close(np_(a), b, what=f"{what} {factor}")


# ----------------------------------------------------------------------------- units registered here
class HebbianP(SubspaceRule):
    """P learns by the Hebbian product of bottleneck rate and error, <z delta^T>; Q as local."""

    name = "hebbian_p"
    init = ("orthonormal", "expand")

    def gradients(self, P, Q, W, h, delta):
        z = delta @ P.T
        return -(z.T @ delta) / len(h), h.T @ z / len(h)


class Broken(SubspaceRule):
    """Declares it learns P but gives it no gradient: backends must not stay silent."""

    name = "broken_p"

    def gradients(self, P, Q, W, h, delta):
        return None, h.T @ (delta @ P.T) / len(h)


class SignSymmetric(Rule):
    """B = sign(W)^T: feedback that copies only each forward synapse's sign."""

    name = "sign_symmetric"
    form = "transport"

    def transport(self, W):
        return (W > 0).T * 1.0 - (W < 0).T * 1.0


class TanhKP(Rule):
    """A plastic dense rule with a nonlinear update: grad B = tanh(grad W)^T + B / 10."""

    name = "tanh_kp"
    form = "dense"
    plastic = True

    def dense_gradient(self, B, W, grad_w, h_prev, delta):
        return np.tanh(grad_w).T + 0.1 * B


class DirectKP(Rule):
    """Plastic dense direct feedback: the torch runner cannot build it."""

    name = "direct_kp"
    topology = "direct"
    form = "dense"
    plastic = True

    def dense_gradient(self, B, W, grad_w, h_prev, delta):
        return 0.1 * B


@pytest.fixture
def registered():
    """Register the units above; unregister them after the test (also when it fails)."""
    added = []
    try:
        for unit in (HebbianP, Broken):
            rules.register_subspace(unit)
            added.append(unit.name)
        for cls in (SignSymmetric, TanhKP, DirectKP):
            rules.register_rule(cls)
            added.append(cls.name)
        yield
    finally:
        for name in added:
            rules.unregister(name)


# ----------------------------------------------------------------------------- (a) Linear rows
def random_factors(rng, r, n_out, n_in):
    return rng.normal(size=(r, n_out)), rng.normal(size=(n_in, r)), rng.normal(size=(n_out, n_in))


@pytest.mark.parametrize("name", list(rules.SUBSPACES))
@pytest.mark.parametrize("n_rows", [5, 400])  # 400 rows: local takes its weight-gradient path
def test_torch_gradients_equal_the_specification(name, n_rows):
    sub = rules.SUBSPACES[name]
    rng = np.random.default_rng(0)
    P, Q, W = random_factors(rng, 3, 6, 8)
    x, g = rng.normal(size=(n_rows, 8)), rng.normal(size=(n_rows, 6))
    want = sub.gradients(P, Q, W, x, n_rows * g)
    z, grad_w = t(g) @ t(P).T, t(g).T @ t(x)
    for kwargs in ({}, dict(z_rows=z, grad_w=grad_w)):
        got = sub.torch_gradients(t(P), t(Q), t(W), t(x), t(g), **kwargs)
        check_pair(got, want, f"{name} {sorted(kwargs)}")
        # the base class's default (the specification on copies) agrees with the fast body
        check_pair(SubspaceRule.torch_gradients(sub, t(P), t(Q), t(W), t(x), t(g), **kwargs), want,
                   f"{name} base default")


@pytest.mark.parametrize("name", list(rules.SUBSPACES))
def test_token_inputs_in_feedback_linear(name):
    """(batch 3, tokens 4, 7 features): P.grad and Q.grad against the spec on the 12 rows."""
    gen = torch.Generator().manual_seed(1)
    layer = FeedbackLinear(7, 5, rule="ldfa", rank=2, subspace=name, generator=gen, dtype=DT)
    with torch.no_grad():  # leave the SVD start, where normative's gradient vanishes
        layer.P.add_(torch.randn(layer.P.shape, generator=gen, dtype=DT))
    x = torch.randn(3, 4, 7, generator=gen, dtype=DT, requires_grad=True)
    g = torch.randn(3, 4, 5, generator=gen, dtype=DT)
    layer(x).backward(g)
    sub = rules.SUBSPACES[name]
    want = spec_on_rows(sub, np_(layer.P), np_(layer.Q), np_(layer.weight), np_(x).reshape(12, 7),
                        np_(g).reshape(12, 5), n_samples=3)
    got = [layer.P.grad if "P" in sub.learns else None, layer.Q.grad if "Q" in sub.learns else None]
    check_pair(got, [w if f in sub.learns else None for f, w in zip("PQ", want)], name)
    assert_close(np_(x.grad), np_(g) @ np_(layer.feedback_matrix()).T, what="input gradient")


# ----------------------------------------------------------------------------- (a) convolutions
def im2col(x: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
    """Rows (N H_out W_out, C k_h k_w) of patches, channel-major, by explicit loops."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                patch = xp[b, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
                rows.append(patch.reshape(-1))
    return np.array(rows)


def conv_case(groups, kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), seed=0):
    """Random x, g, P, Q, W of a grouped conv 4G -> 3G channels, rank 2 per group."""
    rng = np.random.default_rng(seed)
    c_in, c_out, r = 4 * groups, 3 * groups, 2 * groups
    x = rng.normal(size=(3, c_in, 7, 6))
    W = rng.normal(size=(c_out, c_in // groups, *kernel))
    y = F.conv2d(t(x), t(W), None, stride, padding, dilation, groups)
    g = rng.normal(size=y.shape)
    P = rng.normal(size=(r, c_out // groups, 1, 1))
    Q = rng.normal(size=(r, c_in // groups, *kernel))
    return x, g, P, Q, W, ConvGeometry(stride, padding, dilation, groups)


def conv_spec(sub, x, g, P, Q, W, geo):
    """The spec per group on the im2col rows; (grad_P, grad_Q) in the kernel layouts (or None)."""
    G = geo.groups
    rows = im2col(x, W.shape[-2:], geo.stride, geo.padding, geo.dilation)
    g_rows = g.transpose(0, 2, 3, 1).reshape(-1, g.shape[1])
    fan, c_out, per = rows.shape[1] // G, W.shape[0] // G, P.shape[0] // G
    out_p, out_q = [], []
    for j in range(G):
        p = P.reshape(G, per, c_out)[j]
        q = Q.reshape(G, per, fan)[j].T
        w = W.reshape(G, c_out, fan)[j]
        gp, gq = spec_on_rows(sub, p, q, w, rows[:, j * fan:(j + 1) * fan],
                              g_rows[:, j * c_out:(j + 1) * c_out], n_samples=x.shape[0])
        out_p.append(gp)
        out_q.append(None if gq is None else gq.T)
    return tuple(None if any(a is None for a in parts) else np.stack(parts).reshape(M.shape)
                 for parts, M in ((out_p, P), (out_q, Q)))


@pytest.mark.parametrize("name", list(rules.SUBSPACES))
@pytest.mark.parametrize("groups", [1, 2])
def test_torch_conv_gradients_equal_the_specification(name, groups):
    sub = rules.SUBSPACES[name]
    x, g, P, Q, W, geo = conv_case(groups)
    want = [a if f in sub.learns else None for f, a in zip("PQ", conv_spec(sub, x, g, P, Q, W, geo))]
    grad_w = torch.nn.grad.conv2d_weight(t(x), W.shape, t(g), geo.stride, geo.padding, geo.dilation,
                                         groups)
    c_out = W.shape[0] // groups  # z: P_f of each group at every position of its error channels
    z = torch.stack([t(P).reshape(groups, -1, c_out)[j] @ t(g).reshape(3, groups, c_out, -1)[:, j]
                     for j in range(groups)], dim=1).reshape(3, P.shape[0], *g.shape[2:])
    for kwargs in ({}, dict(z=z, grad_w=grad_w)):
        got = sub.torch_conv_gradients(t(P), t(Q), t(W), t(x), t(g), geo, **kwargs)
        check_pair(got, want, f"{name} conv {sorted(kwargs)}")
        base = SubspaceRule.torch_conv_gradients(sub, t(P), t(Q), t(W), t(x), t(g), geo, **kwargs)
        check_pair(base, want, f"{name} conv base default")


@pytest.mark.parametrize("name", list(rules.SUBSPACES))
def test_feedback_conv2d_factor_gradients_equal_the_specification(name):
    """Through the layer (groups 2, stride 2, padding 1): P.grad, Q.grad against the spec."""
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=DT)
    layer = feedback_conv2d(conv, "ldfa", rank=4, subspace=name,
                            generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        layer.P.add_(0.3 * torch.randn_like(layer.P))
    x = torch.randn(2, 4, 6, 5, dtype=DT, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    sub = rules.SUBSPACES[name]
    want = conv_spec(sub, np_(x), np_(g), np_(layer.P), np_(layer.Q), np_(layer.weight), layer.geometry)
    got = [layer.P.grad if "P" in sub.learns else None, layer.Q.grad if "Q" in sub.learns else None]
    check_pair(got, [w if f in sub.learns else None for f, w in zip("PQ", want)], name)
    assert layer.P.requires_grad == ("P" in sub.learns) and layer.Q.requires_grad == ("Q" in sub.learns)


def test_builtin_dense_and_transport_bodies_equal_the_specification():
    rng = np.random.default_rng(2)
    W, B = rng.normal(size=(5, 7)), rng.normal(size=(7, 5))
    x, g = rng.normal(size=(9, 7)), rng.normal(size=(9, 5))
    grad_w = g.T @ x
    bp, kp = rules.get_rule("bp"), rules.get_rule("kp")
    assert_close(np_(bp.torch_transport(t(W))), bp.transport(W), what="bp transport")
    assert_close(np_(Rule.torch_transport(bp, t(W))), bp.transport(W), what="bp base default")
    want = kp.dense_gradient(B, W, grad_w, x, 9 * g)
    assert_close(np_(kp.torch_dense_gradient(t(B), t(W), t(grad_w), t(x), t(g))), want, what="kp")
    assert_close(np_(Rule.torch_dense_gradient(kp, t(B), t(W), t(grad_w), t(x), t(g))), want,
                 what="kp base default")
    # convolution: the kernel layout's gradient, per group, against the base default's unfolding
    xc, gc, _, _, Wc, geo = conv_case(2)
    Bc = rng.normal(size=Wc.shape)
    dw = torch.nn.grad.conv2d_weight(t(xc), Wc.shape, t(gc), geo.stride, geo.padding, geo.dilation, 2)
    fast = kp.torch_conv_dense_gradient(t(Bc), t(Wc), dw, t(xc), t(gc), geo)
    base = Rule.torch_conv_dense_gradient(kp, t(Bc), t(Wc), dw, t(xc), t(gc), geo)
    assert_close(np_(fast), np_(base), what="kp conv")
    assert_close(np_(fast), np_(dw), what="kp conv = grad W")


# ----------------------------------------------------------------------------- (b) rules registered here
def test_new_units_in_feedback_linear(registered):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 6, generator=gen, dtype=DT, requires_grad=True)  # tokens: 12 rows
    g = torch.randn(3, 4, 5, generator=gen, dtype=DT)
    xr, gr = np_(x).reshape(12, 6), np_(g).reshape(12, 5)

    sign = FeedbackLinear(6, 5, rule="sign_symmetric", generator=gen, dtype=DT)
    sign(x).backward(g)
    W = np_(sign.weight)
    assert_close(np_(x.grad), np_(g) @ np.sign(W), what="sign: g B^T")
    assert_close(np_(sign.feedback_matrix()), np.sign(W).T, what="sign feedback_matrix")
    assert_close(np_(sign.weight.grad), gr.T @ xr, what="sign weight.grad")

    x.grad = None
    hebb = FeedbackLinear(6, 5, rule="ldfa", rank=2, subspace="hebbian_p", generator=gen, dtype=DT)
    hebb(x).backward(g)
    want = rules.SUBSPACES["hebbian_p"].gradients(np_(hebb.P), np_(hebb.Q), np_(hebb.weight), xr, 12 * gr)
    check_pair((hebb.P.grad, hebb.Q.grad), want, "hebbian_p")

    x.grad = None
    tkp = FeedbackLinear(6, 5, rule="tanh_kp", generator=gen, dtype=DT)
    assert isinstance(tkp.B, nn.Parameter)
    tkp(x).backward(g)
    B = np_(tkp.B)
    assert_close(np_(x.grad), np_(g) @ B.T, what="tanh_kp: g B^T")
    want_b = TanhKP().dense_gradient(B, np_(tkp.weight), gr.T @ xr, xr, 12 * gr)
    assert_close(np_(tkp.B.grad), want_b, what="tanh_kp B.grad")


def test_new_units_in_feedback_conv2d(registered):
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, dtype=DT)
    x = torch.randn(3, 4, 7, 6, dtype=DT)
    g = torch.randn_like(conv(x))

    sign = feedback_conv2d(conv, "sign_symmetric")
    xs = x.clone().requires_grad_()
    sign(xs).backward(g)
    xr = x.clone().requires_grad_()
    F.conv2d(xr, torch.sign(conv.weight.detach()), None, conv.stride, conv.padding, conv.dilation,
             2).backward(g)
    assert_close(np_(xs.grad), np_(xr.grad), what="sign conv input gradient")
    assert_close(np_(sign.feedback_kernel()), np.sign(np_(conv.weight)), what="sign kernel")

    conv.weight.grad = conv.bias.grad = None
    hebb = feedback_conv2d(conv, "ldfa", rank=4, subspace="hebbian_p",
                           generator=torch.Generator().manual_seed(0))
    hebb(x.clone().requires_grad_()).backward(g)
    want = conv_spec(rules.SUBSPACES["hebbian_p"], np_(x), np_(g), np_(hebb.P), np_(hebb.Q),
                     np_(conv.weight), hebb.geometry)
    check_pair((hebb.P.grad, hebb.Q.grad), want, "hebbian_p conv")

    conv.weight.grad = conv.bias.grad = None
    tkp = feedback_conv2d(conv, "tanh_kp", generator=torch.Generator().manual_seed(0))
    tkp(x.clone().requires_grad_()).backward(g)
    rows = im2col(np_(x), (3, 2), (2, 1), (1, 0), (1, 2))
    g_rows = np_(g).transpose(0, 2, 3, 1).reshape(-1, 6)
    for j in range(2):
        xj, gj = rows[:, j * 12:(j + 1) * 12], g_rows[:, j * 3:(j + 1) * 3]
        Bj = np_(tkp.B).reshape(2, 3, 12)[j].T
        Wj = np_(conv.weight).reshape(2, 3, 12)[j]
        want_b = TanhKP().dense_gradient(Bj, Wj, gj.T @ xj, xj, len(xj) * gj)
        assert_close(np_(tkp.B.grad).reshape(2, 3, 12)[j].T, want_b, what=f"tanh_kp conv group {j}")


@pytest.mark.parametrize("attention", ["fused", "torch"])
def test_new_units_in_attention_through_convert(registered, attention):
    """A small ViT converted with the new rules: every map's input gradient is g B^T (B its
    feedback_matrix()) and hebbian_p's P, Q gradients are the spec on its rows."""
    from bioplastic.torch.models import ViT

    torch.manual_seed(0)
    vit = ViT(image_size=8, patch=4, in_channels=3, n_classes=5, dim=8, depth=1, heads=2,
              attention=attention).to(DT)
    for rule, kw in (("sign_symmetric", {}), ("ldfa", dict(rank=1, subspace="hebbian_p"))):
        model = convert(vit, rule=rule, **kw)
        seen = {}
        layers = [m for m in model.modules() if isinstance(m, FeedbackLinear)]
        assert len(layers) == 5  # qkv, out proj, fc1, fc2, head
        for m in layers:
            m.register_forward_hook(lambda mod, inp, out: seen.setdefault(id(mod), {}).update(
                x=np_(inp[0]).reshape(-1, mod.in_features)))
            m.register_full_backward_hook(lambda mod, gin, gout: seen[id(mod)].update(
                g=np_(gout[0]).reshape(-1, mod.out_features), gin=np_(gin[0])))
        out = model(torch.randn(4, 3, 8, 8, dtype=DT))
        (out * torch.randn_like(out)).sum().backward()
        for m in layers:
            s = seen[id(m)]
            B = np_(m.feedback_matrix())
            assert_close(s["gin"].reshape(-1, m.in_features), s["g"] @ B.T, what=f"{rule} {m!r}")
            if rule == "ldfa":
                want = rules.SUBSPACES["hebbian_p"].gradients(np_(m.P), np_(m.Q), np_(m.weight), s["x"],
                                                             len(s["x"]) * s["g"])
                check_pair((m.P.grad, m.Q.grad), want, f"hebbian_p {m!r}")


def _runner_steps(circuit, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    ref = bioplastic.build(circuit)
    tor = bioplastic.build(circuit, backend="torch", dtype="float64", weights=ref.get_weights())
    start = ref.get_weights()
    n_in, d = circuit.sizes[0], circuit.sizes[-1]
    for _ in range(steps):
        x, y = rng.normal(size=(5, n_in)), rng.normal(size=(5, d))
        assert tor.train_step(x, y) == pytest.approx(ref.train_step(x, y), rel=1e-12)
    want, got = ref.get_weights(), tor.get_weights()
    for k in want:
        scale = max(np.abs(want[k]).max(), 1e-300)
        assert np.abs(got[k] - want[k]).max() / scale < 1e-10, (k, np.abs(got[k] - want[k]).max())
    return start, want


@pytest.mark.parametrize("kwargs", [dict(rule="sign_symmetric"), dict(rule="tanh_kp"),
                                    dict(rule="ldfa", rank=2, subspace="hebbian_p"),
                                    dict(rule="dfa", rank=2, subspace="hebbian_p")],
                         ids=["sign", "tanh_kp", "ldfa-hebbian_p", "dfa-hebbian_p"])
def test_new_units_in_the_torch_runner(registered, kwargs):
    circuit = circuits.mlp([6, 9, 8, 3], activation="tanh", lr=0.1, feedback_lr=0.1, decay=0.01,
                           seed=2, **kwargs)
    assert bioplastic.backends.supports(circuit, "torch")
    start, end = _runner_steps(circuit)
    for k in circuit.weight_keys():  # not vacuous: the new rules' feedback moved
        assert np.abs(end[k] - start[k]).max() > 1e-6, k


def test_what_torch_cannot_run_is_refused_by_name(registered):
    circuit = circuits.mlp([6, 9, 8, 3], rule="direct_kp", seed=0)
    reason = bioplastic.backends.unsupported(circuit, "torch")
    assert "'torch'" in reason and "direct_kp" in reason and "supported" in reason
    with pytest.raises(UnsupportedCircuitError, match="'torch'.*direct_kp.*supported"):
        bioplastic.build(circuit, backend="torch")
    with pytest.raises(ValueError, match="'direct_kp' has no per-layer form"):
        convert(nn.Sequential(nn.Linear(3, 2)), rule="direct_kp")


def test_a_rule_contradicting_its_learns_raises_instead_of_staying_silent(registered):
    layer = FeedbackLinear(5, 4, rule="ldfa", rank=2, subspace="broken_p", dtype=DT)
    assert layer.P.requires_grad
    x = torch.randn(3, 5, dtype=DT, requires_grad=True)
    with pytest.raises(RuntimeError, match="'broken_p' declares it learns P"):
        layer(x).sum().backward()
    conv = feedback_conv2d(nn.Conv2d(2, 3, 3, dtype=DT), "ldfa", rank=2, subspace="broken_p")
    with pytest.raises(RuntimeError, match="'broken_p' declares it learns P"):
        conv(torch.randn(1, 2, 5, 5, dtype=DT, requires_grad=True)).sum().backward()


def test_registered_units_are_listed_by_the_layers_and_runner(registered):
    from bioplastic.backends import capabilities

    assert "hebbian_p" in capabilities("torch")["subspaces"]
    with pytest.raises(ValueError, match="valid options: .*sign_symmetric"):
        FeedbackLinear(3, 2, rule="nope")


# ----------------------------------------------------------------------------- (c) the new forms
@pytest.mark.parametrize("kwargs", [dict(rule="ldfa", subspace="q_only"),
                                    *[dict(rule="dfa", subspace=s) for s in ("fixed", "local", "oja", "q_only")]],
                         ids=["ldfa-q_only", "dfa-fixed", "dfa-local", "dfa-oja", "dfa-q_only"])
def test_new_forms_in_the_torch_runner_equal_the_reference(kwargs):
    circuit = circuits.mlp([7, 12, 9, 10, 3], rank=2, activation="tanh", lr=0.1, feedback_lr=0.07,
                           decay=0.01, seed=1, **kwargs)
    start, end = _runner_steps(circuit, steps=4)
    learns = rules.SUBSPACES[kwargs["subspace"]].learns
    for k in circuit.weight_keys():
        moved = np.abs(end[k] - start[k]).max()
        kind = k[0]
        assert (moved > 1e-6) if kind in "Wb" or kind in learns else moved == 0.0, (k, moved)
