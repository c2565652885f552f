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


__all__ = ["LayerShape", "layer_flops", "layer_shapes", "step_flops"]
