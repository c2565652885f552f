"""Validation of a circuit: every check :meth:`bioplastic.Circuit.validate` runs.

Names (rules, subspace rules, plasticities, activations, neuron models) come from their registries,
so a rule registered from a user's file is valid at once; the feedback pathway must be exactly the
one the circuit's rule declares (:meth:`bioplastic.rules.Rule.feedback_circuit`) for its sizes and
ranks. Every error is a :class:`CircuitError` naming the population or projection at fault and the
valid options.
"""

from __future__ import annotations

import math
import numbers

from .graph import (
    INITS,
    POPULATION_ROLES,
    PROJECTION_ROLES,
    Circuit,
    CircuitError,
    _choice_error,
    _registries,
)
from .keys import key, kind_of, parse_key


def validate(self: Circuit) -> None:
    """Check the circuit is consistent; raise :class:`CircuitError` naming what is wrong."""
    g = self.graph
    rules, neurons = _registries()
    if g.graph.get("rule") not in rules.RULES:
        raise _choice_error("rule", g.graph.get("rule"), rules.RULES)
    subspace = g.graph.get("subspace")
    if subspace is not None and subspace not in rules.SUBSPACES:
        raise _choice_error("subspace", subspace, rules.SUBSPACES)
    ACTIVATIONS, NEURONS, PLASTICITY = neurons.ACTIVATIONS, neurons.NEURON_MODELS, rules.plasticity_labels()
    for name, attrs in g.nodes(data=True):
        size = attrs.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise CircuitError(f"population {name!r} has size {size!r}; sizes are positive integers")
        if attrs.get("role") not in POPULATION_ROLES:
            raise _choice_error(f"role of population {name!r}:", attrs.get("role"), POPULATION_ROLES)
        if attrs.get("activation") not in ACTIVATIONS:
            raise _choice_error(f"activation of population {name!r}:", attrs.get("activation"),
                                ACTIVATIONS)
        if attrs.get("neuron") not in NEURONS:
            raise _choice_error(f"neuron model of population {name!r}:", attrs.get("neuron"), NEURONS)
    names = [a.get("name") for _, _, a in g.edges(data=True)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CircuitError(f"projection names must be unique; repeated: {dupes}")
    for pre, post, attrs in g.edges(data=True):
        label = f"projection {attrs.get('name')!r} ({pre} -> {post})"
        if attrs.get("role") not in PROJECTION_ROLES:
            raise _choice_error(f"role of {label}:", attrs.get("role"), PROJECTION_ROLES)
        if attrs.get("rule") not in PLASTICITY:
            raise _choice_error(f"plasticity of {label}:", attrs.get("rule"), PLASTICITY)
        if attrs.get("init") not in INITS:
            raise _choice_error(f"init of {label}:", attrs.get("init"), INITS)
    for param in ("lr", "feedback_lr", "decay"):
        value = g.graph.get(param, 0.0)
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise CircuitError(f"{param} must be a finite number >= 0; got {value!r}")
    seed = g.graph.get("seed", 0)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise CircuitError(f"seed must be an int >= 0; got {seed!r}")
    layers = self.layers
    roles = [g.nodes[n]["role"] for n in layers]
    if roles[-1] != "output" or any(r != "hidden" for r in roles[1:-1]) or len(layers) < 2:
        raise CircuitError(f"forward chain {layers} has roles {roles}; expected input, hidden..., output")
    for l in range(1, len(layers)):
        proj = g.edges[layers[l - 1], layers[l]]
        if proj["name"] != key("W", l):
            raise CircuitError(f"forward projection {layers[l-1]} -> {layers[l]} is named "
                               f"{proj['name']!r}; expected 'W{l}'")
    if g.nodes[layers[-1]]["activation"] != "linear":
        raise CircuitError(f"output population {layers[-1]!r} has activation "
                           f"{g.nodes[layers[-1]]['activation']!r}; the readout is linear (yhat = a_L)")
    d = g.nodes[layers[-1]]["size"]
    for name, role in g.nodes(data="role"):
        if role == "target" and g.nodes[name]["size"] != d:
            raise CircuitError(f"target population {name!r} has size {g.nodes[name]['size']}, "
                               f"output has {d}")
    validate_feedback(self, layers)
    validate_inits(self)
    return self

def validate_inits(self: Circuit) -> None:
    """Each initialisation must make sense for its projection (see :mod:`bioplastic.circuit.init`)."""
    proj = self.projections
    for p in proj.values():
        post, pre = self.shape(p.name)
        kind = kind_of(p.name)
        partner = self.partner(p.name)
        if p.init == "svd" and (kind not in "PQ" or partner is None or partner.init != "svd"
                                or key("W", parse_key(partner.name).layer) not in proj
                                or p.layer != parse_key(partner.name).layer):
            raise CircuitError(f"projection {p.name!r} has init 'svd', which factorises W^T into "
                               "an LDFA pair: it needs both P and Q of the layer on 'svd'")
        if p.init == "expand" and not (kind == "Q" and partner is not None):
            raise CircuitError(f"projection {p.name!r} has init 'expand', which is for an LDFA "
                               "Q{l} whose P{l} exists")
        if p.init == "orthonormal" and post > pre:
            raise CircuitError(f"projection {p.name!r} ({post} x {pre}) cannot have orthonormal "
                               "rows: it has more rows than columns")



def validate_feedback(self: Circuit, layers: list[str]) -> None:
    """The feedback pathway must be exactly the one the rule declares for these sizes and ranks."""
    rule = self.learning_rule
    sizes = [self.graph.nodes[n]["size"] for n in layers]
    error_pops = [n for n, r in self.graph.nodes(data="role") if r == "error"]
    if len(error_pops) != 1:
        raise CircuitError(f"a circuit needs exactly one error population, found {error_pops}")
    if self.graph.nodes[error_pops[0]]["size"] != sizes[-1]:
        raise CircuitError(f"error population {error_pops[0]!r} has size "
                           f"{self.graph.nodes[error_pops[0]]['size']}, output has {sizes[-1]}")
    ranks = rule.ranks_of(self)
    bounds = rule.rank_bounds(sizes)
    if rule.form == "low_rank":
        if len(ranks) != len(bounds):
            raise CircuitError(f"rule {rule.name!r} needs {len(bounds)} bottleneck pathway(s) "
                               f"(P projections); found {len(ranks)}")
        for l, r, hi in zip(sorted(self.ranks), ranks, bounds):
            if not 1 <= r <= hi:
                raise CircuitError(f"feedback rank of layer {l} is {r}; it must lie in 1..{hi}")
    names = list(layers[:-1]) + [layers[-1]]
    _, expected = rule.feedback_circuit(names, sizes, ranks or None)
    proj = {p.name: p for p in self.projections.values() if p.role == "feedback"}
    for want in expected:
        have = proj.pop(want.name, None)
        shape = (self.graph.nodes[want.post]["size"], self.graph.nodes[want.pre]["size"]) \
            if want.pre in self.graph and want.post in self.graph else None
        if have is None:
            raise CircuitError(f"rule {rule.name!r} needs projection {want.name!r} (shape {shape}, "
                               f"{want.pre} -> {want.post}); it is missing")
        if (have.pre, have.post) != (want.pre, want.post):
            raise CircuitError(f"projection {want.name!r} goes {have.pre} -> {have.post}; rule "
                               f"{rule.name!r} needs {want.pre} -> {want.post}")
        if self.shape(want.name) != shape:
            raise CircuitError(f"projection {want.name!r} has shape {self.shape(want.name)}, rule "
                               f"{rule.name!r} needs {shape} (post, pre)")
        if have.rule != want.rule:
            raise CircuitError(f"projection {want.name!r} has plasticity {have.rule!r}; rule "
                               f"{rule.name!r} allows {want.rule}")
    if proj:
        raise CircuitError(f"rule {rule.name!r} has no use for feedback projection(s) "
                           f"{', '.join(sorted(proj))}")

