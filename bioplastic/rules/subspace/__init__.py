"""Subspace rules of low-rank feedback (one file each): how P and Q learn. See :mod:`._base`."""

from ._base import SubspaceRule
from .fixed import Fixed
from .local import Local
from .normative import Normative
from .oja import Oja
from .oja_centred import OjaCentred
from .q_only import QOnly

#: The built-in subspace rules, in registration order.
BUILTIN = (Fixed, Normative, Local, Oja, QOnly, OjaCentred)

__all__ = ["BUILTIN", "Fixed", "Local", "Normative", "Oja", "OjaCentred", "QOnly", "SubspaceRule"]
