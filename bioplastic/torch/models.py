r"""The model families of arXiv 2502.20580 as ordinary ``nn.Module`` s, plus a small CNN; nothing here
knows about feedback rules.

Every model is plain PyTorch (``nn.Linear``, ``nn.Conv2d``, norms, residuals), so it trains with
backprop as it is and with any rule after :func:`bioplastic.torch.convert`; the feedback layers then
replace only the transposed weights in the backward pass.

They follow the authors' architectures, not their exact models: the VGG has no dropout, the ViT is
smaller than theirs and has no drop-path, and :class:`RetinaVVS`'s default ``bottleneck`` (4) is Lindsey
et al.'s forward-bottleneck manipulation; the paper varies the feedback rank into the retina output
instead (``analyses/receptive_fields.py``, with ``bottleneck=32``).

=================  ==================================================================================
model              architecture (input ``(batch, channels, 32, 32)`` unless stated)
=================  ==================================================================================
:class:`MLP`       flatten, ``[Linear, BatchNorm1d, ReLU]`` per hidden layer, Linear readout; the
                   paper's 4-layer MLP is ``MLP(3072, (512, 512, 512), 10)``
:class:`CNN`       a small LeNet-style CNN for 28x28 digits: ``[conv5x5, ReLU, 2x2 max-pool]`` twice
                   (16 and 32 channels), FC ``hidden`` (128), FC out; trains in seconds on a CPU
:class:`VGG`       conv3x3 ``[64, 64, M, 128, 128, M, 256, 256, M, 512, 512]`` each with BatchNorm2d
                   and ReLU (``M``: 2x2 max-pool), global average pool, FC 512-256-10; channel counts
                   scale with ``width``
:class:`ViT`       4x4 patches (a strided conv), class token, learnt position embedding, pre-norm
                   blocks ``x + Attn(LN(x))``, ``x + MLP(LN(x))`` with GELU, LayerNorm, linear head
:class:`RetinaVVS` Lindsey et al. (2019): two 9x9 "retina" convs 1 -> 32 -> ``bottleneck`` channels,
                   three 9x9 "ventral visual stream" convs, FC head; Lindsey et al. report that
                   the bottleneck width shapes the receptive fields that emerge
=================  ==================================================================================

The attention of a :class:`ViT` block is either :class:`Attention` (one fused ``qkv`` map of width 3E,
a :class:`FusedQKV`, and an output ``proj``; :func:`bioplastic.torch.convert` gives the fused map
rank 3r) or
``nn.MultiheadAttention`` (``attention="torch"``), whose raw ``in_proj_weight`` the converter handles
through :mod:`bioplastic.torch.attention`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# a plain nn.Linear type, defined next to the feedback layers so that they never import this zoo
from .linear import FusedQKV

#: The paper's VGG-style layer plan: ints are conv3x3 output channels, ``"M"`` a 2x2 max-pool.
VGG_PLAN: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512)

#: Attention implementations a :class:`ViT` block can use.
ATTENTIONS = ("fused", "torch")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


class MLP(nn.Module):
    """Fully connected classifier with batch norm: ``in -> hidden... -> out``.

    Parameters
    ----------
    in_features : int
        Flattened input size (3072 for 3x32x32 images).
    hidden : sequence of int
        Hidden widths; the paper uses ``(512, 512, 512)``.
    out_features : int
        Number of classes.
    batch_norm : bool
        BatchNorm1d after every hidden Linear (before the ReLU).
    """

    def __init__(self, in_features: int = 3072, hidden: Sequence[int] = (512, 512, 512),
                 out_features: int = 10, batch_norm: bool = True):
        super().__init__()
        sizes = [_positive_int("in_features", in_features)]
        sizes += [_positive_int("hidden width", h) for h in hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers.append(nn.Linear(n_in, n_out))
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(nn.ReLU())
        layers.append(nn.Linear(sizes[-1], _positive_int("out_features", out_features)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, ...) flattened to (batch, in_features) -> logits (batch, out_features)."""
        return self.net(x)


class CNN(nn.Module):
    """Small CNN: two ``conv5x5 (padding 2) -> ReLU -> 2x2 max-pool`` stages, then FC ``hidden``, ReLU,
    FC ``n_classes``. With the defaults it has 1x28x28 inputs, 16 and 32 maps and 215k weights.

    Parameters
    ----------
    image_size : int
        Side of the square input; divisible by 4.
    in_channels, n_classes : int
    channels : sequence of two int
        Maps of the two convolutions.
    hidden : int
        Width of the hidden FC layer.
    """

    def __init__(self, image_size: int = 28, in_channels: int = 1, n_classes: int = 10,
                 channels: Sequence[int] = (16, 32), hidden: int = 128):
        super().__init__()
        if _positive_int("image_size", image_size) % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 pools); got {image_size}")
        if len(channels) != 2:
            raise ValueError(f"channels must hold two ints (one per conv); got {channels!r}")
        c1, c2 = (_positive_int("channels", c) for c in channels)
        self.features = nn.Sequential(
            nn.Conv2d(_positive_int("in_channels", in_channels), c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * (image_size // 4) ** 2, _positive_int("hidden", hidden)), nn.ReLU(),
            nn.Linear(hidden, _positive_int("n_classes", n_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_channels, image_size, image_size) -> logits (batch, n_classes)."""
        return self.head(self.features(x))


class VGG(nn.Module):
    """VGG-style CNN: conv3x3 + BatchNorm2d + ReLU blocks, max-pools, global average pool, FC head.

    Parameters
    ----------
    in_channels : int
        3 for colour, 1 for grayscale.
    n_classes : int
    width : float
        Multiplies every channel count of :data:`VGG_PLAN` and the FC hidden width (256), rounded
        and at least 1; ``width=1/8`` gives a model small enough for unit tests.
    plan : sequence of int or "M"
        Layer plan; defaults to the paper's.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: float = 1.0,
                 plan: Sequence[int | str] = VGG_PLAN):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0; got {width!r}")
        layers: list[nn.Module] = []
        channels = _positive_int("in_channels", in_channels)
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise ValueError(f"plan entries must be positive ints or 'M'; got {item!r}")
            out = max(1, round(item * width))
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        hidden = max(1, round(256 * width))
        self.head = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(),
                                  nn.Linear(hidden, _positive_int("n_classes", n_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_channels, H, W) -> logits (batch, n_classes)."""
        return self.head(self.features(x).mean(dim=(2, 3)))


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and an output ``proj``.

    .. math::

        [q, k, v] = x W_{qkv}^\\top + b_{qkv}, \\qquad
        \\mathrm{out} = \\mathrm{softmax}(q k^\\top / \\sqrt{d_h})\\, v\\, W_o^\\top + b_o

    per head (head width :math:`d_h` = dim / heads). Only the two ``nn.Linear`` maps carry weights,
    so a feedback conversion replaces exactly those; the softmax and both attention products keep
    their exact backward.

    Parameters
    ----------
    dim : int
        Token width E.
    heads : int
        Number of heads; must divide ``dim``.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads={heads} must divide dim={dim}")
        self.heads = heads
        self.qkv = FusedQKV(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, tokens, dim) -> (batch, tokens, dim)."""
        b, t, e = x.shape
        # unbind, not qkv[i]: the backward of three selects would zero-fill three stacked copies
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, e // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, t, e/heads)
        return self.proj(out.transpose(1, 2).reshape(b, t, e))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))`` then ``x + fc2(GELU(fc1(LN(x))))``.

    Parameters
    ----------
    dim, heads : int
    mlp_ratio : float
        Hidden width of the MLP as a multiple of ``dim``.
    attention : {"fused", "torch"}
        :class:`Attention` or ``nn.MultiheadAttention`` (batch-first).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, attention: str = "fused"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; valid options: {', '.join(ATTENTIONS)}")
        self.norm1 = nn.LayerNorm(dim)
        if attention == "fused":
            self.attn = Attention(dim, heads)
        else:
            if dim % heads:
                raise ValueError(f"heads={heads} must divide dim={dim}")
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, round(dim * mlp_ratio))
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, tokens, dim) -> same shape."""
        h = self.norm1(x)
        if isinstance(self.attn, nn.MultiheadAttention):
            x = x + self.attn(h, h, h, need_weights=False)[0]
        else:
            x = x + self.attn(h)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """A compact vision transformer for 32x32 images.

    Parameters
    ----------
    image_size, patch : int
        Image side and patch side (``patch`` must divide ``image_size``); 32 and 4 give 64 tokens.
    in_channels, n_classes : int
    dim, depth, heads : int
        Token width, number of blocks, attention heads.
    mlp_ratio : float
        MLP hidden width / dim.
    attention : {"fused", "torch"}
        See :class:`Block`.
    """

    def __init__(self, image_size: int = 32, patch: int = 4, in_channels: int = 3,
                 n_classes: int = 10, dim: int = 192, depth: int = 6, heads: int = 3,
                 mlp_ratio: float = 2.0, attention: str = "fused"):
        super().__init__()
        _positive_int("image_size", image_size)
        if image_size % _positive_int("patch", patch):
            raise ValueError(f"patch={patch} must divide image_size={image_size}")
        n_tokens = (image_size // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(_positive_int("in_channels", in_channels),
                                     _positive_int("dim", dim), patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, n_tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, _positive_int("heads", heads), mlp_ratio, attention)
                                    for _ in range(_positive_int("depth", depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, _positive_int("n_classes", n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_channels, image_size, image_size) -> logits (batch, n_classes)."""
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (batch, patches, dim)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens[:, 0]))


class RetinaVVS(nn.Module):
    """Retina + ventral-visual-stream CNN of Lindsey et al. (2019), for receptive-field studies.

    Two retina layers (9x9 convs, ``in_channels -> 32 -> bottleneck``), ``vvs_depth`` VVS layers
    (9x9 convs with ``channels`` maps), then flatten, FC ``hidden``, FC ``n_classes``. All convs keep
    the image size (padding 4) and use ReLU. Lindsey et al. report that a narrow ``bottleneck`` (the
    optic nerve) gives the retina centre-surround receptive fields and the first VVS layer oriented
    ones (a finding of theirs, not tested here).

    Parameters
    ----------
    image_size : int
        Side of the (grayscale) input; 32 for CIFAR.
    in_channels : int
    bottleneck : int
        Channels of the second retina layer (1..32 in the original study).
    vvs_depth : int
        Number of VVS conv layers (3 here).
    channels : int
        Width of the first retina layer and of every VVS layer (32).
    hidden, n_classes : int
        FC head widths.
    """

    def __init__(self, image_size: int = 32, in_channels: int = 1, bottleneck: int = 4,
                 vvs_depth: int = 3, channels: int = 32, hidden: int = 1024, n_classes: int = 10):
        super().__init__()
        c = _positive_int("channels", channels)
        self.retina = nn.Sequential(
            nn.Conv2d(_positive_int("in_channels", in_channels), c, 9, padding=4), nn.ReLU(),
            nn.Conv2d(c, _positive_int("bottleneck", bottleneck), 9, padding=4), nn.ReLU())
        vvs: list[nn.Module] = []
        prev = bottleneck
        for _ in range(_positive_int("vvs_depth", vvs_depth)):
            vvs += [nn.Conv2d(prev, c, 9, padding=4), nn.ReLU()]
            prev = c
        self.vvs = nn.Sequential(*vvs)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c * _positive_int("image_size", image_size) ** 2,
                                    _positive_int("hidden", hidden)),
            nn.ReLU(), nn.Linear(hidden, _positive_int("n_classes", n_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_channels, image_size, image_size) -> logits (batch, n_classes)."""
        return self.head(self.vvs(self.retina(x)))


#: Model name -> class; used by the benchmark and the CLI.
MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "vgg": VGG, "vit": ViT, "retina_vvs": RetinaVVS}


def make_model(name: str, **options) -> nn.Module:
    """Instantiate a model of :data:`MODELS` by name; raises naming the valid options."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid options: {', '.join(MODELS)}")
    return MODELS[name](**options)


__all__ = ["ATTENTIONS", "Attention", "Block", "CNN", "FusedQKV", "MLP", "MODELS", "RetinaVVS", "VGG",
           "VGG_PLAN", "ViT", "make_model"]
