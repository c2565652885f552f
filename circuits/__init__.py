"""Circuit builders: functions that return a validated :class:`bioplastic.Circuit`."""

from .mlp import mlp as mlp

__all__ = ["mlp"]
