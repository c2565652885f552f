r"""Backpropagation: the feedback into layer l-1 is the transpose of the forward weights.

.. math::

    \delta_{l-1} = f'(a_{l-1}) \odot (W_l^\top \delta_l)

Rumelhart, Hinton & Williams (1986). Needs *weight transport*: the feedback synapses must copy
every forward synapse, which is why :meth:`bioplastic.Circuit.constraints` flags it.
"""

from __future__ import annotations

from ._base import AbstractRule, layer_to_layer


class Backprop(AbstractRule):
    """Exact gradient (paper's baseline, DESIGN.md "Rule")."""

    name = "bp"

    def layer_errors(self, weights, a, e, fprime):
        return layer_to_layer(a, e, fprime, lambda l, delta: delta @ weights[f"W{l}"])
