r"""Pure tensor math of feedback layers: the backward maps, the subspace rules, the initial draws.

A feedback layer computes the ordinary affine map :math:`y = x W^\top + b` forward, but sends the
error back through a feedback matrix :math:`B` of shape (in, out) instead of :math:`W^\top`. With the
rows :math:`x` (N, in) and the output gradients :math:`g = \partial\ell/\partial y` (N, out), where
every leading dimension (batch, tokens, ...) is flattened into the N rows,

.. math::

    \frac{\partial\ell}{\partial x} \leftarrow g B^\top, \qquad
    \nabla_W = g^\top x, \qquad \nabla_b = \textstyle\sum_{\mathrm{rows}} g .

What B is, and how it learns, is the rule's (:mod:`bioplastic.rules`); there is one Function per
*form* of :class:`bioplastic.rules.Rule`, and the math comes from the rule object:

* ``transport`` (:class:`TransportFeedbackFunction`): nothing stored, B = ``rule.torch_transport(W)``
  built in the backward pass (bp, whose B = W^T, needs no Function: plain autograd);
* ``dense`` (:class:`DenseFeedbackFunction`): a stored B; a plastic B receives
  ``rule.torch_dense_gradient`` (kp: :math:`\nabla_B = (\nabla_W)^\top`);
* ``low_rank`` (:class:`LowRankFeedbackFunction`): B = QP applied as two thin products,
  :math:`z = g P^\top` (N, r), the bottleneck, then :math:`z Q^\top`, so QP is never formed; P and
  Q receive the *gradient* (negative update) of the subspace rule,
  ``subspace.torch_gradients`` (bioplastic/rules/subspace/*.py, one file per rule), so any
  optimiser steps them.

Direct feedback (the output error to every hidden layer) has its two forms in
:class:`BroadcastErrorFunction` (dense) and :class:`BroadcastLowRankFunction` (one bottleneck).

When the loss is a mean over the N rows, :math:`g = \delta / N` with :math:`\delta` the layer error,
and the rules' torch bodies are exactly their batch-mean float64 specifications with
:math:`\delta = N g` (tests/test_torch_rules.py holds every one to it).

Under ``torch.autocast`` the backward maps run in the forward's reduced dtype (that of g) and the
subspace rules in the factors' own dtype; autograd casts every gradient back to its tensor's dtype.

Every function here is stateless; the layers (:mod:`.linear`, :mod:`.conv`) and the circuit runner
(:mod:`bioplastic.backends.torch_runner`) only hold tensors and call them.
The autograd Functions take ``ctx`` in ``forward`` (no ``setup_context``): applying a Function
with a separate ``setup_context`` binds its arguments through ``inspect`` on every call, which
cost three times the dispatch of the layer's forward product on small layers. The price of that
choice: ``torch.func`` transforms (``grad``, ``vmap``) do not apply to these Functions.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from ..rules import get_subspace
from ..rules.subspace import local as _local

Tensor = torch.Tensor


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
# The math of every subspace rule lives in its unit (bioplastic/rules/subspace/*.py:
# ``torch_gradients``, ``torch_conv_gradients``); these are the names older code imports.
def weight_grad_is_cheaper(n_rows: int, n_in: int, n_out: int) -> bool:
    """Whether the local rule from the weight gradient costs fewer FLOPs than the per-row form
    (see :func:`bioplastic.rules.subspace.local.weight_grad_is_cheaper`)."""
    return _local.weight_grad_is_cheaper(n_rows, n_in, n_out)


def local_grads(P, Q, W, x_rows, g_rows, z_rows=None):
    """The local rule on rows, (xQ)^T g and x^T (g P^T); ``z_rows = g_rows @ P.T`` may be passed."""
    z_rows = compress(g_rows, P) if z_rows is None else z_rows
    return (x_rows @ Q).T @ g_rows, x_rows.T @ z_rows


def local_grads_from_weight_grad(P, Q, grad_w):
    """The local rule from the weight gradient g^T x: (Q^T grad_w^T, grad_w^T P^T), equal to
    :func:`local_grads` by associativity; costs 2 r in out instead of about rows r (2 in + out)."""
    return Q.T @ grad_w.T, grad_w.T @ P.T


def subspace_grads(subspace, P: Tensor, Q: Tensor, W_flat: Tensor | None, x_rows: Tensor,
                   g_rows: Tensor, z_rows: Tensor | None = None, n_samples: int | None = None
                   ) -> tuple[Tensor | None, Tensor | None]:
    """Gradients (negative updates) of the factors under a registered subspace rule.

    A thin wrapper of :meth:`bioplastic.rules.SubspaceRule.torch_gradients` for the rule named
    ``subspace`` (or given as the rule object); raises naming the registered rules.

    Parameters
    ----------
    P : Tensor, shape (r, out)
    Q : Tensor, shape (in, r)
    W_flat : Tensor, shape (out, in)
        Forward weight (read only by rules that declare ``reads_forward_weight``).
    x_rows, g_rows : Tensor, shapes (N, in), (N, out)
        Presynaptic rows and the output gradients dloss/dy of the same rows.
    z_rows : Tensor, shape (N, r), optional
        ``g_rows @ P.T`` if already computed.
    n_samples : int, optional
        Samples the loss averages over when rows are samples x positions (default N).
    """
    return get_subspace(subspace).torch_gradients(P, Q, W_flat, x_rows, g_rows, z_rows, n_samples)


def check_factor_grads(subspace, need_p: bool, grad_p, need_q: bool, grad_q) -> None:
    """Raise when a subspace rule gave no gradient for a factor it declares it learns.

    ``learns`` decides which factors require a gradient, so a None here is a rule that contradicts
    its own declaration; it must not leave ``P.grad`` empty in silence.
    """
    for factor, need, grad in (("P", need_p, grad_p), ("Q", need_q, grad_q)):
        if need and grad is None and factor in subspace.learns:
            raise RuntimeError(f"subspace rule {subspace.name!r} declares it learns {factor} "
                               f"(learns={subspace.learns}) but its torch gradients gave None for "
                               f"{factor}; return a gradient or drop {factor!r} from learns")


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
def _n_samples(x: Tensor) -> int | None:
    """Samples a loss averages over for an input x: its batch for (batch, tokens, in), else the rows."""
    return x.shape[0] if x.dim() > 2 else None


class DenseFeedbackFunction(torch.autograd.Function):
    """``F.linear`` forward; backward sends g B^T to x and, for a plastic B, the rule's gradient to B.

    ``apply(x (..., in), weight (out, in), bias (out,) or None, B (in, out), rule)``. B gets a
    gradient only when it requires one (:meth:`bioplastic.rules.Rule.torch_dense_gradient`; kp:
    (grad_W)^T), so the same Function serves fixed B (a buffer) and plastic B (a Parameter).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, feedback, rule):
        ctx.save_for_backward(x, weight, feedback)
        ctx.rule = rule
        return F.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, feedback = ctx.saved_tensors
        need_x, need_w, need_b, need_fb, _ = ctx.needs_input_grad
        # under autocast g has the forward's reduced dtype; the engine casts each grad back
        grad_x = dense_input_grad(g, feedback.to(g.dtype)) if need_x else None
        x_rows, g_rows = rows(x).to(g.dtype), rows(g)
        grad_w = weight_grad(x_rows, g_rows) if need_w or need_fb else None
        grad_b = g_rows.sum(0) if need_b else None
        grad_fb = None
        if need_fb:
            dt = feedback.dtype
            grad_fb = ctx.rule.torch_dense_gradient(feedback, weight.to(dt), grad_w, x_rows.to(dt),
                                                    g_rows.to(dt), _n_samples(x))
        return grad_x, grad_w if need_w else None, grad_b, grad_fb, None


class TransportFeedbackFunction(torch.autograd.Function):
    """``F.linear`` forward; backward sends g B^T to x with B = ``rule.torch_transport(W)`` (in, out).

    ``apply(x (..., in), weight (out, in), bias or None, rule, source (out', in) or None, cols)``:
    B is built from ``source`` (default: weight) in the backward pass, from the weights the
    forward used; ``cols`` (a slice) selects the columns of B that belong to ``weight``'s rows
    when ``weight`` is a row slice of ``source`` (a fused projection applied in parts).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, rule, source, cols):
        ctx.save_for_backward(x, weight if source is None else source)
        ctx.rule, ctx.cols = rule, cols
        return F.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, source = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = None
        if need_x:
            feedback = ctx.rule.torch_transport(source)
            if ctx.cols is not None:
                feedback = feedback[:, ctx.cols]
            grad_x = dense_input_grad(g, feedback.to(g.dtype))
        g_rows = rows(g)
        grad_w = weight_grad(rows(x).to(g.dtype), g_rows) if need_w else None
        grad_b = g_rows.sum(0) if need_b else None
        return grad_x, grad_w, grad_b, None, None, None


class LowRankFeedbackFunction(torch.autograd.Function):
    """``F.linear`` forward; backward sends (g P^T) Q^T to x and the subspace rule's gradient to P, Q.

    ``apply(x (..., in), weight (out, in), bias (out,) or None, P (r, out), Q (in, r), subspace)``
    with ``subspace`` a :class:`bioplastic.rules.SubspaceRule` (its ``torch_gradients``).
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
            dt, subspace = P.dtype, ctx.subspace
            # (batch, tokens, in) inputs: the loss averages over the batch, not over tokens
            grad_p, grad_q = subspace.torch_gradients(
                P, Q, weight.to(dt), x_rows.to(dt), g_rows.to(dt), z_rows.to(dt),
                n_samples=_n_samples(x), grad_w=None if grad_w is None else grad_w.to(dt))
            check_factor_grads(subspace, need_p, grad_p, need_q, grad_q)
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


class BroadcastLowRankFunction(torch.autograd.Function):
    """Low-rank direct feedback: the output error through one bottleneck of r neurons to every layer.

    ``apply(yhat (N, d), P (r, d), subspace, Q_1 (n_1, r), ..., Q_k (n_k, r), h_1 (N, n_1), ...,
    h_k (N, n_k))`` returns ``yhat``; in backward, z = g P^T (N, r) and h_l receives z Q_l^T.
    P and the Q_l learn by ``subspace`` (a :class:`bioplastic.rules.SubspaceRule`) as
    :meth:`bioplastic.rules.Rule.feedback_gradients` specifies: the hidden layers act as one
    stacked layer, Q = [Q_1; ...; Q_k], rows [h_1, ..., h_k], so P sees v = sum_l Q_l^T h_l and
    each Q_l gets its rows of the stacked gradient. As for :class:`BroadcastErrorFunction`, the
    layers above h_l must read a detached copy of it.
    """

    @staticmethod
    def forward(ctx, yhat, P, subspace, *factors_and_hidden):
        ctx.subspace = subspace
        ctx.save_for_backward(P, *factors_and_hidden)
        return yhat.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        P, *rest = ctx.saved_tensors
        k = len(rest) // 2
        factors, hidden = rest[:k], rest[k:]
        need = ctx.needs_input_grad
        need_p, need_q, need_h = need[1], need[3:3 + k], need[3 + k:]
        z = compress(g, P.to(g.dtype))
        grads_h = [expand(z, Q.to(g.dtype)) if nh else None for Q, nh in zip(factors, need_h)]
        grad_p, grads_q = None, [None] * k
        if need_p or any(need_q):
            dt, subspace = P.dtype, ctx.subspace
            stacked = torch.cat(factors, dim=0)
            x_rows = torch.cat([h.to(dt) for h in hidden], dim=1)
            grad_p, grad_q = subspace.torch_gradients(P, stacked, None, x_rows, g.to(dt), z.to(dt))
            check_factor_grads(subspace, need_p, grad_p, any(need_q), grad_q)
            if grad_q is not None:
                grads_q = list(grad_q.split([Q.shape[0] for Q in factors], dim=0))
            grads_q = [gq if nq else None for gq, nq in zip(grads_q, need_q)]
        return (g, grad_p if need_p else None, None, *grads_q, *grads_h)
