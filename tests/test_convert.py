"""``bioplastic.torch``: FeedbackLinear gradients, limit cases, optimisers, and ``convert``.

Expected values are computed independently in float64 numpy (the batch-mean rules of
:mod:`bioplastic.rules.ldfa` with delta = N g, N the number of rows) or are exact limit cases
(QP = W^T reproduces backprop). Float64 comparisons use rtol 1e-12: the same products in another
summation order differ by ~1e-15.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch import nn

from bioplastic import rules
from bioplastic.rules import ldfa as ldfa_rules
from bioplastic.torch import CONVERTERS, FeedbackLinear, convert, functional, subspace_grads

F64 = torch.float64
#: (rule, subspace) of every per-layer form.
LAYER_CASES = [("bp", "local"), ("fa", "local"), ("kp", "local"), ("ldfa", "fixed"),
               ("ldfa", "normative"), ("ldfa", "local"), ("ldfa", "oja")]
LAYER_IDS = [r if r != "ldfa" else f"ldfa-{s}" for r, s in LAYER_CASES]


def mlp(sizes=(6, 9, 7, 4), bias=True, seed=0) -> nn.Sequential:
    """Linear-Tanh-...-Linear in float64."""
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods += [nn.Linear(a, b, bias=bias)] + ([nn.Tanh()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*mods).to(F64)


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def close(a, b, rtol=1e-12):
    """Max abs difference below rtol times b's scale."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= rtol * max(np.abs(b).max(), 1e-300), np.abs(a - b).max()


# ----------------------------------------------------------------------------- one layer
@pytest.mark.parametrize("rule, subspace", LAYER_CASES, ids=LAYER_IDS)
def test_layer_gradients_match_numpy(rule, subspace):
    """3-D input (batch 2, tokens 5, 7 features): every gradient against its formula, rows = 10."""
    gen = torch.Generator().manual_seed(1)
    rank = 3 if rule == "ldfa" else None
    layer = FeedbackLinear(7, 6, rule=rule, rank=rank, subspace=subspace, generator=gen, dtype=F64)
    if rule == "ldfa":
        with torch.no_grad():  # off the SVD start, where the normative gradient vanishes
            layer.P.add_(torch.randn(layer.P.shape, generator=gen, dtype=F64))
            layer.Q.add_(torch.randn(layer.Q.shape, generator=gen, dtype=F64))
    x = torch.randn(2, 5, 7, generator=gen, dtype=F64, requires_grad=True)
    g = torch.randn(2, 5, 6, generator=gen, dtype=F64)
    layer(x).backward(g)

    W = np_(layer.weight)
    xr, gr = np_(x).reshape(-1, 7), np_(g).reshape(-1, 6)
    B = {"bp": lambda: W.T, "fa": lambda: np_(layer.B), "kp": lambda: np_(layer.B),
         "ldfa": lambda: np_(layer.Q) @ np_(layer.P)}[rule]()
    close(np_(layer.feedback_matrix()), B)
    close(np_(x.grad), np_(g) @ B.T)
    close(np_(layer.weight.grad), gr.T @ xr)
    close(np_(layer.bias.grad), gr.sum(0))
    if rule == "kp":
        close(np_(layer.B.grad), np_(layer.weight.grad).T)
    if rule == "fa":
        assert "B" in dict(layer.named_buffers()) and layer.B.grad is None
    if rule == "ldfa" and subspace == "fixed":
        assert layer.P.grad is None and layer.Q.grad is None
    elif rule == "ldfa":
        n = xr.shape[0]
        want_p, want_q = rules.SUBSPACE_RULES[subspace](np_(layer.P), np_(layer.Q), W, xr, n * gr)
        if subspace == "oja":  # C: mean over rows of the per-sample error, delta = batch (2) * g
            want_p, _ = ldfa_rules.oja_gradients(np_(layer.P), np_(layer.Q), W, xr, 2 * gr)
        close(np_(layer.P.grad), want_p)
        close(np_(layer.Q.grad), want_q)


@pytest.mark.parametrize("subspace", ["normative", "local", "oja"])
def test_subspace_grads_function_matches_rules(subspace):
    """The reusable pure function (for Conv2d / attention layers) on plain rows."""
    rng = np.random.default_rng(3)
    P, Q, W = rng.normal(size=(2, 5)), rng.normal(size=(8, 2)), rng.normal(size=(5, 8))
    x, g = rng.normal(size=(11, 8)), rng.normal(size=(11, 5))
    got = subspace_grads(subspace, *(torch.tensor(a) for a in (P, Q, W, x, g)))
    want = rules.SUBSPACE_RULES[subspace](P, Q, W, x, 11 * g)
    for a, b in zip(got, want):
        close(np_(a), b)
    assert subspace_grads("fixed", *(torch.tensor(a) for a in (P, Q, W, x, g))) == (None, None)
    with pytest.raises(ValueError, match="unknown subspace 'pca'; valid options: fixed, normative"):
        subspace_grads("pca", *(torch.tensor(a) for a in (P, Q, W, x, g)))


@pytest.mark.parametrize("rule, r, expected", [("ldfa", 4, 4), ("ldfa", 1, 1), ("fa", None, 30)])
def test_error_map_rank_is_at_most_r(rule, r, expected):
    """Jacobian of grad_input w.r.t. grad_output: rows e_j give its columns; rank r (fa: full)."""
    gen = torch.Generator().manual_seed(2)
    layer = FeedbackLinear(40, 30, rule=rule, rank=r, subspace="local", generator=gen, dtype=F64)
    x = torch.randn(30, 40, generator=gen, dtype=F64, requires_grad=True)
    layer(x).backward(torch.eye(30, dtype=F64))  # row j of x.grad = column j of the Jacobian
    jac = np_(x.grad).T  # (in, out)
    assert np.linalg.matrix_rank(jac) == expected
    # and the errors delivered for a random batch span r dimensions
    x2 = torch.randn(64, 40, generator=gen, dtype=F64, requires_grad=True)
    layer(x2).backward(torch.randn(64, 30, generator=gen, dtype=F64))
    assert np.linalg.matrix_rank(np_(x2.grad)) == expected


def test_first_layer_computes_no_input_gradient(monkeypatch):
    calls = []
    original = functional.expand
    monkeypatch.setattr(functional, "expand", lambda z, Q: calls.append(tuple(Q.shape)) or original(z, Q))
    model = convert(mlp(), rank=2)
    x = torch.randn(5, 6, dtype=F64)
    model(x).sum().backward()
    assert calls == [(7, 2), (9, 2)]  # layers 3 and 2; layer 1's input needs no gradient
    calls.clear()
    model(x.requires_grad_()).sum().backward()
    assert calls == [(7, 2), (9, 2), (6, 2)]


# ----------------------------------------------------------------------------- limit cases
def _exact_factors(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, Q) with QP = W^T exactly (no rounding): Q = W^T, P = I, or Q = I, P = W^T."""
    n_out, n_in = W.shape
    if n_out <= n_in:
        return torch.eye(n_out, dtype=W.dtype), W.T.clone()
    return W.T.clone(), torch.eye(n_in, dtype=W.dtype)


@pytest.mark.parametrize("rule", ["ldfa", "fa"])
def test_feedback_equal_to_transpose_reproduces_backprop(rule):
    """ldfa with QP = W^T at full rank, or fa with B = W^T, gives bp's gradients on a whole MLP."""
    model = mlp(sizes=(6, 9, 7, 4))
    kw = dict(rank=100, clip_rank=True, subspace="fixed") if rule == "ldfa" else {}
    fb = convert(model, rule=rule, **kw)
    with torch.no_grad():
        for layer in fb:
            if isinstance(layer, FeedbackLinear) and rule == "ldfa":
                p, q = _exact_factors(layer.weight)
                layer.P.copy_(p)
                layer.Q.copy_(q)
            elif isinstance(layer, FeedbackLinear):
                layer.B.copy_(layer.weight.T)
    assert [m.rank for m in fb if isinstance(m, FeedbackLinear)] == ([6, 7, 4] if rule == "ldfa"
                                                                        else [None] * 3)
    x = torch.randn(10, 6, dtype=F64)
    y = torch.randn(10, 4, dtype=F64)
    inputs = []
    for net in (model, fb):
        xi = x.clone().requires_grad_()
        (0.5 * ((net(xi) - y) ** 2).sum(1).mean()).backward()
        inputs.append(xi.grad)
    close(np_(inputs[1]), np_(inputs[0]), rtol=1e-14)
    fb_params = dict(fb.named_parameters())
    for name, p_bp in model.named_parameters():
        close(np_(fb_params[name].grad), np_(p_bp.grad), rtol=1e-14)


def test_kolen_pollack_feedback_converges_to_transpose():
    """kp under SGD(weight_decay=lam): B - W^T shrinks by exactly (1 - lr lam) per step."""
    model = convert(mlp(), rule="kp")
    lr, lam = 0.1, 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=lam)
    layer = model[2]
    gap0 = np.linalg.norm(np_(layer.B - layer.weight.T))
    x, y = torch.randn(8, 6, dtype=F64), torch.randn(8, 4, dtype=F64)
    for _ in range(5):
        opt.zero_grad()
        (0.5 * ((model(x) - y) ** 2).sum(1).mean()).backward()
        opt.step()
    np.testing.assert_allclose(np.linalg.norm(np_(layer.B - layer.weight.T)), gap0 * (1 - lr * lam) ** 5,
                               rtol=1e-12)


# ----------------------------------------------------------------------------- training
def test_adam_trains_weights_and_feedback():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(256, 8)
    with torch.no_grad():
        y = teacher(x)
    model = convert(mlp(sizes=(8, 64, 64, 3)).float(), rank=2, subspace="local", seed=0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(150):
        batch = slice(32 * (step % 8), 32 * (step % 8 + 1))
        loss = 0.5 * ((model(x[batch]) - y[batch]) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-8:]) < 0.3 * np.mean(losses[:8]), (losses[:8], losses[-8:])
    for key in ("2.P", "2.Q", "4.P", "4.Q"):
        # Adam moves each entry by up to lr per step
        assert (model.state_dict()[key] - start[key]).abs().max() > 1e-2, key


# ----------------------------------------------------------------------------- module behaviour
def test_no_grad_eval_forward_is_exactly_linear():
    model = mlp()
    fb = convert(model, rank=2).eval()
    x = torch.randn(4, 3, 6, dtype=F64)
    with torch.no_grad():
        assert torch.equal(fb(x), model(x))


def test_bias_false():
    model = mlp(bias=False)
    fb = convert(model, rule="ldfa", rank=2, subspace="oja")
    layer = fb[2]
    assert layer.bias is None and "bias=False" in repr(layer)
    x = torch.randn(5, 6, dtype=F64)
    g = torch.randn(5, 7, dtype=F64)
    h = torch.tanh(fb[0](x)).detach()
    layer(h).backward(g)
    close(np_(layer.weight.grad), np_(g).T @ np_(h))
    assert torch.equal(fb(x), model(x))


def test_state_dict_round_trip():
    model = mlp()
    a = convert(model, rule="ldfa", rank=2, subspace="local", seed=0)
    opt = torch.optim.SGD(a.parameters(), lr=0.1)
    (a(torch.randn(6, 6, dtype=F64)) ** 2).sum().backward()
    opt.step()  # moves W, P and Q away from anything a fresh conversion would draw
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = convert(model, rule="ldfa", rank=2, subspace="local", seed=1)
    b.load_state_dict(torch.load(buffer))
    x = torch.randn(3, 6, dtype=F64)
    assert torch.equal(a(x), b(x))
    for la, lb in zip(a, b):
        if isinstance(la, FeedbackLinear):
            assert torch.equal(la.feedback_matrix(), lb.feedback_matrix())
    assert {"0.P", "0.Q", "2.P", "2.Q"} <= set(a.state_dict())


def test_fa_buffer_in_state_dict_and_float32():
    layer = FeedbackLinear(5, 4, rule="fa", generator=torch.Generator().manual_seed(0))
    assert "B" in layer.state_dict() and layer.B.dtype == torch.float32
    assert not any(n == "B" for n, _ in layer.named_parameters())
    x, g = torch.randn(3, 5), torch.randn(3, 4)
    xx = x.clone().requires_grad_()
    layer(xx).backward(g)
    # float32 against a float64 formula: 1e-5 covers float32 rounding of O(1) sums of 4 terms
    close(np_(xx.grad), np_(g) @ np_(layer.B).T, rtol=1e-5)


def test_initial_feedback():
    model = mlp(sizes=(20, 16, 12))
    svd = convert(model, rank=3, subspace="normative")[2]
    u, s, vt = np.linalg.svd(np_(svd.weight).T)
    close(np_(svd.feedback_matrix()), (u[:, :3] * s[:3]) @ vt[:3], rtol=1e-12)  # Eckart-Young
    oja = convert(model, rank=3, subspace="oja")[2]
    close(np_(oja.P) @ np_(oja.P).T, np.eye(3), rtol=1e-13)
    fixed = convert(model, rank=3, subspace="fixed")[2]
    assert not fixed.P.requires_grad and not fixed.Q.requires_grad
    # the same seed draws the same feedback, another seed another
    again = convert(model, rank=3, subspace="fixed")[2]
    other = convert(model, rank=3, subspace="fixed", seed=1)[2]
    assert torch.equal(fixed.P, again.P) and not torch.equal(fixed.P, other.P)


def test_refactorise_resets_to_truncated_svd():
    layer = convert(mlp(sizes=(20, 16, 12)), rank=3, subspace="normative")[0]
    with torch.no_grad():
        layer.P.normal_()
        layer.weight.add_(0.1)
    u, s, vt = np.linalg.svd(np_(layer.weight).T)
    assert layer.refactorise() is layer
    close(np_(layer.Q @ layer.P), (u[:, :3] * s[:3]) @ vt[:3], rtol=1e-12)
    with pytest.raises(ValueError, match="refactorise needs rule 'ldfa'"):
        FeedbackLinear(3, 2, rule="fa").refactorise()


@pytest.mark.parametrize("rule, subspace", [("kp", "local"), ("ldfa", "oja"), ("ldfa", "normative")])
def test_autocast_bfloat16_gradients(rule, subspace):
    """Under autocast the backward runs in the forward's bfloat16 and grads come back float32."""
    gen = torch.Generator().manual_seed(4)
    layer = FeedbackLinear(16, 12, rule=rule, rank=3 if rule == "ldfa" else None, subspace=subspace,
                           generator=gen)
    if rule == "ldfa":
        with torch.no_grad():
            layer.P.add_(torch.randn(layer.P.shape, generator=gen))
    x, g = torch.randn(8, 16, generator=gen), torch.randn(8, 12, generator=gen)
    grads = []
    for dtype in (None, torch.bfloat16):
        layer.zero_grad()
        xx = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            y = layer(xx)
        assert y.dtype == (dtype or torch.float32)
        y.backward(g.to(y.dtype))
        grads.append([xx.grad] + [p.grad for p in layer.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        assert b.dtype == torch.float32
        # bfloat16 keeps 8 significant bits (eps 2^-8 ~ 4e-3); sums of <= 16 products: 5e-2
        close(np_(b), np_(a), rtol=5e-2)


# ----------------------------------------------------------------------------- convert
def test_convert_copies_unless_inplace_and_keeps_parameters():
    model = mlp()
    out = convert(model, rank=2)
    assert all(type(m) is nn.Linear for m in model if not isinstance(m, nn.Tanh))
    assert [type(m).__name__ for m in out] == ["FeedbackLinear", "Tanh"] * 2 + ["FeedbackLinear"]
    assert torch.equal(out[0].weight, model[0].weight) and out[0].weight is not model[0].weight
    weight = model[2].weight
    same = convert(model, rank=2, inplace=True)
    assert same is model and model[2].weight is weight  # an existing optimiser keeps working
    assert isinstance(convert(nn.Linear(4, 3), rule="fa"), FeedbackLinear)


def test_convert_rank_dict_exclude_and_clip():
    model = mlp(sizes=(6, 9, 7, 4))
    out = convert(model, rank={"0": 5, "2": 3}, exclude=["4"], subspace="oja")
    assert (out[0].rank, out[2].rank, type(out[4])) == (5, 3, nn.Linear)
    clipped = convert(model, rank=8, clip_rank=True)
    assert [clipped[i].rank for i in (0, 2, 4)] == [6, 7, 4]
    assert "rank=7, subspace='local'" in repr(clipped[2])


def test_convert_keeps_shared_modules_shared_and_nested():
    shared = nn.Linear(5, 5)
    model = nn.ModuleDict({"a": nn.Sequential(shared, nn.ReLU()), "b": shared,
                           "c": nn.ModuleList([nn.Linear(5, 2)])})
    out = convert(model, rule="kp")
    assert out["a"][0] is out["b"] and isinstance(out["b"], FeedbackLinear)
    assert isinstance(out["c"][0], FeedbackLinear)


def test_convert_registry_is_exact_type_and_extensible(monkeypatch):
    """A Linear subclass may use its weight differently, so only a registration converts it."""

    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(MyLinear(4, 3))
    with pytest.raises(TypeError, match=r"0 \(MyLinear\); supported types: Linear, .*unsupported='bp'"):
        convert(model, rule="fa")
    assert not isinstance(convert(model, rule="fa", unsupported="bp")[0], FeedbackLinear)
    monkeypatch.setitem(CONVERTERS, MyLinear, CONVERTERS[nn.Linear])
    assert isinstance(convert(model, rule="fa")[0], FeedbackLinear)

    class Block(nn.Sequential):
        pass

    # a registered composite owns its subtree: its inner Linear is its converter's business
    monkeypatch.setitem(CONVERTERS, Block, lambda module, spec, generator, name: nn.Identity())
    out = convert(nn.Sequential(Block(nn.Linear(4, 4)), nn.Linear(4, 2)), rule="fa")
    assert type(out[0]) is nn.Identity and isinstance(out[1], FeedbackLinear)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rank=0), ValueError, r"rank 0 for layer '0' is invalid: it must be an int in 1\.\.6"),
    (dict(rank=7), ValueError, r"rank 7 for layer '0' is out of range: .*1\.\.6 .*clip_rank=True"),
    (dict(rank=2.5), ValueError, "rank 2.5 for layer '0' is invalid"),
    (dict(rank=True), ValueError, "rank True for layer '0' is invalid"),
    (dict(rank=None), ValueError, "rule 'ldfa' needs rank=r"),
    (dict(rule="fa", rank=3), ValueError, "rank is an ldfa setting"),
    (dict(rule="sgd"), ValueError, "unknown rule 'sgd'; valid options: bp, fa, kp, ldfa"),
    (dict(rule="dfa"), ValueError, "'dfa' has no per-layer form.*circuits.mlp"),
    (dict(rank=2, subspace="pca"), ValueError, "unknown subspace 'pca'; valid options: fixed"),
    (dict(rank={"0": 2, "9": 2}), ValueError, r"rank names modules .*\['9'\]; valid names"),
    (dict(rank={"0": 2}), ValueError, r"rank dict gives no rank for \['2', '4'\]"),
    (dict(rank=2, exclude=["fc"]), ValueError, r"exclude names .*\['fc'\]; valid names: \['0', '2', '4'\]"),
])
def test_convert_bad_input_raises(kwargs, error, match):
    model = mlp(sizes=(6, 9, 7, 4))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=match):
        convert(model, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_feedback_linear_bad_input_raises():
    with pytest.raises(ValueError, match=r"rank 5 for FeedbackLinear\(4, 6\) is out of range: .*1\.\.4"):
        FeedbackLinear(4, 6, rank=5)
    with pytest.raises(TypeError, match="convert needs a torch.nn.Module"):
        convert(np.zeros(3), rule="fa")
    with pytest.raises(ValueError, match=r"expects inputs of shape \(\.\.\., 4\); got \(2, 5\)"):
        FeedbackLinear(4, 3, rule="fa")(torch.zeros(2, 5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_converted_model_on_cuda_matches_cpu():
    cpu = convert(mlp(sizes=(32, 256, 128, 10)), rank=4, subspace="oja")
    gpu = copy.deepcopy(cpu).cuda()
    x, g = torch.randn(64, 32, dtype=F64), torch.randn(64, 10, dtype=F64)
    for net, dev in ((cpu, "cpu"), (gpu, "cuda")):
        net(x.to(dev)).backward(g.to(dev))
    for (name, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters()):
        if a.grad is not None:
            close(np_(b.grad), np_(a.grad), rtol=1e-10)


def test_oja_covariance_on_token_inputs_is_a_mean_over_samples_and_positions():
    """(batch, tokens, in) input: C must be the mean of delta delta^T over all rows, delta = batch * g."""
    from bioplastic.rules.ldfa import oja_gradients

    torch.manual_seed(0)
    B, T, n_in, n_out, r = 4, 9, 6, 5, 2
    layer = convert(torch.nn.Sequential(torch.nn.Linear(n_in, n_out)), rule="ldfa", rank=r,
                    subspace="oja")[0].double()
    x = torch.randn(B, T, n_in, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    target = torch.randn_like(y)
    (0.5 * ((y - target) ** 2).sum((1, 2)).mean()).backward()  # mean over the batch only
    g = (y - target).detach() / B
    P, Q, W = (t.detach().numpy() for t in (layer.P, layer.Q, layer.weight))
    delta_rows = (B * g).reshape(-1, n_out).numpy()
    expected_p, _ = oja_gradients(P, Q, W, x.detach().reshape(-1, n_in).numpy(), delta_rows)
    np.testing.assert_allclose(layer.P.grad.numpy(), expected_p, rtol=1e-10, atol=1e-12)


def test_parametrized_and_already_converted_models_are_refused():
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.utils.parametrizations.weight_norm(nn.Linear(3, 2)))
    with pytest.raises(TypeError, match=r"2 \(ParametrizedLinear with a parametrized weight\)"):
        convert(m, rule="fa")
    done = convert(nn.Sequential(nn.Linear(4, 3)), rule="fa")
    with pytest.raises(ValueError, match="already converted"):
        convert(done, rule="fa")


@pytest.mark.parametrize("subspace", ["normative", "local", "oja"])
def test_feedback_into_data_gets_no_learning_signal(subspace):
    """The first layer's input is data: its feedback reaches no neuron, so P and Q get zero grads
    (not None, which DistributedDataParallel would reject) and nothing is computed for them."""
    model = convert(mlp(), rule="ldfa", rank=2, subspace=subspace).double()
    x = torch.randn(5, 6, dtype=F64)
    model(x).pow(2).sum().backward()
    first, second = model[0], model[2]
    assert torch.count_nonzero(first.P.grad) == 0 and torch.count_nonzero(first.Q.grad) == 0
    assert torch.count_nonzero(second.P.grad) > 0 and torch.count_nonzero(second.Q.grad) > 0
