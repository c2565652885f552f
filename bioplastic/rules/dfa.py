r"""Direct feedback: the output error reaches every hidden layer l through its own pathway.

Full (Nokland 2016): a fixed random B_l of shape (n_l, d),

.. math::

    \delta_l = f'(a_l) \odot (B_l e), \qquad l = 1..L-1.

Low rank (with a rank r): one broadcast population of r neurons reads the output error through
P (r, d), z = P e, and reaches every hidden layer l through its own Q_l (n_l, r):

.. math::

    \delta_l = f'(a_l) \odot (Q_l P e).

P and Q_l are fixed or learn by a subspace rule that does not read a forward weight (there is no
W_l^T for a direct pathway to approximate); the hidden layers then act as one stacked layer: P
sees v = sum_l Q_l^T h_l, each Q_l its own rows. arXiv 2502.20580 compares this low-rank direct
feedback with layer-wise LDFA at r = 1..10 (section "Low-dimensional direct feedback"). P starts
with random orthonormal rows and each Q_l with fa's gain.
"""

from __future__ import annotations

from .rule import Rule


class DirectFeedback(Rule):
    """Direct feedback alignment, full (``B{l}``) or, with a rank, low rank (``P{L}``, ``Q{l}``).

    Parameters
    ----------
    subspace : str, optional
        Subspace rule of the low-rank form.
    low_rank : bool
        Use one shared r-neuron bottleneck (the circuit gives r).
    """

    name = "dfa"
    summary = "direct feedback alignment: the output error to every hidden layer (rank r optional)"
    topology = "direct"
    rank = "optional"

    def __init__(self, subspace: str | None = None, low_rank: bool = False):
        self.form = "low_rank" if low_rank else "dense"
        super().__init__(subspace if low_rank else None)
