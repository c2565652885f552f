r"""Kolen-Pollack: feedback weights learn with the forward weights' update, transposed.

Errors propagate as in FA through B_l (n_{l-1}, n_l); B_l changes by the same local product that
changes W_l, read from the other side of the synapse, and both decay:

.. math::

    \Delta W_l = -\eta (\langle \delta_l h_{l-1}^\top \rangle + \lambda W_l), \qquad
    \Delta B_l = -\eta_b (\langle h_{l-1} \delta_l^\top \rangle + \lambda B_l).

With :math:`\eta_b = \eta` and :math:`\lambda > 0`, :math:`B_l - W_l^\top` shrinks by
:math:`(1 - \eta\lambda)` every step, so B_l converges to W_l^T (Kolen & Pollack 1994;
Akrout et al. 2019). The same argument makes LDFA's learned feedback converge where its update
mirrors the forward one (our reading; arXiv 2502.20580 does not state it for Q).
"""

from __future__ import annotations

from .rule import Rule


class KolenPollack(Rule):
    """FA's propagation with plastic ``B{l}``: grad B_l = (grad W_l)^T."""

    name = "kp"
    summary = "Kolen-Pollack: B learns with W's update transposed, plus decay"
    form = "dense"
    plastic = True
    dense_reads = "presynaptic error delta, postsynaptic rate h"
    brian2_eligibility = "{err}_pre * rate_post"

    def dense_gradient(self, B, W, grad_w, h_prev, delta):
        return grad_w.T

    def torch_dense_gradient(self, B, W, grad_w, x_rows, g_rows, n_samples=None):
        return grad_w.T.contiguous()  # a copy: B.grad and W.grad must not share storage

    def torch_conv_dense_gradient(self, B, W, grad_w, x, g, geometry):
        return grad_w.clone()  # B is stored in W's kernel layout: grad B_f = (grad W_f)^T per group
