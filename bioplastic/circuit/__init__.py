"""WHAT is connected: circuits as networkx graphs of populations and projections, their weight keys,
initial weights and drawing. Holds no arrays and no simulator objects; backends translate it."""

from .graph import (
    ACTIVATIONS,
    INITS,
    NEURONS,
    PLASTICITY,
    POPULATION_ROLES,
    PROJECTION_ROLES,
    RULES,
    SUBSPACES,
    Circuit,
    CircuitError,
    LearningParams,
    Population,
    Projection,
)

__all__ = ["ACTIVATIONS", "INITS", "NEURONS", "PLASTICITY", "POPULATION_ROLES", "PROJECTION_ROLES",
           "RULES", "SUBSPACES", "Circuit", "CircuitError", "LearningParams", "Population", "Projection"]
