r"""Low-dimensional feedback alignment (LDFA): rank-r feedback B_l = Q_l P_l.

Hanut & Kadmon, arXiv 2502.20580 (sections "Low-dimensional feedback" to "Learning the feedback with
local rules"). The error of layer l is compressed by P_l (r x n_l) into r bottleneck neurons,
z_l = P_l delta_l, and expanded by Q_l (n_{l-1} x r) into layer l-1:

.. math::

    \delta_{l-1} = f'(a_{l-1}) \odot (Q_l P_l \delta_l).

Only r numbers per sample cross the bottleneck. Q and P change by a *subspace rule*, one file each
in :mod:`bioplastic.rules.subspace` (``fixed``, ``normative``, ``local``, ``oja``, ``q_only``); the
caller adds decay (:math:`-\eta_b \lambda M`) for learnt factors.
"""

from __future__ import annotations

from .rule import Rule
from .subspace.local import Local
from .subspace.normative import Normative
from .subspace.oja import Oja


class LowDimensionalFeedback(Rule):
    """Rank-r feedback ``B{l} = Q{l} @ P{l}`` with a subspace rule for P and Q.

    Parameters
    ----------
    subspace : str
        A registered subspace rule (``fixed``, ``normative``, ``local``, ``oja``, ``q_only``, ...).
    """

    name = "ldfa"
    summary = "low-dimensional feedback: B = QP of rank r, P and Q by a subspace rule"
    form = "low_rank"
    rank = "required"


# The specification's functions under their historical names: (P, Q, W, h_{l-1}, delta_l) -> grads.
def local_gradients(P, Q, W, h_prev, delta):
    """See :class:`bioplastic.rules.subspace.local.Local`."""
    return Local().gradients(P, Q, W, h_prev, delta)


def normative_gradients(P, Q, W, h_prev, delta):
    """See :class:`bioplastic.rules.subspace.normative.Normative`."""
    return Normative().gradients(P, Q, W, h_prev, delta)


def oja_gradients(P, Q, W, h_prev, delta):
    """See :class:`bioplastic.rules.subspace.oja.Oja`."""
    return Oja().gradients(P, Q, W, h_prev, delta)
