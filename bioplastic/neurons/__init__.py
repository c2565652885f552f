r"""Neuron models as units: each nonlinearity declared once for every backend.

A rate neuron's output is :math:`h = f(a)` of its somatic drive :math:`a`; learning rules read
:math:`f'(a)`. One :class:`RateFunction` record gives f and f' as numpy functions (the float64
specification), the torch forward (tensor methods, so this module never imports torch), and the
two Brian2 expressions of the somatic variable ``a``. Every backend reads this table; register a
new nonlinearity with :func:`register_activation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class RateFunction:
    """A rate nonlinearity f with its derivative, for every backend.

    Attributes
    ----------
    name : str
    f, fprime : callable
        Elementwise numpy functions of the drive a (float64 arrays of any shape).
    torch_f : callable
        f on a torch tensor (autograd differentiates it), written with tensor methods.
    brian2_f, brian2_fprime : str
        f(a) and f'(a) as Brian2 expressions of the dimensionless variable ``a``.
    """

    name: str
    f: Callable[[Array], Array]
    fprime: Callable[[Array], Array]
    torch_f: Callable
    brian2_f: str
    brian2_fprime: str


def _sigmoid(a: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # the tanh form never overflows


#: Nonlinearity name -> its record. Every backend reads this table and nothing else.
ACTIVATIONS: dict[str, RateFunction] = {}


def register_activation(fn: RateFunction, replace: bool = False) -> RateFunction:
    """Make ``fn`` available to circuits (``activation=fn.name``) and every backend."""
    if not isinstance(fn, RateFunction):
        raise TypeError(f"register_activation needs a RateFunction; got {type(fn).__name__}")
    if fn.name in ACTIVATIONS and not replace:
        raise ValueError(f"activation {fn.name!r} is already registered; pass replace=True to redefine it")
    ACTIVATIONS[fn.name] = fn
    return fn


for _fn in (
    RateFunction("tanh", np.tanh, lambda a: 1.0 - np.tanh(a) ** 2, lambda a: a.tanh(),
                 "tanh(a)", "1 - tanh(a)**2"),
    RateFunction("relu", lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(a.dtype),
                 lambda a: a.relu(), "a*int(a > 0)", "1.0*int(a > 0)"),
    RateFunction("sigmoid", _sigmoid, lambda a: _sigmoid(a) * (1.0 - _sigmoid(a)),
                 lambda a: a.sigmoid(), "0.5*(1 + tanh(0.5*a))", "0.25*(1 - tanh(0.5*a)**2)"),
    RateFunction("linear", lambda a: a, np.ones_like, lambda a: a, "a", "1.0"),
):
    register_activation(_fn)


def activation(name: str) -> RateFunction:
    """The record of a named nonlinearity; raises naming the valid options."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid options: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


#: Neuron models a population can use. ``rate``: the rate neuron h = f(a) above; ``lif``: the
#: leaky integrate-and-fire neuron of :mod:`bioplastic.neurons.lif` (spiking; its surrogate
#: derivative stands in for f').
NEURON_MODELS = ("rate", "lif")

from . import lif  # noqa: E402  (the LIF unit; it imports nothing from here)
from .lif import LIFParams  # noqa: E402


def constraint_facts(circuit, row: dict) -> dict:
    """Facts a circuit's neuron models add to a row of :meth:`bioplastic.Circuit.constraints`
    (empty for rate circuits; see :func:`bioplastic.neurons.lif.constraint_facts`)."""
    models = {n for _, n in circuit.graph.nodes(data="neuron")}
    return lif.constraint_facts(circuit, row) if "lif" in models else {}


__all__ = ["ACTIVATIONS", "LIFParams", "NEURON_MODELS", "RateFunction", "activation", "constraint_facts",
           "lif", "register_activation"]
