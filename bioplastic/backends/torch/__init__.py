"""Backend ``torch``: feedback layers, autograd Functions, ``convert`` for any model, the MLP runner.

* :mod:`.functional`: the math (backward maps, subspace-rule gradients, initial draws, autograd
  Functions), pure functions that other layer types (Conv2d, attention) reuse;
* :mod:`.layers`: :class:`FeedbackLinear`, an ``nn.Linear`` with a feedback backward pass;
* :mod:`.convert`: :func:`convert` and its registry :data:`CONVERTERS`;
* :mod:`.runner`: :class:`TorchRunner`, what ``bioplastic.build(circuit, backend="torch")`` returns.

The public face for model code is :mod:`bioplastic.torch`.
"""

from __future__ import annotations

from .convert import CONVERTERS as CONVERTERS
from .convert import convert as convert
from .functional import SUBSPACE_GRADS as SUBSPACE_GRADS
from .functional import subspace_grads as subspace_grads
from .layers import LAYER_RULES as LAYER_RULES
from .layers import FeedbackLinear as FeedbackLinear
from .layers import FeedbackSpec as FeedbackSpec
from .runner import FeedbackMLP as FeedbackMLP
from .runner import TorchRunner as TorchRunner
from .runner import build as build

__all__ = ["CONVERTERS", "FeedbackLinear", "FeedbackMLP", "FeedbackSpec", "LAYER_RULES",
           "SUBSPACE_GRADS", "TorchRunner", "build", "convert", "subspace_grads"]
