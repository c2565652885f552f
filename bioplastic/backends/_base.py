"""The runner contract every backend honours (README, "Backends"; tests/test_equivalence.py holds every backend to it).

A runner holds one circuit's state on one backend. ``train_step(x, y)`` performs one batch-mean SGD
step of the abstract rule (:func:`bioplastic.rules.train_step`) and returns the loss before it;
``predict(x)`` is the forward pass; ``get_weights`` / ``set_weights`` move weights in and out as
float64 numpy arrays of shape (post, pre).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import numpy as np

from ..circuit import Circuit


class UnsupportedCircuitError(NotImplementedError):
    """A backend cannot build a circuit; the message names the backend, what the circuit uses and
    what the backend supports."""


def unsupported_reason(backend: str, circuit: Circuit, caps: Mapping[str, tuple]) -> str | None:
    """Why ``backend`` with capabilities ``caps`` cannot build ``circuit`` (None when it can).

    ``caps`` maps ``topologies``, ``forms``, ``subspaces``, ``activations`` and ``neurons`` to the
    values the backend handles (see :func:`bioplastic.backends.capabilities`).
    """
    rule = circuit.learning_rule
    what = f"rule {rule.name!r}"
    checks = [("topologies", rule.topology, f"{what} sends errors by topology {rule.topology!r}"),
              ("forms", rule.form, f"{what} has feedback of form {rule.form!r}")]
    if rule.subspace is not None:
        checks.append(("subspaces", rule.subspace.name, f"{what} with subspace {rule.subspace.name!r}"))
    for name, attrs in circuit.graph.nodes(data=True):
        checks.append(("activations", attrs["activation"], f"population {name!r} has activation "
                       f"{attrs['activation']!r}"))
        checks.append(("neurons", attrs["neuron"], f"population {name!r} has neuron model {attrs['neuron']!r}"))
    for cap, value, text in checks:
        if value not in caps[cap]:
            return (f"backend {backend!r} cannot build this circuit: {text}; supported {cap}: "
                    f"{', '.join(caps[cap]) or 'none'}")
    return None


def check_batch(circuit: Circuit, x, y=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a batch against the circuit: 2-D, matching widths, finite. Returns float64 arrays."""
    n_in, d = circuit.sizes[0], circuit.sizes[-1]
    out = []
    for name, arr, width in (("x", x, n_in), ("y", y, d)):
        if arr is None:
            out.append(None)
            continue
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != width:
            raise ValueError(f"{name} must have shape (batch, {width}) for this circuit "
                             f"(sizes {circuit.sizes}); got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values "
                             f"({int(np.sum(~np.isfinite(arr)))} entries)")
        out.append(arr)
    if y is not None and out[0].shape[0] != out[1].shape[0]:
        raise ValueError(f"x has {out[0].shape[0]} samples but y has {out[1].shape[0]}")
    if out[0].shape[0] == 0:
        raise ValueError("empty batch: x has 0 samples")
    return out[0], out[1]


def check_weights(circuit: Circuit, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate a (possibly partial) weight dict: known keys, exact shapes, finite values."""
    keys = circuit.weight_keys()
    shapes = {k: circuit.weight_shape(k) for k in keys}
    checked = {}
    for key, value in weights.items():
        if key not in shapes:
            raise KeyError(f"unknown weight {key!r} for this {circuit.rule} circuit; "
                           f"valid keys: {', '.join(keys)}")
        arr = np.array(value, dtype=np.float64)
        if arr.shape != shapes[key]:
            raise ValueError(f"weight {key!r} must have shape {shapes[key]} (post, pre); got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"weight {key!r} contains NaN or infinite values")
        checked[key] = arr
    return checked


class AbstractRunner(abc.ABC):
    """One circuit instantiated on one backend."""

    #: Backend name.
    backend: str = ""

    def __init__(self, circuit: Circuit):
        # a private copy: editing the caller's circuit after build must not change this runner
        self.circuit = Circuit.from_dict(circuit.validate().to_dict())

    #: Runners that keep their weights as a dict of float64 arrays store it here; others override
    #: :meth:`get_weights` and :meth:`set_weights`.
    weights: dict[str, np.ndarray]

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every weight, keyed as :meth:`Circuit.weight_keys`, float64 (post, pre)."""
        return {k: v.copy() for k, v in self.weights.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Overwrite some or all weights; keys and shapes are checked."""
        self.weights.update(check_weights(self.circuit, weights))

    @abc.abstractmethod
    def train_step(self, x, y) -> float:
        """One batch-mean SGD step on x (batch, n_0), y (batch, d); returns the loss before it."""

    @abc.abstractmethod
    def predict(self, x) -> np.ndarray:
        """Readout (batch, d) for x (batch, n_0)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.circuit!r})"
