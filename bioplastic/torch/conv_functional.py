r"""The pure math of feedback convolutions: geometry, feedback kernels, and the autograd Function.

:class:`FeedbackConv2dFunction` runs the layer's own ``F.conv2d`` forward and, backward, the error
map and gradients of the rule's form (:mod:`.conv` explains them); the rules' own bodies come from
the rule objects (``torch_transport``, ``torch_conv_dense_gradient``,
``SubspaceRule.torch_conv_gradients``). Groups are handled by a leading G axis: a factor or kernel
``M`` is viewed per group as ``M.reshape(G, M.shape[0] // G, -1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import functional as fn
from .linear import unknown_form

_convolution_backward = torch.ops.aten.convolution_backward


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, (symmetric) padding, dilation and groups shared by W, B and Q; each a pair of ints."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


# ----------------------------------------------------------------------------------------------
# Feedback kernels
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


def transport_kernel(rule, W: torch.Tensor, groups: int) -> torch.Tensor:
    """A transport rule's feedback kernel (W's shape): per group, ``rule.torch_transport`` of the
    flattened kernel W_f (C_out/G, C_in/G k_h k_w) gives B_f (C_in/G k_h k_w, C_out/G), stored
    transposed like W (bp: W itself)."""
    w = W.reshape(groups, W.shape[0] // groups, -1)
    return torch.stack([rule.torch_transport(w[j]).T for j in range(groups)]).reshape(W.shape)


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
    return conv_input(z, Q, geo, input_size)


def conv_input(g: torch.Tensor, kernel: torch.Tensor, geo: ConvGeometry, input_size) -> torch.Tensor:
    """``conv2d_input(input_size, kernel, g)``: the error map a kernel sends back."""
    shape_only = g.new_empty(1).expand(input_size)
    return _convolution_backward(g, shape_only, kernel, None, geo.stride, geo.padding, geo.dilation,
                                 False, [0, 0], geo.groups, (True, False, False))[0]


def svd_factors(W: torch.Tensor, rank: int, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, Q) with P_f^T Q_f the best rank-(r/G) approximation of each group's flattened kernel.

    With W_f^T = U S V^T: Q_f = (U_r S_r^{1/2})^T, P_f = S_r^{1/2} V_r^T, as in
    :mod:`bioplastic.circuit.init` (arXiv 2502.20580, "A normative rule for the feedback").
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

    ``forward(ctx, x, weight, bias, P, Q, B, layer)``: tensors absent for the rule's form are
    ``None``; ``layer`` is the :class:`FeedbackConv2d` (its ``learning_rule`` and geometry).
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
        geo, rule = layer.geometry, layer.learning_rule
        need_x, need_w, need_b, need_p, need_q, need_fb = ctx.needs_input_grad[:6]
        # no-ops unless autocast ran the forward in a reduced dtype (g's): the backward maps then
        # run in it, the rules' bodies in the feedback's own dtype; the engine casts grads back
        x_g, weight_g = x.to(g.dtype), weight.to(g.dtype)
        low_rank = rule.form == "low_rank"
        # a learning subspace rule may read W's gradient even when W itself is frozen
        want_w = need_w or need_fb or (low_rank and need_x and (need_p or need_q))
        bias_size = [weight.shape[0]] if ctx.has_bias else None
        _, grad_w, grad_b = _convolution_backward(
            g, x_g, weight_g, bias_size, geo.stride, geo.padding, geo.dilation, False, [0, 0],
            geo.groups, (False, want_w, need_b))
        grad_x = grad_p = grad_q = grad_fb = None
        if low_rank and not need_x:  # no error delivered, no learning signal (see FeedbackLinear)
            grad_p = torch.zeros_like(P) if need_p else None
            grad_q = torch.zeros_like(Q) if need_q else None
        elif low_rank:
            z = bottleneck(g, P.to(g.dtype), geo.groups)
            grad_x = error_map(z, Q.to(g.dtype), geo, x.shape)
            if need_p or need_q:
                dt, subspace = P.dtype, rule.subspace
                grad_p, grad_q = subspace.torch_conv_gradients(
                    P, Q, weight.to(dt), x.to(dt), g.to(dt), geo, z.to(dt), grad_w.to(dt))
                fn.check_factor_grads(subspace, need_p, grad_p, need_q, grad_q)
        elif rule.form in ("dense", "transport"):
            if need_x:
                kernel = B if rule.form == "dense" else transport_kernel(rule, weight, geo.groups)
                grad_x = conv_input(g, kernel.to(g.dtype), geo, x.shape)
            if need_fb:
                dt = B.dtype
                grad_fb = rule.torch_conv_dense_gradient(B, weight.to(dt), grad_w.to(dt), x.to(dt),
                                                         g.to(dt), geo)
        else:
            raise unknown_form(rule)
        return (grad_x, grad_w if need_w else None, grad_b, grad_p if need_p else None,
                grad_q if need_q else None, grad_fb, None)


__all__ = ["ConvGeometry", "FeedbackConv2dFunction", "bottleneck", "conv_input", "effective_kernel",
           "error_map", "grouped_factors", "max_rank", "svd_factors", "transport_kernel"]
