"""Low-dimensional (and other) error feedback for any PyTorch model.

>>> from bioplastic.torch import convert
>>> model = convert(model, rule="ldfa", rank=10, subspace="local")   # doctest: +SKIP

After ``loss.backward()`` every converted layer has passed its input the gradient g B^T (B its
``feedback_matrix()``, (in, out)) instead of g W, ``weight.grad`` is the usual g^T x, and ldfa's
``P.grad`` / ``Q.grad`` hold the negative update of the subspace rule, so any torch optimiser trains
model and feedback together. Layers: :mod:`.linear`, :mod:`.conv`, :mod:`.attention`; the math: :mod:`.functional`; the circuit runner
is :mod:`bioplastic.backends.torch_runner`.
"""

from .attention import FeedbackMultiheadAttention as FeedbackMultiheadAttention
from .attention import convert_transformer as convert_transformer
from .conv import FeedbackConv2d as FeedbackConv2d
from .convert import CONVERTERS as CONVERTERS
from .convert import convert as convert
from .functional import SUBSPACE_GRADS as SUBSPACE_GRADS
from .functional import subspace_grads as subspace_grads
from .linear import LAYER_RULES as LAYER_RULES
from .linear import FeedbackLinear as FeedbackLinear
from .linear import FeedbackSpec as FeedbackSpec

__all__ = ["CONVERTERS", "FeedbackConv2d", "FeedbackLinear", "FeedbackMultiheadAttention",
           "FeedbackSpec", "LAYER_RULES", "SUBSPACE_GRADS", "convert", "convert_transformer",
           "subspace_grads"]
