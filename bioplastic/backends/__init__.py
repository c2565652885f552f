"""Backend registry. ``build(circuit, backend=...)`` compiles a circuit into a runner.

Backends are imported lazily, so ``import bioplastic`` never imports brian2 (or torch).
"""

from __future__ import annotations

import importlib

from ..circuit import Circuit
from ._base import AbstractRunner

#: Backend name -> module that defines ``build(circuit, **options) -> runner``. All registrations here.
BACKENDS = {
    "reference": "bioplastic.backends.reference",
    "torch": "bioplastic.backends.torch_runner",
    "brian2": "bioplastic.backends.brian2",
}


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
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid options: {', '.join(BACKENDS)}")
    if not isinstance(circuit, Circuit):
        raise TypeError(f"build needs a bioplastic.Circuit (e.g. circuits.mlp(...)); got {type(circuit).__name__}")
    circuit.validate()
    module = importlib.import_module(BACKENDS[backend])
    return module.build(circuit, **options)


__all__ = ["BACKENDS", "AbstractRunner", "build"]
