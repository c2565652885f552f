"""WHERE a circuit runs: the backend registry, ``build``, and what each backend supports.

Each backend module defines ``build(circuit, **options) -> runner``, ``capabilities() -> dict`` (the
rule topologies and forms, subspace rules, activations and neuron models it handles, all derived
from the registries it consumes) and ``unsupported(circuit) -> str | None``. Backends are imported
lazily, so ``import bioplastic`` imports neither torch nor brian2; a backend whose simulator is not
installed is reported as unavailable.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..circuit import Circuit
from ._base import AbstractRunner, UnsupportedCircuitError

#: Backend name -> (module defining build/capabilities/unsupported, the package it needs).
BACKENDS = {
    "reference": "bioplastic.backends.reference",
    "torch": "bioplastic.backends.torch_runner",
    "brian2": "bioplastic.backends.brian2",
}
#: The third-party package each backend imports.
REQUIRES = {"reference": "numpy", "torch": "torch", "brian2": "brian2"}


def _check_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid options: {', '.join(BACKENDS)}")


def is_available(backend: str) -> bool:
    """Whether the simulator ``backend`` needs is installed (nothing is imported)."""
    _check_name(backend)
    return importlib.util.find_spec(REQUIRES[backend]) is not None


def _module(backend: str):
    _check_name(backend)
    if not is_available(backend):
        raise ImportError(f"backend {backend!r} needs the package {REQUIRES[backend]!r}, which is not "
                          "installed")
    return importlib.import_module(BACKENDS[backend])


def capabilities(backend: str) -> dict[str, tuple[str, ...]]:
    """What ``backend`` builds: ``topologies``, ``forms``, ``subspaces``, ``activations``, ``neurons``."""
    return _module(backend).capabilities()


def unsupported(circuit: Circuit, backend: str) -> str | None:
    """Why ``backend`` cannot build ``circuit``, naming the backend, the rule and what it supports;
    None when it can."""
    return _module(backend).unsupported(circuit)


def supports(circuit: Circuit, backend: str) -> bool:
    """Whether ``backend`` is installed and can build ``circuit``."""
    return is_available(backend) and unsupported(circuit, backend) is None


def build(circuit: Circuit, backend: str = "reference", **options) -> AbstractRunner:
    """Compile ``circuit`` for ``backend``.

    Parameters
    ----------
    circuit : bioplastic.Circuit
        Validated first; an inconsistent circuit raises :class:`bioplastic.CircuitError`.
    backend : str
        ``reference`` (numpy float64), ``torch`` (options ``dtype="float32"|"float64"``,
        ``device="cpu"|"cuda"|...``), ``brian2``.
    **options
        Passed to the backend's ``build``.

    Raises
    ------
    UnsupportedCircuitError
        The backend cannot express the circuit's rule, subspace rule, activation or neuron model
        (the message names what it supports).
    """
    _check_name(backend)
    if not isinstance(circuit, Circuit):
        raise TypeError(f"build needs a bioplastic.Circuit (e.g. circuits.mlp(...)); got {type(circuit).__name__}")
    circuit.validate()
    module = _module(backend)
    reason = module.unsupported(circuit)
    if reason is not None:
        raise UnsupportedCircuitError(reason)
    return module.build(circuit, **options)


__all__ = ["BACKENDS", "AbstractRunner", "UnsupportedCircuitError", "build", "capabilities",
           "is_available", "supports", "unsupported"]
