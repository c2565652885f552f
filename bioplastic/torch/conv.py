r"""Feedback convolutions: ``nn.Conv2d`` whose backward sends the error through a feedback kernel.

The forward pass is the layer's own convolution, :math:`y = W \ast x + b`. The backward pass keeps
the usual weight gradient :math:`\partial\ell/\partial W = x \star g` (``conv2d_weight``) but sends
the error map :math:`g = \partial\ell/\partial y` (batch, C_out, H_out, W_out) to the layer below
through a feedback kernel instead of :math:`W`. What that kernel is follows the rule's *form* (:class:`bioplastic.rules.Rule`; any
registered rule of topology ``layer``):

``transport`` (bp, sign-symmetric, ...)
    bp (``exact_gradient``): :math:`W` itself (native autograd; exact backprop). Others: per group,
    the rule's ``torch_transport`` of the flattened kernel :math:`W_f` (C_out/G, C_in/G k_h k_w),
    reshaped back into a kernel :math:`B` of W's shape, then :math:`\delta_{in} =
    \mathrm{conv2d\_input}(B, g)`.
``dense`` (fa / kp)
    a kernel :math:`B` of W's shape: :math:`\delta_{in} = \mathrm{conv2d\_input}(B, g)`. A fixed B
    is a buffer; a plastic one gets ``rule.torch_conv_dense_gradient`` (kp: ``B.grad =
    weight.grad``, so with weight decay B -> W).
``low_rank`` (ldfa)
    the transpose of the factorised convolution "Q-conv (k x k, C_in -> r, with the layer's
    stride, padding, dilation, groups) then 1x1 P-conv (r -> C_out)":

    .. math::

        z = P \ast g \quad (\text{1x1}, C_{out} \to r), \qquad
        \delta_{in} = \mathrm{conv2d\_input}(Q, z),

    so only r channels per output position cross the bottleneck, and the delivered error map is
    the input gradient of the factorised forward conv (tested in float64).

Shapes (stored as convolution kernels, so each is directly usable by ``F.conv2d``):

* ``P``: (r, C_out / groups, 1, 1), the 1x1 map C_out -> r applied to the error map; for a
  1x1 kernel and ``groups=1`` it is the Linear layer's P (r, out);
* ``Q``: (r, C_in / groups, k_h, k_w), the kernel of the factorised forward's first conv; the
  Linear layer's Q (in, r) is its flattened transpose, ``Q.flatten(1).T``.

**Groups.** With ``groups = G`` the rank is split evenly: r must be a multiple of G and each group
gets its own r/G bottleneck channels (P and Q are both grouped), so the feedback respects the block
structure of W and a full-rank factorisation (r/G = min(C_out/G, C_in/G k_h k_w)) reproduces bp.

**Subspace rules** (``P.grad`` / ``Q.grad`` hold the negative update) come from the rule's unit,
:meth:`bioplastic.rules.SubspaceRule.torch_conv_gradients`: per group, with the flattened kernel
:math:`W_f`, :math:`Q_f` = Q flattened to (r/G, C_in/G k_h k_w) and :math:`P_f` = P as (r/G, C_out/G),
a convolution is the Linear layer of its unfolded patches (batch and positions as rows). The base
class applies the rule's Linear body to those rows, which is exact for any registered rule; the
built-in rules override it with bodies that never unfold (``normative``: descend
:math:`\tfrac12\lVert W_f - P_f^\top Q_f\rVert^2`; ``local`` and ``q_only``: contractions of the
weight gradient, ``P_f dW_f`` and ``Q_f dW_f^T``; ``oja``: the channel covariance pooled over batch
and positions), each held to the generic form by tests/test_torch_rules.py. With 1x1 maps on 1x1
images every rule reduces to the Linear one. :meth:`FeedbackConv2d.refactorise` (optionally every
``refactor_every`` training steps, for rules that descend the distance to W) resets Q, P to the
truncated SVD of W.

Direct rules (``dfa``) are not offered for convolutions, as for every per-layer feedback
(``FeedbackSpec``): they need the network's output error inside every layer, a global wire that a
per-layer conversion cannot see.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..rules import SUBSPACES
from . import functional as fn
from .conv_functional import (
    ConvGeometry,
    FeedbackConv2dFunction,
    bottleneck,
    conv_input,
    effective_kernel,
    error_map,
    grouped_factors,
    max_rank,
    svd_factors,
    transport_kernel,
)
from .linear import FeedbackSpec, factor_draws, layer_rules, unknown_form

# ----------------------------------------------------------------------------------------------
# The module
# ----------------------------------------------------------------------------------------------

def _explicit_padding(conv: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """Symmetric padding for the conv call, and an extra F.pad (left, right, top, bottom) or None.

    ``padding="same"`` with an even receptive field needs one more zero on the right/bottom than on
    the left/top (PyTorch's convention), which ``convolution_backward`` cannot express: that one is
    applied by ``F.pad`` before the conv, whose backward (a slice) is exact.
    """
    if conv.padding == "valid":
        return (0, 0), None
    if conv.padding != "same":
        return tuple(conv.padding), None
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
    if all(t % 2 == 0 for t in totals):
        return (totals[0] // 2, totals[1] // 2), None
    (th, tw) = totals
    return (0, 0), (tw // 2, tw - tw // 2, th // 2, th - th // 2)


def refactorable() -> list[str]:
    """Subspace rules whose fixed point is the SVD of W (they read it): ``refactor_every`` applies."""
    return [n for n, s in SUBSPACES.items() if s.reads_forward_weight]


class FeedbackConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a feedback pathway in place of W^T (see module docstring).

    Build one with :func:`feedback_conv2d` (or ``convert``), which shares a ``nn.Conv2d``'s
    ``weight`` and ``bias`` Parameters (same names, so state dicts load) and adds what the rule's
    form stores: ``P``, ``Q`` (low rank; a factor the subspace rule does not learn has
    ``requires_grad=False``) or ``B`` (dense: a buffer when fixed, a Parameter when plastic).
    Evaluation, and any forward without autograd, is the plain convolution.

    Attributes
    ----------
    rule : str
        A registered rule of topology ``layer``.
    learning_rule : bioplastic.rules.Rule
        Its rule object.
    subspace : str or None
        Subspace rule (low-rank rules only).
    rank : int or None
        Total bottleneck channels r (low-rank rules only), a multiple of ``groups``.
    refactor_every : int or None
        Low rank with a subspace rule that reads W (normative): reset (P, Q) to the truncated SVD
        of W at the first training forward after every ``refactor_every`` backward passes (the
        authors do this twice an epoch); several forwards within one step see the same P, Q.
        Settable after conversion.
    """

    rule: str
    subspace: str | None
    rank: int | None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rule: str = "ldfa", rank: int | None = None,
                  subspace: str = "local", generator: torch.Generator | None = None,
                  clip_rank: bool = False, refactor_every: int | None = None,
                  where: str | None = None) -> FeedbackConv2d:
        """A feedback layer sharing ``conv``'s parameters. See :func:`feedback_conv2d`."""
        if type(conv) is not nn.Conv2d:
            raise TypeError(f"feedback_conv2d converts nn.Conv2d; got {type(conv).__name__}")
        spec = FeedbackSpec(rule, rank, subspace, clip_rank)  # validates rule and subspace
        # Build on the meta device (no allocation), then share conv's parameters: an optimiser made
        # before the conversion keeps stepping the same tensors.
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                    device="meta")
        layer.weight, layer.bias = conv.weight, conv.bias
        layer.train(conv.training)
        layer.learning_rule = spec.learning_rule
        layer.rule = spec.rule
        low_rank = layer.learning_rule.form == "low_rank"
        layer.subspace = spec.subspace if low_rank else None
        layer.rank = None
        if low_rank:
            layer.rank = layer._check_rank(spec.rank, clip_rank, where or f"Conv2d {layer.extra_repr()}")
        layer.refactor_every = None
        layer._backward_calls = 0  # training steps seen: refactorisation counts these, not forwards
        layer._refactored_at = 0
        layer._set_geometry()
        layer._init_feedback(generator)
        if refactor_every is not None:
            layer.set_refactor_every(refactor_every)
        return layer

    def _set_geometry(self) -> None:
        padding, self._extra_pad = _explicit_padding(self)
        if self.padding_mode != "zeros":
            # nn.Conv2d pads by F.pad then convolves unpadded; keep that (exact) split
            self._extra_pad, padding = None, (0, 0)
        self.geometry = ConvGeometry(tuple(self.stride), padding, tuple(self.dilation), self.groups)

    def _check_rank(self, rank, clip_rank: bool, where: str) -> int:
        hi, g = max_rank(self), self.groups
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
            raise ValueError(f"rank {rank!r} for {where} is invalid: it must be a positive int")
        if clip_rank and rank > hi:
            rank = hi
        if rank % g:
            raise ValueError(f"rank {rank} for {where} must be a multiple of groups={g}: each group "
                             "gets rank/groups bottleneck channels")
        if rank > hi:
            raise ValueError(
                f"rank {rank} for {where} is out of range: at most {hi} = groups * min(C_out/groups, "
                f"C_in/groups * k_h * k_w) = {g} * min({self.out_channels // g}, "
                f"{self.in_channels // g} * {math.prod(self.kernel_size)}); pass clip_rank=True to "
                "use the maximum")
        return int(rank)

    @torch.no_grad()
    def _init_feedback(self, generator: torch.Generator | None) -> None:
        """Draw the feedback the rule's form stores (as FeedbackLinear does; float64 CPU draws).

        Dense kernels are N(0, 1/fan-in of the feedback map), C_out/G k_h k_w. Low-rank factors
        follow the subspace rule's ``init`` names: ``svd`` the truncated SVD of W, ``orthonormal``
        P orthonormal rows per group, ``expand`` Q with std 1/sqrt(C_out/G k_h k_w) (QP then has
        fa's singular-value scale at any rank), ``normal`` N(0, 1/pre), ``zeros``; a 1x1 kernel
        gives the Linear layer's draws.
        """
        lr = self.learning_rule
        w, g = self.weight.detach(), self.groups
        c_out, taps = self.out_channels // g, math.prod(self.kernel_size)
        if lr.form == "dense":
            b = torch.randn(w.shape, generator=generator, dtype=torch.float64)
            b = (b / math.sqrt(c_out * taps)).to(w)
            if lr.plastic:
                self.B = nn.Parameter(b)
            else:
                self.register_buffer("B", b)
            return
        if lr.form == "transport":
            return
        if lr.form != "low_rank":
            raise unknown_form(lr)
        r, fan = self.rank, w[0].numel()
        per = r // g
        p, q = factor_draws(
            lr.subspace.init, lambda: svd_factors(w.to(torch.float64), r, g),
            {"orthonormal": lambda: torch.stack([fn.orthonormal_rows(per, c_out, generator)
                                                 for _ in range(g)]),
             "normal": lambda: torch.randn((r, c_out), generator=generator, dtype=torch.float64)
             / math.sqrt(c_out),
             "zeros": lambda: torch.zeros((r, c_out), dtype=torch.float64)},
            {"expand": lambda: torch.randn((r, fan), generator=generator, dtype=torch.float64)
             / math.sqrt(c_out * taps),
             "normal": lambda: torch.randn((r, fan), generator=generator, dtype=torch.float64)
             / math.sqrt(per),
             "zeros": lambda: torch.zeros((r, fan), dtype=torch.float64)})
        learns = lr.subspace.learns
        self.P = nn.Parameter(p.reshape(r, c_out, 1, 1).to(w), requires_grad="P" in learns)
        self.Q = nn.Parameter(q.reshape(r, *w.shape[1:]).to(w), requires_grad="Q" in learns)

    def set_refactor_every(self, n: int | None) -> FeedbackConv2d:
        """Refactorise (P, Q) by SVD every ``n`` training forwards; None: never.

        For low-rank feedback whose subspace rule reads W (``normative``: the SVD is its fixed point).
        """
        if n is not None:
            if self.learning_rule.form != "low_rank" or self.subspace not in refactorable():
                raise ValueError("refactor_every is an option of low-rank feedback with a subspace rule "
                                 f"that reads W ({', '.join(map(repr, refactorable()))}: the SVD is its "
                                 f"fixed point); this layer has rule {self.rule!r}, subspace "
                                 f"{self.subspace!r}")
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
                raise ValueError(f"refactor_every must be a positive int or None; got {n!r}")
        self.refactor_every = n
        return self

    def feedback_kernel(self) -> torch.Tensor:
        """The kernel (C_out, C_in/G, k_h, k_w) whose ``conv2d_input`` is the delivered error map."""
        lr = self.learning_rule
        with torch.no_grad():
            if lr.form == "transport":
                return transport_kernel(lr, self.weight.detach(), self.groups).clone()
            if lr.form == "low_rank":
                return effective_kernel(self.P, self.Q, self.groups)
            if lr.form == "dense":
                return self.B.clone()
            raise unknown_form(lr)

    def feedback_matrix(self) -> torch.Tensor:
        """Flattened feedback (C_in/G k_h k_w, C_out), the analogue of a Linear's B (in, out).

        It is :meth:`feedback_kernel` flattened like W, transposed: bp gives ``W.flatten(1).T``.
        """
        return self.feedback_kernel().flatten(1).T

    @torch.no_grad()
    def refactorise(self) -> FeedbackConv2d:
        """Set (P, Q) to the truncated SVD of the current W (low rank only); returns self."""
        if self.learning_rule.form != "low_rank":
            owners = " or ".join(map(repr, layer_rules(lambda c: c.rank != "none")))
            raise ValueError(f"refactorise needs rule {owners} (low-rank feedback); this layer has "
                             f"rule {self.rule!r}")
        p, q = svd_factors(self.weight.detach().to(torch.float64), self.rank, self.groups)
        self.P.copy_(p)
        self.Q.copy_(q)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C_in, H, W) or unbatched (C_in, H, W) -> (N, C_out, H_out, W_out) (or unbatched)."""
        if x.dim() == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        elif self._extra_pad is not None:
            x = F.pad(x, self._extra_pad)
        geo, lr = self.geometry, self.learning_rule
        if (lr.form == "transport" and lr.exact_gradient) or not torch.is_grad_enabled():
            return F.conv2d(x, self.weight, self.bias, geo.stride, geo.padding, geo.dilation,
                            geo.groups)
        if (self.refactor_every is not None and self.training
                and self._backward_calls - self._refactored_at >= self.refactor_every):
            # only between steps: a forward whose graph is still waiting for its backward keeps P, Q
            self.refactorise()
            self._refactored_at = self._backward_calls
        return FeedbackConv2dFunction.apply(
            x, self.weight, self.bias, getattr(self, "P", None), getattr(self, "Q", None),
            getattr(self, "B", None), self)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if hasattr(self, "rule"):
            text += f", rule={self.rule!r}"
            if self.rank is not None:
                text += f", rank={self.rank}, subspace={self.subspace!r}"
        return text


def feedback_conv2d(conv: nn.Conv2d, rule: str = "ldfa", rank: int | None = None,
                    subspace: str = "local", generator: torch.Generator | None = None,
                    clip_rank: bool = False, refactor_every: int | None = None) -> FeedbackConv2d:
    """Convert one ``nn.Conv2d`` into a :class:`FeedbackConv2d` sharing its weight and bias.

    Parameters
    ----------
    conv : nn.Conv2d
        Any stride, padding (ints, "same", "valid"; any padding_mode), dilation, groups, bias.
    rule : str
        A registered rule of topology ``layer`` (direct rules such as ``dfa`` raise, see module
        docstring).
    rank : int, optional
        Low-rank bottleneck channels r: a multiple of ``groups``, at most :func:`max_rank`.
    subspace : str
        Subspace rule of a low-rank rule (a key of :data:`bioplastic.rules.SUBSPACES`).
    generator : torch.Generator, optional
        Source of random feedback (dense B, drawn factors); the global one when omitted.
    clip_rank : bool
        Use :func:`max_rank` where ``rank`` is larger, instead of raising.
    refactor_every : int, optional
        Periodic SVD refactorisation (see :class:`FeedbackConv2d`).
    """
    return FeedbackConv2d.from_conv(conv, rule, rank, subspace, generator, clip_rank, refactor_every)


def convert_conv2d(module: nn.Conv2d, spec: FeedbackSpec, generator: torch.Generator,
                   name: str) -> FeedbackConv2d:
    """``convert``'s factory for ``nn.Conv2d`` (see :data:`.convert.CONVERTERS`)."""
    return FeedbackConv2d.from_conv(module, spec.rule, spec.rank, spec.subspace, generator,
                                    spec.clip_rank, where=f"layer {name!r}")


__all__ = ["ConvGeometry", "FeedbackConv2d", "FeedbackConv2dFunction", "bottleneck", "conv_input",
           "convert_conv2d", "effective_kernel", "error_map", "feedback_conv2d", "grouped_factors",
           "max_rank", "svd_factors", "transport_kernel"]
