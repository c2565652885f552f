r"""The rule interface.

A rule (:class:`Rule`) is declared by two facts and a little math:

* its **topology**: ``layer`` (the error of layer l travels to layer l-1 through layer l's own
  pathway, as in backprop) or ``direct`` (the output error e reaches every hidden layer l through
  its own pathway, as in direct feedback alignment);
* its **form**, what one pathway stores: ``transport`` (nothing: the feedback is a function of the
  forward weights, B = g(W)), ``dense`` (a full matrix B) or ``low_rank`` (B = QP through a
  bottleneck of r neurons, with a :class:`~bioplastic.rules.subspace.SubspaceRule` for P and Q).

From these the base class derives the circuit's feedback populations and projections, the float64
layer errors and feedback updates (the specification), and the facts
:meth:`bioplastic.Circuit.constraints` reports. Backends dispatch on the (closed) topology and form,
never on a rule's name, and take the math from the rule.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..circuit.keys import key, kind_of
from ._base import FORMS, TOPOLOGIES, Array, as_float64, layer_to_layer, n_layers

#: How the reciprocal synapses that carry a subspace rule's extra compartments (v = Q^T h, the
#: reconstruction P^T z) get their weights: ``read`` (they read the weights of the factor they
#: mirror: a symmetric wiring) or ``learned`` (they hold their own weights, ``Qt{l}``/``Pt{l}``,
#: moved by the factor's update mirrored, as Kolen-Pollack moves B with W's update).
RECIPROCAL = ("read", "learned")
#: Weight kind of the learned reciprocal of each factor.
MIRROR_KIND = {"Q": "Qt", "P": "Pt"}


class Rule(abc.ABC):
    """A credit-assignment rule: how the output error becomes each hidden layer's error.

    Subclasses set the class attributes and the math of their form:

    * ``transport``: :meth:`transport` (B from W);
    * ``dense``: :attr:`plastic` and, when plastic, :meth:`dense_gradient`;
    * ``low_rank``: nothing: the subspace rule given at construction moves P and Q.

    A rule object is stateless: everything it reads is passed in, and it returns new arrays.

    Parameters
    ----------
    subspace : str, optional
        Subspace rule of a ``low_rank`` rule (a key of :data:`bioplastic.rules.SUBSPACES`).
    """

    #: Registry name.
    name: ClassVar[str] = ""
    #: One line for listings (``bioplastic info``).
    summary: ClassVar[str] = ""
    #: ``layer`` or ``direct`` (module docstring).
    topology: ClassVar[str] = "layer"
    #: ``transport``, ``dense`` or ``low_rank`` (module docstring); a rule whose form depends on
    #: whether a rank is given sets it per instance (see :class:`~bioplastic.rules.dfa.DirectFeedback`).
    form: str = "dense"
    #: ``dense``: whether B learns (then :meth:`dense_gradient` gives its gradient).
    plastic: ClassVar[bool] = False
    #: Whether the rule takes a rank: ``none``, ``required`` (ldfa) or ``optional`` (dfa: low rank
    #: with a rank, full without).
    rank: ClassVar[str] = "none"
    #: Brian2: expression of a dense plastic B synapse's eligibility, in the synapse's own variables
    #: (``{err}_pre`` the presynaptic error signal, ``rate_post`` the postsynaptic rate); None when
    #: no synapse-local form is declared (the backend then refuses the rule).
    brian2_eligibility: ClassVar[str | None] = None
    #: Brian2: the weight a ``transport`` synapse uses, as an expression of the forward weight ``w``
    #: it reads (bp: ``"w"``); None when not expressible.
    brian2_transport: ClassVar[str | None] = None
    #: True when the feedback equals the exact gradient's (B = W^T): backends may use plain autograd.
    exact_gradient: ClassVar[bool] = False
    #: One of :data:`RECIPROCAL`; set per instance by :meth:`with_reciprocal`.
    reciprocal: str = "read"

    def __init__(self, subspace: str | None = None, low_rank: bool = False):
        from .registry import get_subspace

        self.subspace = get_subspace(subspace or "local") if self.form == "low_rank" else None
        if self.topology not in TOPOLOGIES or self.form not in FORMS:
            raise ValueError(f"rule {self.name!r} declares topology {self.topology!r} and form "
                             f"{self.form!r}; valid topologies: {', '.join(TOPOLOGIES)}; valid forms: "
                             f"{', '.join(FORMS)}")
        if self.subspace is not None and self.topology == "direct" and self.subspace.reads_forward_weight:
            raise ValueError(f"subspace rule {self.subspace.name!r} reads the forward weight W_l that "
                             f"its pathway replaces; direct feedback (rule {self.name!r}) has no such W. "
                             "Valid subspace rules here: "
                             + ", ".join(self.valid_subspaces()))

    def with_reciprocal(self, mode: str) -> Rule:
        """Set how reciprocal synapses get their weights (:data:`RECIPROCAL`); returns the rule.

        ``learned`` needs low-rank feedback whose subspace rule declares the factors its
        reciprocal synapses mirror (``mirrors``) and their gradients (``mirrored_gradients``).
        """
        if mode not in RECIPROCAL:
            raise ValueError(f"unknown reciprocal {mode!r}; valid options: {', '.join(RECIPROCAL)}")
        if mode == "learned":
            from .registry import SUBSPACES

            able = [n for n, s in SUBSPACES.items() if s.mirrors]
            if self.form != "low_rank":
                raise ValueError(f"reciprocal='learned' is for low-rank feedback through a bottleneck; "
                                 f"rule {self.name!r} has form {self.form!r} (subspace rules with learned "
                                 f"reciprocals: {', '.join(able)})")
            if not self.subspace.mirrors:
                raise ValueError(f"subspace rule {self.subspace.name!r} has no reciprocal synapses to "
                                 f"learn (it declares no mirrors); subspace rules with learned "
                                 f"reciprocals: {', '.join(able)}")
        self.reciprocal = mode
        return self

    @property
    def mirrored(self) -> tuple[str, ...]:
        """Factors (``Q``, ``P``) whose reciprocal synapses hold learned weights (empty unless
        ``reciprocal == "learned"``)."""
        if self.reciprocal != "learned":
            return ()
        return tuple(dict.fromkeys(self.subspace.mirrors.values()))

    # ----------------------------------------------------------------- identity
    @property
    def plasticity(self) -> str:
        """Plasticity label of this rule's feedback synapses (the circuit's projection ``rule``)."""
        if self.form == "low_rank":
            return self.subspace.name
        if self.form == "transport":
            return "transport"
        return self.name if self.plastic else "fixed"

    def valid_subspaces(self) -> list[str]:
        """Subspace rules this rule can carry (all for ``layer``, those not reading W for ``direct``)."""
        from .registry import SUBSPACES

        return [n for n, s in SUBSPACES.items()
                if self.topology == "layer" or not s.reads_forward_weight]

    def __repr__(self) -> str:
        sub = f", subspace={self.subspace.name!r}" if self.subspace is not None else ""
        rec = f", reciprocal={self.reciprocal!r}" if self.reciprocal != "read" else ""
        return f"{type(self).__name__}(name={self.name!r}, form={self.form!r}{sub}{rec})"

    # ----------------------------------------------------------------- form math (specification)
    def transport(self, W: Array) -> Array:
        """``transport`` form: the feedback B (n_{l-1}, n_l) built from W_l (n_l, n_{l-1})."""
        raise NotImplementedError(f"rule {self.name!r} has form {self.form!r}, not 'transport'")

    def dense_gradient(self, B: Array, W: Array, grad_w: Array, h_prev: Array, delta: Array) -> Array:
        """``dense`` plastic form: gradient (negative update) of B (n_{l-1}, n_l).

        ``grad_w`` is W_l's batch-mean gradient of this step, ``h_prev`` (batch, n_{l-1}) and
        ``delta`` (batch, n_l) the rates and errors it came from.
        """
        raise NotImplementedError(f"rule {self.name!r} declares no plastic dense feedback")

    # ----------------------------------------------------------------- torch bodies of the form math
    # The torch layers call these; each default runs the float64 specification above on copies, so
    # a registered rule is exact on torch without writing torch code; a rule may override one with
    # a tensor body (tests hold it to the specification).
    def torch_transport(self, W):
        """:meth:`transport` of a torch tensor W (out, in): B (in, out) in W's dtype and device."""
        return W.new_tensor(self.transport(as_float64(W)))

    def torch_dense_gradient(self, B, W, grad_w, x_rows, g_rows, n_samples=None):
        """:meth:`dense_gradient` for torch rows, in B's dtype and device.

        ``x_rows`` (N, in) and ``g_rows = dloss/dy`` (N, out) are a layer's rows, ``grad_w`` the
        weight gradient ``g_rows^T x_rows`` (out, in); with a loss that is a mean over the N rows,
        h_prev = x_rows, delta = N g and grad_w is the batch-mean gradient. ``n_samples``: samples
        the loss averages over when rows are samples x positions (the default reads N, as
        :meth:`~bioplastic.rules.SubspaceRule.torch_gradients` does).
        """
        n = x_rows.shape[0]
        return B.new_tensor(self.dense_gradient(as_float64(B), as_float64(W), as_float64(grad_w),
                                                as_float64(x_rows), as_float64(g_rows) * n))

    def torch_conv_dense_gradient(self, B, W, grad_w, x, g, geometry):
        """:meth:`dense_gradient` of a feedback convolution's kernel B (W's shape: (C_out, C_in/G, k, k)).

        Per group on the unfolded patches (see
        :meth:`~bioplastic.rules.SubspaceRule.torch_conv_gradients`): B_f = the group's flattened
        kernel transposed, (C_in/G k k, C_out/G), is the Linear layout's B.
        """
        import torch

        from .subspace._base import conv_rows, grouped

        groups, n = geometry.groups, x.shape[0]
        x_rows, g_rows = conv_rows(x, g, W.shape[-2:], geometry)
        b, w, dw = grouped(B, groups), grouped(W, groups), grouped(grad_w, groups)
        c_out, fan = w.shape[1], w.shape[2]
        out = [self.torch_dense_gradient(b[j].T, w[j], dw[j], x_rows[:, j * fan:(j + 1) * fan],
                                         g_rows[:, j * c_out:(j + 1) * c_out], n_samples=n).T
               for j in range(groups)]
        return torch.stack(out).reshape(B.shape)

    # ----------------------------------------------------------------- the circuit it needs
    def rank_bounds(self, sizes: Sequence[int]) -> list[int]:
        """Largest rank of each low-rank pathway (one per bottleneck)."""
        L = len(sizes) - 1
        if self.topology == "direct":
            return [sizes[-1]]
        return [min(sizes[l - 1], sizes[l]) for l in range(2, L + 1)]

    def feedback_circuit(self, names: Sequence[str], sizes: Sequence[int], ranks: Sequence[int] | None,
                         neuron: str = "rate") -> tuple[list, list]:
        """The feedback populations and projections of a layered circuit.

        Parameters
        ----------
        names : sequence of str
            Forward populations, input first, output last; the output error lives in ``"error"``.
        sizes : sequence of int
            Their sizes [n_0, ..., n_L].
        ranks : sequence of int, optional
            One rank per bottleneck (``low_rank`` forms; see :meth:`rank_bounds`).
        neuron : str
            Neuron model of the bottleneck populations.

        Returns
        -------
        populations, projections : lists of :class:`~bioplastic.Population`, :class:`~bioplastic.Projection`

        With learned reciprocals (:meth:`with_reciprocal`) every mirrored factor gets a reciprocal
        projection running against it: ``Qt{l}`` from the layer Q{l} reaches to its bottleneck,
        ``Pt{l}`` from the bottleneck to the error P{l} reads, drawn at random (``normal``).
        """
        from ..circuit.graph import Population, Projection

        L = len(sizes) - 1
        pops, projs = [], []
        plasticity = self.plasticity

        def error_of(l: int) -> str:
            return "error" if l == L else names[l]

        if self.form == "low_rank":
            p_init, q_init = self.subspace.init if self.topology == "layer" else ("orthonormal", "expand")
        if self.topology == "layer":
            for i, l in enumerate(range(2, L + 1)):
                src, dst = error_of(l), names[l - 1]
                if self.form == "low_rank":
                    bottleneck = f"feedback{l}"
                    pops.append(Population(bottleneck, ranks[i], "feedback", "linear", neuron))
                    projs += [Projection(key("P", l), src, bottleneck, "feedback", plasticity, p_init, l),
                              Projection(key("Q", l), bottleneck, dst, "feedback", plasticity, q_init, l)]
                    if "Q" in self.mirrored:
                        projs.append(Projection(key("Qt", l), dst, bottleneck, "feedback", plasticity,
                                                "normal", l))
                    if "P" in self.mirrored:
                        projs.append(Projection(key("Pt", l), bottleneck, src, "feedback", plasticity,
                                                "normal", l))
                else:
                    init = "transpose" if self.form == "transport" else "normal"
                    projs.append(Projection(key("B", l), src, dst, "feedback", plasticity, init, l))
        elif self.form == "low_rank":
            pops.append(Population("feedback", ranks[0], "feedback", "linear", neuron))
            projs.append(Projection(key("P", L), "error", "feedback", "feedback", plasticity, p_init, L))
            projs += [Projection(key("Q", l), "feedback", names[l], "feedback", plasticity, q_init, l)
                      for l in range(1, L)]
            if "Q" in self.mirrored:
                projs += [Projection(key("Qt", l), names[l], "feedback", "feedback", plasticity, "normal", l)
                          for l in range(1, L)]
            if "P" in self.mirrored:
                projs.append(Projection(key("Pt", L), "feedback", "error", "feedback", plasticity, "normal", L))
        elif self.form == "dense":
            projs += [Projection(key("B", l), "error", names[l], "feedback", plasticity, "normal", l)
                      for l in range(1, L)]
        else:
            raise ValueError(f"rule {self.name!r}: form {self.form!r} has no direct-feedback circuit; "
                             "direct feedback takes the forms dense or low_rank")
        return pops, projs

    def ranks_of(self, circuit) -> list[int]:
        """The bottleneck sizes of a circuit built for this rule (empty unless ``low_rank``)."""
        if self.form != "low_rank":
            return []
        ps = sorted((p for p in circuit.projections.values() if kind_of(p.name) == "P"),
                    key=lambda p: p.layer)
        return [circuit.shape(p.name)[0] for p in ps]

    # ----------------------------------------------------------------- the specification
    def pathway_matrix(self, weights: Mapping[str, Array], l: int) -> Array:
        """The feedback matrix in use by pathway l: (n_{l-1}, n_l) for ``layer``, (n_l, d) for ``direct``."""
        if self.form == "transport":
            return self.transport(weights[key("W", l)])
        if self.form == "dense":
            return weights[key("B", l)]
        P = weights[key("P", self._p_layer(weights, l))]
        return weights[key("Q", l)] @ P

    def _p_layer(self, weights: Mapping[str, Array], l: int) -> int:
        if self.topology == "layer":
            return l
        return n_layers(weights)  # the one P reads the output error

    def pathway_layers(self, n_layers: int) -> range:
        """Layers l whose pathway exists: 2..L (``layer``: into l-1), 1..L-1 (``direct``: into l)."""
        return range(2, n_layers + 1) if self.topology == "layer" else range(1, n_layers)

    def feedback_matrices(self, weights: Mapping[str, Array]) -> dict[int, Array]:
        """Every pathway's feedback matrix by layer index (see :meth:`pathway_matrix`)."""
        return {l: self.pathway_matrix(weights, l) for l in self.pathway_layers(n_layers(weights))}

    def deliver(self, weights: Mapping[str, Array], l: int, delta: Array) -> Array:
        """The signal pathway l hands its target, row-batched: ``delta @ B^T``; low rank as two thin
        products, through the r bottleneck neurons z = delta P^T."""
        if self.form == "low_rank":
            z = delta @ weights[key("P", self._p_layer(weights, l))].T  # (batch, r): the bottleneck
            return z @ weights[key("Q", l)].T
        return delta @ self.pathway_matrix(weights, l).T

    def layer_errors(self, weights: Mapping[str, Array], a: list[Array], e: Array,
                     fprime: Callable[[Array], Array]) -> list[Array | None]:
        """Layer errors ``delta[l]`` (batch, n_l) for l = 1..L, ``delta[L] = e`` (``delta[0]`` None).

        Parameters
        ----------
        weights : mapping
            Current weights and feedback matrices.
        a : list of ndarray
            Pre-activations from :func:`forward`.
        e : ndarray, shape (batch, d)
            Output error yhat - y.
        fprime : callable
            f' of the hidden nonlinearity.
        """
        if self.topology == "layer":
            return layer_to_layer(a, e, fprime, lambda l, delta: self.deliver(weights, l, delta))
        L = len(a) - 1
        delta: list[Array | None] = [None] * (L + 1)
        delta[L] = e
        for l in range(1, L):
            delta[l] = fprime(a[l]) * self.deliver(weights, l, e)
        return delta

    def feedback_gradients(self, weights: Mapping[str, Array], h: list[Array],
                           delta: list[Array | None], grads: Mapping[str, Array]) -> dict[str, Array]:
        """Gradients (update = -feedback_lr * grad) of every plastic feedback matrix.

        ``grads`` holds the forward-weight gradients of this step; fixed feedback returns ``{}``.
        A ``direct`` low-rank pathway treats its hidden layers as one: P reads e and sees
        v = sum_l Q_l^T h_l; each Q_l gets its rows of the stacked rule. With learned reciprocals
        the subspace rule reads them (``mirrored_gradients``) and each ``Qt{l}``/``Pt{l}`` moves by
        its factor's gradient transposed: the product the factor's synapse forms, read from the
        other side.
        """
        L = len(delta) - 1
        if self.form == "dense" and self.plastic:
            out = {}
            for l in self.pathway_layers(L):
                pre = h[l - 1] if self.topology == "layer" else h[l]
                out[key("B", l)] = self.dense_gradient(weights[key("B", l)], weights[key("W", l)],
                                                       grads[key("W", l)], pre, delta[l])
            return out
        if self.form != "low_rank" or not self.subspace.learns:
            return {}
        out = {}
        mirrored = self.mirrored
        if self.topology == "layer":
            for l in self.pathway_layers(L):
                P, Q, W = weights[key("P", l)], weights[key("Q", l)], weights[key("W", l)]
                if mirrored:
                    gp, gq = self.subspace.mirrored_gradients(P, Q, W, h[l - 1], delta[l],
                                                              self._mirrors(weights, [l], l))
                else:
                    gp, gq = self.subspace.gradients(P, Q, W, h[l - 1], delta[l])
                out.update(self.subspace.named(l, l, gp, gq))
                if "Q" in mirrored and gq is not None:
                    out[key("Qt", l)] = gq.T
                if "P" in mirrored and gp is not None:
                    out[key("Pt", l)] = gp.T
            return out
        layers = list(self.pathway_layers(L))
        Q = np.concatenate([weights[key("Q", l)] for l in layers], axis=0)
        hs = np.concatenate([h[l] for l in layers], axis=1)
        if mirrored:
            gp, gq = self.subspace.mirrored_gradients(weights[key("P", L)], Q, None, hs, delta[L],
                                                      self._mirrors(weights, layers, L))
        else:
            gp, gq = self.subspace.gradients(weights[key("P", L)], Q, None, hs, delta[L])
        out.update(self.subspace.named(L, None, gp, None))
        if "P" in mirrored and gp is not None:
            out[key("Pt", L)] = gp.T
        if gq is not None:
            bounds = np.cumsum([0] + [h[l].shape[1] for l in layers])
            for i, l in enumerate(layers):
                out[key("Q", l)] = gq[bounds[i]:bounds[i + 1]]
                if "Q" in mirrored:
                    out[key("Qt", l)] = gq[bounds[i]:bounds[i + 1]].T
        return out

    def _mirrors(self, weights: Mapping[str, Array], q_layers: Sequence[int], p_layer: int) -> dict[str, Array]:
        """The learned reciprocal weights a subspace rule reads, by compartment: ``v`` the
        bottleneck's (r, m) reciprocal of the stacked Q of ``q_layers``, ``rec`` the (n, r)
        reciprocal of P of ``p_layer``."""
        out = {}
        for comp, factor in self.subspace.mirrors.items():
            if factor == "Q":
                out[comp] = np.concatenate([weights[key("Qt", l)] for l in q_layers], axis=1)
            elif factor == "P":
                out[comp] = weights[key("Pt", p_layer)]
            else:
                raise ValueError(f"subspace rule {self.subspace.name!r} mirrors factor {factor!r}; "
                                 "valid: P, Q")
        return out

    # ----------------------------------------------------------------- biology
    def constraints(self, circuit) -> list[dict[str, Any]]:
        """The rows of :meth:`bioplastic.Circuit.constraints` (see there).

        Besides the error dimension and the neuron count, each row names what is not local about
        the credit assignment into its layer, so nothing hides behind ``nonlocal: False``:
        ``symmetric`` (symmetric or copied wiring: weight transport, reciprocal synapses that read
        Q's or P's weights), ``nonlocal`` (a synapse reads what is absent at it, e.g. W for the
        normative rule), ``reciprocal`` (``read`` / ``learned`` for a subspace rule with reciprocal
        synapses, else None) and ``wiring``, the full list in words. A backend adds its own shortcuts (``Brian2Runner.constraints``).
        """
        layers, sizes = circuit.layers, circuit.sizes
        L = len(layers) - 1
        ranks = self.ranks_of(circuit)
        wiring = self.wiring()
        has_reciprocal = self.form == "low_rank" and bool(self.subspace.symmetric or self.subspace.mirrors)
        out = []
        for l in range(1, L):
            if self.topology == "direct":
                source, width, r = "error", sizes[-1], ranks[0] if ranks else None
            else:
                source = "error" if l == L - 1 else layers[l + 1]
                width, r = sizes[l + 1], ranks[l - 1] if ranks else None
            row = {"layer": l, "population": layers[l], "source": source,
                   "error_dim": r if r is not None else min(sizes[l], width),
                   "feedback_neurons": r if r is not None else width,
                   "weight_transport": self.form == "transport",
                   "nonlocal": bool(self.subspace is not None and self.subspace.reads_forward_weight),
                   "reads": self.reads(), "symmetric": self.symmetric_wiring(),
                   "reciprocal": self.reciprocal if has_reciprocal else None,
                   "wiring": list(wiring)}
            out.append(row)
        return out

    def reads(self) -> dict[str, str]:
        """What each plastic (or copying) feedback synapse reads, by weight kind."""
        if self.form == "transport":
            return {"B": "the forward weight W it mirrors (weight transport)"}
        if self.form == "dense":
            return {"B": self.dense_reads} if self.plastic else {}
        out = dict(self.subspace.reads)
        if self.mirrored:  # the compartments come from the learned reciprocals
            out = {k: t.replace("Q^T h", "Qt h").replace("P^T z", "Pt z") for k, t in out.items()}
        for factor in self.mirrored:
            out[MIRROR_KIND[factor]] = (f"its own weight, moved by {factor}'s update mirrored: the "
                                        f"product {factor}'s synapse forms, read from the other side")
        return out

    #: ``dense`` plastic: what a B synapse reads (for :meth:`reads`).
    dense_reads: ClassVar[str] = ""

    def symmetric_wiring(self) -> list[str]:
        """Symmetric or copied wiring the rule's plasticity needs (empty when none)."""
        if self.form == "transport":
            return ["feedback synapses copy the forward weights"]
        if self.form == "low_rank" and self.reciprocal == "read":
            return list(self.subspace.symmetric)
        return []

    def wiring(self) -> list[str]:
        """Every symmetric, copied or non-local wiring of this rule's credit assignment, in words
        (empty for a rule whose every synapse learns from what it sees)."""
        out = []
        if self.form == "transport":
            out.append("weight transport: feedback synapses B copy the forward weights W^T")
        if self.form == "low_rank":
            sub = self.subspace
            if sub.reads_forward_weight:
                text = "; ".join(f"{f} synapses read {t}" for f, t in sub.reads.items())
                out.append(f"non-local: {text}")
            if self.reciprocal == "read":
                out += [f"symmetric: {t}" for t in sub.symmetric]
            out += [f"non-local: {t}" for t in sub.wiring_notes]
        return out
