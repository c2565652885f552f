"""FeedbackConv2d against independent float64 computations.

The references: autograd of the factorised forward convolution "Q-conv then 1x1 P-conv" built from
plain ``F.conv2d`` calls (with the module's own padding argument, so "same" is resolved by PyTorch);
the abstract float64 rules of :mod:`bioplastic.rules.ldfa` applied to flattened kernels; numpy SVDs.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close
from torch import nn

from bioplastic.rules.ldfa import local_gradients, normative_gradients, oja_gradients
from bioplastic.torch.conv import FeedbackConv2d, feedback_conv2d, max_rank

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: (kernel, stride, padding, dilation, groups, padding_mode)
GEOMETRIES = [
    (3, 1, 0, 1, 1, "zeros"),
    (3, 2, 1, 1, 1, "zeros"),
    (3, 1, 2, 2, 1, "zeros"),
    ((3, 5), (2, 1), (1, 2), 1, 2, "zeros"),
    (3, 1, "same", 2, 4, "zeros"),
    ((2, 4), 1, "same", 1, 2, "zeros"),  # even kernel: "same" pads one more on the right/bottom
    (5, 3, 2, (2, 1), 4, "zeros"),
    (3, 2, "valid", 1, 1, "zeros"),
    (3, 1, 1, 1, 2, "reflect"),
    (3, 1, 3, 1, 1, "zeros"),  # padding > d (k - 1): the transposed-conv fallback at stride 1
]
#: PyTorch's own "same" convolution (the reference) warns about the copy it makes for even kernels.
SAME_EVEN = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
IDS = [f"k{g[0]}-s{g[1]}-p{g[2]}-d{g[3]}-g{g[4]}-{g[5]}" for g in GEOMETRIES]


def make_conv(kernel, stride, padding, dilation, groups, padding_mode="zeros", c_in=8, c_out=12,
              bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias, padding_mode,
                     dtype=DT)


def forward_p_kernel(P, groups):
    """The 1x1 kernel (C_out, r/G, 1, 1) of the factorised forward's second conv, from P."""
    r, c_out_g = P.shape[:2]
    return P.reshape(groups, r // groups, c_out_g).transpose(1, 2).reshape(
        groups * c_out_g, r // groups, 1, 1)


def factorised_forward(conv, x, Q, P_fwd):
    """Q-conv with conv's own geometry (padding string or ints, padding mode), then the 1x1 P-conv."""
    if conv.padding_mode != "zeros":
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    else:
        padding = conv.padding
    u = F.conv2d(x, Q, None, conv.stride, padding, conv.dilation, conv.groups)
    return F.conv2d(u, P_fwd, groups=conv.groups)


def run_backward(layer, x, g):
    x = x.clone().requires_grad_()
    layer(x).backward(g)
    return x.grad


@SAME_EVEN
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=IDS)
def test_ldfa_input_gradient_is_that_of_the_factorised_conv(geometry):
    conv = make_conv(*geometry)
    groups = conv.groups
    layer = feedback_conv2d(conv, "ldfa", rank=2 * groups, subspace="local",
                            generator=torch.Generator().manual_seed(1))
    x = torch.randn(3, 8, 11, 10, dtype=DT)
    with torch.no_grad():
        y = layer(x)
    g = torch.randn_like(y)
    dx = run_backward(layer, x, g)

    xr = x.clone().requires_grad_()
    Q = layer.Q.detach().clone().requires_grad_()
    P_fwd = forward_p_kernel(layer.P.detach(), groups).requires_grad_()
    factorised_forward(conv, xr, Q, P_fwd).backward(g)
    assert_close(dx, xr.grad, what="input gradient")
    # local rule: P and Q receive the surrogate's own gradients
    assert_close(layer.Q.grad, Q.grad, what="Q.grad")
    assert_close(layer.P.grad, _p_from_forward(P_fwd.grad, layer.P.shape, groups), what="P.grad")
    # weight and bias see the usual gradient of the layer's own conv
    w = conv.weight.detach().clone().requires_grad_()
    b = conv.bias.detach().clone().requires_grad_()
    ref = nn.Conv2d(8, 12, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups,
                    padding_mode=conv.padding_mode, dtype=DT)
    ref.weight, ref.bias = nn.Parameter(w), nn.Parameter(b)
    ref(x).backward(g)
    assert_close(layer.weight.grad, ref.weight.grad, what="weight.grad")
    assert_close(layer.bias.grad, ref.bias.grad, what="bias.grad")


def _p_from_forward(p_fwd_grad, shape, groups):
    """Inverse of :func:`forward_p_kernel`: (C_out, r/G, 1, 1) -> (r, C_out/G, 1, 1)."""
    c_out, per = p_fwd_grad.shape[:2]
    return p_fwd_grad.reshape(groups, c_out // groups, per).transpose(1, 2).reshape(shape)


def test_forward_p_kernel_round_trip():
    p = torch.randn(6, 4, 1, 1, dtype=DT)
    assert torch.equal(_p_from_forward(forward_p_kernel(p, 2), p.shape, 2), p)


@pytest.mark.parametrize("groups", [1, 2])
def test_full_rank_factorisation_reproduces_bp(groups):
    """QP = W exactly (rank = max_rank, SVD start): every gradient equals backprop's."""
    conv = make_conv(3, 2, 1, 1, groups, c_in=4, c_out=6)
    # per group: min(C_out/G, C_in/G * 9) = C_out/G, so the maximum is C_out
    assert max_rank(conv) == 6
    layer = feedback_conv2d(conv, "ldfa", rank=100, subspace="normative", clip_rank=True)
    assert layer.rank == 6
    x = torch.randn(2, 4, 7, 9, dtype=DT)
    g = torch.randn_like(conv(x))
    xr = x.clone().requires_grad_()
    conv(xr).backward(g)
    assert_close(run_backward(layer, x, g), xr.grad, rtol=1e-9, atol=1e-11, what="input grad vs bp")
    assert_close(layer.feedback_kernel(), conv.weight.detach(), rtol=1e-9, atol=1e-12,
                 what="effective kernel vs W")
    # the normative rule sits at its fixed point: zero gradient
    assert_close(layer.P.grad, torch.zeros_like(layer.P), atol=1e-12, what="normative P.grad")


def test_error_map_has_rank_at_most_r_per_position():
    """The map g -> delta_in factors through r channels per output position.

    Its Jacobian (C_in H W) x (C_out H_out W_out) has rank <= r H_out W_out, while bp's has full
    column rank; and for a 1x1 kernel the error at each position spans at most r dimensions.
    """
    conv = make_conv(3, 1, 1, 1, 1, c_in=8, c_out=6)
    r, positions = 2, 4 * 4
    layer = feedback_conv2d(conv, "ldfa", rank=r, subspace="fixed")
    basis = torch.eye(6 * positions, dtype=DT).reshape(-1, 6, 4, 4)  # one output unit per sample
    x = torch.randn(1, 8, 4, 4, dtype=DT).expand(len(basis), -1, -1, -1)
    jac = run_backward(layer, x, basis).reshape(len(basis), -1).numpy()
    xr = x.clone().requires_grad_()
    conv(xr).backward(basis)
    assert np.linalg.matrix_rank(jac, tol=1e-9) == r * positions
    assert np.linalg.matrix_rank(xr.grad.reshape(len(basis), -1).numpy(), tol=1e-9) == 6 * positions

    pointwise = feedback_conv2d(make_conv(1, 1, 0, 1, 1, c_in=8, c_out=6), "ldfa", rank=r,
                                subspace="fixed")
    x = torch.randn(50, 8, 3, 3, dtype=DT)
    dx = run_backward(pointwise, x, torch.randn(50, 6, 3, 3, dtype=DT))
    for h in range(3):
        for w in range(3):
            assert np.linalg.matrix_rank(dx[:, :, h, w].numpy(), tol=1e-9) == r


def _linear_factors(layer, j):
    """Group j's factors in the Linear layout of rules.ldfa: P (r/G, C_out/G), Q (C_in/G k k, r/G),
    W (C_out/G, C_in/G k k)."""
    G, r = layer.groups, layer.rank
    per, c_out = r // G, layer.out_channels // G
    P = layer.P.detach().reshape(G, per, c_out)[j].numpy()
    Q = layer.Q.detach().reshape(G, per, -1)[j].numpy().T
    W = layer.weight.detach().reshape(G, c_out, -1)[j].numpy()
    return P, Q, W


@pytest.mark.parametrize("groups", [1, 2])
def test_normative_gradients_match_the_abstract_rule_per_group(groups):
    conv = make_conv(3, 1, 1, 1, groups, c_in=4, c_out=6)
    layer = feedback_conv2d(conv, "ldfa", rank=2 * groups, subspace="normative")
    with torch.no_grad():  # leave the SVD fixed point, so the gradient is not zero
        layer.P.add_(0.3 * torch.randn_like(layer.P))
        layer.Q.add_(0.3 * torch.randn_like(layer.Q))
    x = torch.randn(2, 4, 5, 5, dtype=DT)
    run_backward(layer, x, torch.randn(2, 6, 5, 5, dtype=DT))
    per, c_out = 2, 6 // groups
    for j in range(groups):
        P, Q, W = _linear_factors(layer, j)
        gp, gq = normative_gradients(P, Q, W, None, None)
        assert_close(layer.P.grad.reshape(groups, per, c_out)[j], gp, what=f"P.grad group {j}")
        assert_close(layer.Q.grad.reshape(groups, per, -1)[j].T, gq, what=f"Q.grad group {j}")


def test_pointwise_conv_on_single_pixels_is_the_linear_rule():
    """1x1 kernel, 1x1 images: local and oja equal rules.ldfa's batch-mean rules (delta = N g)."""
    n = 7
    x = torch.randn(n, 5, 1, 1, dtype=DT)
    g = torch.randn(n, 4, 1, 1, dtype=DT)
    for subspace, ref in (("local", local_gradients), ("oja", oja_gradients)):
        layer = feedback_conv2d(make_conv(1, 1, 0, 1, 1, c_in=5, c_out=4), "ldfa", rank=3,
                                subspace=subspace, generator=torch.Generator().manual_seed(2))
        dx = run_backward(layer, x, g)
        P, Q, W = _linear_factors(layer, 0)
        gp, gq = ref(P, Q, W, x.reshape(n, 5).numpy(), n * g.reshape(n, 4).numpy())
        assert_close(layer.P.grad.reshape(3, 4), gp, what=f"{subspace} P.grad")
        assert_close(layer.Q.grad.reshape(3, 5).T, gq, what=f"{subspace} Q.grad")
        assert_close(dx.reshape(n, 5), g.reshape(n, 4).numpy() @ (Q @ P).T, what="delta B^T")


@pytest.mark.parametrize("groups", [1, 2])
def test_oja_pools_batch_and_positions(groups):
    """grad_P = -(P C - P C P^T P) with C the channel covariance over all N H W samples, per group."""
    layer = feedback_conv2d(make_conv(3, 2, 1, 1, groups, c_in=4, c_out=6), "ldfa",
                            rank=2 * groups, subspace="oja")
    n = 3
    x = torch.randn(n, 4, 6, 6, dtype=DT)
    g = torch.randn(n, 6, 3, 3, dtype=DT)
    run_backward(layer, x, g)
    samples = (n * g).permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    c_out = 6 // groups
    for j in range(groups):
        s = samples[:, j * c_out:(j + 1) * c_out]
        C = s.T @ s / len(s)
        P = layer.P.detach().reshape(groups, 2, c_out)[j].numpy()
        expected = -(P @ C - P @ C @ P.T @ P)
        assert_close(layer.P.grad.reshape(groups, 2, c_out)[j], expected, what=f"oja group {j}")


def test_fa_and_kp():
    conv = make_conv(3, 2, 1, 1, 2)
    x = torch.randn(2, 8, 9, 9, dtype=DT)
    g = torch.randn_like(conv(x))
    fa = feedback_conv2d(conv, "fa", generator=torch.Generator().manual_seed(3))
    assert "B" in dict(fa.named_buffers()) and fa.B.shape == conv.weight.shape
    xr = x.clone().requires_grad_()
    F.conv2d(xr, fa.B, None, 2, 1, 1, 2).backward(g)
    assert_close(run_backward(fa, x, g), xr.grad, what="fa input gradient")

    conv.weight.grad = None
    kp = feedback_conv2d(conv, "kp")
    assert isinstance(kp.B, nn.Parameter)
    run_backward(kp, x, g)
    assert_close(kp.B.grad, kp.weight.grad, what="kp: B.grad = weight.grad")
    assert kp.B.grad.data_ptr() != kp.weight.grad.data_ptr()  # in-place optimisers stay separate


def test_refactorise_and_periodic_refactorisation():
    conv = make_conv(3, 1, 1, 1, 1, c_in=4, c_out=6)
    layer = feedback_conv2d(conv, "ldfa", rank=3, subspace="normative", refactor_every=2)
    x = torch.randn(2, 4, 5, 5, dtype=DT)

    def best_rank3():
        w = layer.weight.detach().reshape(6, -1).numpy()
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        return (u[:, :3] * s[:3]) @ vt[:3]

    layer(x).sum().backward()  # call 0: no refactorisation
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))
    layer(x).sum().backward()  # call 1: none either
    assert not np.allclose(layer.feedback_kernel().reshape(6, -1).numpy(), best_rank3())
    layer(x).sum().backward()  # call 2: refactorised before the forward
    assert_close(layer.feedback_kernel().reshape(6, -1), best_rank3(), rtol=1e-9, atol=1e-12,
                 what="QP after periodic refactorisation")
    layer.eval()
    with torch.no_grad():
        layer.weight.add_(1.0)
    layer(x)  # evaluation never refactorises
    assert not np.allclose(layer.feedback_kernel().reshape(6, -1).numpy(), best_rank3())


@SAME_EVEN
@pytest.mark.parametrize("geometry", GEOMETRIES[:6], ids=IDS[:6])
def test_forward_is_unchanged_by_conversion(geometry):
    conv = make_conv(*geometry)
    x = torch.randn(2, 8, 10, 11, dtype=DT)
    expected = conv(x).detach()
    layer = feedback_conv2d(conv, "ldfa", rank=conv.groups, subspace="oja")
    for mode in (layer.train, layer.eval):
        mode()
        assert torch.equal(layer(x).detach(), expected)
        with torch.no_grad():
            assert torch.equal(layer(x), expected)
    assert layer.weight is conv.weight  # shared, so an existing optimiser keeps working


def test_bad_input_names_the_problem():
    conv = make_conv(3, 1, 1, 1, 2, c_in=4, c_out=6)
    with pytest.raises(ValueError, match=r"rank 8 .* at most 6 .*clip_rank"):
        feedback_conv2d(conv, "ldfa", rank=8)
    with pytest.raises(ValueError, match="multiple of groups=2"):
        feedback_conv2d(conv, "ldfa", rank=3)
    with pytest.raises(ValueError, match="positive int"):
        feedback_conv2d(conv, "ldfa", rank=0)
    with pytest.raises(ValueError, match="dfa"):
        feedback_conv2d(conv, "dfa")
    with pytest.raises(ValueError, match="valid options: .*normative"):
        feedback_conv2d(conv, "ldfa", rank=2, subspace="hebb")
    with pytest.raises(ValueError, match="normative"):
        feedback_conv2d(conv, "ldfa", rank=2, subspace="local", refactor_every=5)
    with pytest.raises(TypeError, match="Conv1d"):
        feedback_conv2d(nn.Conv1d(2, 2, 3))
    with pytest.raises(ValueError, match="rule 'ldfa'"):
        feedback_conv2d(conv, "fa").refactorise()


def test_state_dict_and_parameters():
    layer = feedback_conv2d(make_conv(3, 1, 1, 1, 1), "ldfa", rank=4, subspace="fixed")
    assert set(layer.state_dict()) == {"weight", "bias", "P", "Q"}
    assert layer.P.shape == (4, 12, 1, 1) and layer.Q.shape == (4, 8, 3, 3)
    assert not layer.P.requires_grad and not layer.Q.requires_grad
    assert layer.feedback_matrix().shape == (8 * 9, 12)
    assert isinstance(layer, nn.Conv2d) and isinstance(layer, FeedbackConv2d)


@pytest.mark.parametrize("subspace", ["local", "oja", "normative"])
def test_autocast_backward_runs_in_the_reduced_dtype(subspace):
    """bf16 autocast: gradients arrive in each parameter's dtype, near the float32 ones."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 6, 6)
    grads = {}
    for mode in ("float32", "bf16"):
        layer = feedback_conv2d(conv, "ldfa", rank=2, subspace=subspace,
                                generator=torch.Generator().manual_seed(0))
        conv.weight.grad = conv.bias.grad = None
        xr = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            y = layer(xr)
        assert y.dtype == (torch.bfloat16 if mode == "bf16" else torch.float32)
        (y.float() ** 2).sum().backward()
        grads[mode] = {"x": xr.grad, "weight": layer.weight.grad, "P": layer.P.grad, "Q": layer.Q.grad}
    for name, g in grads["bf16"].items():
        assert g.dtype == torch.float32
        scale = grads["float32"][name].abs().max().item()
        assert_close(g, grads["float32"][name], rtol=0, atol=0.05 * scale, what=f"bf16 {name}")


def test_unbatched_input_and_two_forwards_per_step_with_refactorisation():
    conv = make_conv(3, 1, 1, 1, 1, c_in=4, c_out=6)
    layer = feedback_conv2d(conv, "ldfa", rank=2, subspace="normative", refactor_every=1)
    x1, x2 = torch.randn(2, 4, 5, 5, dtype=DT), torch.randn(2, 4, 5, 5, dtype=DT)
    for _ in range(3):  # the second forward's graph must survive the first: no refactor mid-step
        (layer(x1).sum() + layer(x2).pow(2).sum()).backward()
    single = torch.randn(4, 5, 5, dtype=DT)
    assert_close(layer(single).detach(), layer(single[None])[0].detach(), rtol=0, atol=0,
                 what="unbatched input")
    layer(single.requires_grad_()).sum().backward()
