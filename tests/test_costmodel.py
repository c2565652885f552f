"""The counted cost model: every executed operator's FLOPs and bytes, and the roofline price.

The counter is held against the analytic per-layer count of bioplastic.bench (two independent
computations of the same number: one from layer shapes and the rule's equations, one from the
ATen calls the implementation actually makes), against explicit attention, and against bytes
computed by hand.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from bioplastic import rules
from bioplastic.bench.costmodel import (
    Machine,
    OpRecord,
    calibrate,
    count_ops,
    op_seconds,
    predict_seconds,
    summarize_ops,
)
from bioplastic.bench.step_time import layer_shapes, make_step, step_flops
from bioplastic.torch.convert import convert
from bioplastic.torch.models import MLP, VGG, ViT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Every registered per-layer rule, low-rank ones with every registered subspace rule.
RULES = [(name, None) for name, cls in rules.RULES.items() if cls.topology == "layer" and cls.form != "low_rank"]
RULES += [(name, sub) for name, cls in rules.RULES.items() if cls.topology == "layer" and cls.form == "low_rank"
          for sub in rules.SUBSPACES]


def _models():
    torch.manual_seed(0)
    return {
        "mlp": (MLP(48, (32, 24), 5), torch.randn(40, 3, 4, 4)),
        "vgg": (VGG(width=1 / 16, n_classes=5), torch.randn(4, 3, 32, 32)),
        "vit": (ViT(image_size=8, patch=4, dim=16, depth=2, heads=2, n_classes=5),
                torch.randn(3, 3, 8, 8)),
        "vit_torch_mha": (ViT(image_size=8, patch=4, dim=16, depth=1, heads=2, n_classes=5,
                              attention="torch"), torch.randn(3, 3, 8, 8)),
    }


@pytest.mark.parametrize("model_name", ["mlp", "vgg", "vit", "vit_torch_mha"])
def test_counted_flops_equal_the_analytic_count(model_name):
    """What the layers execute is exactly what the analytic count claims, for every rule.

    The one known difference: the CPU attention kernel's backward recomputes q k^T from the
    saved log-sum-exp (one product of 2 rows keys width FLOPs per attention), which the analytic
    count, stating the minimal work, leaves out.
    """
    model, x = _models()[model_name]
    y = torch.randint(0, 5, (x.shape[0],))
    for rule, subspace in RULES:
        options = dict(rank=2, subspace=subspace, clip_rank=True) if subspace else {}
        net = model if rule == "bp" else convert(model, rule=rule, **options)
        shapes = layer_shapes(net, x)
        recompute = sum(2 * s.rows * s.fan_in * s.out for s in shapes if s.kind == "attention")
        counted = sum(rec.flops for rec in count_ops(make_step(net, x, y)))
        assert counted == step_flops(shapes)["total"] + recompute, (rule, subspace)


def test_counted_ldfa_saves_the_input_gradient_products():
    """fixed ldfa on an MLP: counted products = bp's minus each hidden layer's g W plus g P^T, z Q^T."""
    sizes, n, r = [48, 32, 24, 5], 40, 2
    torch.manual_seed(0)
    model, x = MLP(sizes[0], sizes[1:-1], sizes[-1]), torch.randn(n, 48)
    y = torch.randint(0, 5, (n,))
    bp = sum(rec.flops for rec in count_ops(make_step(model, x, y)))
    ldfa = convert(model, rule="ldfa", rank=r, subspace="fixed")
    counted = sum(rec.flops for rec in count_ops(make_step(ldfa, x, y)))
    pairs = list(zip(sizes[1:-1], sizes[2:]))  # layers whose input takes a gradient
    assert bp - counted == sum(2 * n * a * b - 2 * n * r * (a + b) for a, b in pairs)


def test_bytes_of_single_operators():
    """Bytes by hand: 24 float32 (96 bytes) per 6 x 4 tensor."""
    a, b, c = torch.randn(6, 4), torch.randn(6, 4), torch.empty(6, 4)
    m1, m2 = torch.randn(3, 4), torch.randn(4, 5)
    params, grads = [torch.randn(6, 4) for _ in range(2)], [torch.randn(6, 4) for _ in range(2)]
    cases = {
        "add": (lambda: torch.add(a, b), 3 * 96),            # read a, b; write a new tensor
        "add out=": (lambda: torch.add(a, b, out=c), 3 * 96),  # c is written, not read
        "add_": (lambda: a.add_(b), 3 * 96),                 # read a, b; write a
        "copy_": (lambda: c.copy_(a), 2 * 96),               # read a; write c
        "fill_": (lambda: c.fill_(1.0), 96),                 # write c
        "foreach add_": (lambda: torch._foreach_add_(params, grads), 2 * 3 * 96),
        "view": (lambda: a.t(), 0),
        "empty": (lambda: torch.empty(100), 0),
        "expanded": (lambda: b[:1].expand(6, 4).sum(), 4 * 4 + 4),  # one stored row, one scalar
    }
    for name, (fn, expected) in cases.items():
        assert sum(r.bytes for r in count_ops(fn)) == expected, name
    assert [(r.flops, r.bytes) for r in count_ops(lambda: torch.mm(m1, m2))] == [
        (2 * 3 * 4 * 5, (12 + 20 + 15) * 4)]


def test_fused_attention_flops_match_explicit_attention():
    """The CPU attention kernel's count equals explicit softmax(q k^T / sqrt d) v forward, and the
    explicit backward's 4 products plus the recomputed q k^T backward."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=gen, requires_grad=True) for _ in range(3))

    def fused():
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    def explicit():
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
        (a @ v).sum().backward()

    fused_ops, explicit_ops = summarize_ops(count_ops(fused)), count_ops(explicit)
    assert "_scaled_dot_product_flash_attention_for_cpu" in fused_ops
    product = 2 * 2 * 3 * 7 * 7 * 8
    assert sum(r.flops for r in explicit_ops) == 6 * product
    assert sum(row["flops"] for row in fused_ops.values()) == 7 * product


def test_roofline_price():
    machine = Machine(flops_per_s=1e9, bytes_per_s=1e8, op_s=1e-6)
    recs = [OpRecord("mm", 2_000_000, 1_000), OpRecord("mm", 1_000, 1_000_000),
            OpRecord("relu", 0, 500_000), OpRecord("t", 0, 0)]
    assert op_seconds(recs[0], machine) == pytest.approx(2e-3 + 1e-6)   # compute bound
    assert op_seconds(recs[1], machine) == pytest.approx(1e-2 + 1e-6)   # byte bound (thin)
    parts = predict_seconds(recs, machine)
    assert parts["matmul"] == pytest.approx(2e-3 + 1e-2)
    assert parts["memory"] == pytest.approx(5e-3)
    assert parts["dispatch"] == pytest.approx(4e-6)
    assert parts["total"] == pytest.approx(sum(op_seconds(r, machine) for r in recs))


def test_calibrate_measures_three_positive_constants():
    machine = calibrate(gemm=64, stream_mib=1, repeats=3)
    assert all(math.isfinite(c) and c > 0 for c in
               (machine.flops_per_s, machine.bytes_per_s, machine.op_s))
