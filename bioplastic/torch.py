"""Low-dimensional (and other) error feedback for any PyTorch model.

>>> from bioplastic.torch import convert
>>> model = convert(model, rule="ldfa", rank=10, subspace="local")   # doctest: +SKIP

After ``loss.backward()`` every converted layer has passed its input the gradient g B^T (B its
``feedback_matrix()``, (in, out)) instead of g W, ``weight.grad`` is the usual g^T x, and ldfa's
``P.grad`` / ``Q.grad`` hold the negative update of the subspace rule, so any torch optimiser trains
model and feedback together. Implementation: :mod:`bioplastic.backends.torch`.
"""

from .backends.torch import CONVERTERS as CONVERTERS
from .backends.torch import LAYER_RULES as LAYER_RULES
from .backends.torch import SUBSPACE_GRADS as SUBSPACE_GRADS
from .backends.torch import FeedbackLinear as FeedbackLinear
from .backends.torch import FeedbackSpec as FeedbackSpec
from .backends.torch import convert as convert
from .backends.torch import subspace_grads as subspace_grads
from .backends.torch.attention import FeedbackMultiheadAttention as FeedbackMultiheadAttention
from .backends.torch.attention import convert_transformer as convert_transformer
from .backends.torch.conv import FeedbackConv2d as FeedbackConv2d

__all__ = ["CONVERTERS", "FeedbackConv2d", "FeedbackLinear", "FeedbackMultiheadAttention",
           "FeedbackSpec", "LAYER_RULES", "SUBSPACE_GRADS", "convert", "convert_transformer",
           "subspace_grads"]
