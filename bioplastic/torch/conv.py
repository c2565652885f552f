r"""Feedback convolutions: ``nn.Conv2d`` whose backward sends the error through a feedback kernel.

The forward pass is the layer's own convolution, :math:`y = W \ast x + b`. The backward pass keeps
the usual weight gradient :math:`\partial\ell/\partial W = x \star g` (``conv2d_weight``) but sends
the error map :math:`g = \partial\ell/\partial y` (batch, C_out, H_out, W_out) to the layer below
through a feedback kernel instead of :math:`W`:

``bp``
    :math:`W` itself (native autograd; exact backprop).
``fa`` / ``kp``
    a kernel :math:`B` of W's shape: :math:`\delta_{in} = \mathrm{conv2d\_input}(B, g)`. FA keeps B
    fixed; KP gives it W's gradient, ``B.grad = weight.grad``, so with weight decay B -> W.
``ldfa``
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

**Subspace rules** (``P.grad`` / ``Q.grad`` hold the negative update; per group, with the flattened
kernel :math:`W_f` (C_out/G, C_in/G k_h k_w), :math:`Q_f` = Q flattened to (r/G, C_in/G k_h k_w),
:math:`P_f` = P as (r/G, C_out/G), :math:`E = W_f - P_f^\top Q_f`):

``fixed``
    none (P and Q do not require grad).
``normative``
    descend :math:`\tfrac12\lVert E\rVert^2`: ``grad_Q_f = -P_f E``, ``grad_P_f = -Q_f E^T``;
    :meth:`FeedbackConv2d.refactorise` (optionally every ``refactor_every`` training steps) resets
    Q, P to the truncated SVD of W, the rule's fixed point.
``local``
    the gradients of the factorised surrogate under the same error:
    ``grad_Q = conv2d_weight(x, z)``, ``grad_P = sum_{batch, positions} u g^T`` with
    ``u = Q-conv(x)``; both use only pre- and postsynaptic signals of each synapse. They equal
    ``P_f dW_f`` and ``Q_f dW_f^T`` with dW the weight gradient, which is how they are computed
    (:func:`local_gradients`).
``oja``
    :math:`\mathrm{grad}_P = -(P C - P C P^\top P)` with C the channel covariance of the error,
    pooling batch and spatial positions as samples:
    :math:`C = \frac{1}{N H W}\sum_{n,h,w} \delta\delta^\top`, :math:`\delta = N g` (the per-sample
    error, undoing the loss's batch mean); Q as in ``local``. With 1x1 maps on 1x1 images every rule
    reduces to the Linear one.

``dfa`` is not offered for convolutions, as for every per-layer feedback (``FeedbackSpec``): it
needs the network's output error inside every layer, a global wire that a per-layer conversion
cannot see.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import functional as fn
from .linear import LAYER_RULES, FeedbackSpec

#: Rules a :class:`FeedbackConv2d` implements.
CONV_RULES = LAYER_RULES
#: Subspace rules of an ldfa :class:`FeedbackConv2d`.
CONV_SUBSPACES = ("fixed", "normative", "local", "oja")

_convolution_backward = torch.ops.aten.convolution_backward


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, (symmetric) padding, dilation and groups shared by W, B and Q; each a pair of ints."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


# ----------------------------------------------------------------------------------------------
# Pure math: feedback kernels and subspace-rule gradients (groups handled by a leading G axis)
# ----------------------------------------------------------------------------------------------

def grouped_factors(P: torch.Tensor, Q: torch.Tensor, groups: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(P_f (G, r/G, C_out/G), Q_f (G, r/G, C_in/G k_h k_w)): the factors as per-group matrices."""
    r = P.shape[0]
    return P.reshape(groups, r // groups, -1), Q.reshape(groups, r // groups, -1)


def effective_kernel(P: torch.Tensor, Q: torch.Tensor, groups: int) -> torch.Tensor:
    """The kernel (C_out, C_in/G, k_h, k_w) of the factorised conv: P_f^T Q_f per group.

    Its ``conv2d_input`` is the LDFA error map; it plays the role W plays in bp.
    """
    p, q = grouped_factors(P, Q, groups)
    kernel = p.transpose(1, 2) @ q  # (G, C_out/G, C_in/G k k)
    return kernel.reshape(-1, *Q.shape[1:])


def normative_gradients(P: torch.Tensor, Q: torch.Tensor, W: torch.Tensor, groups: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of 1/2 ||W_f - P_f^T Q_f||^2 per group (module docstring): (grad_P, grad_Q)."""
    p, q = grouped_factors(P, Q, groups)
    mismatch = W.reshape(groups, W.shape[0] // groups, -1) - p.transpose(1, 2) @ q
    grad_q = -(p @ mismatch)
    grad_p = -(q @ mismatch.transpose(1, 2))
    return grad_p.reshape(P.shape), grad_q.reshape(Q.shape)


def bottleneck(g: torch.Tensor, P: torch.Tensor, groups: int) -> torch.Tensor:
    """z = P applied to every position of the error map: (N, C_out, H, W) -> (N, r, H, W).

    A batched matrix product on the (N, C_out, H W) view: the same numbers as the 1x1 convolution
    ``F.conv2d(g, P, groups=groups)``, several times faster than oneDNN's for a few output channels.
    """
    n, c, h, w = g.shape
    p, _ = grouped_factors(P, P, groups)  # (G, r/G, C_out/G)
    z = p @ g.reshape(n, groups, c // groups, h * w)  # (N, G, r/G, H W)
    return z.reshape(n, -1, h, w)


def error_map(z: torch.Tensor, Q: torch.Tensor, geo: ConvGeometry, input_size) -> torch.Tensor:
    """delta_in = conv2d_input(input_size, Q, z): the transposed Q-convolution of the bottleneck.

    With stride 1 this is a plain convolution of z with the flipped, transposed kernel and padding
    d (k - 1) - p, which oneDNN runs several times faster than its transposed convolution when z
    has few channels; other geometries use ``convolution_backward``.
    """
    pads = tuple(d * (k - 1) - p for d, k, p in zip(geo.dilation, Q.shape[-2:], geo.padding))
    if geo.stride == (1, 1) and min(pads) >= 0:
        g, r = geo.groups, Q.shape[0]
        flipped = (Q.reshape(g, r // g, -1, *Q.shape[-2:]).transpose(1, 2)
                   .reshape(-1, r // g, *Q.shape[-2:]).flip(-2, -1))
        return F.conv2d(z, flipped, None, 1, pads, geo.dilation, g)
    shape_only = z.new_empty(1).expand(input_size)
    return _convolution_backward(z, shape_only, Q, None, geo.stride, geo.padding, geo.dilation,
                                 False, [0, 0], geo.groups, (True, False, False))[0]


def local_gradients(P: torch.Tensor, Q: torch.Tensor, grad_w: torch.Tensor, groups: int,
                    need_p: bool = True, need_q: bool = True
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The local rule's (grad_P, grad_Q) from the weight gradient: Q_f dW_f^T and P_f dW_f per group
    (None for a factor not needed: each costs one contraction).

    The surrogate's gradients, ``sum u g^T`` (u = Q-conv of x) and ``conv2d_weight(x, z)``, are
    sums over positions of pre/post products; both equal these contractions of
    ``dW = conv2d_weight(x, g)``, which cost r C_out C_in k_h k_w per step instead of that much per
    position (research/paper.md section 2.4 writes the rule this way).
    """
    p, q = grouped_factors(P, Q, groups)
    dw = grad_w.reshape(groups, grad_w.shape[0] // groups, -1)  # (G, C_out/G, C_in/G k k)
    return ((q @ dw.transpose(1, 2)).reshape(P.shape) if need_p else None,
            (p @ dw).reshape(Q.shape) if need_q else None)


def oja_gradient(P: torch.Tensor, g: torch.Tensor, z: torch.Tensor, groups: int) -> torch.Tensor:
    """-(P C - P C P^T P) per group, C the pooled channel covariance of delta = N g (docstring).

    P C is formed as (N / (H W)) sum_positions z g^T with z = :func:`bottleneck` (g, P), so the
    (C_out, C_out) covariance is never built.

    Parameters
    ----------
    P : Tensor, shape (r, C_out/G, 1, 1)
    g : Tensor, shape (N, C_out, H, W)
        Gradient of the batch-mean loss at the layer output.
    z : Tensor, shape (N, r, H, W)
    """
    n, c_out, h, w = g.shape
    gg = g.reshape(n, groups, c_out // groups, h * w)
    zz = z.reshape(n, groups, -1, h * w)
    pc = (n / (h * w)) * torch.einsum("ngrl,ngcl->grc", zz, gg)  # (G, r/G, C_out/G)
    p, _ = grouped_factors(P, P, groups)
    return (-(pc - pc @ p.transpose(1, 2) @ p)).reshape(P.shape)


def svd_factors(W: torch.Tensor, rank: int, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, Q) with P_f^T Q_f the best rank-(r/G) approximation of each group's flattened kernel.

    With W_f^T = U S V^T: Q_f = (U_r S_r^{1/2})^T, P_f = S_r^{1/2} V_r^T, as in
    :mod:`bioplastic.circuit.init` (research/paper.md section 2.3).
    """
    per = rank // groups
    w = W.reshape(groups, W.shape[0] // groups, -1)
    u, s, vh = torch.linalg.svd(w.transpose(1, 2), full_matrices=False)
    root = s[:, :per].sqrt()
    q = (u[:, :, :per] * root[:, None, :]).transpose(1, 2)
    p = root[:, :, None] * vh[:, :per, :]
    return (p.reshape(rank, W.shape[0] // groups, 1, 1),
            q.reshape(rank, *W.shape[1:]))


def max_rank(conv: nn.Conv2d) -> int:
    """Largest ldfa rank of ``conv``: G * min(C_out/G, C_in/G * k_h * k_w)."""
    g = conv.groups
    return g * min(conv.out_channels // g, (conv.in_channels // g) * math.prod(conv.kernel_size))


# ----------------------------------------------------------------------------------------------
# The autograd Function
# ----------------------------------------------------------------------------------------------

class FeedbackConv2dFunction(torch.autograd.Function):
    """Forward: ``F.conv2d``; backward: the rule's error map and gradients (module docstring).

    ``forward(ctx, x, weight, bias, P, Q, B, layer)``: tensors absent for the rule are ``None``;
    ``layer`` is the :class:`FeedbackConv2d` (rule, subspace, geometry).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, P, Q, B, layer):
        geo = layer.geometry
        ctx.layer = layer
        ctx.save_for_backward(x, weight, P, Q, B)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, geo.stride, geo.padding, geo.dilation, geo.groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, P, Q, B = ctx.saved_tensors
        layer = ctx.layer
        layer._backward_calls += 1
        geo = layer.geometry
        need_x, need_w, need_b, need_p, need_q, need_fb = ctx.needs_input_grad[:6]
        # no-ops unless autocast ran the forward in a reduced dtype (g's): the backward maps then
        # run in it, the subspace rules in the factors' own dtype; the engine casts grads back
        x, weight_g = x.to(g.dtype), weight.to(g.dtype)
        P_g, Q_g, B = (None if t is None else t.to(g.dtype) for t in (P, Q, B))
        ldfa = layer.rule == "ldfa"
        # the local and oja rules read W's gradient even when W itself is frozen
        want_w = need_w or need_fb or (ldfa and need_x and (
            (layer.subspace in ("local", "oja") and need_q) or (layer.subspace == "local" and need_p)))
        bias_size = [weight.shape[0]] if ctx.has_bias else None
        _, grad_w, grad_b = _convolution_backward(
            g, x, weight_g, bias_size, geo.stride, geo.padding, geo.dilation, False, [0, 0],
            geo.groups, (False, want_w, need_b))
        grad_x = grad_p = grad_q = grad_fb = None
        if ldfa and not need_x:  # no error delivered, no learning signal (see FeedbackLinear)
            grad_p = torch.zeros_like(P) if need_p else None
            grad_q = torch.zeros_like(Q) if need_q else None
        elif ldfa:
            oja = layer.subspace == "oja"
            z = bottleneck(g, P_g, geo.groups) if need_x or (oja and need_p) else None
            if need_x:
                grad_x = error_map(z, Q_g, geo, x.shape)
            dt = P.dtype
            if layer.subspace == "normative":
                grad_p, grad_q = normative_gradients(P, Q, weight, geo.groups)
            elif layer.subspace == "local":
                grad_p, grad_q = local_gradients(P, Q, grad_w.to(dt), geo.groups, need_p, need_q)
            elif oja:
                grad_p = oja_gradient(P, g.to(dt), z.to(dt), geo.groups) if need_p else None
                grad_q = (local_gradients(P, Q, grad_w.to(dt), geo.groups, need_p=False)[1]
                          if need_q else None)
        else:  # fa, kp
            if need_x:
                shape_only = g.new_empty(1).expand(x.shape)
                grad_x = _convolution_backward(g, shape_only, B, None, geo.stride, geo.padding,
                                               geo.dilation, False, [0, 0], geo.groups,
                                               (True, False, False))[0]
            if need_fb:
                grad_fb = grad_w.clone()  # two .grad tensors must not share storage
        return (grad_x, grad_w if need_w else None, grad_b, grad_p if need_p else None,
                grad_q if need_q else None, grad_fb, None)


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


class FeedbackConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a feedback pathway in place of W^T (see module docstring).

    Build one with :func:`feedback_conv2d` (or ``convert``), which shares a ``nn.Conv2d``'s
    ``weight`` and ``bias`` Parameters (same names, so state dicts load) and adds ``P``, ``Q`` (ldfa;
    ``requires_grad=False`` for ``fixed``) or ``B`` (fa: a buffer; kp: a Parameter). Evaluation, and
    any forward without autograd, is the plain convolution.

    Attributes
    ----------
    rule : str
        One of :data:`CONV_RULES`.
    subspace : str or None
        One of :data:`CONV_SUBSPACES` (ldfa only).
    rank : int or None
        Total bottleneck channels r (ldfa only), a multiple of ``groups``.
    refactor_every : int or None
        ldfa-normative: reset (P, Q) to the truncated SVD of W at the first training forward after
        every ``refactor_every`` backward passes (the authors do this twice an epoch); several
        forwards within one step see the same P, Q. Settable after conversion.
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
        layer.rule = spec.rule
        layer.subspace = spec.subspace if spec.rule == "ldfa" else None
        layer.rank = None
        if spec.rule == "ldfa":
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
        """Draw the feedback: fa/kp B, ldfa P and Q (as FeedbackLinear does; float64 CPU draws).

        Random kernels are N(0, 1/fan-in of the feedback map): C_out/G k_h k_w for B, C_out/G for
        fixed and oja P get orthonormal rows and Q std 1/sqrt(C_out/G k_h k_w); a 1x1 kernel gives
        the Linear layer's draws. ``local`` and ``normative`` start from the truncated SVD of W.
        """
        w, g = self.weight.detach(), self.groups
        c_out, taps = self.out_channels // g, math.prod(self.kernel_size)
        if self.rule in ("fa", "kp"):
            b = torch.randn(w.shape, generator=generator, dtype=torch.float64)
            b = (b / math.sqrt(c_out * taps)).to(w)
            if self.rule == "fa":
                self.register_buffer("B", b)
            else:
                self.B = nn.Parameter(b)
        if self.rule != "ldfa":
            return
        r = self.rank
        if self.subspace in ("normative", "local"):
            p, q = svd_factors(w.to(torch.float64), r, g)
        else:
            # as bioplastic.init does for circuits: orthonormal P rows, Q with fa's gain
            # (std 1/sqrt(C_out/G k_h k_w)), so QP has fa's singular-value scale at any rank
            per = r // g
            p = torch.stack([fn.orthonormal_rows(per, c_out, generator) for _ in range(g)])
            q = torch.randn((r, w[0].numel()), generator=generator, dtype=torch.float64)
            q = q / math.sqrt(c_out * taps)
        learnt = self.subspace != "fixed"
        self.P = nn.Parameter(p.reshape(r, c_out, 1, 1).to(w), requires_grad=learnt)
        self.Q = nn.Parameter(q.reshape(r, *w.shape[1:]).to(w), requires_grad=learnt)

    def set_refactor_every(self, n: int | None) -> FeedbackConv2d:
        """Refactorise (P, Q) by SVD every ``n`` training forwards (ldfa-normative); None: never."""
        if n is not None:
            if self.rule != "ldfa" or self.subspace != "normative":
                raise ValueError("refactor_every is an ldfa 'normative' option (the SVD is that rule's "
                                 f"fixed point); this layer has rule {self.rule!r}, subspace "
                                 f"{self.subspace!r}")
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
                raise ValueError(f"refactor_every must be a positive int or None; got {n!r}")
        self.refactor_every = n
        return self

    def feedback_kernel(self) -> torch.Tensor:
        """The kernel (C_out, C_in/G, k_h, k_w) whose ``conv2d_input`` is the delivered error map."""
        with torch.no_grad():
            if self.rule == "bp":
                return self.weight.clone()
            if self.rule == "ldfa":
                return effective_kernel(self.P, self.Q, self.groups)
            return self.B.clone()

    def feedback_matrix(self) -> torch.Tensor:
        """Flattened feedback (C_in/G k_h k_w, C_out), the analogue of a Linear's B (in, out).

        It is :meth:`feedback_kernel` flattened like W, transposed: bp gives ``W.flatten(1).T``.
        """
        return self.feedback_kernel().flatten(1).T

    @torch.no_grad()
    def refactorise(self) -> FeedbackConv2d:
        """Set (P, Q) to the truncated SVD of the current W (ldfa only); returns self."""
        if self.rule != "ldfa":
            raise ValueError(f"refactorise needs rule 'ldfa'; this layer has rule {self.rule!r}")
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
        geo = self.geometry
        if self.rule == "bp" or not torch.is_grad_enabled():
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
            if self.rule == "ldfa":
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
        One of :data:`CONV_RULES` (``dfa`` raises, see module docstring).
    rank : int, optional
        ldfa bottleneck channels r: a multiple of ``groups``, at most :func:`max_rank`.
    subspace : str
        ldfa subspace rule, one of :data:`CONV_SUBSPACES`.
    generator : torch.Generator, optional
        Source of random feedback (fa/kp B, fixed/oja factors); the global one when omitted.
    clip_rank : bool
        Use :func:`max_rank` where ``rank`` is larger, instead of raising.
    refactor_every : int, optional
        ldfa-normative periodic refactorisation (see :class:`FeedbackConv2d`).
    """
    return FeedbackConv2d.from_conv(conv, rule, rank, subspace, generator, clip_rank, refactor_every)


def convert_conv2d(module: nn.Conv2d, spec: FeedbackSpec, generator: torch.Generator,
                   name: str) -> FeedbackConv2d:
    """``convert``'s factory for ``nn.Conv2d`` (see :data:`.convert.CONVERTERS`)."""
    return FeedbackConv2d.from_conv(module, spec.rule, spec.rank, spec.subspace, generator,
                                    spec.clip_rank, where=f"layer {name!r}")


__all__ = ["CONV_RULES", "CONV_SUBSPACES", "ConvGeometry", "FeedbackConv2d", "FeedbackConv2dFunction",
           "bottleneck", "convert_conv2d", "effective_kernel", "error_map", "feedback_conv2d",
           "grouped_factors", "local_gradients", "max_rank", "normative_gradients", "oja_gradient",
           "svd_factors"]
