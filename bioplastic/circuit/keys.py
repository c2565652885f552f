"""Weight keys: the one place a name such as ``"W2"`` or ``"P3"`` is formatted or parsed.

A key is a kind and a layer index l (layers numbered from 1 at the first hidden layer):

====  ===================================================================================
W     forward weights into layer l, (n_l, n_{l-1})
b     bias of layer l, (n_l,)
B     a full feedback matrix of layer l's pathway (which populations it links is the rule's)
P     compressing factor of layer l's pathway: an error -> a bottleneck of r neurons
Q     expanding factor of layer l's pathway: the bottleneck -> the layer it delivers to
Qt    learned reciprocal of Q (circuits with ``reciprocal="learned"``): the layer -> the bottleneck
Pt    learned reciprocal of P (same): the bottleneck -> the error P reads
====  ===================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Kind letter -> what it names.
KINDS = {"W": "forward weight", "b": "bias", "B": "feedback matrix", "P": "compressing factor",
         "Q": "expanding factor", "Qt": "learned reciprocal of Q", "Pt": "learned reciprocal of P"}
_PATTERN = re.compile(r"^([A-Za-z]+)(\d+)$")


@dataclass(frozen=True, order=True)
class WeightKey:
    """A weight key (``kind``, ``layer``); ``str(key)`` is its name, e.g. ``"P3"``."""

    kind: str
    layer: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown weight kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 0:
            raise ValueError(f"the layer of a weight key is an int >= 0; got {self.layer!r}")

    @classmethod
    def parse(cls, text: str) -> WeightKey:
        """``"P3"`` -> ``WeightKey("P", 3)``; raises naming the valid forms."""
        match = _PATTERN.match(text) if isinstance(text, str) else None
        if match is None or match.group(1) not in KINDS:
            raise ValueError(f"{text!r} is not a weight key; keys are a kind ({', '.join(KINDS)}) "
                             "followed by a layer number, e.g. 'W1', 'P3'")
        return cls(match.group(1), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.kind}{self.layer}"


def key(kind: str, layer: int) -> str:
    """The name of weight ``kind`` of layer ``layer`` (``key("Q", 2) == "Q2"``), checked."""
    return str(WeightKey(kind, layer))


def parse_key(text: str) -> WeightKey:
    """Parse a weight name; see :meth:`WeightKey.parse`."""
    return WeightKey.parse(text)


def kind_of(name: str) -> str | None:
    """The kind of a weight name, or None for a projection name that is not a weight key
    (the error wiring ``E_output``, ``E_target``)."""
    match = _PATTERN.match(name) if isinstance(name, str) else None
    return match.group(1) if match is not None and match.group(1) in KINDS else None
