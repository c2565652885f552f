r"""Pure tensor math of feedback layers: the backward maps, the subspace rules, the initial draws.

A feedback layer computes the ordinary affine map :math:`y = x W^\top + b` forward, but sends the
error back through a feedback matrix :math:`B` of shape (in, out) instead of :math:`W^\top`. With the
rows :math:`x` (N, in) and the output gradients :math:`g = \partial\ell/\partial y` (N, out), where
every leading dimension (batch, tokens, ...) is flattened into the N rows,

.. math::

    \frac{\partial\ell}{\partial x} \leftarrow g B^\top, \qquad
    \nabla_W = g^\top x, \qquad \nabla_b = \textstyle\sum_{\mathrm{rows}} g .

The rules differ in B: :math:`W^\top` (bp), a fixed random B (fa), a plastic B with
:math:`\nabla_B = (\nabla_W)^\top` (kp), or :math:`B = QP` of rank r (ldfa). LDFA applies it as two thin
products, :math:`z = g P^\top` (N, r), the bottleneck, then :math:`z Q^\top`, so QP is never formed.
The factors receive the *gradient* (negative update) of their subspace rule, so any optimiser steps
them:

.. math::

    \text{local:}\quad \nabla_P = (x Q)^\top g, \quad \nabla_Q = x^\top (g P^\top);

    \text{normative:}\quad D = W^\top - QP, \quad \nabla_Q = -D P^\top, \quad \nabla_P = -Q^\top D;

    \text{oja:}\quad C = N g^\top g, \quad \nabla_P = -(P C - P C P^\top P), \quad \nabla_Q \text{ as local}.

When the loss is a mean over the N rows, :math:`g = \delta / N` with :math:`\delta` the layer error,
and these are exactly the batch-mean rules of :mod:`bioplastic.rules.ldfa`. Oja's covariance
:math:`C = \langle\delta\delta^\top\rangle = N g^\top g` relies on that: under a summed loss it is
N times too large (tests/test_convert.py checks the identities).

Under ``torch.autocast`` the backward maps run in the forward's reduced dtype (that of g) and the
subspace rules in the factors' own dtype; autograd casts every gradient back to its tensor's dtype.

Every function here is stateless; :mod:`.layers` and :mod:`.runner` only hold tensors and call them.
The autograd Functions take ``ctx`` in ``forward`` (no ``setup_context``): applying a Function
with a separate ``setup_context`` binds its arguments through ``inspect`` on every call, which
cost three times the dispatch of the layer's forward product on small layers. The price of that
choice: ``torch.func`` transforms (``grad``, ``vmap``) do not apply to these Functions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

Tensor = torch.Tensor
#: (P, Q, W, x_rows, g_rows, z_rows) -> (grad_P, grad_Q); see the module docstring.
SubspaceGradients = Callable[..., tuple[Tensor, Tensor]]


# ----------------------------------------------------------------------------- backward maps
def rows(t: Tensor) -> Tensor:
    """Flatten every leading dimension: (..., n) -> (N, n)."""
    return t.reshape(-1, t.shape[-1])


def compress(g: Tensor, P: Tensor) -> Tensor:
    """Bottleneck activity z = g P^T, shape (..., r), for g (..., out) and P (r, out)."""
    return g @ P.T


def expand(z: Tensor, Q: Tensor) -> Tensor:
    """Input gradient z Q^T, shape (..., in), from the bottleneck z (..., r) and Q (in, r)."""
    return z @ Q.T


def dense_input_grad(g: Tensor, B: Tensor) -> Tensor:
    """Input gradient g B^T, shape (..., in), for g (..., out) and a full feedback matrix B (in, out)."""
    return g @ B.T


def weight_grad(x_rows: Tensor, g_rows: Tensor) -> Tensor:
    """Forward-weight gradient g^T x, shape (out, in), summed over the N rows."""
    return g_rows.T @ x_rows


# ----------------------------------------------------------------------------- subspace rules
def fixed_grads(P, Q, W, x_rows, g_rows, z_rows=None):
    """Fixed feedback: no gradient (returns ``(None, None)``)."""
    return None, None


def local_grads(P, Q, W, x_rows, g_rows, z_rows=None):
    """Local rule (module docstring). ``z_rows = g_rows @ P.T`` may be passed to reuse the backward's."""
    z_rows = compress(g_rows, P) if z_rows is None else z_rows
    return (x_rows @ Q).T @ g_rows, x_rows.T @ z_rows


def local_grads_from_weight_grad(P, Q, grad_w):
    """The local rule from the weight gradient g^T x: (Q^T grad_w^T, grad_w^T P^T), equal to
    :func:`local_grads` by associativity; costs 2 r in out instead of about rows r (2 in + out)."""
    return Q.T @ grad_w.T, grad_w.T @ P.T


def weight_grad_is_cheaper(n_rows: int, n_in: int, n_out: int) -> bool:
    """Whether :func:`local_grads_from_weight_grad` costs fewer FLOPs than the per-row form."""
    return 2 * n_in * n_out < n_rows * (2 * n_in + n_out)


def normative_grads(P, Q, W, x_rows, g_rows, z_rows=None):
    """Gradient of 1/2 ||W^T - QP||_F^2 (module docstring); independent of the data.

    Expanded as grad_Q = Q (P P^T) - (P W)^T and grad_P = (Q^T Q) P - (W Q)^T, which costs the same
    O(in out r) as forming D but never allocates an (in, out) matrix.
    """
    return (Q.T @ Q) @ P - (W @ Q).T, Q @ (P @ P.T) - (P @ W).T


def oja_grads(P, Q, W, x_rows, g_rows, z_rows=None, n_samples=None):
    """Oja's subspace rule for P on the error covariance C, the local rule for Q (module docstring).

    The loss is a mean over ``n_samples`` samples (default: one per row), so each row's error is
    delta = n_samples * g; C is the mean of delta delta^T over the rows (samples x positions, e.g.
    tokens): C = n_samples^2 / N g^T g, which is N g^T g for plain (batch, features) inputs. P C is
    computed as (g P^T)^T g, so the (out, out) covariance is never formed.
    """
    z_rows = compress(g_rows, P) if z_rows is None else z_rows
    n_rows = g_rows.shape[0]
    n_samples = n_rows if n_samples is None else n_samples
    pc = (n_samples ** 2 / n_rows) * (z_rows.T @ g_rows)  # (r, out)
    grad_p = -(pc - (pc @ P.T) @ P)
    return grad_p, x_rows.T @ z_rows


#: Subspace rule name -> gradient function; one line per rule.
SUBSPACE_GRADS: dict[str, SubspaceGradients] = {
    "fixed": fixed_grads,
    "normative": normative_grads,
    "local": local_grads,
    "oja": oja_grads,
}


def subspace_grads(subspace: str, P: Tensor, Q: Tensor, W_flat: Tensor, x_rows: Tensor,
                   g_rows: Tensor, z_rows: Tensor | None = None, n_samples: int | None = None
                   ) -> tuple[Tensor | None, Tensor | None]:
    """Gradients (negative updates) of the LDFA factors under a subspace rule.

    Parameters
    ----------
    subspace : str
        One of :data:`SUBSPACE_GRADS` (``fixed``, ``normative``, ``local``, ``oja``).
    P : Tensor, shape (r, out)
        Compressing factor (layer error -> bottleneck).
    Q : Tensor, shape (in, r)
        Expanding factor (bottleneck -> input).
    W_flat : Tensor, shape (out, in)
        Forward weight, flattened to a matrix (a convolution passes (C_out, C_in k k)); read only by
        ``normative``.
    x_rows : Tensor, shape (N, in)
        Presynaptic rows (a convolution passes its unfolded patches).
    g_rows : Tensor, shape (N, out)
        Output gradients dloss/dy of the same rows.
    z_rows : Tensor, shape (N, r), optional
        ``g_rows @ P.T`` if already computed.
    n_samples : int, optional
        Samples the loss averages over, when rows are samples x positions (tokens); read only by
        ``oja``, whose covariance is a mean over rows of the per-sample error. Default: N.

    Returns
    -------
    grad_P : Tensor, shape (r, out), or None for ``fixed``
    grad_Q : Tensor, shape (in, r), or None for ``fixed``
    """
    if subspace not in SUBSPACE_GRADS:
        raise ValueError(f"unknown subspace {subspace!r}; valid options: {', '.join(SUBSPACE_GRADS)}")
    if subspace == "oja":
        return oja_grads(P, Q, W_flat, x_rows, g_rows, z_rows, n_samples)
    return SUBSPACE_GRADS[subspace](P, Q, W_flat, x_rows, g_rows, z_rows)


# ----------------------------------------------------------------------------- initial draws
# Drawn on the CPU in float64 from a torch.Generator, then cast: the same seed gives the same
# feedback on every device and in every dtype.
def normal(shape: tuple[int, int], generator: torch.Generator | None = None) -> Tensor:
    """N(0, 1/pre) for a (post, pre) matrix, as ``normal`` in :mod:`bioplastic.circuit.init`; float64, CPU."""
    return torch.randn(shape, generator=generator, dtype=torch.float64) / shape[1] ** 0.5


def orthonormal_rows(r: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Random (r, n) matrix with orthonormal rows (QR of a Gaussian), float64, CPU."""
    q, _ = torch.linalg.qr(torch.randn((n, r), generator=generator, dtype=torch.float64))
    return q.T


def svd_factors(W: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """(P (r, out), Q (in, r)) with QP the best rank-r approximation of W^T (W of shape (out, in)).

    With W^T = U S V^T: Q = U_r S_r^{1/2}, P = S_r^{1/2} V_r^T (Eckart-Young), in W's dtype and device.
    """
    u, s, vh = torch.linalg.svd(W.T, full_matrices=False)
    root = s[:r].sqrt()
    return root[:, None] * vh[:r], u[:, :r] * root


# ----------------------------------------------------------------------------- autograd Functions
class DenseFeedbackFunction(torch.autograd.Function):
    """``F.linear`` forward; backward sends g B^T to x and, for a plastic B (kp), (grad_W)^T to B.

    ``apply(x (..., in), weight (out, in), bias (out,) or None, B (in, out))``. B gets a gradient only
    when it requires one, so the same Function serves fa (B a buffer) and kp (B a Parameter).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x, feedback)
        return F.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, feedback = ctx.saved_tensors
        need_x, need_w, need_b, need_fb = ctx.needs_input_grad
        # under autocast g has the forward's reduced dtype; the engine casts each grad back
        grad_x = dense_input_grad(g, feedback.to(g.dtype)) if need_x else None
        grad_w = weight_grad(rows(x).to(g.dtype), rows(g)) if need_w or need_fb else None
        grad_b = rows(g).sum(0) if need_b else None
        # a copy, not a view: the two .grad tensors must not share storage
        grad_fb = grad_w.T.contiguous() if need_fb else None
        return grad_x, grad_w if need_w else None, grad_b, grad_fb


class LowRankFeedbackFunction(torch.autograd.Function):
    """``F.linear`` forward; backward sends (g P^T) Q^T to x and the subspace rule's gradient to P, Q.

    ``apply(x (..., in), weight (out, in), bias (out,) or None, P (r, out), Q (in, r), subspace)``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, P, Q, subspace):
        ctx.save_for_backward(x, weight, P, Q)
        ctx.subspace = subspace
        return F.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, P, Q = ctx.saved_tensors
        need_x, need_w, need_b, need_p, need_q, _ = ctx.needs_input_grad
        # all .to() are no-ops unless autocast ran the forward in a reduced dtype (that of g): the
        # backward maps then run in it, the subspace rule in the factors' own dtype
        x_rows, g_rows = rows(x).to(g.dtype), rows(g)
        z_rows = compress(g_rows, P.to(g.dtype)) if need_x else None
        grad_x = expand(z_rows, Q.to(g.dtype)).reshape(x.shape) if need_x else None
        grad_w = weight_grad(x_rows, g_rows) if need_w else None
        grad_b = g_rows.sum(0) if need_b else None
        grad_p = grad_q = None
        if (need_p or need_q) and not need_x:
            # the input takes no gradient (data): this feedback delivers its error to no neuron,
            # as a circuit has no feedback into its input population, so it gets no learning
            # signal; zeros, not None, keep DistributedDataParallel's bookkeeping intact
            grad_p = torch.zeros_like(P) if need_p else None
            grad_q = torch.zeros_like(Q) if need_q else None
        elif need_p or need_q:
            dt = P.dtype
            if ctx.subspace == "local" and grad_w is not None and weight_grad_is_cheaper(
                    *x_rows.shape, g_rows.shape[1]):  # many rows (tokens, large batches)
                grad_p, grad_q = local_grads_from_weight_grad(P, Q, grad_w.to(dt))
            else:
                # (batch, tokens, in) inputs: the loss averages over the batch, not over tokens
                grad_p, grad_q = subspace_grads(ctx.subspace, P, Q, weight.to(dt), x_rows.to(dt),
                                                g_rows.to(dt), z_rows.to(dt),
                                                n_samples=x.shape[0] if x.dim() > 2 else None)
        return (grad_x, grad_w, grad_b, grad_p if need_p else None, grad_q if need_q else None,
                None)


class BroadcastErrorFunction(torch.autograd.Function):
    """Direct feedback alignment: identity on the output forward, the output error to every layer back.

    ``apply(yhat (N, d), B_1 (n_1, d), ..., B_k (n_k, d), h_1 (N, n_1), ..., h_k (N, n_k))`` returns
    ``yhat``; in backward, h_l receives g B_l^T (g = dloss/dyhat), so autograd then applies f'(a_l) and
    the weight gradients of layer l. The layers above h_l must read a detached copy of it, so that
    this is the only error that reaches h_l.
    """

    @staticmethod
    def forward(ctx, yhat, *feedback_and_hidden):
        ctx.save_for_backward(*feedback_and_hidden[:len(feedback_and_hidden) // 2])
        return yhat.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        feedback = ctx.saved_tensors
        k = len(feedback)
        need_h = ctx.needs_input_grad[1 + k:]
        hidden = [dense_input_grad(g, B.to(g.dtype)) if need else None
                  for B, need in zip(feedback, need_h)]
        return (g, *([None] * k), *hidden)
