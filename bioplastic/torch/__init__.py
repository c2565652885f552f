"""Low-dimensional (and other) error feedback for any PyTorch model.

>>> from bioplastic.torch import convert
>>> model = convert(model, rule="ldfa", rank=10, subspace="local")   # doctest: +SKIP

After ``loss.backward()`` every converted layer has passed its input the gradient g B^T (B its
``feedback_matrix()``, (in, out)) instead of g W, ``weight.grad`` is the usual g^T x, and ldfa's
``P.grad`` / ``Q.grad`` hold the negative update of the subspace rule, so any torch optimiser trains
model and feedback together. Any registered rule of topology ``layer`` converts
(:mod:`bioplastic.rules`): the layers dispatch on the rule's form and take its math from the rule.
Layers: :mod:`.linear`, :mod:`.conv`, :mod:`.attention`; conversion: :mod:`.convert`,
:mod:`.transformer`; the math: :mod:`.functional`, :mod:`.conv_functional`; the circuit runner is
:mod:`bioplastic.backends.torch_runner`.
"""

from .attention import FeedbackMultiheadAttention as FeedbackMultiheadAttention
from .conv import FeedbackConv2d as FeedbackConv2d
from .convert import CONVERTERS as CONVERTERS
from .convert import convert as convert
from .functional import subspace_grads as subspace_grads
from .linear import FeedbackLinear as FeedbackLinear
from .linear import FeedbackSpec as FeedbackSpec
from .transformer import convert_transformer as convert_transformer

__all__ = ["CONVERTERS", "FeedbackConv2d", "FeedbackLinear", "FeedbackMultiheadAttention",
           "FeedbackSpec", "convert", "convert_transformer", "subspace_grads"]
