"""``convert_transformer``: ``convert`` for transformers, with per-block ranks and blocks left on bp.

It sits on top of :mod:`.convert` (which registers the attention converters of :mod:`.attention`),
so the layer modules never import the conversion entry point.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Collection, Mapping, Sequence

from torch import nn

from .attention import QKV_RANK_FACTOR
from .convert import CONVERTERS, convert
from .linear import FusedQKV, takes_rank


def block_index(name: str) -> int | None:
    """Index of the block a module belongs to: the first integer in its dotted name, or None.

    ``"blocks.3.attn.qkv"`` -> 3 (the project's ViT), ``"encoder.layers.1.linear1"`` -> 1
    (``nn.TransformerEncoder``), ``"head"`` -> None.
    """
    for part in name.split("."):
        if part.isdigit():
            return int(part)
    return None


def convert_transformer(model: nn.Module, rule: str = "ldfa", rank: int | None = None,
                        subspace: str = "local", *,
                        block_ranks: Mapping[int, int | None] | Sequence[int | None] | None = None,
                        qkv_rank_factor: int = QKV_RANK_FACTOR, exclude: Collection[str] = (),
                        seed: int = 0, clip_rank: bool = False, inplace: bool = False) -> nn.Module:
    """``convert`` for transformers, with per-block ranks and blocks left on backprop.

    Parameters
    ----------
    model : nn.Module
        A transformer: the project's :class:`bioplastic.torch.models.ViT`, an ``nn.TransformerEncoder``, or
        anything whose blocks sit in a ``ModuleList`` (a block is found by :func:`block_index`).
    rule, subspace, seed, clip_rank, inplace
        As for ``convert``.
    rank : int, optional
        Per-map rank r (low-rank rules) of layers outside ``block_ranks`` (patch embedding, head, ...).
    block_ranks : mapping or sequence, optional
        Per-block rank: ``{block index: r}`` or one entry per block; ``None`` for a block leaves
        it on bp (the authors' ImageNet runs: ranks 96/128/192 in blocks 0-8, bp in 9-11).
    qkv_rank_factor : int
        Rank multiplier of fused q/k/v maps (``FusedQKV``, ``nn.MultiheadAttention.in_proj``).
    exclude : collection of str
        Further module names left on bp.

    Returns
    -------
    nn.Module
        The converted model.
    """
    if isinstance(qkv_rank_factor, bool) or not isinstance(qkv_rank_factor, numbers.Integral) \
            or qkv_rank_factor < 1:
        raise ValueError(f"qkv_rank_factor must be a positive int; got {qkv_rank_factor!r}")
    if not inplace:
        model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, (FusedQKV, nn.MultiheadAttention)):
            m.feedback_rank_factor = int(qkv_rank_factor)
    names = [n for n, m in model.named_modules() if type(m) in CONVERTERS and n not in exclude]
    if isinstance(block_ranks, Sequence):
        block_ranks = dict(enumerate(block_ranks))
    block_ranks = dict(block_ranks or {})
    blocks = {block_index(n) for n in names} - {None}
    unknown = sorted(set(block_ranks) - blocks)
    if unknown:
        raise ValueError(f"block_ranks names blocks {unknown} this model does not have; its blocks: "
                         f"{sorted(blocks)}")
    on_bp = list(exclude)
    ranks = {}
    for n in names:
        b = block_index(n)
        r = block_ranks[b] if b in block_ranks else rank
        if b in block_ranks and r is None:
            on_bp.append(n)
        else:
            ranks[n] = r
    if not takes_rank(rule):
        return convert(model, rule, None, subspace, exclude=on_bp, seed=seed, clip_rank=clip_rank,
                       inplace=True)
    missing = [n for n, r in ranks.items() if r is None]
    if missing:
        raise ValueError(f"no rank for {missing}: pass rank=r (layers outside block_ranks) or give "
                         "their blocks a rank")
    return convert(model, rule, ranks, subspace, exclude=on_bp, seed=seed, clip_rank=clip_rank,
                   inplace=True)


__all__ = ["block_index", "convert_transformer"]
