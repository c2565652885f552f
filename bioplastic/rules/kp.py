r"""Kolen-Pollack: feedback weights learn with the forward weights' update, transposed.

Errors propagate as in FA through B_l (n_{l-1}, n_l); B_l changes by the same local product that
changes W_l, read from the other side of the synapse, and both decay:

.. math::

    \Delta W_l = -\eta (\langle \delta_l h_{l-1}^\top \rangle + \lambda W_l), \qquad
    \Delta B_l = -\eta_b (\langle h_{l-1} \delta_l^\top \rangle + \lambda B_l).

With :math:`\eta_b = \eta` and :math:`\lambda > 0`, :math:`B_l - W_l^\top` shrinks by
:math:`(1 - \eta\lambda)` every step, so B_l converges to W_l^T (Kolen & Pollack 1994;
Akrout et al. 2019). The paper (section 2.2) uses the same argument for LDFA's Q.
"""

from __future__ import annotations

from .fa import FeedbackAlignment


class KolenPollack(FeedbackAlignment):
    """FA's propagation with plastic ``B{l}``: grad B_l = (grad W_l)^T."""

    name = "kp"

    def feedback_gradients(self, weights, h, delta, grads):
        return {f"B{l}": grads[f"W{l}"].T for l in range(2, len(delta))}
