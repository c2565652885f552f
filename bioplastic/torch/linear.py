"""``FeedbackLinear``: a drop-in ``nn.Linear`` whose backward pass uses a feedback matrix B, not W^T.

The layer holds tensors; the math is the rule's (:mod:`bioplastic.rules`), applied by the Functions
of :mod:`.functional`. Any registered rule with topology ``layer`` can be carried; what the layer
stores follows the rule's *form*, B stored (in, out) like B = W^T:

=========  ===================================================================================
transport  nothing stored; B = ``rule.torch_transport(W)`` (bp: W^T, by plain autograd)
dense      B (in, out): a buffer when fixed (fa), a Parameter when plastic (kp:
           ``B.grad = weight.grad^T``; decay it, e.g. SGD ``weight_decay``, for B -> W^T)
low_rank   Parameters ``P`` (r, out) and ``Q`` (in, r), B = QP, moved by the subspace rule; a
           factor the rule does not learn (``SubspaceRule.learns``) has ``requires_grad=False`` and
           never receives a gradient (it stays in ``parameters()`` and the ``state_dict`` so every
           low-rank layer has the same attributes)
=========  ===================================================================================

A low-rank layer whose subspace rule reads W (``normative``, whose fixed point is the truncated SVD
of W^T) can also be *refactorised* periodically, as the authors of arXiv 2502.20580 do twice an
epoch: with ``refactor_every = n`` (:meth:`FeedbackLinear.set_refactor_every`), P and Q are reset
to the truncated SVD of W^T at the first training forward after every n backward passes, the same
schedule as :class:`bioplastic.torch.conv.FeedbackConv2d`'s.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from ..rules import RULES, SUBSPACES, Rule, get_rule
from . import functional as fn


def layer_rules(predicate=lambda cls: True) -> list[str]:
    """Registered rules a single layer can carry (topology ``layer``) that satisfy ``predicate``."""
    return [n for n, c in RULES.items() if c.topology == "layer" and predicate(c)]


def takes_rank(rule: str) -> bool:
    """Whether the registered rule ``rule`` accepts a rank (False for unknown names)."""
    return rule in RULES and RULES[rule].rank != "none"


def direct_hint(rule: str) -> str:
    """Why a rule of topology ``direct`` is refused by per-layer code."""
    return (f"rule {rule!r} has no per-layer form: its feedback skips layers and goes from the output "
            "straight to every hidden layer; use circuits.mlp(sizes, rule="
            f"{rule!r}) with bioplastic.build(circuit, backend='torch')")


@dataclass(frozen=True)
class FeedbackSpec:
    """How one layer sends its error back.

    Parameters
    ----------
    rule : str
        A registered rule of topology ``layer`` (``bp``, ``fa``, ``kp``, ``ldfa``, or one of yours).
    rank : int, optional
        Feedback rank r (rules that take one: ``ldfa``); must lie in 1..min(in, out) unless
        ``clip_rank``.
    subspace : str, optional
        Subspace rule of a low-rank rule, a key of :data:`bioplastic.rules.SUBSPACES`; rules without
        a rank ignore it, so None is allowed for them (a study run without a rank resolves it to None).
    clip_rank : bool
        Use min(r, in, out) instead of raising when r is too large (the authors' behaviour).
    """

    rule: str = "ldfa"
    rank: int | None = None
    subspace: str | None = "local"
    clip_rank: bool = False

    def __post_init__(self):
        if self.rule not in RULES:
            direct = [n for n, c in RULES.items() if c.topology == "direct"]
            raise ValueError(f"unknown rule {self.rule!r}; valid options: {', '.join(layer_rules())}"
                             + (f" (and {', '.join(map(repr, direct))} through circuits.mlp + "
                                "bioplastic.build)" if direct else ""))
        cls = RULES[self.rule]
        if cls.topology == "direct":
            raise ValueError(direct_hint(self.rule))
        if self.subspace not in SUBSPACES and not (self.subspace is None and cls.rank == "none"):
            raise ValueError(f"unknown subspace {self.subspace!r}; valid options: {', '.join(SUBSPACES)}")
        if cls.rank == "required" and self.rank is None:
            raise ValueError(f"rule {self.rule!r} needs rank=r (an int, or a dict {{module name: r}} "
                             "in convert)")
        if cls.rank == "none" and self.rank is not None:
            owners = " / ".join(layer_rules(lambda c: c.rank != "none"))
            raise ValueError(f"rank is an {owners} setting; rule {self.rule!r} has no rank")

    @property
    def learning_rule(self) -> Rule:
        """The rule object (from the registry; low rank when a rank is given)."""
        return get_rule(self.rule, self.subspace, low_rank=self.rank is not None)

    def for_layer(self, n_in: int, n_out: int, where: str) -> FeedbackSpec:
        """This spec with the rank checked (or clipped) for a layer ``n_in -> n_out``.

        Raises ValueError naming ``where`` (e.g. ``"layer 'encoder.fc1'"``) and the valid range.
        """
        if self.rank is None:
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


def refactorable() -> list[str]:
    """Subspace rules whose fixed point is the SVD of W (they read it): ``refactor_every`` applies."""
    return [n for n, s in SUBSPACES.items() if s.reads_forward_weight]


def check_refactor_every(n, rule: Rule, where: str) -> int | None:
    """``n`` checked as a refactorisation period for a layer with rule object ``rule``.

    None passes; otherwise ``n`` must be a positive int and the layer low rank with a subspace rule
    that reads W (:func:`refactorable`). Raises ValueError naming ``where`` and the valid options.
    """
    if n is None:
        return None
    subspace = rule.subspace.name if rule.form == "low_rank" else None
    if rule.form != "low_rank" or subspace not in refactorable():
        raise ValueError(f"refactor_every is an option of low-rank feedback with a subspace rule that "
                         f"reads W ({', '.join(map(repr, refactorable()))}: the SVD is its fixed point); "
                         f"{where} has rule {rule.name!r}, subspace {subspace!r}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"refactor_every must be a positive int or None; got {n!r}")
    return int(n)


def unknown_form(rule: Rule) -> ValueError:
    """The error for a rule whose form no torch layer implements (forms are a closed set)."""
    return ValueError(f"rule {rule.name!r} has form {rule.form!r}; the torch layers implement the forms "
                      "transport, dense and low_rank")


def factor_draws(init: tuple[str, str], svd, draw_p: dict, draw_q: dict):
    """(P, Q) from a subspace rule's ``init`` names (as :mod:`bioplastic.circuit.init` names them).

    ``svd()`` returns both factors of the truncated SVD (called once, when either factor asks for
    it); ``draw_p[name]()`` and ``draw_q[name]()`` draw the other initialisations a layer supports.
    P is drawn before Q, so a seed gives fixed draws. Raises naming what each factor supports.
    """
    p_init, q_init = init
    both = svd() if "svd" in init else None
    out = []
    for which, name, table, i in (("P", p_init, draw_p, 0), ("Q", q_init, draw_q, 1)):
        if name == "svd":
            out.append(both[i])
        elif name in table:
            out.append(table[name]())
        else:
            raise ValueError(f"initialisation {name!r} of factor {which} is not supported by the torch "
                             f"layers; supported for {which}: {', '.join(['svd', *table])}")
    return tuple(out)


class FusedQKV(nn.Linear):
    """``nn.Linear`` (dim -> 3 dim) holding attention's query, key and value maps in one weight.

    It computes exactly what ``nn.Linear`` does. It is a type of its own only so that a feedback
    conversion can tell a fused map from a single one: :func:`bioplastic.torch.convert` gives it
    three times the rank of a single map (as in the authors' ViT code for arXiv 2502.20580: the fused qkv map gets 3r).
    """


class FeedbackLinear(nn.Module):
    """Affine layer y = x W^T + b whose input gradient is g B^T (module docstring).

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths; inputs are (..., in_features), like ``nn.Linear``.
    bias : bool
        Learn an additive bias.
    rule : str
        A registered rule of topology ``layer``: ``bp``, ``fa``, ``kp``, ``ldfa``, ...
    rank : int, optional
        Feedback rank r of a low-rank rule, in 1..min(in_features, out_features).
    subspace : str
        How a low-rank rule's P and Q learn (a key of :data:`bioplastic.rules.SUBSPACES`).
    generator : torch.Generator, optional
        Source of the initial weights and feedback (the global generator when omitted).
    device, dtype : optional
        As for ``nn.Linear``; ``device="meta"`` skips initialisation (``torch.nn.utils.skip_init``).
    refactor_every : int, optional
        Periodic SVD refactorisation (attribute below); None: never.

    Attributes
    ----------
    learning_rule : bioplastic.rules.Rule
        The rule object whose math the backward pass applies.
    refactor_every : int or None
        Low rank with a subspace rule that reads W (``normative``): reset (P, Q) to the truncated
        SVD of W^T (:meth:`refactorise`) at the first training forward after every
        ``refactor_every`` backward passes, counted as training steps: every forward of a step
        (a fused map applied to query, key and value is three) precedes its backward, and the step
        counts once. The authors of arXiv 2502.20580 refactorise every ``len(loader) // 2`` steps.
        Settable after construction (:meth:`set_refactor_every`).

    Notes
    -----
    Weights start as ``nn.Linear``'s (U(-1/sqrt(in), 1/sqrt(in))); feedback as
    :meth:`reset_feedback` says. It has ``nn.Linear``'s attributes but is deliberately not a
    subclass, so ``isinstance(m, nn.Linear)`` code (re-initialisers, converters) leaves it alone.

    When the input takes no gradient (a first layer reading data), the feedback delivers its error
    to no neuron, like a circuit, which has no feedback into its input population: low-rank P and Q
    then get zero gradients and none of their backward work is done.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rule: str = "ldfa",
                 rank: int | None = None, subspace: str = "local", *,
                 generator: torch.Generator | None = None, device=None, dtype=None,
                 refactor_every: int | None = None):
        super().__init__()
        where = f"FeedbackLinear({in_features}, {out_features})"
        self.spec = FeedbackSpec(rule, rank, subspace).for_layer(in_features, out_features, where)
        self.learning_rule = self.spec.learning_rule
        self.in_features, self.out_features = in_features, out_features
        kw = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))
        self.register_parameter("bias", nn.Parameter(torch.empty(out_features, **kw)) if bias else None)
        lr = self.learning_rule
        if lr.form == "dense":
            b = torch.empty(in_features, out_features, **kw)
            if lr.plastic:
                self.B = nn.Parameter(b)
            else:
                self.register_buffer("B", b)
        elif lr.form == "low_rank":
            r, learns = self.spec.rank, lr.subspace.learns
            self.P = nn.Parameter(torch.empty(r, out_features, **kw), requires_grad="P" in learns)
            self.Q = nn.Parameter(torch.empty(in_features, r, **kw), requires_grad="Q" in learns)
        elif lr.form != "transport":
            raise unknown_form(lr)
        self.refactor_every = None
        self._backward_calls = 0  # training steps seen (refactorisation counts these, not forwards)
        self._refactored_at = 0
        self._step_open = False   # a forward of the current step awaits its backward
        self.set_refactor_every(refactor_every)
        self.reset_parameters(generator)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rule: str = "ldfa", rank: int | None = None,
                    subspace: str = "local", generator: torch.Generator | None = None,
                    refactor_every: int | None = None) -> FeedbackLinear:
        """A FeedbackLinear that uses ``linear``'s own weight and bias Parameters (shared, not copied).

        Feedback is drawn from ``generator`` by :meth:`reset_feedback`, on ``linear``'s device and
        dtype; ``refactor_every`` as for the constructor.
        """
        w = linear.weight
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, rule, rank,
                  subspace, device="meta", dtype=w.dtype,
                  refactor_every=refactor_every).to_empty(device=w.device)
        new.weight = w
        new.bias = linear.bias
        return new.reset_feedback(generator)

    # ----------------------------------------------------------------- attributes
    @property
    def rule(self) -> str:
        """Name of the layer's credit-assignment rule."""
        return self.spec.rule

    @property
    def rank(self) -> int | None:
        """Feedback rank r (low-rank rules), else None."""
        return self.spec.rank

    @property
    def subspace(self) -> str | None:
        """Name of the subspace rule of a low-rank rule's P and Q, else None."""
        return self.spec.subspace if self.learning_rule.form == "low_rank" else None

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

        dense: B ~ N(0, 1/out). low_rank: the subspace rule's ``init`` names each factor's draw:
        ``svd`` the truncated SVD of W^T (:meth:`refactorise`), ``orthonormal`` P random
        orthonormal rows, ``expand`` Q ~ N(0, 1/out) (so QP has fa's scale at any rank),
        ``normal`` N(0, 1/pre), ``zeros``. Random draws are float64 on the CPU, so a seed gives the
        same feedback on every device and dtype. Returns self.
        """
        lr, n_in, n_out = self.learning_rule, self.in_features, self.out_features
        with torch.no_grad():
            if lr.form == "dense":
                self.B.copy_(fn.normal((n_in, n_out), generator))
            elif lr.form == "low_rank":
                r = self.rank
                p, q = factor_draws(
                    lr.subspace.init,
                    lambda: fn.svd_factors(self.weight.detach().to(torch.float64), r),
                    {"orthonormal": lambda: fn.orthonormal_rows(r, n_out, generator),
                     "normal": lambda: fn.normal((r, n_out), generator),
                     "zeros": lambda: torch.zeros(r, n_out, dtype=torch.float64)},
                    {"expand": lambda: fn.normal((n_in, r), generator) * (r / n_out) ** 0.5,
                     "normal": lambda: fn.normal((n_in, r), generator),
                     "zeros": lambda: torch.zeros(n_in, r, dtype=torch.float64)})
                self.P.copy_(p)
                self.Q.copy_(q)
        return self

    @torch.no_grad()
    def refactorise(self) -> FeedbackLinear:
        """Reset P, Q to the truncated SVD of W^T (QP = best rank-r approximation); low rank only.

        The normative rule's fixed point; the authors re-run it twice per epoch. Returns self.
        """
        if self.learning_rule.form != "low_rank":
            owners = " or ".join(map(repr, layer_rules(lambda c: c.rank != "none")))
            raise ValueError(f"refactorise needs rule {owners} (low-rank feedback); this layer has "
                             f"rule {self.rule!r}")
        p, q = fn.svd_factors(self.weight.detach().to(torch.float64), self.rank)
        self.P.copy_(p)
        self.Q.copy_(q)
        return self

    def set_refactor_every(self, n: int | None) -> FeedbackLinear:
        """Refactorise (P, Q) by SVD every ``n`` training steps; None: never. Returns self.

        For low-rank feedback whose subspace rule reads W (``normative``: the SVD is its fixed
        point); raises ValueError naming those rules otherwise. The count of steps is kept, so a
        new period applies from the last refactorisation (or the start).
        """
        self.refactor_every = check_refactor_every(n, self.learning_rule,
                                                   f"FeedbackLinear({self.in_features}, "
                                                   f"{self.out_features})")
        return self

    def _count_step(self, grad: torch.Tensor) -> None:
        """Output-gradient hook: the first backward through the layer after a forward closes a step."""
        if self._step_open:
            self._backward_calls += 1
            self._step_open = False

    def _periodic(self) -> bool:
        """Whether this forward takes part in periodic refactorisation (a training step's forward)."""
        return self.refactor_every is not None and self.training and torch.is_grad_enabled()

    def _maybe_refactorise(self) -> None:
        """Refactorise if due, before a training forward's graph saves P and Q (see class)."""
        if (not self._step_open
                and self._backward_calls - self._refactored_at >= self.refactor_every):
            # only between steps: a graph still waiting for its backward keeps the P, Q it saved
            self.refactorise()
            self._refactored_at = self._backward_calls

    def _open_step(self, out: torch.Tensor) -> torch.Tensor:
        """Mark a step open until the first backward through ``out`` (which counts it)."""
        if out.requires_grad:
            self._step_open = True
            out.register_hook(self._count_step)
        return out

    # ----------------------------------------------------------------- use
    @torch.no_grad()
    def feedback_matrix(self) -> torch.Tensor:
        """The B the backward pass uses, shape (in, out): transport(W), B, or QP (a fresh tensor)."""
        lr = self.learning_rule
        if lr.form == "transport":
            return lr.torch_transport(self.weight.detach()).clone()
        if lr.form == "dense":
            return self.B.clone()
        if lr.form == "low_rank":
            return self.Q @ self.P
        raise unknown_form(lr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x W^T + b for x (..., in_features); returns (..., out_features)."""
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"{type(self).__name__} expects inputs of shape (..., {self.in_features}); "
                             f"got {tuple(x.shape)}")
        return self.apply_rows(x)

    def apply_rows(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """``x @ W[rows].T + b[rows]`` (all rows when None), with the matching part of the feedback.

        Its input gradient is ``g B[:, rows]^T``: a slice of the transport of the whole W, of B, or
        ``Q P[:, rows]``; gradients reach the slices of W, b, P (or B) and all of Q. Attention uses
        it to apply a fused q/k/v map to three different inputs.
        """
        lr = self.learning_rule
        w, b = self.weight, self.bias
        if rows is not None:
            w, b = w[rows], None if b is None else b[rows]
        if lr.form == "transport":
            if lr.exact_gradient:
                return F.linear(x, w, b)
            source = None if rows is None else self.weight.detach()
            return fn.TransportFeedbackFunction.apply(x, w, b, lr, source, rows)
        if lr.form == "dense":
            B = self.B if rows is None else self.B[:, rows]
            return fn.DenseFeedbackFunction.apply(x, w, b, B, lr)
        if lr.form == "low_rank":
            periodic = self._periodic()
            if periodic:
                self._maybe_refactorise()
            P = self.P if rows is None else self.P[:, rows]
            out = fn.LowRankFeedbackFunction.apply(x, w, b, P, self.Q, lr.subspace)
            return self._open_step(out) if periodic else out
        raise unknown_form(lr)

    def extra_repr(self) -> str:
        text = (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, rule={self.rule!r}")
        if self.learning_rule.form == "low_rank":
            text += f", rank={self.rank}, subspace={self.subspace!r}"
            if self.refactor_every is not None:
                text += f", refactor_every={self.refactor_every}"
        return text
