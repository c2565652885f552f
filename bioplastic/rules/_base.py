r"""What every rule shares: the forward pass, the loss, the forward-weight update, and the rule interface.

For an MLP with :math:`h_0 = x`,

.. math::

    a_l = W_l h_{l-1} + b_l, \qquad h_l = f(a_l) \ (l < L), \qquad \hat y = a_L,

    \ell = \tfrac12 \lVert \hat y - y \rVert^2, \qquad e = \delta_L = \hat y - y,

and once every layer error :math:`\delta_l` is known (that is what a rule decides),

.. math::

    \Delta W_l = -\eta\,\langle \delta_l h_{l-1}^\top \rangle, \qquad
    \Delta b_l = -\eta\,\langle \delta_l \rangle

with :math:`\langle\cdot\rangle` the batch mean. Arrays are float64, batch-first: ``x`` is
``(batch, n_0)``, ``a[l]`` and ``delta[l]`` are ``(batch, n_l)``; matrices are (post, pre).

The rule interface itself is :class:`bioplastic.rules.rule.Rule`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..circuit.keys import key, kind_of
from ..neurons import activation

Array = np.ndarray

#: How the error reaches hidden layers.
TOPOLOGIES = ("layer", "direct")
#: What one feedback pathway stores.
FORMS = ("transport", "dense", "low_rank")


def forward(weights: Mapping[str, Array], x: Array, n_layers: int, act: str
            ) -> tuple[list[Array], list[Array]]:
    """Forward pass.

    Parameters
    ----------
    weights : mapping
        ``W{l}`` (n_l, n_{l-1}) and optionally ``b{l}`` (n_l,), l = 1..L.
    x : ndarray, shape (batch, n_0)
    n_layers : int
        L.
    act : str
        Hidden nonlinearity (a key of :data:`bioplastic.neurons.ACTIVATIONS`).

    Returns
    -------
    a, h : lists of ndarray
        ``a[l]`` (batch, n_l) pre-activations for l = 1..L (``a[0]`` is None); ``h[l]`` rates with
        ``h[0] = x`` and ``h[L] = a[L]`` (linear readout).
    """
    f = activation(act).f
    a: list[Array | None] = [None]
    h = [x]
    for l in range(1, n_layers + 1):
        pre = h[-1] @ weights[key("W", l)].T
        if key("b", l) in weights:
            pre = pre + weights[key("b", l)]
        a.append(pre)
        h.append(pre if l == n_layers else f(pre))
    return a, h


def loss(yhat: Array, y: Array) -> float:
    """Batch mean of 1/2 ||yhat - y||^2."""
    return 0.5 * float(np.mean(np.sum((yhat - y) ** 2, axis=1)))


def forward_gradients(h: list[Array], delta: list[Array | None], with_bias: Mapping[str, Array]
                      ) -> dict[str, Array]:
    """Batch-mean gradients ``W{l}: <delta_l h_{l-1}^T>`` and ``b{l}: <delta_l>`` (module docstring)."""
    n = h[0].shape[0]
    grads = {}
    for l in range(1, len(delta)):
        grads[key("W", l)] = delta[l].T @ h[l - 1] / n
        if key("b", l) in with_bias:
            grads[key("b", l)] = delta[l].mean(axis=0)
    return grads


def propagate(delta_above: Array, feedback: Array, a_below: Array, fprime) -> Array:
    """delta_{l-1} = f'(a_{l-1}) * (B_l delta_l), row-batched: ``f'(a) * (delta @ B^T)``."""
    return fprime(a_below) * (delta_above @ feedback.T)


def layer_to_layer(a: list[Array], e: Array, fprime, feedback: Callable[[int, Array], Array]
                   ) -> list[Array | None]:
    """Errors sent down layer by layer: delta_L = e, delta_{l-1} = f'(a_{l-1}) * feedback(l, delta_l).

    ``feedback(l, delta_l)`` returns the (batch, n_{l-1}) signal the feedback pathway of layer l
    delivers (W_l^T delta_l for bp, B_l delta_l for fa, Q_l P_l delta_l for ldfa).
    """
    L = len(a) - 1
    delta: list[Array | None] = [None] * (L + 1)
    delta[L] = e
    for l in range(L, 1, -1):
        delta[l - 1] = fprime(a[l - 1]) * feedback(l, delta[l])
    return delta


def n_layers(weights: Mapping[str, Array]) -> int:
    """Number of weight layers L of a weight dict (its ``W{l}`` keys)."""
    return sum(1 for name in weights if kind_of(name) == "W")


def as_float64(t) -> Array:
    """A float64 numpy copy of a numpy array or a torch tensor (no torch import needed)."""
    if hasattr(t, "detach"):
        return t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)
