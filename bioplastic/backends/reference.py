"""Backend ``reference``: the abstract rule in numpy float64, the specification of every backend."""

from __future__ import annotations

from .. import neurons, rules
from ..circuit.init import initial_weights
from ..rules import forward, train_step
from ._base import AbstractRunner, check_batch, unsupported_reason


class ReferenceRunner(AbstractRunner):
    """Runs :func:`bioplastic.rules.train_step` on a dict of float64 arrays.

    Parameters
    ----------
    circuit : bioplastic.Circuit
    weights : mapping, optional
        Initial weights; defaults to :func:`bioplastic.circuit.init.initial_weights`.
    """

    backend = "reference"

    def __init__(self, circuit, weights=None):
        super().__init__(circuit)
        self.rule = self.circuit.learning_rule
        self.weights = initial_weights(circuit)
        if weights is not None:
            self.set_weights(weights)

    def train_step(self, x, y):
        x, y = check_batch(self.circuit, x, y)
        p = self.circuit.params
        result = train_step(self.weights, x, y, self.rule, self.circuit.activation,
                            p.lr, p.feedback_lr, p.decay)
        self.weights = result.weights
        return result.loss

    def predict(self, x):
        x, _ = check_batch(self.circuit, x)
        _, h = forward(self.weights, x, self.circuit.n_layers, self.circuit.activation)
        return h[-1]


def build(circuit, **options) -> ReferenceRunner:
    """Build a :class:`ReferenceRunner` (options: ``weights``)."""
    return ReferenceRunner(circuit, **options)


def capabilities() -> dict[str, tuple[str, ...]]:
    """Every registered rule (the reference is their specification), on rate neurons: a spiking
    population has no rate equation to evaluate, so a LIF circuit is refused, not run as rates."""
    from ..rules import FORMS, TOPOLOGIES

    return {"topologies": TOPOLOGIES, "forms": FORMS, "subspaces": tuple(rules.SUBSPACES),
            "activations": tuple(neurons.ACTIVATIONS), "neurons": ("rate",)}


def unsupported(circuit) -> str | None:
    """None where the reference builds the circuit (every registered rule on rate neurons; see
    :func:`capabilities`), else why not."""
    return unsupported_reason("reference", circuit, capabilities())
