"""Feedback attention: every replaced map receives g B^T, everything else keeps its exact backward.

References: PyTorch's own ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` (values and, with
bp or full-rank feedback, every gradient), and a straight-through construction of a feedback map,
``y = F.linear(x.detach(), W, b) + x B - (x B).detach()``, whose input gradient is g B^T by autograd.
"""

import itertools

import pytest
import torch
from helpers import assert_close
from torch import nn

from bioplastic.torch import convert
from bioplastic.torch.attention import FeedbackMultiheadAttention
from bioplastic.torch.linear import FeedbackLinear, FeedbackSpec
from bioplastic.torch.models import ViT
from bioplastic.torch.transformer import block_index, convert_transformer

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_vit(attention="fused", dim=16, depth=2, seed=0):
    torch.manual_seed(seed)
    return ViT(image_size=8, patch=4, in_channels=3, n_classes=5, dim=dim, depth=depth, heads=2,
               attention=attention).to(DT)


def grads(model, x, g=None, inputs=()):
    """Gradients of sum(out * g) w.r.t. every parameter (by name) and the given inputs."""
    model.zero_grad()
    out = model(x)
    g = torch.randn_like(out, generator=torch.Generator().manual_seed(5)) if g is None else g
    (out * g).sum().backward()
    # a converted nn.MultiheadAttention holds in_proj_weight in its in_proj layer
    rename = {"in_proj_weight": "in_proj.weight", "in_proj_bias": "in_proj.bias"}
    return {".".join(rename.get(part, part) for part in n.split(".")): p.grad.clone()
            for n, p in model.named_parameters() if p.grad is not None}, out


# ----------------------------------------------------------------------------- nn.MultiheadAttention
CASES = list(itertools.product(
    [True, False],            # batch_first
    [None, 6],                # kdim = vdim (None: fused in_proj)
    [False, True],            # add_bias_kv and add_zero_attn
    [False, True],            # need_weights
    [None, "bool", "float"],  # attn_mask
    [False, True],            # key_padding_mask
    [True, False],            # batched
))


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("case", CASES[::5] + [CASES[-1]])
def test_multihead_attention_matches_torch(case):
    """Values, attention weights and (bp) every gradient equal nn.MultiheadAttention's."""
    batch_first, kdim, extras, need_weights, mask_kind, padding, batched = case
    torch.manual_seed(0)
    E, heads, N, L, S = 8, 2, 3, 5, 4
    mha = nn.MultiheadAttention(E, heads, add_bias_kv=extras, add_zero_attn=extras, kdim=kdim,
                                vdim=kdim, batch_first=batch_first, dtype=DT)
    fmha = FeedbackMultiheadAttention.from_attention(mha, FeedbackSpec("bp"))

    def shaped(t, e):
        if not batched:
            return torch.randn(t, e, dtype=DT)
        return torch.randn((N, t, e) if batch_first else (t, N, e), dtype=DT)

    q = shaped(L, E)
    k, v = shaped(S, kdim or E), shaped(S, kdim or E)
    mask = {None: None, "bool": torch.rand(L, S) < 0.3, "float": torch.randn(L, S, dtype=DT)}[mask_kind]
    if mask_kind == "bool":
        mask[:, 0] = False  # keep every row attending somewhere
    pad = None
    if padding:
        pad = torch.zeros((N, S) if batched else (S,), dtype=torch.bool)
        pad[..., -1] = True
    kw = dict(key_padding_mask=pad, need_weights=need_weights, attn_mask=mask)
    ref = mha(q, k, v, **kw)
    out = fmha(q, k, v, **kw)
    assert_close(out[0].detach(), ref[0].detach(), what="attention output")
    if need_weights:
        assert_close(out[1].detach(), ref[1].detach(), what="attention weights")
    else:
        assert out[1] is None
    params = list(mha.parameters())
    expected = torch.autograd.grad((ref[0] ** 2).sum(), params)
    got = torch.autograd.grad((out[0] ** 2).sum(), params)
    for p, a, b in zip(params, got, expected):
        assert_close(a, b, rtol=1e-9, atol=1e-12, what=f"grad of a {tuple(p.shape)} parameter")


def test_multihead_attention_state_dict_of_plain_module_loads():
    mha = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, dtype=DT)
    fmha = FeedbackMultiheadAttention.from_attention(mha, FeedbackSpec("ldfa", 2, "fixed"))
    other = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, dtype=DT)
    missing, unexpected = fmha.load_state_dict(other.state_dict(), strict=False)
    assert not unexpected and all(k.endswith((".P", ".Q")) for k in missing)
    assert torch.equal(fmha.q_proj_weight, other.q_proj_weight)
    assert torch.equal(fmha.in_proj_bias, other.in_proj_bias)


def straight_through(x, W, b, B):
    """x W^T + b whose input gradient is g B^T (B (in, out)) and weight gradient g^T x."""
    return nn.functional.linear(x.detach(), W, b) + x @ B - (x @ B).detach()


def test_cross_attention_sends_each_input_its_slice_of_the_feedback():
    """query != key != value with a fused weight: input s receives g_s (Q P_s)^T."""
    torch.manual_seed(0)
    E, heads = 8, 2
    mha = nn.MultiheadAttention(E, heads, batch_first=True, dtype=DT)
    fmha = FeedbackMultiheadAttention.from_attention(mha, FeedbackSpec("ldfa", 2, "fixed"),
                                                     torch.Generator().manual_seed(1))
    assert fmha.in_proj.rank == 6
    q, k, v = (torch.randn(3, t, E, dtype=DT, requires_grad=True) for t in (5, 4, 4))
    g = torch.randn(3, 5, E, dtype=DT)
    (fmha(q, k, v, need_weights=False)[0] * g).sum().backward()

    B_in = fmha.in_proj.feedback_matrix()
    B_out = fmha.out_proj.feedback_matrix()
    W, b = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    qr, kr, vr = (t.detach().clone().requires_grad_() for t in (q, k, v))
    proj = [straight_through(t, W[i * E:(i + 1) * E], b[i * E:(i + 1) * E], B_in[:, i * E:(i + 1) * E])
            for i, t in enumerate((qr, kr, vr))]
    split = [p.reshape(3, p.shape[1], heads, E // heads).transpose(1, 2) for p in proj]
    att = nn.functional.scaled_dot_product_attention(*split).transpose(1, 2).reshape(3, 5, E)
    out = straight_through(att, mha.out_proj.weight.detach(), mha.out_proj.bias.detach(), B_out)
    (out * g).sum().backward()
    for name, a, r in (("query", q, qr), ("key", k, kr), ("value", v, vr)):
        assert_close(a.grad, r.grad, what=f"{name} gradient")


# ----------------------------------------------------------------------------- the project's ViT
@pytest.mark.parametrize("attention", ["fused", "torch"])
def test_vit_every_replaced_map_receives_g_B_transpose(attention):
    model = convert(small_vit(attention), rule="ldfa", rank=2, subspace="local")
    captured = []

    def hook(module, grad_input, grad_output):
        captured.append((module, grad_input[0], grad_output[0]))

    layers = [m for m in model.modules() if isinstance(m, FeedbackLinear)]
    assert len(layers) == 2 * 4 + 1  # per block: qkv, proj, fc1, fc2; plus the head
    ranks = sorted(m.rank for m in layers)
    assert ranks == [2] * 7 + [6] * 2  # fused qkv maps get 3r
    for m in layers:
        m.register_full_backward_hook(hook)
    x = torch.randn(4, 3, 8, 8, dtype=DT)
    grads(model, x)
    assert {id(m) for m, _, _ in captured} == {id(m) for m in layers}
    for module, gin, gout in captured:
        expected = gout @ module.feedback_matrix().T
        assert_close(gin, expected, what=f"{module!r} input gradient")
        assert not torch.allclose(gin, gout @ module.weight.detach())  # not backprop


@pytest.mark.parametrize("attention", ["fused", "torch"])
def test_vit_with_full_rank_feedback_is_backprop(attention):
    """QP = W^T exactly (SVD start at full rank): attention, LayerNorm, GELU, residuals are exact,
    so every parameter gradient equals backprop's."""
    model = small_vit(attention)
    x = torch.randn(4, 3, 8, 8, dtype=DT)
    expected, ref_out = grads(model, x)
    full = convert(model, rule="ldfa", rank=16, subspace="normative", clip_rank=True)
    got, out = grads(full, x)
    assert torch.equal(out, ref_out)
    for name, g in expected.items():
        assert_close(got[name], g, rtol=1e-8, atol=1e-11, what=name)


def test_transformer_encoder_layer():
    """nn.TransformerEncoderLayer: forward unchanged (train and eval fast path), full-rank = bp."""
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                                           norm_first=True, dtype=DT), 2,
                                enable_nested_tensor=False)
    x = torch.randn(3, 5, 8, dtype=DT)
    expected, ref_out = grads(enc, x)
    full = convert(enc, rule="ldfa", rank=8, subspace="local", clip_rank=True)
    assert isinstance(full.layers[0].self_attn, FeedbackMultiheadAttention)
    assert isinstance(full.layers[1].linear2, FeedbackLinear)
    got, out = grads(full, x)
    assert_close(out.detach(), ref_out.detach(), what="train-mode output")
    for name, g in expected.items():
        assert_close(got[name], g, rtol=1e-8, atol=1e-11, what=name)
    enc.eval(), full.eval()
    with torch.no_grad():  # the inference fast path reads in_proj_weight & co. directly
        assert_close(full(x), enc(x), what="eval output")


def test_convert_transformer_block_ranks_and_bp_blocks():
    model = small_vit(depth=3)
    out = convert_transformer(model, rank=2, block_ranks={0: 1, 2: None}, qkv_rank_factor=2)
    assert out.blocks[0].attn.qkv.rank == 2 and out.blocks[0].fc1.rank == 1
    assert out.blocks[1].attn.qkv.rank == 4 and out.blocks[1].attn.proj.rank == 2
    assert type(out.blocks[2].fc1) is nn.Linear  # block 2 left on backprop
    assert out.head.rank == 2 and out.patch_embed.rank == 2
    assert type(model.blocks[0].fc1) is nn.Linear  # the input model is untouched
    with pytest.raises(ValueError, match=r"blocks \[7\].*its blocks: \[0, 1, 2\]"):
        convert_transformer(model, rank=2, block_ranks={7: 1})
    assert block_index("encoder.layers.3.linear1") == 3 and block_index("head") is None


def test_rank_too_large_for_a_fused_map_names_the_layer():
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.qkv.*1\.\.16"):
        convert(small_vit(), rule="ldfa", rank=8)  # 3 * 8 = 24 > 16
    mha = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.raises(ValueError, match=r"layer '0'\.in_proj.*1\.\.8"):
        convert(mha, rule="ldfa", rank=4)


def test_eval_forward_unchanged_by_conversion():
    model = small_vit("torch").eval()
    x = torch.randn(4, 3, 8, 8, dtype=DT)
    with torch.no_grad():
        expected = model(x)
        for rule, rank in (("ldfa", 2), ("fa", None), ("kp", None)):
            assert torch.equal(convert(model, rule=rule, rank=rank).eval()(x), expected)


def test_vit_local_rule_gradients_of_every_map():
    """P.grad = (x Q)^T g and Q.grad = x^T (g P^T), summed over batch and tokens, for every map."""
    model = convert(small_vit(), rule="ldfa", rank=2, subspace="local")
    seen = {}
    layers = [m for m in model.modules() if isinstance(m, FeedbackLinear)]
    for m in layers:
        m.register_forward_hook(lambda mod, inp, out: seen.setdefault(id(mod), {}).update(
            x=inp[0].detach().reshape(-1, mod.in_features)))
        m.register_full_backward_hook(lambda mod, gin, gout: seen[id(mod)].update(
            g=gout[0].reshape(-1, mod.out_features)))
    grads(model, torch.randn(4, 3, 8, 8, dtype=DT))
    for m in layers:
        x, g = seen[id(m)]["x"], seen[id(m)]["g"]
        P, Q = m.P.detach(), m.Q.detach()
        assert_close(m.P.grad, (x @ Q).T @ g, what=f"P.grad of {m!r}")
        assert_close(m.Q.grad, x.T @ (g @ P.T), what=f"Q.grad of {m!r}")
