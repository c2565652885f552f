r"""Low-dimensional feedback alignment (LDFA): rank-r feedback B_l = Q_l P_l.

Hanut & Kadmon, arXiv 2502.20580 (research/paper.md sections 2.1-2.4). The error of layer l is
compressed by P_l (r x n_l) into r bottleneck neurons, z_l = P_l delta_l, and expanded by
Q_l (n_{l-1} x r) into layer l-1:

.. math::

    \delta_{l-1} = f'(a_{l-1}) \odot (Q_l P_l \delta_l).

Only r numbers per sample cross the bottleneck. Q and P change by one of four *subspace rules*
(batch means :math:`\langle\cdot\rangle`, written as updates; the gradient convention used by
``P.grad`` / ``Q.grad`` is the negative):

``fixed``
    :math:`\Delta P = \Delta Q = 0` (task-agnostic feedback; section 3.3's spurious fixed point).
``normative`` (section 2.3)
    descend :math:`J = \tfrac12\lVert W_l^\top - Q P\rVert_F^2`:
    :math:`\Delta Q = \eta_b (W_l^\top - QP) P^\top`, :math:`\Delta P = \eta_b Q^\top (W_l^\top - QP)`.
    Not local: it reads W_l. Fixed point: QP = best rank-r approximation of W_l^T.
``local`` (section 2.4)
    :math:`\Delta Q = -\eta_b \langle h_{l-1} (P\delta_l)^\top \rangle`,
    :math:`\Delta P = -\eta_b \langle (Q^\top h_{l-1}) \delta_l^\top \rangle`: each synapse reads its
    presynaptic rate (h, or the forward projection u = Q^T h) and the error it carries (P delta, delta).
``oja`` (section 2.2)
    :math:`\Delta P = \eta_b\, P C (I - P^\top P)` with :math:`C = \langle \delta_l \delta_l^\top\rangle`
    the (uncentred) error covariance: Oja's subspace rule, whose rows converge to an orthonormal basis
    of C's top-r principal subspace. Q learns as in ``local``.

Decay (:math:`-\eta_b \lambda M`) is added by the caller for learnt factors.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._base import AbstractRule, Array, layer_to_layer

SubspaceRule = Callable[[Array, Array, Array, Array, Array], tuple[Array, Array]]


def fixed_gradients(P, Q, W, h_prev, delta):
    """No change (see module docstring)."""
    return np.zeros_like(P), np.zeros_like(Q)


def normative_gradients(P, Q, W, h_prev, delta):
    """grad of 1/2 ||W^T - QP||^2: (grad_P (r, n_l), grad_Q (n_{l-1}, r))."""
    mismatch = W.T - Q @ P
    return -Q.T @ mismatch, -mismatch @ P.T


def local_gradients(P, Q, W, h_prev, delta):
    """Batch means of (Q^T h) delta^T and h (P delta)^T.

    Parameters
    ----------
    P : ndarray, shape (r, n_l)
    Q : ndarray, shape (n_{l-1}, r)
    W : ndarray, shape (n_l, n_{l-1})
        Unused by this rule (it is local); kept for a common signature.
    h_prev : ndarray, shape (batch, n_{l-1})
        Presynaptic rates of layer l-1.
    delta : ndarray, shape (batch, n_l)
        Error of layer l.
    """
    n = h_prev.shape[0]
    grad_p = (h_prev @ Q).T @ delta / n
    grad_q = h_prev.T @ (delta @ P.T) / n
    return grad_p, grad_q


def oja_gradients(P, Q, W, h_prev, delta):
    """-P C (I - P^T P) for P, the local rule for Q (see module docstring)."""
    n = delta.shape[0]
    cov = delta.T @ delta / n
    pc = P @ cov
    grad_p = -(pc - pc @ P.T @ P)
    _, grad_q = local_gradients(P, Q, W, h_prev, delta)
    return grad_p, grad_q


#: Subspace rule name -> gradient function (P, Q, W, h_{l-1}, delta_l) -> (grad_P, grad_Q).
SUBSPACE_RULES: dict[str, SubspaceRule] = {
    "fixed": fixed_gradients,
    "normative": normative_gradients,
    "local": local_gradients,
    "oja": oja_gradients,
}


def subspace_rule(name: str) -> SubspaceRule:
    """Look up a subspace rule; raises naming the valid options."""
    if name not in SUBSPACE_RULES:
        raise ValueError(f"unknown subspace {name!r}; valid options: {', '.join(SUBSPACE_RULES)}")
    return SUBSPACE_RULES[name]


class LowDimensionalFeedback(AbstractRule):
    """Rank-r feedback ``B{l} = Q{l} @ P{l}`` with a subspace rule for P and Q.

    Parameters
    ----------
    subspace : str
        ``fixed``, ``normative``, ``local`` or ``oja``.
    """

    name = "ldfa"

    def __init__(self, subspace: str = "local"):
        self.subspace = subspace
        self._gradients = subspace_rule(subspace)

    def layer_errors(self, weights, a, e, fprime):
        def through_bottleneck(l, delta):
            z = delta @ weights[f"P{l}"].T  # (batch, r): the only signal crossing the bottleneck
            return z @ weights[f"Q{l}"].T

        return layer_to_layer(a, e, fprime, through_bottleneck)

    def feedback_gradients(self, weights, h, delta, grads):
        if self.subspace == "fixed":
            return {}
        out = {}
        for l in range(2, len(delta)):
            gp, gq = self._gradients(weights[f"P{l}"], weights[f"Q{l}"], weights[f"W{l}"],
                                     h[l - 1], delta[l])
            out[f"P{l}"], out[f"Q{l}"] = gp, gq
        return out
