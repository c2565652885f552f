r"""``local``: each feedback synapse learns from what it sees.

.. math::

    \Delta Q = -\eta_b \langle h\, (P\delta)^\top \rangle, \qquad
    \Delta P = -\eta_b \langle (Q^\top h)\, \delta^\top \rangle .

Arxiv 2502.20580, section "Learning the feedback with local rules". A Q synapse reads its
presynaptic bottleneck rate z = P delta and its postsynaptic rate h; a P synapse reads its
presynaptic error and the bottleneck's forward projection v = Q^T h, which a circuit carries
through reciprocal synapses that mirror Q: either reading Q's weights (``reciprocal="read"``, a
symmetric wiring of the feedback loop, not of the forward weights) or holding their own weights V
(``reciprocal="learned"``), moved by Q's update transposed, :math:`\Delta V = -\eta_b (\langle
(P\delta) h^\top \rangle + \lambda V)`, so that V - Q^T shrinks by (1 - eta_b lambda) per step
and P reads v = V h. Since <h (P delta)^T> = (grad_W)^T P^T, Q^T follows P W with weight decay, the
Kolen-Pollack argument: QP tends to W^T P^T P, backprop's error projected on P's rows.
"""

from __future__ import annotations

from ._base import SubspaceRule, conv_weight_grad, grouped


def weight_grad_is_cheaper(n_rows: int, n_in: int, n_out: int) -> bool:
    """Whether the gradients from grad_W (2 r in out FLOPs) beat the per-row form (N r (2 in + out))."""
    return 2 * n_in * n_out < n_rows * (2 * n_in + n_out)


class Local(SubspaceRule):
    name = "local"
    summary = "dQ = -<h (P delta)^T>, dP = -<(Q^T h) delta^T> (synapse-local)"
    init = ("svd", "svd")
    reads = {"Q": "presynaptic bottleneck rate z = P delta, postsynaptic rate h",
             "P": "presynaptic error delta, the bottleneck's forward compartment v = Q^T h"}
    symmetric = ("reciprocal synapses read Q's weights to carry v = Q^T h to the bottleneck",)
    mirrors = {"v": "Q"}
    brian2 = {"P": "{err}_pre * v_post", "Q": "z_pre * rate_post", "compartments": ("v",)}

    def mirrored_gradients(self, P, Q, W, h, delta, mirror):
        n = h.shape[0]
        v = h @ mirror["v"].T  # (batch, r): the bottleneck's forward compartment, V h
        return v.T @ delta / n, h.T @ (delta @ P.T) / n

    def feedback_macs(self, rows, fan_in, out, rank, groups, conv):
        # two contractions with the weight gradient (conv always; Linear when cheaper), else per row
        if conv or weight_grad_is_cheaper(rows, fan_in, out):
            return 2 * rank * out * fan_in // groups
        return 2 * rows * rank * fan_in + rows * rank * out

    def gradients(self, P, Q, W, h, delta):
        n = h.shape[0]
        return (h @ Q).T @ delta / n, h.T @ (delta @ P.T) / n

    def torch_gradients(self, P, Q, W, x_rows, g_rows, z_rows=None, n_samples=None, grad_w=None):
        if grad_w is not None and weight_grad_is_cheaper(*x_rows.shape, g_rows.shape[1]):
            # by associativity, from the weight gradient g^T x (many rows: tokens, large batches)
            grad_w = grad_w.to(P.dtype)
            return Q.T @ grad_w.T, grad_w.T @ P.T
        z_rows = g_rows @ P.T if z_rows is None else z_rows
        return (x_rows @ Q).T @ g_rows, x_rows.T @ z_rows

    def torch_conv_gradients(self, P, Q, W, x, g, geometry, z=None, grad_w=None):
        # The surrogate's gradients, sum u g^T (u = Q-conv of x) and conv2d_weight(x, z), are sums
        # over positions of pre/post products; both equal contractions of the kernel gradient
        # dW = conv2d_weight(x, g), per group Q_f dW_f^T and P_f dW_f, which cost r C_out C_in k k
        # per step instead of that much per position (the local rule of arXiv 2502.20580, "Learning the feedback with local rules").
        return conv_contractions(P, Q, W, x, g, geometry, grad_w, want_p=True)


def conv_contractions(P, Q, W, x, g, geometry, grad_w, want_p: bool):
    """The local rule on a convolution: (Q_f dW_f^T or None, P_f dW_f) per group, shaped like P, Q."""
    dw = conv_weight_grad(x, g, W, geometry) if grad_w is None else grad_w
    groups = geometry.groups
    p, q, d = grouped(P, groups), grouped(Q, groups), grouped(dw.to(P.dtype), groups)
    return ((q @ d.transpose(1, 2)).reshape(P.shape) if want_p else None,
            (p @ d).reshape(Q.shape))
