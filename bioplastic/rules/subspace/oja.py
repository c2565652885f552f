r"""``oja``: P learns the error's principal subspace by Oja's subspace rule; Q as in ``local``.

.. math::

    \Delta P = \eta_b\, P C (I - P^\top P), \qquad C = \langle \delta \delta^\top \rangle,

the (uncentred) error covariance; P's rows converge to an orthonormal basis of C's top-r principal
subspace (Oja 1989). Arxiv 2502.20580, section "Learning the error subspace". A P synapse reads the
bottleneck rate z = P delta, its presynaptic error and that error's reconstruction P^T z, which a
circuit carries through reciprocal synapses mirroring P: reading P's weights
(``reciprocal="read"``) or holding their own R (n, r) (``reciprocal="learned"``), moved by P's
update transposed, so that the reconstruction is R z and R - P^T shrinks with decay.
"""

from __future__ import annotations

from ._base import SubspaceRule, grouped
from .local import Local, conv_contractions


class Oja(SubspaceRule):
    name = "oja"
    summary = "Oja's subspace rule for P on the error covariance; Q as local"
    init = ("orthonormal", "expand")
    reads = {"Q": Local.reads["Q"],
             "P": "bottleneck rate z, presynaptic error delta and its reconstruction P^T z"}
    symmetric = ("reciprocal synapses read P's weights to carry the reconstruction P^T z to the error "
                 "neurons",)
    mirrors = {"rec": "P"}
    wiring_notes = ("a P synapse reads the reconstruction P^T z held by its presynaptic error neuron "
                    "(a signal of the presynaptic cell, not of the synapse)",)
    brian2 = {"P": "-z_post * ({err}_pre - rec_pre)", "Q": "z_pre * rate_post", "compartments": ("rec",)}

    def feedback_macs(self, rows, fan_in, out, rank, groups, conv):
        # P C from z and g, the r x r products, and Q's contraction (with dW for a convolution)
        out_g = out // groups
        grad_q = rank * out * fan_in // groups if conv else rows * rank * fan_in
        return rows * rank * out_g + 2 * rank * rank * out_g + grad_q

    def gradients(self, P, Q, W, h, delta):
        n = delta.shape[0]
        pc = P @ (delta.T @ delta / n)
        return -(pc - pc @ P.T @ P), h.T @ (delta @ P.T) / n

    def mirrored_gradients(self, P, Q, W, h, delta, mirror):
        n = delta.shape[0]
        z = delta @ P.T  # (batch, r)
        reconstruction = z @ mirror["rec"].T  # (batch, n): R z at the error neurons
        return -z.T @ (delta - reconstruction) / n, h.T @ z / n

    def torch_gradients(self, P, Q, W, x_rows, g_rows, z_rows=None, n_samples=None, grad_w=None):
        # rows may be samples x positions (tokens): each row's error is n_samples g, and C is the mean
        # of delta delta^T over rows; P C = (g P^T)^T g scaled, so no (n, n) covariance is formed
        z_rows = g_rows @ P.T if z_rows is None else z_rows
        n_rows = g_rows.shape[0]
        n_samples = n_rows if n_samples is None else n_samples
        pc = (n_samples ** 2 / n_rows) * (z_rows.T @ g_rows)
        return -(pc - (pc @ P.T) @ P), x_rows.T @ z_rows

    def torch_conv_gradients(self, P, Q, W, x, g, geometry, z=None, grad_w=None):
        # C pools batch and positions: C = 1/(N H W) sum delta delta^T with delta = N g, so
        # P C = N/(H W) sum_positions z g^T (z = P g at every position); Q as in local
        import torch

        p, gg, zz = grouped_error_maps(P, g, geometry.groups, z)
        n, _, _, hw = gg.shape
        pc = (n / hw) * torch.einsum("ngrl,ngcl->grc", zz, gg)
        grad_p = (-(pc - pc @ p.transpose(1, 2) @ p)).reshape(P.shape)
        return grad_p, conv_contractions(P, Q, W, x, g, geometry, grad_w, want_p=False)[1]


def grouped_error_maps(P, g, groups: int, z=None):
    """Per-group views of a convolution's error map for Oja-type rules: P as (G, r/G, C_out/G),
    g (N, C_out, H, W) as (N, G, C_out/G, H W) and the bottleneck z = P g as (N, G, r/G, H W)."""
    n, c_out, h, w = g.shape
    p = grouped(P, groups)
    gg = g.reshape(n, groups, c_out // groups, h * w)
    zz = p @ gg if z is None else z.reshape(n, groups, -1, h * w)
    return p, gg, zz
