r"""Analytic count of matrix-multiply FLOPs in one training step, layer by layer.

Backprop's backward costs two matrix products per layer (the weight gradient :math:`g^\top x` and
the input gradient :math:`g W`); LDFA replaces the second by two thin products through the rank-r
bottleneck, :math:`(g P^\top) Q^\top`, and adds the thin products of its subspace rule. Per layer
with forward cost F:

.. math::

    \text{bp: } F + F + F\,[\text{input needs a gradient}], \qquad
    \text{ldfa: } F + F + c_r,

with :math:`c_r` linear in r (:func:`layer_flops`). :func:`layer_shapes` records the layers one
forward pass runs; :func:`step_flops` sums them. The benchmark (:mod:`.step_time`) sets these counts
next to measured step times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerShape:
    """One weight layer of a step, as a (grouped) matrix product over ``rows`` rows.

    ``rows``: batch x positions (tokens, output pixels); ``fan_in``: inputs per output unit
    (in_features, or C_in/G k_h k_w); ``out``: outputs per row (C_out); ``groups``; whether its input
    needs a gradient; the layer's rule, rank and subspace (None for plain backprop layers).
    """

    kind: str
    rows: int
    fan_in: int
    out: int
    groups: int = 1
    input_grad: bool = True
    rule: str = "bp"
    rank: int | None = None
    subspace: str | None = None


def layer_flops(s: LayerShape) -> dict[str, int]:
    """Matrix-multiply FLOPs of one layer in one step, as the layers compute them.

    Multiply-adds (MAC) x 2. Forward and weight gradient: rows fan_in out each. Input gradient:
    the same for bp, fa, kp (when the input needs one); for ldfa with rank r the bottleneck
    z = g P^T (rows r out/G) and z Q^T (rows r fan_in). Subspace rules:

    * ``local``: the contractions of the weight gradient, 2 r out fan_in / G (Conv2d always;
      Linear when that is cheaper than forming u = x Q and its products with the rows,
      rows r (2 fan_in + out));
    * ``oja``: P C from z and g (rows r out / G) plus the r x r products; Q as ``local``;
    * ``normative``: products of W, P, Q only (about 2-3 r out fan_in / G);
    * ``fixed``: nothing beyond z and the input gradient.

    A layer whose input is data (takes no gradient) has no bottleneck and no subspace work. Each
    subspace rule declares its own count beside its tensor bodies (``feedback_macs`` in
    :mod:`bioplastic.rules.subspace`); tests/test_costmodel.py holds them to the counted operators.
    """
    fwd = s.rows * s.fan_in * s.out
    if s.kind == "attention":  # q k^T and A v (fan_in = keys S, out = width E); both operands of
        # each need a gradient, so backward costs twice the forward
        return {"forward": 2 * 2 * fwd, "weight_grad": 0, "input_grad": 2 * 4 * fwd, "feedback": 0}
    mac = {"forward": fwd, "weight_grad": fwd, "input_grad": 0, "feedback": 0}
    from ..rules import get_rule

    rule = get_rule(s.rule, s.subspace)
    if rule.form != "low_rank":  # W^T, B, g(W): one dense product for the input gradient
        mac["input_grad"] = fwd if s.input_grad else 0
        return {k: 2 * v for k, v in mac.items()}
    if not s.input_grad:  # feedback into data reaches no neuron: no bottleneck, no plasticity
        return {k: 2 * v for k, v in mac.items()}
    r, out_g = s.rank, s.out // s.groups
    mac["input_grad"] = s.rows * r * out_g + s.rows * r * s.fan_in  # z = g P^T, then z Q^T
    feedback = rule.subspace.feedback_macs(s.rows, s.fan_in, s.out, r, s.groups, s.kind == "conv")
    if feedback is None:
        raise ValueError(f"subspace rule {rule.subspace.name!r} declares no analytic FLOP count "
                         "(SubspaceRule.feedback_macs); the counted cost model "
                         "(bioplastic.bench.costmodel.count_ops) measures it")
    mac["feedback"] = feedback
    return {k: 2 * v for k, v in mac.items()}


def layer_shapes(model, x) -> list[LayerShape]:
    """The weight layers and attention products one forward of ``model`` on ``x`` runs, in order.

    Recorded by forward hooks: ``nn.Linear`` (and subclasses), ``nn.Conv2d``, the feedback layers
    (with their rule, actual rank and subspace), ``nn.MultiheadAttention`` and
    :class:`bioplastic.torch.models.Attention` (their q k^T and A v products; the projections of a plain
    ``nn.MultiheadAttention``, which it applies without calling them, are added here too).
    A FeedbackConv2d is an ``nn.Conv2d``.
    """
    import torch
    from torch import nn

    from ..torch.attention import FeedbackMultiheadAttention
    from ..torch.linear import FeedbackLinear
    from ..torch.models import Attention

    shapes: list[LayerShape] = []

    def rule_of(m):
        return (getattr(m, "rule", "bp"), getattr(m, "rank", None), getattr(m, "subspace", None))

    def hook(m, inputs, output):
        inp = inputs[0]
        needs = inp.requires_grad
        if isinstance(m, (nn.Linear, FeedbackLinear)):
            rows = inp.numel() // inp.shape[-1]
            shapes.append(LayerShape("linear", rows, m.in_features, m.out_features, 1, needs,
                                     *rule_of(m)))
        elif isinstance(m, nn.Conv2d):
            n, _, h, w = output.shape
            fan = (m.in_channels // m.groups) * math.prod(m.kernel_size)
            shapes.append(LayerShape("conv", n * h * w, fan, m.out_channels, m.groups, needs,
                                     *rule_of(m)))
        elif isinstance(m, (Attention, nn.MultiheadAttention)):
            q = inp if getattr(m, "batch_first", True) else inp.transpose(0, 1)
            n, t, e = q.shape
            if isinstance(m, nn.MultiheadAttention) and not isinstance(m, FeedbackMultiheadAttention):
                shapes.append(LayerShape("linear", n * t, e, 3 * e, 1, needs))
                shapes.append(LayerShape("linear", n * t, e, e, 1, True))
            shapes.append(LayerShape("attention", n * t, t, e))

    # (a plain nn.MultiheadAttention never calls its out_proj, so that hook stays silent)
    kinds = (nn.Linear, FeedbackLinear, nn.Conv2d, Attention, nn.MultiheadAttention)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.enable_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def step_flops(shapes: Sequence[LayerShape]) -> dict[str, int]:
    """Summed :func:`layer_flops` of a step, with ``total``."""
    total = {"forward": 0, "weight_grad": 0, "input_grad": 0, "feedback": 0}
    for s in shapes:
        for k, v in layer_flops(s).items():
            total[k] += v
    total["total"] = sum(total.values())
    return total


# --------------------------------------------------------------------------------------------------
# Beyond the products of one step: refactorisation, the optimiser, the share low rank can save
# --------------------------------------------------------------------------------------------------

def svd_flops(m: int, n: int) -> int:
    """FLOPs of a thin SVD (U, S and V) of an m x n matrix, the R-SVD estimate 6 M N^2 + 20 N^3 with
    M = max(m, n), N = min(m, n) (Golub & Van Loan, *Matrix Computations*, 4th ed., section 8.6).

    An estimate, not a count: LAPACK's divide-and-conquer driver does about this much; the counted
    cost model (:mod:`.costmodel`) sees an SVD as one operator of no matrix-product FLOPs.
    """
    big, small = max(m, n), min(m, n)
    return 6 * big * small ** 2 + 20 * small ** 3


def refactor_flops(shapes: Sequence[LayerShape]) -> int:
    """FLOPs of refactorising every low-rank layer of ``shapes`` once: P, Q reset to the truncated SVD
    of W, as ``refactorise`` of the torch feedback layers does (one thin SVD of each group's
    (out/G) x fan_in kernel, plus the r (fan_in + out/G) products that scale the factors).

    Only layers whose subspace rule reads W (``normative``: its fixed point is that SVD) refactorise,
    and only those whose input takes a gradient (a layer fed by data has no feedback pathway).
    Divide by the period in steps for the amortised cost of one step. The torch layers compute the
    full thin SVD (all min(out/G, fan_in) singular triplets, in float64) where the rule needs only
    the top r: a truncated or randomised SVD would cost O(r out fan_in).
    """
    from ..rules import get_rule

    total = 0
    for s in shapes:
        if s.kind == "attention" or not s.input_grad or s.rule == "bp":
            continue
        rule = get_rule(s.rule, s.subspace)
        if rule.form != "low_rank" or not rule.subspace.reads_forward_weight:
            continue
        out_g = s.out // s.groups
        total += s.groups * (svd_flops(out_g, s.fan_in) + s.rank // s.groups * (s.fan_in + out_g))
    return total


#: Elementwise FLOPs per trainable parameter of one optimiser step (no weight decay; +2 with it):
#: Adam's exp_avg.lerp_ (3), exp_avg_sq.mul_.addcmul_ (4), sqrt / bias correction / + eps (3) and
#: addcdiv_ (3), as ``torch.optim.Adam`` computes them; plain SGD: p -= lr g (2).
OPTIMIZER_FLOPS_PER_PARAMETER = {"adam": 13, "sgd": 2}


def optimizer_flops(n_parameters: int, optimizer: str = "adam", weight_decay: bool = False) -> int:
    """Elementwise FLOPs of one optimiser step over ``n_parameters`` trainable numbers (forward
    weights, biases and the feedback factors P, Q alike: ldfa adds r (fan_in + out) per layer).

    Raises ValueError naming the valid optimisers.
    """
    if optimizer not in OPTIMIZER_FLOPS_PER_PARAMETER:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid options: "
                         f"{', '.join(OPTIMIZER_FLOPS_PER_PARAMETER)}")
    return n_parameters * (OPTIMIZER_FLOPS_PER_PARAMETER[optimizer] + 2 * bool(weight_decay))


def saveable_fraction(shapes: Sequence[LayerShape]) -> dict[str, float | int]:
    """How much of a backprop step low-rank feedback could remove at most.

    ldfa replaces only the input-gradient product g W of a weight layer (Linear, Conv2d) whose input
    takes a gradient; the forward, the weight gradient, the attention products q k^T and A v (whose
    backward stays exact) and a first layer fed by data are untouched. With r -> 0 the bottleneck
    products vanish, so this input-gradient share of the step is the upper bound on the saving (at
    most 1/3: forward, weight gradient and input gradient cost the same per layer).

    Parameters
    ----------
    shapes : sequence of LayerShape
        A step's layers (usually of the bp model).

    Returns
    -------
    dict
        ``saveable`` (FLOPs), ``total`` (the bp step's matrix-product FLOPs, every layer counted as bp)
        and ``fraction`` = saveable / total.
    """
    saveable = total = 0
    for s in shapes:
        plain = s if s.kind == "attention" else LayerShape(s.kind, s.rows, s.fan_in, s.out, s.groups,
                                                            s.input_grad)
        flops = layer_flops(plain)
        total += sum(flops.values())
        if s.kind != "attention":
            saveable += flops["input_grad"]
    return {"saveable": saveable, "total": total, "fraction": saveable / total if total else 0.0}


def scale_rows(shapes: Sequence[LayerShape], factor: int) -> list[LayerShape]:
    """``shapes`` with every layer's rows multiplied by ``factor`` (a batch ``factor`` times larger:
    count one sample's shapes, then scale them to the batch)."""
    from dataclasses import replace

    return [replace(s, rows=s.rows * factor) for s in shapes]


def low_rank_parameters(shapes: Sequence[LayerShape]) -> int:
    """Numbers in the feedback factors of ``shapes`` that the optimiser steps: P (r x out/G) and Q
    (fan_in x r) of each low-rank layer whose subspace rule learns them (per factor).

    As the torch layers do, a layer fed by data counts too: it has no feedback pathway, yet its P
    and Q receive zero gradients, which an optimiser still steps (work the rule does not need).
    """
    from ..rules import get_rule

    total = 0
    for s in shapes:
        if s.kind == "attention" or s.rank is None:
            continue
        learns = get_rule(s.rule, s.subspace).subspace.learns
        total += s.rank * (s.out // s.groups) * ("P" in learns) + s.rank * s.fan_in * ("Q" in learns)
    return total


#: Operators that move or allocate data without arithmetic: not counted by :func:`count_elementwise`.
_MOVES = frozenset({
    "copy_", "clone", "_to_copy", "cat", "stack", "empty", "empty_like", "empty_strided", "new_empty",
    "new_empty_strided", "zeros", "zeros_like", "ones", "ones_like", "new_zeros", "new_ones", "full",
    "full_like", "fill_", "zero_", "detach", "lift_fresh", "contiguous", "_unsafe_view", "index",
    "index_select", "gather", "scatter", "select_backward", "slice_backward", "as_strided_scatter",
    "constant_pad_nd", "_local_scalar_dense", "set_", "resize_", "unbind", "split", "split_with_sizes",
    "max_pool2d_with_indices",
})


def count_elementwise(fn) -> dict[str, dict[str, int]]:
    """Run ``fn()`` once and count the elementwise work of every operator that is not a matrix
    product: one FLOP per output element (a convention: ``addcmul_`` does 3, ``exp`` more).

    Matrix products, convolutions and attention kernels (which :func:`.costmodel.op_flops` counts),
    views and the data movers of :data:`_MOVES` are left out; max-pooling counts as a mover. What
    remains: activations and their derivatives, norms, softmax, the loss, bias additions and the
    optimiser step. Returns {operator: {"calls", "elements"}}, largest first.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from .costmodel import op_flops

    out: dict[str, dict[str, int]] = {}

    class Elementwise(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            name = func._overloadpacket.__name__
            if func.is_view or name in _MOVES or op_flops(func, args, kwargs, result):
                return result
            written = [t for t in tree_leaves(result) if isinstance(t, torch.Tensor)]
            if not written and args:  # in-place _foreach_ operators return nothing: their targets
                written = [t for t in tree_leaves(args[0]) if isinstance(t, torch.Tensor)]
            row = out.setdefault(name, {"calls": 0, "elements": 0})
            row["calls"] += 1
            row["elements"] += sum(t.numel() for t in written)
            return result

    with Elementwise():
        fn()
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["elements"]))


__all__ = ["OPTIMIZER_FLOPS_PER_PARAMETER", "LayerShape", "count_elementwise", "layer_flops",
           "layer_shapes", "low_rank_parameters", "optimizer_flops", "refactor_flops", "saveable_fraction", "scale_rows",
           "step_flops", "svd_flops"]
