"""What backend ``brian2`` builds, derived from the units it consumes; why it refuses a circuit.

Nothing here lists a rule or subspace by name. A rule is built when every synapse it asks for has a
synapse-local form:

* ``transport``: the rule's ``brian2_transport``, the weight a feedback synapse uses as an
  expression of the forward weight ``w`` it reads;
* ``dense``: fixed B, or plastic B with the rule's ``brian2_eligibility``;
* ``low_rank``: the subspace rule's ``brian2`` form, an eligibility expression for every factor it
  learns and the extra compartments (:data:`._network.COMPARTMENTS`) those expressions read.
"""

from __future__ import annotations

import re

from ... import neurons, rules
from .._base import UnsupportedCircuitError, unsupported_reason
from . import _network, _plasticity

BACKEND = "brian2"
#: Rule topologies and forms the assembly handles (the closed sets of :mod:`bioplastic.rules`).
TOPOLOGIES = ("layer", "direct")
FORMS = ("transport", "dense", "low_rank")
#: Neuron models this backend builds.
SUPPORTED_NEURONS = ("rate",)


def subspace_problem(unit: rules.SubspaceRule) -> str | None:
    """Why subspace rule ``unit`` has no synapse-local Brian2 form (None when it has one)."""
    if not unit.learns:
        return None  # nothing learns: fixed synapses need no form
    descends = (unit.brian2 or {}).get("descends")
    if descends is not None:
        if descends not in _plasticity.MISMATCH_FORMS:
            return (f"subspace rule {unit.name!r} descends {descends!r}; mismatch forms this backend "
                    f"builds: {', '.join(_plasticity.MISMATCH_FORMS)}")
        return None  # built as a (non-local) circuit of weight stores
    if unit.reads_forward_weight:
        by_text: dict[str, list[str]] = {}
        for factor, text in unit.reads.items():
            by_text.setdefault(text, []).append(factor)
        reads = "; ".join(f"its {' and '.join(fs)} synapses read {text}" for text, fs in by_text.items()) \
            or "it reads the forward weight W"
        return (f"subspace rule {unit.name!r} is not synapse-local: {reads}, which no feedback synapse "
                "holds")
    if not unit.brian2:
        return f"subspace rule {unit.name!r} declares no Brian2 form (its brian2 attribute is None)"
    missing = [f for f in unit.learns if not unit.brian2.get(f)]
    if missing:
        return (f"subspace rule {unit.name!r} learns {', '.join(unit.learns)} but its brian2 form gives "
                f"no eligibility expression for {', '.join(missing)}")
    comps = tuple(unit.brian2.get("compartments", ()))
    unknown = [c for c in comps if c not in _network.COMPARTMENTS]
    if unknown:
        return (f"subspace rule {unit.name!r} needs compartment(s) {', '.join(map(repr, unknown))}; "
                f"compartments this backend builds: {', '.join(_network.COMPARTMENTS)}")
    for comp, (variable, _) in _network.COMPARTMENTS.items():
        used = [f for f in unit.learns if re.search(rf"\b{variable}\b", unit.brian2[f])]
        if used and comp not in comps:
            return (f"subspace rule {unit.name!r} reads {variable} in its {', '.join(used)} eligibility "
                    f"but does not declare the compartment {comp!r} in brian2['compartments']")
    return None


def rule_problem(rule_cls_or_obj) -> str | None:
    """Why a rule (class or object) has no Brian2 form of its own feedback (None when it has).

    Only the rule's own declarations are checked here; a low-rank rule's subspace rule is checked
    by :func:`subspace_problem`.
    """
    name, form = rule_cls_or_obj.name, rule_cls_or_obj.form
    if rule_cls_or_obj.topology not in TOPOLOGIES:
        return f"rule {name!r} has topology {rule_cls_or_obj.topology!r}"
    if rule_cls_or_obj.rank != "optional" and form not in FORMS:
        return f"rule {name!r} has feedback of form {form!r}"
    if form == "transport" and not rule_cls_or_obj.brian2_transport:
        return (f"rule {name!r} transports B = g(W) with no per-synapse expression (its "
                "brian2_transport is None), so no feedback synapse can read its weight from W")
    if form == "dense" and rule_cls_or_obj.plastic and not rule_cls_or_obj.brian2_eligibility:
        return (f"rule {name!r} has plastic feedback B but declares no synapse-local eligibility (its "
                "brian2_eligibility is None)")
    return None


def supported_subspaces() -> tuple[str, ...]:
    """Registered subspace rules with a synapse-local Brian2 form (or nothing to learn)."""
    return tuple(n for n, unit in rules.SUBSPACES.items() if subspace_problem(unit) is None)


def supported_rules() -> tuple[str, ...]:
    """Registered rules whose own feedback has a Brian2 form (low-rank ones: with the subspaces above)."""
    subspaces = supported_subspaces()
    out = []
    for name, cls in rules.RULES.items():
        if rule_problem(cls) is not None:
            continue
        if cls.rank == "required" and not subspaces:
            continue
        out.append(name)
    return tuple(out)


def supported_text() -> str:
    """The 'supported: ...' tail of a refusal: rules, subspace rules, topologies, forms."""
    return (f"supported: rules {', '.join(supported_rules()) or 'none'}; low-rank subspace rules "
            f"{', '.join(supported_subspaces()) or 'none'}; topologies {', '.join(TOPOLOGIES)}; forms "
            f"{', '.join(FORMS)}")


def capabilities() -> dict[str, tuple[str, ...]]:
    """What this backend builds (for ``bioplastic info`` and :func:`bioplastic.backends.capabilities`):
    the topologies and forms it assembles, the registered subspace rules with a synapse-local form,
    the registered activations with Brian2 expressions, its neuron models."""
    acts = tuple(n for n, fn in neurons.ACTIVATIONS.items() if fn.brian2_f and fn.brian2_fprime)
    return {"topologies": TOPOLOGIES, "forms": FORMS, "subspaces": supported_subspaces(),
            "activations": acts, "neurons": SUPPORTED_NEURONS}


def _describe(rule) -> str:
    sub = f" with subspace {rule.subspace.name!r}" if rule.subspace is not None else ""
    return f"rule {rule.name!r}{sub}"


def unsupported(circuit) -> str | None:
    """Why this backend cannot build ``circuit``, naming the backend, the rule and what is supported;
    None when it can."""
    rule = circuit.learning_rule
    what = _describe(rule)
    refuse = f"backend {BACKEND!r} does not build {what}"
    problem = rule_problem(rule)
    if problem is None and rule.subspace is not None:
        problem = subspace_problem(rule.subspace)
    if problem is not None:
        return f"{refuse}: {problem}; {supported_text()}"
    for name, neuron in circuit.graph.nodes(data="neuron"):
        if neuron not in SUPPORTED_NEURONS:
            return (f"backend {BACKEND!r} does not build neuron model {neuron!r} (population {name!r}, "
                    f"{what}); supported neuron models: {', '.join(SUPPORTED_NEURONS)}")
    caps = capabilities()
    for name, act in circuit.graph.nodes(data="activation"):
        if act not in caps["activations"]:
            return (f"backend {BACKEND!r} has no activation {act!r} (population {name!r}, {what}); "
                    f"supported activations: {', '.join(caps['activations'])}")
    for name, role in circuit.graph.nodes(data="role"):
        if role not in _network.ROLES:
            return (f"backend {BACKEND!r} has no equations for population role {role!r} (population "
                    f"{name!r}, {what}); supported roles: {', '.join(_network.ROLES)}")
    for pre, post, attrs in circuit.graph.edges(data=True):
        if attrs["role"] == "error" and attrs["init"] not in _network.ERROR_SIGNS:
            return (f"backend {BACKEND!r} wires error projections one-to-one; {attrs['name']!r} ({pre} -> "
                    f"{post}, {what}) has init {attrs['init']!r}; supported: "
                    f"{', '.join(_network.ERROR_SIGNS)}")
    # the generic checks every backend shares (topology, form, subspace, activation, neuron)
    return unsupported_reason(BACKEND, circuit, caps)


def check_supported(circuit) -> None:
    """Raise :class:`UnsupportedCircuitError` with :func:`unsupported`'s reason, if any."""
    reason = unsupported(circuit)
    if reason is not None:
        raise UnsupportedCircuitError(reason)
