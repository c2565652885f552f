r"""The shared part of every rule: forward pass, loss, forward-weight gradients, the rule interface.

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
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping

import numpy as np

Array = np.ndarray


def _sigmoid(a: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


#: name -> (f, f'), each acting elementwise on pre-activations.
ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(a.dtype)),
    "sigmoid": (_sigmoid, lambda a: _sigmoid(a) * (1.0 - _sigmoid(a))),
    "linear": (lambda a: a, np.ones_like),
}


def activation(name: str) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
    """(f, f') of a named nonlinearity; raises naming the valid options."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid options: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


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
        Hidden nonlinearity.

    Returns
    -------
    a, h : lists of ndarray
        ``a[l]`` (batch, n_l) pre-activations for l = 1..L (``a[0]`` is None); ``h[l]`` rates with
        ``h[0] = x`` and ``h[L] = a[L]`` (linear readout).
    """
    f, _ = activation(act)
    a: list[Array | None] = [None]
    h = [x]
    for l in range(1, n_layers + 1):
        pre = h[-1] @ weights[f"W{l}"].T
        if f"b{l}" in weights:
            pre = pre + weights[f"b{l}"]
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
        grads[f"W{l}"] = delta[l].T @ h[l - 1] / n
        if f"b{l}" in with_bias:
            grads[f"b{l}"] = delta[l].mean(axis=0)
    return grads


class AbstractRule(abc.ABC):
    """How the output error becomes layer errors, and how feedback synapses change.

    A rule is stateless: everything it reads is passed in, and it returns new arrays.
    """

    #: Registry name.
    name: str = ""

    @abc.abstractmethod
    def layer_errors(self, weights: Mapping[str, Array], a: list[Array], e: Array,
                     fprime: Callable[[Array], Array]) -> list[Array | None]:
        """Layer errors ``delta[l]`` (batch, n_l) for l = 1..L, ``delta[L] = e`` (``delta[0]`` None).

        Parameters
        ----------
        weights : mapping
            Current weights and feedback matrices.
        a : list of ndarray
            Pre-activations from :func:`forward`.
        e : ndarray, shape (batch, d)
            Output error yhat - y.
        fprime : callable
            f' of the hidden nonlinearity.
        """

    def feedback_gradients(self, weights: Mapping[str, Array], h: list[Array],
                           delta: list[Array | None], grads: Mapping[str, Array]
                           ) -> dict[str, Array]:
        """Gradient-convention changes of plastic feedback matrices (update = -feedback_lr * grad).

        ``grads`` holds the forward-weight gradients of this step. Fixed feedback returns ``{}``.
        """
        return {}


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
