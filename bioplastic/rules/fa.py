r"""Fixed random feedback: feedback alignment (FA) and direct feedback alignment (DFA).

FA (Lillicrap et al. 2016) replaces W_l^T by a fixed random B_l of shape (n_{l-1}, n_l):

.. math::

    \delta_{l-1} = f'(a_{l-1}) \odot (B_l \delta_l).

DFA (Nokland 2016) sends the output error straight to every hidden layer through a fixed B_l of
shape (n_l, d):

.. math::

    \delta_l = f'(a_l) \odot (B_l e), \qquad l = 1..L-1.

Neither feedback matrix changes; the forward weights come to align with it (paper section 1: LDFA
"builds on FA").
"""

from __future__ import annotations

from ._base import AbstractRule, layer_to_layer, propagate


class FeedbackAlignment(AbstractRule):
    """Layer-to-layer fixed random feedback ``B{l}`` (n_{l-1}, n_l)."""

    name = "fa"

    def layer_errors(self, weights, a, e, fprime):
        return layer_to_layer(a, e, fprime, lambda l, delta: delta @ weights[f"B{l}"].T)


class DirectFeedbackAlignment(AbstractRule):
    """Output error broadcast to each hidden layer l by a fixed ``B{l}`` (n_l, d)."""

    name = "dfa"

    def layer_errors(self, weights, a, e, fprime):
        L = len(a) - 1
        delta = [None] * (L + 1)
        delta[L] = e
        for l in range(1, L):
            delta[l] = propagate(e, weights[f"B{l}"], a[l], fprime)
        return delta
