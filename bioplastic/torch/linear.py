"""``FeedbackLinear``: a drop-in ``nn.Linear`` whose backward pass uses a feedback matrix B, not W^T.

The math (backward maps, subspace rules) is in :mod:`.functional`; this module only holds tensors.
Feedback by rule, stored (in, out) like B = W^T:

====  ========================================================================================
bp    none stored; B = W^T (plain autograd)
fa    buffer ``B`` (in, out), fixed random
kp    Parameter ``B`` (in, out), ``B.grad = weight.grad^T`` (decay it, e.g. SGD ``weight_decay``,
      for B to converge to W^T)
ldfa  Parameters ``P`` (r, out) and ``Q`` (in, r), B = QP; for ``subspace="fixed"`` they have
      ``requires_grad=False`` and never receive a gradient (they stay in ``parameters()`` and the
      ``state_dict`` so every LDFA layer has the same attributes)
====  ========================================================================================
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from ..rules import SUBSPACES
from . import functional as fn

#: Credit-assignment rules a single layer can carry (dfa needs the whole network: see DFA_HINT).
LAYER_RULES = ("bp", "fa", "kp", "ldfa")
#: Why ``dfa`` is refused by per-layer code.
DFA_HINT = ("rule 'dfa' has no per-layer form: its feedback skips layers and goes from the output "
            "straight to every hidden layer; use circuits.mlp(sizes, rule='dfa') with "
            "bioplastic.build(circuit, backend='torch')")


@dataclass(frozen=True)
class FeedbackSpec:
    """How one layer sends its error back.

    Parameters
    ----------
    rule : str
        One of :data:`LAYER_RULES`.
    rank : int, optional
        Feedback rank r (ldfa only); must lie in 1..min(in, out) unless ``clip_rank``.
    subspace : str
        LDFA subspace rule, one of ``fixed``, ``normative``, ``local``, ``oja``.
    clip_rank : bool
        Use min(r, in, out) instead of raising when r is too large (the authors' behaviour).
    """

    rule: str = "ldfa"
    rank: int | None = None
    subspace: str = "local"
    clip_rank: bool = False

    def __post_init__(self):
        if self.rule == "dfa":
            raise ValueError(DFA_HINT)
        if self.rule not in LAYER_RULES:
            raise ValueError(f"unknown rule {self.rule!r}; valid options: {', '.join(LAYER_RULES)} "
                             "(and 'dfa' through circuits.mlp + bioplastic.build)")
        if self.subspace not in SUBSPACES:
            raise ValueError(f"unknown subspace {self.subspace!r}; valid options: {', '.join(SUBSPACES)}")
        if self.rule == "ldfa" and self.rank is None:
            raise ValueError("rule 'ldfa' needs rank=r (an int, or a dict {module name: r} in convert)")
        if self.rule != "ldfa" and self.rank is not None:
            raise ValueError(f"rank is an ldfa setting; rule {self.rule!r} has no rank")

    def for_layer(self, n_in: int, n_out: int, where: str) -> FeedbackSpec:
        """This spec with the rank checked (or clipped) for a layer ``n_in -> n_out``.

        Raises ValueError naming ``where`` (e.g. ``"layer 'encoder.fc1'"``) and the valid range.
        """
        if self.rule != "ldfa":
            return self
        r, hi = self.rank, min(n_in, n_out)
        if not isinstance(r, numbers.Integral) or isinstance(r, bool) or r < 1:
            raise ValueError(f"rank {r!r} for {where} is invalid: it must be an int in 1..{hi} = "
                             f"min(in_features={n_in}, out_features={n_out})")
        if r > hi:
            if not self.clip_rank:
                raise ValueError(f"rank {r} for {where} is out of range: it must be an int in 1..{hi} "
                                 f"= min(in_features={n_in}, out_features={n_out}); pass "
                                 "clip_rank=True to use min(r, in, out)")
            r = hi
        return replace(self, rank=int(r))


class FeedbackLinear(nn.Module):
    """Affine layer y = x W^T + b whose input gradient is g B^T (module docstring).

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths; inputs are (..., in_features), like ``nn.Linear``.
    bias : bool
        Learn an additive bias.
    rule : str
        ``bp``, ``fa``, ``kp`` or ``ldfa``.
    rank : int, optional
        Feedback rank r of ldfa, in 1..min(in_features, out_features).
    subspace : str
        How ldfa's P and Q learn: ``fixed``, ``normative``, ``local``, ``oja``
        (see :mod:`.functional`).
    generator : torch.Generator, optional
        Source of the initial weights and feedback (the global generator when omitted).
    device, dtype : optional
        As for ``nn.Linear``; ``device="meta"`` skips initialisation (``torch.nn.utils.skip_init``).

    Notes
    -----
    Weights start as ``nn.Linear``'s (U(-1/sqrt(in), 1/sqrt(in))); feedback as
    :meth:`reset_feedback` says. It has ``nn.Linear``'s attributes but is deliberately not a
    subclass, so ``isinstance(m, nn.Linear)`` code (re-initialisers, converters) leaves it alone.

    When the input takes no gradient (a first layer reading data), the feedback delivers its error
    to no neuron, like a circuit, which has no feedback into its input population: ldfa's P and Q
    then get zero gradients and none of their backward work is done.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rule: str = "ldfa",
                 rank: int | None = None, subspace: str = "local", *,
                 generator: torch.Generator | None = None, device=None, dtype=None):
        super().__init__()
        where = f"FeedbackLinear({in_features}, {out_features})"
        self.spec = FeedbackSpec(rule, rank, subspace).for_layer(in_features, out_features, where)
        self.in_features, self.out_features = in_features, out_features
        kw = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))
        self.register_parameter("bias", nn.Parameter(torch.empty(out_features, **kw)) if bias else None)
        if rule == "fa":
            self.register_buffer("B", torch.empty(in_features, out_features, **kw))
        elif rule == "kp":
            self.B = nn.Parameter(torch.empty(in_features, out_features, **kw))
        elif rule == "ldfa":
            learnt = subspace != "fixed"
            r = self.spec.rank
            self.P = nn.Parameter(torch.empty(r, out_features, **kw), requires_grad=learnt)
            self.Q = nn.Parameter(torch.empty(in_features, r, **kw), requires_grad=learnt)
        self.reset_parameters(generator)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rule: str = "ldfa", rank: int | None = None,
                    subspace: str = "local", generator: torch.Generator | None = None
                    ) -> FeedbackLinear:
        """A FeedbackLinear that uses ``linear``'s own weight and bias Parameters (shared, not copied).

        Feedback is drawn from ``generator`` by :meth:`reset_feedback`, on ``linear``'s device and dtype.
        """
        w = linear.weight
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, rule, rank,
                  subspace, device="meta", dtype=w.dtype).to_empty(device=w.device)
        new.weight = w
        new.bias = linear.bias
        return new.reset_feedback(generator)

    # ----------------------------------------------------------------- attributes
    @property
    def rule(self) -> str:
        """Credit-assignment rule of the layer."""
        return self.spec.rule

    @property
    def rank(self) -> int | None:
        """Feedback rank r (ldfa), else None."""
        return self.spec.rank

    @property
    def subspace(self) -> str | None:
        """Subspace rule of ldfa's P and Q, else None."""
        return self.spec.subspace if self.rule == "ldfa" else None

    # ----------------------------------------------------------------- initialisation
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw W and b as ``nn.Linear`` does, then the feedback (:meth:`reset_feedback`)."""
        if self.weight.is_meta:
            return
        bound = self.in_features ** -0.5
        with torch.no_grad():
            w = torch.rand(self.weight.shape, generator=generator, dtype=torch.float64)
            self.weight.copy_((2 * w - 1) * bound)
            if self.bias is not None:
                b = torch.rand(self.bias.shape, generator=generator, dtype=torch.float64)
                self.bias.copy_((2 * b - 1) * bound)
        self.reset_feedback(generator)

    def reset_feedback(self, generator: torch.Generator | None = None) -> FeedbackLinear:
        """Draw the feedback from the current weight, as :mod:`bioplastic.circuit.init` does for circuits.

        fa, kp: B ~ N(0, 1/out). ldfa ``fixed`` and ``oja``: P random orthonormal rows,
        Q ~ N(0, 1/out), so QP has fa's scale at any rank; ``local``, ``normative``: the truncated SVD of W^T
        (:meth:`refactorise`). Random draws are float64 on the CPU, so a seed gives the same
        feedback on every device and dtype. Returns self.
        """
        rule, n_in, n_out = self.rule, self.in_features, self.out_features
        with torch.no_grad():
            if rule in ("fa", "kp"):
                self.B.copy_(fn.normal((n_in, n_out), generator))
            elif rule == "ldfa" and self.subspace in ("local", "normative"):
                self.refactorise()
            elif rule == "ldfa":
                r = self.rank
                self.P.copy_(fn.orthonormal_rows(r, n_out, generator))
                self.Q.copy_(fn.normal((n_in, r), generator) * (r / n_out) ** 0.5)
        return self

    @torch.no_grad()
    def refactorise(self) -> FeedbackLinear:
        """Reset P, Q to the truncated SVD of W^T (QP = best rank-r approximation); ldfa only.

        The normative rule's fixed point; the authors re-run it twice per epoch. Returns self.
        """
        if self.rule != "ldfa":
            raise ValueError(f"refactorise needs rule 'ldfa'; this layer has rule {self.rule!r}")
        p, q = fn.svd_factors(self.weight.detach().to(torch.float64), self.rank)
        self.P.copy_(p)
        self.Q.copy_(q)
        return self

    # ----------------------------------------------------------------- use
    @torch.no_grad()
    def feedback_matrix(self) -> torch.Tensor:
        """The B the backward pass uses, shape (in, out): W^T, B, or QP (a fresh tensor)."""
        if self.rule == "bp":
            return self.weight.T.clone()
        if self.rule in ("fa", "kp"):
            return self.B.clone()
        return self.Q @ self.P

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x W^T + b for x (..., in_features); returns (..., out_features)."""
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"{type(self).__name__} expects inputs of shape (..., {self.in_features}); "
                             f"got {tuple(x.shape)}")
        if self.rule == "bp":
            return F.linear(x, self.weight, self.bias)
        if self.rule == "ldfa":
            return fn.LowRankFeedbackFunction.apply(x, self.weight, self.bias, self.P, self.Q,
                                                    self.subspace)
        return fn.DenseFeedbackFunction.apply(x, self.weight, self.bias, self.B)

    def extra_repr(self) -> str:
        text = (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, rule={self.rule!r}")
        if self.rule == "ldfa":
            text += f", rank={self.rank}, subspace={self.subspace!r}"
        return text
