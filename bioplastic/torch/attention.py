r"""Feedback for transformers: the linear maps of attention get feedback, attention itself stays exact.

In a transformer block only the weight matrices are swapped for feedback layers (as in the
transformer experiments of arXiv 2502.20580): the fused query-key-value projection, the attention output projection and the MLP's
two maps. Softmax attention, :math:`\mathrm{softmax}(q k^\top/\sqrt{d_h} + M)\,v`, LayerNorm, GELU
and the residual sums keep their exact autograd backward. For a map :math:`y = x W^\top + b` with
feedback :math:`B` (in, out) the input receives :math:`g B^\top` (:mod:`.functional`).

Fused maps get a larger rank. A fused projection stacks 3 maps (q, k, v) in the rows of
one weight (3E, E); the rank given for a layer is *per map*, so the fused map gets
``feedback_rank_factor * r`` with the factor 3 by default, as in the authors' code. Set the factor
per model with :func:`.transformer.convert_transformer` (``qkv_rank_factor``).

What this module adds to ``convert``:

* :class:`FeedbackMultiheadAttention`: ``nn.MultiheadAttention`` with its raw ``in_proj_weight``
  held by a :class:`.linear.FeedbackLinear` ``in_proj`` (rank ``3 r``; or ``q_proj``, ``k_proj``,
  ``v_proj`` of rank r each when ``kdim``/``vdim`` differ from ``embed_dim``) and a feedback
  ``out_proj``. Its forward re-implements ``F.multi_head_attention_forward`` (masks, key padding,
  ``add_bias_kv``, ``add_zero_attn``, dropout, batch-first or not, unbatched inputs, attention
  weights) on top of these layers; forward values equal the original's. Inside
  ``nn.TransformerEncoderLayer`` it is converted like any child, and the encoder layer's linear1 /
  linear2 are plain ``nn.Linear``.
* a converter for :class:`.linear.FusedQKV` (the fused map of the project's ViT), rank ``3 r``.

:mod:`.transformer` adds :func:`~.transformer.convert_transformer`: per-block ranks, blocks or
layers left on bp, the qkv factor. Nothing here depends on a rule's name: every map is a
:class:`.linear.FeedbackLinear`, whose rule object decides its feedback.

Cross-attention (``query``, ``key``, ``value`` different tensors) with a fused weight sends each input
through its rows of the weight and of P (or B): the input gradients are :math:`g_s B_s^\top` with
:math:`B_s = Q P_s`, and the P, Q gradients of ``fixed``, ``normative``, ``local`` add up to those of
the fused map. ``oja`` then sees each projection's error covariance separately (no cross terms);
a subspace or dense rule of your own is applied to each part in the same way.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .linear import FeedbackLinear, FeedbackSpec, FusedQKV

#: Default rank multiplier of a fused q/k/v projection (3 maps share one bottleneck of 3r).
QKV_RANK_FACTOR = 3


# ----------------------------------------------------------------------------------------------
# Pure helpers
# ----------------------------------------------------------------------------------------------

def fused_rank(module: nn.Module, rank: int) -> int:
    """Rank of ``module``'s fused projection: ``feedback_rank_factor`` (default 3) times ``rank``."""
    factor = getattr(module, "feedback_rank_factor", QKV_RANK_FACTOR)
    return factor * rank


def sliced_linear(layer: FeedbackLinear, x: torch.Tensor, rows: slice) -> torch.Tensor:
    """The output rows ``rows`` of ``layer`` applied to ``x``, with the matching part of its feedback.

    ``x @ W[rows].T + b[rows]``, whose input gradient is ``g B[:, rows]^T`` (low rank:
    ``B[:, rows] = Q P[:, rows]``); gradients reach the slices of W, b, P (or B) and all of Q
    (:meth:`.linear.FeedbackLinear.apply_rows`).
    """
    return layer.apply_rows(x, rows)


def float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """An additive float mask from ``nn.MultiheadAttention``'s convention (bool: True = blocked)."""
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


def _linear_from(weight: nn.Parameter, bias: nn.Parameter | None) -> nn.Linear:
    """An ``nn.Linear`` (no allocation) whose weight and bias *are* the given Parameters."""
    out_f, in_f = weight.shape
    linear = nn.Linear(in_f, out_f, bias=bias is not None, device="meta", dtype=weight.dtype)
    linear.weight, linear.bias = weight, bias
    return linear


# ----------------------------------------------------------------------------------------------
# nn.MultiheadAttention
# ----------------------------------------------------------------------------------------------

class FeedbackMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose projections are feedback layers (see module docstring).

    Build one with :meth:`from_attention` (``convert`` does). Submodules: ``in_proj`` (3E <- E,
    rank ``3 r``) when q, k, v share ``embed_dim``, else ``q_proj``, ``k_proj``, ``v_proj`` (rank r
    each, no bias) and the Parameter ``qkv_bias`` (3E,); and ``out_proj`` (rank r).
    ``in_proj_weight``, ``in_proj_bias``, ``q_proj_weight``, ... remain readable as properties, so
    code that reads them (``nn.TransformerEncoderLayer``'s inference fast path) sees the same
    tensors, and a state dict of the original loads.
    """

    @classmethod
    def from_attention(cls, mha: nn.MultiheadAttention, spec: FeedbackSpec,
                       generator: torch.Generator | None = None, where: str = "MultiheadAttention"
                       ) -> FeedbackMultiheadAttention:
        """A feedback copy of ``mha`` sharing its Parameters; ``spec.rank`` is the per-map rank."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        for key in ("embed_dim", "kdim", "vdim", "_qkv_same_embed_dim", "num_heads", "dropout",
                    "batch_first", "head_dim", "add_zero_attn"):
            setattr(layer, key, getattr(mha, key))
        layer.bias_k, layer.bias_v = mha.bias_k, mha.bias_v
        e = mha.embed_dim

        def feedback(linear: nn.Linear, rank: int | None, part: str) -> FeedbackLinear:
            s = replace(spec, rank=rank).for_layer(linear.in_features, linear.out_features,
                                                   f"{where}.{part}")
            return FeedbackLinear.from_linear(linear, s.rule, s.rank, s.subspace, generator)

        per_map = spec.rank  # None for rules without a rank
        if mha._qkv_same_embed_dim:
            fused = None if per_map is None else fused_rank(mha, per_map)
            layer.in_proj = feedback(_linear_from(mha.in_proj_weight, mha.in_proj_bias), fused,
                                     "in_proj")
        else:
            # separate weights, one bias vector (3E,): bias-free feedback maps plus that shared
            # Parameter, added outside (its gradient, the summed g, is the same either way)
            layer.qkv_bias = mha.in_proj_bias
            for part, w in zip(("q_proj", "k_proj", "v_proj"),
                               (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)):
                setattr(layer, part, feedback(_linear_from(w, None), per_map, part))
        layer.out_proj = feedback(mha.out_proj, per_map, "out_proj")
        layer.train(mha.training)
        layer.register_load_state_dict_pre_hook(_load_plain_mha_state)
        if e % layer.num_heads:
            raise ValueError(f"embed_dim {e} is not divisible by num_heads {layer.num_heads}")
        return layer

    # names nn.MultiheadAttention (and TransformerEncoderLayer's fast path) reads
    @property
    def in_proj_weight(self):
        return self.in_proj.weight if self._qkv_same_embed_dim else None

    @property
    def in_proj_bias(self):
        if self._qkv_same_embed_dim:
            return self.in_proj.bias
        return self.qkv_bias

    @property
    def q_proj_weight(self):
        return None if self._qkv_same_embed_dim else self.q_proj.weight

    @property
    def k_proj_weight(self):
        return None if self._qkv_same_embed_dim else self.k_proj.weight

    @property
    def v_proj_weight(self):
        return None if self._qkv_same_embed_dim else self.v_proj.weight

    def projections(self) -> dict[str, FeedbackLinear]:
        """The feedback layers of this attention, by attribute name."""
        names = ("in_proj",) if self._qkv_same_embed_dim else ("q_proj", "k_proj", "v_proj")
        return {n: getattr(self, n) for n in (*names, "out_proj")}

    def _in_projection(self, query, key, value):
        if not self._qkv_same_embed_dim:
            q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
            if self.qkv_bias is None:
                return q, k, v
            b_q, b_k, b_v = self.qkv_bias.chunk(3)
            return q + b_q, k + b_k, v + b_v
        if query is key and key is value:
            return self.in_proj(query).chunk(3, dim=-1)
        e = self.embed_dim
        return tuple(sliced_linear(self.in_proj, t, slice(i * e, (i + 1) * e))
                     for i, t in enumerate((query, key, value)))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Same signature, shapes and values as ``nn.MultiheadAttention.forward``.

        query: (N, L, E) if ``batch_first`` else (L, N, E), or unbatched (L, E); key, value:
        (N, S, kdim / vdim) likewise. Returns the output in query's layout and, if
        ``need_weights``, the attention weights (N, L, S) (or (N, heads, L, S) without averaging).
        """
        if not torch.is_grad_enabled():
            # no backward to change: run PyTorch's own forward (and its inference fast path) on the
            # same tensors, so evaluation is bit-for-bit the original module's
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint (as "
                               "nn.MultiheadAttention); nn.Transformer.generate_square_subsequent_mask "
                               "makes one")
        batched = query.dim() == 3
        if query.dim() not in (2, 3):
            raise ValueError(f"query must be 2-D (unbatched) or 3-D; got shape {tuple(query.shape)}")
        q, k, v = self._in_projection(*self._batch_first(query, key, value, batched))
        n, tgt_len, e = q.shape
        heads, hd = self.num_heads, self.head_dim
        dtype = q.dtype

        mask = float_mask(attn_mask, dtype)
        if mask is not None:
            mask = mask.reshape(1, 1, *mask.shape) if mask.dim() == 2 else \
                mask.reshape(n, heads, *mask.shape[1:])
        pad_mask = None
        if key_padding_mask is not None:
            kpm = key_padding_mask if batched else key_padding_mask.unsqueeze(0)
            pad_mask = float_mask(kpm, dtype).reshape(n, 1, 1, -1)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.reshape(1, 1, e).expand(n, 1, e)], dim=1)
            v = torch.cat([v, self.bias_v.reshape(1, 1, e).expand(n, 1, e)], dim=1)
            mask, pad_mask = _pad_key(mask), _pad_key(pad_mask)
        q, k, v = (t.reshape(n, t.shape[1], heads, hd).transpose(1, 2) for t in (q, k, v))
        if self.add_zero_attn:
            zeros = q.new_zeros(n, heads, 1, hd)
            k, v = torch.cat([k, zeros], dim=2), torch.cat([v, zeros], dim=2)
            mask, pad_mask = _pad_key(mask), _pad_key(pad_mask)
        if pad_mask is not None:
            mask = pad_mask if mask is None else mask + pad_mask

        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q * math.sqrt(1.0 / hd)) @ k.transpose(-2, -1)
            if mask is not None:
                scores = scores + mask
            weights = F.dropout(torch.softmax(scores, dim=-1), p=p) if p > 0 else \
                torch.softmax(scores, dim=-1)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).reshape(n, tgt_len, e))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(1 if not self.batch_first else 0)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        return out, weights

    def _batch_first(self, query, key, value, batched):
        """Inputs as (N, L, E), keeping ``query is key is value`` when it holds."""
        same = query is key and key is value
        if not batched:
            axis = 0 if self.batch_first else 1
            query = query.unsqueeze(axis)
            key, value = (query, query) if same else (key.unsqueeze(axis), value.unsqueeze(axis))
        if not self.batch_first:
            query = query.transpose(0, 1)
            key, value = (query, query) if same else (key.transpose(0, 1), value.transpose(0, 1))
        return query, key, value

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


def _pad_key(mask: torch.Tensor | None) -> torch.Tensor | None:
    """One more (unmasked) key column."""
    return None if mask is None else F.pad(mask, (0, 1))


def _load_plain_mha_state(module, state_dict, prefix, *args):
    """Map ``nn.MultiheadAttention``'s parameter names onto the feedback layers'."""
    renames = {"in_proj_weight": "in_proj.weight", "in_proj_bias": "in_proj.bias",
               "q_proj_weight": "q_proj.weight", "k_proj_weight": "k_proj.weight",
               "v_proj_weight": "v_proj.weight"}
    if not module._qkv_same_embed_dim:
        renames["in_proj_bias"] = "qkv_bias"
    for old, new in renames.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


# ----------------------------------------------------------------------------------------------
# Converters (registered in .convert.CONVERTERS)
# ----------------------------------------------------------------------------------------------

def convert_multihead_attention(module: nn.MultiheadAttention, spec: FeedbackSpec,
                                generator: torch.Generator, name: str) -> FeedbackMultiheadAttention:
    """``convert``'s factory for ``nn.MultiheadAttention``; ``spec.rank`` is the per-map rank."""
    return FeedbackMultiheadAttention.from_attention(module, spec, generator, f"layer {name!r}")


def convert_fused_qkv(module: FusedQKV, spec: FeedbackSpec, generator: torch.Generator,
                      name: str) -> FeedbackLinear:
    """``convert``'s factory for :class:`.linear.FusedQKV`: rank ``3 r`` (per-map r)."""
    if spec.rank is not None:
        spec = replace(spec, rank=fused_rank(module, spec.rank))
    spec = spec.for_layer(module.in_features, module.out_features, f"layer {name!r} (fused qkv)")
    return FeedbackLinear.from_linear(module, spec.rule, spec.rank, spec.subspace, generator)


__all__ = ["FeedbackMultiheadAttention", "QKV_RANK_FACTOR", "convert_fused_qkv",
           "convert_multihead_attention", "float_mask", "fused_rank", "sliced_linear"]
