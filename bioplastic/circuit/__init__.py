"""WHAT is connected: circuits as networkx graphs of populations and projections, their weight keys,
initial weights and drawing. Holds no arrays and no simulator objects; backends translate it."""

from .graph import (
    INITS,
    POPULATION_ROLES,
    PROJECTION_ROLES,
    Circuit,
    CircuitError,
    LearningParams,
    Population,
    Projection,
)
from .keys import WeightKey, key, parse_key

__all__ = ["INITS", "POPULATION_ROLES", "PROJECTION_ROLES", "Circuit", "CircuitError", "LearningParams",
           "Population", "Projection", "WeightKey", "key", "parse_key"]
