r"""Backpropagation: the feedback into layer l-1 is the transpose of the forward weights.

.. math::

    \delta_{l-1} = f'(a_{l-1}) \odot (W_l^\top \delta_l)

Rumelhart, Hinton & Williams (1986). Needs *weight transport*: the feedback synapses must copy
every forward synapse, which is why :meth:`bioplastic.Circuit.constraints` flags it.
"""

from __future__ import annotations

from .rule import Rule


class Backprop(Rule):
    """Exact gradient: B_l = W_l^T (the paper's baseline)."""

    name = "bp"
    summary = "backpropagation: B = W^T (weight transport)"
    form = "transport"
    exact_gradient = True
    brian2_transport = "w"

    def transport(self, W):
        return W.T

    def torch_transport(self, W):
        return W.T
