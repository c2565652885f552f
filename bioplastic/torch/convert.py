"""``convert``: swap the layers of any ``nn.Module`` for feedback layers.

Dispatch goes through :data:`CONVERTERS`, keyed by the *exact* module type: a subclass of
``nn.Linear`` may compute something else with its weight (``nn.MultiheadAttention``'s ``out_proj``
is read directly by the attention function, never called), so it is left alone until a converter is
registered for it. Adding a module type is one line::

    CONVERTERS[nn.Conv2d] = convert_conv2d   # (module, spec, generator, name) -> nn.Module
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Collection, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from .attention import FeedbackMultiheadAttention, convert_fused_qkv, convert_multihead_attention
from .conv import FeedbackConv2d, convert_conv2d
from .linear import FeedbackLinear, FeedbackSpec, FusedQKV, check_refactor_every, takes_rank

#: factory(module, spec, generator, name) -> replacement; ``spec`` still needs
#: ``spec.for_layer(n_in, n_out, f"layer {name!r}")`` to check or clip the rank.
Converter = Callable[[nn.Module, FeedbackSpec, torch.Generator, str], nn.Module]


def convert_linear(module: nn.Linear, spec: FeedbackSpec, generator: torch.Generator,
                   name: str) -> FeedbackLinear:
    """A :class:`FeedbackLinear` sharing ``module``'s weight and bias Parameters."""
    spec = spec.for_layer(module.in_features, module.out_features, f"layer {name!r}")
    return FeedbackLinear.from_linear(module, spec.rule, spec.rank, spec.subspace, generator)


#: Exact module type -> :data:`Converter`. All registrations here.
CONVERTERS: dict[type, Converter] = {
    nn.Linear: convert_linear,
    nn.Conv2d: convert_conv2d,
    nn.MultiheadAttention: convert_multihead_attention,
    FusedQKV: convert_fused_qkv,
}


def _convertible(model: nn.Module) -> dict[str, nn.Module]:
    """Modules with a converter, by dotted name (first name of a shared module), in traversal order.

    A converter owns its module's whole subtree: nothing inside a convertible module is listed.
    """
    out: dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if type(m) in CONVERTERS and not any(name.startswith(f"{t}.") or t == "" for t in out):
            out[name] = m
    return out


#: The layer types convert produces.
FEEDBACK_TYPES: tuple[type, ...] = (FeedbackLinear, FeedbackConv2d, FeedbackMultiheadAttention)

#: Weight-carrying modules that need no feedback: their input is indices, never given a gradient.
NO_FEEDBACK_NEEDED: tuple[type, ...] = (nn.Embedding, nn.EmbeddingBag)


def unsupported_layers(model: nn.Module) -> dict[str, str]:
    """Modules convert cannot handle that would silently keep exact backprop: {name: type name}.

    A module counts when it owns a parameter named ``weight*`` with two or more dimensions (a
    matrix or kernel whose transpose backprop uses: ``nn.Conv1d``, ``nn.LSTM``'s ``weight_ih_l0``,
    ``nn.Bilinear``, an unregistered ``nn.Linear`` subclass, ...), has no converter, is not in
    :data:`NO_FEEDBACK_NEEDED`, and does not sit inside a convertible module (whose converter owns
    it, like ``nn.MultiheadAttention.out_proj``).
    """
    owners = list(_convertible(model))
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Module) and parametrize.is_parametrized(m, "weight"):
            # weight_norm / spectral_norm make a generated subclass whose weight is computed
            out[name] = f"{type(m).__name__} with a parametrized weight"
            continue
        if type(m) in CONVERTERS or isinstance(m, NO_FEEDBACK_NEEDED + FEEDBACK_TYPES):
            continue
        if any(name.startswith(f"{o}.") or o == "" for o in owners):
            continue
        if any(n.startswith("weight") and (isinstance(p, nn.parameter.UninitializedParameter)
                                           or p.dim() >= 2)
               for n, p in m.named_parameters(recurse=False)):
            out[name] = type(m).__name__
    return out


def _check_names(what: str, names: Collection[str], valid: Collection[str]) -> None:
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ValueError(f"{what} names modules that are not convertible layers of this model: "
                         f"{unknown}; valid names: {sorted(valid)}")


def convert(model: nn.Module, rule: str = "ldfa", rank: int | Mapping[str, int] | None = None,
            subspace: str = "local", exclude: Collection[str] = (), seed: int = 0,
            clip_rank: bool = False, inplace: bool = False, unsupported: str = "error",
            refactor_every: int | None = None) -> nn.Module:
    """Replace every layer with a converter (``nn.Linear``: :class:`FeedbackLinear`), recursively.

    Parameters
    ----------
    model : nn.Module
        Any model; its ``nn.Linear`` layers (exact type) are replaced, keeping their weight and bias.
    rule : str
        A registered rule of topology ``layer``: ``bp``, ``fa``, ``kp``, ``ldfa`` or one of yours
        (:func:`bioplastic.rules.register_rule`). Direct rules (``dfa``) are refused: they have no
        per-layer form (use ``circuits.mlp(..., rule="dfa")`` with ``bioplastic.build``).
    rank : int or dict of str to int, optional
        A low-rank rule's feedback rank r: one int for every layer, or ``{module name: r}``
        covering every converted layer (names as in ``model.named_modules()``).
    subspace : str
        How P and Q learn, a key of :data:`bioplastic.rules.SUBSPACES` (``fixed``, ``normative``,
        ``local``, ``oja``, ``q_only``, or one you registered).
    exclude : collection of str
        Module names left as they are (plain ``nn.Linear``: exact backprop).
    seed : int
        Seed of the ``torch.Generator`` that draws the feedback, layer by layer in traversal order
        (see :meth:`FeedbackLinear.reset_feedback`).
    clip_rank : bool
        Use min(r, in, out) where r is too large (the authors' behaviour) instead of raising.
    inplace : bool
        Modify ``model`` itself; otherwise a deep copy is converted and ``model`` is untouched.
    unsupported : {"error", "bp"}
        What to do with weight layers no converter handles (:func:`unsupported_layers`): raise,
        naming them and the supported types, or leave them on exact backprop.
    refactor_every : int, optional
        Reset every converted layer's P and Q to the truncated SVD of its W every this many
        training steps (:meth:`FeedbackLinear.set_refactor_every`,
        :meth:`FeedbackConv2d.set_refactor_every`); only for ``ldfa`` with a subspace rule that
        reads W (``normative``). The authors of arXiv 2502.20580 use ``len(loader) // 2``.

    Returns
    -------
    nn.Module
        The converted model (``model`` itself when ``inplace``; a FeedbackLinear when ``model`` is an
        ``nn.Linear``). A module shared by several parents stays shared.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert needs a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int; got {seed!r}")
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    if unsupported not in ("error", "bp"):
        raise ValueError(f"unsupported must be 'error' or 'bp'; got {unsupported!r}")
    done = [n or "<model>" for n, m in model.named_modules() if isinstance(m, FEEDBACK_TYPES)]
    if done:
        raise ValueError(f"this model is already converted (feedback layers: {', '.join(done[:5])}"
                         f"{', ...' if len(done) > 5 else ''}); convert the original model instead")
    others = unsupported_layers(model) if unsupported == "error" else {}
    if others:
        listing = ", ".join(f"{n or '<model>'} ({t})" for n, t in others.items())
        raise TypeError(f"convert has no feedback version of {listing}; supported types: "
                        f"{', '.join(t.__name__ for t in CONVERTERS)}. Pass unsupported='bp' to "
                        "leave them on exact backprop")
    targets = _convertible(model)
    _check_names("exclude", exclude, targets)
    targets = {n: m for n, m in targets.items() if n not in exclude}
    if isinstance(rank, Mapping):
        _check_names("rank", rank, targets)
        missing = [n for n in targets if n not in rank]
        if missing and takes_rank(rule):
            raise ValueError(f"rank dict gives no rank for {missing}; give every converted layer "
                             "a rank, or exclude it")
    # checks rule, subspace and rank presence once, before anything is copied
    checked = FeedbackSpec(rule, 1 if isinstance(rank, Mapping) and takes_rank(rule) else rank,
                           subspace, clip_rank)
    check_refactor_every(refactor_every, checked.learning_rule, f"convert(rule={rule!r})")

    if not inplace:
        model = copy.deepcopy(model)
        targets = {n: m for n, m in _convertible(model).items() if n in targets}
    generator = torch.Generator().manual_seed(int(seed))
    new = {}
    for name, module in targets.items():
        r = rank[name] if isinstance(rank, Mapping) else rank
        spec = FeedbackSpec(rule, r, subspace, clip_rank)
        new[id(module)] = CONVERTERS[type(module)](module, spec, generator, name)
    if refactor_every is not None:
        for replacement in new.values():
            for m in replacement.modules():
                if isinstance(m, (FeedbackLinear, FeedbackConv2d)) and m.rank is not None:
                    m.set_refactor_every(refactor_every)

    if id(model) in new:
        return new[id(model)]
    for parent in list(model.modules()):
        for child_name, child in parent._modules.items():
            if child is not None and id(child) in new:
                parent._modules[child_name] = new[id(child)]
    return model
