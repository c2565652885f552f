r"""Feedback alignment (FA): a fixed random B_l of shape (n_{l-1}, n_l) replaces W_l^T.

.. math::

    \delta_{l-1} = f'(a_{l-1}) \odot (B_l \delta_l).

Lillicrap et al. (2016). B never changes; the forward weights come to align with it (LDFA builds on
FA: arXiv 2502.20580, section "Introduction").
"""

from __future__ import annotations

from .rule import Rule


class FeedbackAlignment(Rule):
    """Layer-to-layer fixed random feedback ``B{l}`` (n_{l-1}, n_l)."""

    name = "fa"
    summary = "feedback alignment: fixed random B"
    form = "dense"
