r"""``q_only``: P stays at its random draw, Q learns by the local rule (with the circuit's decay).

.. math::

    \Delta P = 0, \qquad \Delta Q = -\eta_b (\langle h\, (P\delta)^\top \rangle + \lambda Q).

Arxiv 2502.20580's ablation "update Q only" against "update QP": with P fixed the pathway can only
align Q to the fixed error directions P picks, so it measures how much learning the subspace
itself (P) contributes. P starts with random orthonormal rows, Q with fa's gain, as for ``fixed``.
"""

from __future__ import annotations

from ._base import SubspaceRule
from .local import Local, conv_contractions


class QOnly(SubspaceRule):
    name = "q_only"
    summary = "P fixed (random), Q learns by the local rule"
    learns = ("Q",)
    init = ("orthonormal", "expand")
    reads = {"Q": Local.reads["Q"]}
    brian2 = {"Q": "z_pre * rate_post", "compartments": ()}

    def gradients(self, P, Q, W, h, delta):
        return None, h.T @ (delta @ P.T) / h.shape[0]

    def feedback_macs(self, rows, fan_in, out, rank, groups, conv):
        # Q's contraction only: with dW for a convolution, x^T z (z from the backward) for a Linear
        return rank * out * fan_in // groups if conv else rows * rank * fan_in

    def torch_gradients(self, P, Q, W, x_rows, g_rows, z_rows=None, n_samples=None, grad_w=None):
        z_rows = g_rows @ P.T if z_rows is None else z_rows
        return None, x_rows.T @ z_rows

    def torch_conv_gradients(self, P, Q, W, x, g, geometry, z=None, grad_w=None):
        return conv_contractions(P, Q, W, x, g, geometry, grad_w, want_p=False)
