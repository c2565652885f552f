"""Circuits as data: populations (nodes) and projections (edges) of a ``networkx.DiGraph``.

A circuit says *what is connected to what and how each synapse learns*; it holds no arrays and no
simulator objects. Backends (``bioplastic.build``) translate it.

Conventions
-----------
Every projection's matrix is stored **(post, pre)**. For a layered network with sizes
``n_0 (input), n_1, ..., n_L = d (output)`` and layers numbered from 1 at the first hidden layer:

* ``W{l}``: forward weights ``hidden{l-1} -> hidden{l}``, shape ``(n_l, n_{l-1})``; ``b{l}`` the bias of
  population ``l``;
* ``B{l}``: feedback into layer ``l-1`` carrying the error of layer ``l``, shape ``(n_{l-1}, n_l)``
  (rules ``bp``, ``fa``, ``kp``); for ``dfa`` ``B{l}`` carries the output error straight to layer ``l``,
  shape ``(n_l, d)``;
* ``P{l}``: layer-``l`` error -> bottleneck population ``feedback{l}`` of ``r_l`` neurons, ``(r_l, n_l)``;
  ``Q{l}``: bottleneck -> layer ``l-1``, ``(n_{l-1}, r_l)``; so the feedback is ``B_l = Q_l P_l``.

Node attributes (a population): ``size``, ``role`` (one of :data:`POPULATION_ROLES`), ``activation``,
``neuron``, ``bias``. Edge attributes (a projection): ``name`` (the weight key above), ``role`` (one of
:data:`PROJECTION_ROLES`), ``rule`` (how it changes, one of :func:`bioplastic.rules.plasticity_labels`), ``init``.
Circuit-wide learning parameters live in ``graph.graph``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from .keys import key, kind_of, parse_key

#: Roles a population can play.
POPULATION_ROLES = ("input", "hidden", "output", "target", "error", "feedback")
#: Roles a projection can play.
PROJECTION_ROLES = ("forward", "feedback", "error")
#: Initialisations (see :mod:`bioplastic.circuit.init`).
INITS = ("normal", "expand", "svd", "orthonormal", "identity", "negative_identity", "transpose", "zeros")

# The names of rules, subspace rules, plasticities, activations and neuron models are not listed
# here: they come from their registries (bioplastic.rules, bioplastic.neurons), so a rule
# registered from a user's file is valid in a circuit at once.


def _registries():
    from .. import neurons, rules

    return rules, neurons


class CircuitError(ValueError):
    """A circuit is inconsistent; the message names the population or projection at fault."""


def _choice_error(what: str, value: Any, options) -> CircuitError:
    return CircuitError(f"unknown {what} {value!r}; valid options: {', '.join(map(str, options))}")


@dataclass(frozen=True)
class Population:
    """A group of neurons with one role.

    Parameters
    ----------
    name : str
        Node key in the graph, e.g. ``"hidden1"``.
    size : int
        Number of neurons (> 0).
    role : str
        One of :data:`POPULATION_ROLES`.
    activation : str
        Rate nonlinearity f of the population, a key of :data:`bioplastic.neurons.ACTIVATIONS`.
    neuron : str
        Neuron model, one of :data:`bioplastic.neurons.NEURON_MODELS`.
    bias : bool
        Whether the population has a learnt bias (key ``b{l}``).
    """

    name: str
    size: int
    role: str
    activation: str = "linear"
    neuron: str = "rate"
    bias: bool = False


@dataclass(frozen=True)
class Projection:
    """Synapses from population ``pre`` to population ``post``; the matrix is (post.size, pre.size).

    Parameters
    ----------
    name : str
        Weight key (``W2``, ``B3``, ``P2``, ``Q2``, ...).
    pre, post : str
        Population names.
    role : str
        One of :data:`PROJECTION_ROLES`.
    rule : str
        Plasticity, one of :func:`bioplastic.rules.plasticity_labels`.
    init : str
        Initialisation, one of :data:`INITS`.
    layer : int
        Layer index l the projection belongs to (its key's number).
    """

    name: str
    pre: str
    post: str
    role: str
    rule: str
    init: str = "normal"
    layer: int = 0


@dataclass(frozen=True)
class LearningParams:
    """Circuit-wide learning parameters (dimensionless; one step = one batch).

    Parameters
    ----------
    lr : float
        Learning rate of forward weights and biases (>= 0; 0 freezes them).
    feedback_lr : float
        Learning rate of plastic feedback factors (B for kp, P and Q for learnt subspaces; >= 0).
    decay : float
        Weight decay lambda: every decayed matrix M moves by ``-eta * (grad + lambda * M)``. Applies to
        forward weights and plastic feedback factors, not to biases.
    seed : int
        Seed of the initial weights.
    """

    lr: float = 0.05
    feedback_lr: float = 0.05
    decay: float = 0.0
    seed: int = 0


class Circuit:
    """A network as populations and projections in a ``networkx.DiGraph``.

    Build one with a builder from the ``circuits`` package (``circuits.mlp``) rather than by hand.

    Parameters
    ----------
    graph : networkx.DiGraph
        Nodes carry :class:`Population` fields, edges :class:`Projection` fields; ``graph.graph``
        carries ``rule``, ``subspace`` and the :class:`LearningParams` fields.
    """

    def __init__(self, graph: nx.DiGraph):
        self.graph = graph

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_records(cls, populations, projections, **attrs) -> Circuit:
        """Assemble a circuit from :class:`Population` and :class:`Projection` records."""
        g = nx.DiGraph(**attrs)
        for pop in populations:
            fields = dataclasses.asdict(pop)
            g.add_node(fields.pop("name"), **fields)
        for proj in projections:
            fields = dataclasses.asdict(proj)
            pre, post = fields.pop("pre"), fields.pop("post")
            if g.has_edge(pre, post):
                raise CircuitError(
                    f"two projections {g.edges[pre, post]['name']!r} and {proj.name!r} both go "
                    f"{pre!r} -> {post!r}; a circuit holds one projection per ordered pair"
                )
            g.add_edge(pre, post, **fields)
        return cls(g)

    # ----------------------------------------------------------------- queries
    @property
    def rule(self) -> str:
        """Credit-assignment rule, a key of :data:`bioplastic.rules.RULES`."""
        return self.graph.graph["rule"]

    @property
    def subspace(self) -> str | None:
        """LDFA subspace rule, or None for other rules."""
        return self.graph.graph.get("subspace")

    @property
    def learning_rule(self):
        """The :class:`bioplastic.rules.Rule` object this circuit is built for (from the registry)."""
        rules, _ = _registries()
        low_rank = any(r == "feedback" for _, r in self.graph.nodes(data="role"))
        try:
            return rules.get_rule(self.rule, self.subspace, low_rank=low_rank,
                                  reciprocal=self.graph.graph.get("reciprocal", "read"))
        except ValueError as err:
            raise CircuitError(str(err)) from None

    @property
    def params(self) -> LearningParams:
        """The circuit's :class:`LearningParams`."""
        names = [f.name for f in dataclasses.fields(LearningParams)]
        return LearningParams(**{k: self.graph.graph[k] for k in names if k in self.graph.graph})

    def population(self, name: str) -> Population:
        """The :class:`Population` record of node ``name``."""
        if name not in self.graph:
            raise CircuitError(f"no population {name!r}; populations: {', '.join(self.graph.nodes)}")
        return Population(name=name, **self.graph.nodes[name])

    @property
    def populations(self) -> dict[str, Population]:
        """All populations by name."""
        return {n: self.population(n) for n in self.graph.nodes}

    @property
    def projections(self) -> dict[str, Projection]:
        """All projections by weight key."""
        out = {}
        for pre, post, attrs in self.graph.edges(data=True):
            out[attrs["name"]] = Projection(pre=pre, post=post, **attrs)
        return out

    def projection(self, name: str) -> Projection:
        """The :class:`Projection` with weight key ``name``."""
        projections = self.projections
        if name not in projections:
            raise CircuitError(f"no projection {name!r}; projections: {', '.join(sorted(projections))}")
        return projections[name]

    def shape(self, name: str) -> tuple[int, int]:
        """(post, pre) shape of projection ``name``."""
        proj = self.projection(name)
        return (self.graph.nodes[proj.post]["size"], self.graph.nodes[proj.pre]["size"])

    @property
    def layers(self) -> list[str]:
        """Populations of the forward chain, input first, output last."""
        inputs = [n for n, r in self.graph.nodes(data="role") if r == "input"]
        if len(inputs) != 1:
            raise CircuitError(f"a circuit needs exactly one input population, found {inputs}")
        chain = [inputs[0]]
        while True:
            nxt = [v for _, v, r in self.graph.out_edges(chain[-1], data="role") if r == "forward"]
            if not nxt:
                return chain
            if len(nxt) > 1 or nxt[0] in chain:
                raise CircuitError(f"population {chain[-1]!r} has forward projections to {nxt}; "
                                   "the forward pathway must be a simple chain")
            chain.append(nxt[0])

    @property
    def sizes(self) -> list[int]:
        """Population sizes along the forward chain: [n_0, n_1, ..., n_L]."""
        return [self.graph.nodes[n]["size"] for n in self.layers]

    @property
    def n_layers(self) -> int:
        """Number of weight layers L."""
        return len(self.layers) - 1

    @property
    def activation(self) -> str:
        """Activation shared by the hidden populations (``linear`` when there are none)."""
        hidden = {self.graph.nodes[n]["activation"] for n in self.layers[1:-1]}
        if len(hidden) > 1:
            raise CircuitError(f"hidden populations mix activations {sorted(hidden)}")
        return hidden.pop() if hidden else "linear"

    @property
    def ranks(self) -> dict[int, int]:
        """Rank of each low-rank feedback pathway, by the layer index of its P (the error it reads)."""
        return {p.layer: self.shape(p.name)[0] for p in self.projections.values()
                if kind_of(p.name) == "P"}

    def weight_keys(self) -> list[str]:
        """Keys a runner's ``get_weights`` returns: W, b, then feedback matrices, in layer order."""
        keys = [key("W", l) for l in range(1, self.n_layers + 1)]
        keys += [key("b", l) for l, n in enumerate(self.layers) if l and self.graph.nodes[n]["bias"]]
        fb = [p for p in self.projections.values() if p.role == "feedback" and p.rule != "transport"]
        keys += [p.name for p in sorted(fb, key=lambda p: (p.layer, p.name))]
        return keys

    def weight_shape(self, name: str) -> tuple[int, ...]:
        """Shape of weight ``name``: (post, pre) for a projection, (n_l,) for a bias ``b{l}``."""
        k = parse_key(name)
        return (self.sizes[k.layer],) if k.kind == "b" else self.shape(name)

    # ----------------------------------------------------------------- validation
    def validate(self) -> Circuit:
        """Check the circuit is consistent; raise :class:`CircuitError` naming what is wrong.

        The checks are in :mod:`bioplastic.circuit.validate`. Returns the circuit so calls can be
        chained.
        """
        from .validate import validate

        validate(self)
        return self

    def partner(self, name: str) -> Projection | None:
        """The other factor of a low-rank pathway: for a Q, the P that feeds its bottleneck; for a P,
        the Q of the same layer reading its bottleneck (None when there is none)."""
        p = self.projection(name)
        kind = kind_of(name)
        if kind == "Q":
            found = [q for q in self.projections.values() if q.post == p.pre and kind_of(q.name) == "P"]
        elif kind == "P":
            found = [q for q in self.projections.values() if q.pre == p.post and kind_of(q.name) == "Q"]
            same = [q for q in found if q.layer == p.layer]
            found = same or found
        else:
            return None
        return found[0] if found else None

    # ----------------------------------------------------------------- biology
    def constraints(self) -> list[dict[str, Any]]:
        """What each hidden layer's credit assignment needs, as one dict per hidden layer.

        Keys: ``layer`` (l), ``population``, ``error_dim`` (rank bound of the error map into it),
        ``source`` (where its error comes from), ``feedback_neurons`` (neurons the feedback pathway
        passes through), ``weight_transport`` (feedback synapses copy forward weights),
        ``nonlocal`` (a plastic feedback synapse reads information absent at that synapse, such as
        the forward matrix W for the normative rule), ``reads`` (weight kind -> what its plastic
        synapses read) and ``symmetric`` (symmetric wiring the plasticity needs, such as the
        reciprocal synapses mirroring Q that carry Q^T h to the bottleneck for the ``local`` rule).
        Every fact comes from the rule's declaration (:mod:`bioplastic.rules`); a spiking circuit
        adds its neuron model's facts (``neuron``, ``signed_populations``, ``dale``;
        :func:`bioplastic.neurons.constraint_facts`).
        """
        self.validate()
        _, neurons = _registries()
        rows = self.learning_rule.constraints(self)
        return [{**row, **neurons.constraint_facts(self, row)} for row in rows]

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (node-link data); a deep copy, so editing it leaves the circuit alone."""
        return copy.deepcopy(nx.node_link_data(self.graph, edges="edges"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Circuit:
        """Inverse of :meth:`to_dict`; the result is validated."""
        return cls(nx.node_link_graph(copy.deepcopy(data), directed=True, edges="edges")).validate()

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to a JSON string, also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Circuit:
        """Read a circuit from a JSON string or a file path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            if not path.exists():
                raise FileNotFoundError(f"no circuit file at {path}")
            text = path.read_text()
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Circuit) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        sub = f", subspace={self.subspace!r}" if self.rule == "ldfa" else ""
        return f"Circuit(rule={self.rule!r}{sub}, sizes={self.sizes}, ranks={self.ranks or None})"

    # ----------------------------------------------------------------- drawing
    def draw(self, ax=None, path: str | Path | None = None):
        """Draw the circuit: forward chain left to right, feedback below, node area ~ log size.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on; a new figure is made when omitted.
        path : str or Path, optional
            Save the figure there (PNG, SVG, PDF by suffix).

        Returns
        -------
        matplotlib.axes.Axes
        """
        from .draw import draw_circuit

        return draw_circuit(self, ax=ax, path=path)
