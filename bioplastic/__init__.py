"""bioplastic: learning without backpropagation, with low-dimensional error feedback.

One circuit (:class:`Circuit`, built by ``circuits.mlp`` and friends), several executions
(:func:`build` with backend ``reference``, ``torch`` or ``brian2``), and ``bioplastic.torch.convert``
for any PyTorch model.
"""

from .backends import BACKENDS as BACKENDS
from .backends import build as build
from .circuit import Circuit as Circuit
from .circuit import CircuitError as CircuitError
from .circuit import LearningParams as LearningParams
from .circuit import Population as Population
from .circuit import Projection as Projection
from .circuit.init import initial_weights as initial_weights

__version__ = "0.1.0"

__all__ = ["BACKENDS", "Circuit", "CircuitError", "LearningParams", "Population", "Projection",
           "build", "initial_weights", "__version__"]
