"""Plasticity of backend ``brian2``, derived from the rule units: what each synapse reads.

The eligibility products (:func:`eligibility_code`), the transported weights (:func:`transport_code`),
the extra compartments a subspace rule declares (:data:`COMPARTMENTS`, :func:`subspace_compartments`)
and the reciprocal read-outs that feed them (:class:`Reciprocal`, :func:`reciprocal_readouts`), the
signal each population sends backwards (:func:`feedback_signal`) and the activation expressions
(:func:`activation_code`). Every expression is read from the unit that owns it (:mod:`bioplastic.rules`,
:mod:`bioplastic.neurons`), never listed here. Nothing here imports brian2; :mod:`._network` builds
the objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ... import neurons
from ...circuit.keys import kind_of
from ...rules import SubspaceRule, synapse_rule
from .._base import UnsupportedCircuitError

#: Variable a population sends backwards along feedback projections, by role.
FEEDBACK_SIGNAL = {"hidden": "delta", "output": "delta", "error": "eps", "feedback": "z"}

#: Extra compartments a subspace rule may declare (``SubspaceRule.brian2["compartments"]``): name ->
#: (the synapse variable an eligibility reads it by, where it lives and what feeds it). Each is fed
#: by reciprocal synapses that read the weights of a feedback factor (not of W); see
#: :func:`reciprocal_readouts`.
COMPARTMENTS = {
    "v": ("v_post", "on a bottleneck: v = sum_l Q_l^T h_l, through reciprocal synapses mirroring every "
                    "Q out of it"),
    "rec": ("rec_pre", "on the population a P reads: the reconstruction P^T z, through reciprocal "
                       "synapses mirroring P"),
}
#: Plasticity of the forward synapses: this backend's own (post error x pre rate).
SGD_ELIGIBILITY = "delta_post * rate_pre"


def feedback_signal(role: str) -> str:
    """The variable a population of ``role`` sends along feedback projections; raises naming the roles."""
    if role not in FEEDBACK_SIGNAL:
        raise ValueError(f"backend 'brian2': a population of role {role!r} sends no feedback signal; "
                         f"roles that do: {', '.join(FEEDBACK_SIGNAL)}")
    return FEEDBACK_SIGNAL[role]


def activation_code(name: str) -> tuple[str, str]:
    """(f(a), f'(a)) as Brian2 expressions, from :data:`bioplastic.neurons.ACTIVATIONS`."""
    fn = neurons.activation(name)  # raises naming the registered ones
    if not fn.brian2_f or not fn.brian2_fprime:
        raise UnsupportedCircuitError(f"backend 'brian2': activation {name!r} declares no Brian2 "
                                      "expressions (brian2_f, brian2_fprime)")
    return fn.brian2_f, fn.brian2_fprime


def eligibility_code(plasticity: str, name: str, pre_signal: str) -> str | None:
    """The local product a plastic synapse adds to its eligibility at the end of a presentation.

    In the gradient convention of :mod:`bioplastic.rules` (the consolidation subtracts it), for a
    synapse from presynaptic neuron j to postsynaptic neuron i. Read from the unit that owns the
    label (:func:`bioplastic.rules.synapse_rule`), never from a list of names here:

    ``sgd`` (forward W, the backend's own)
        post error x pre rate: ``delta_post * rate_pre``.
    ``transport``, ``fixed``
        None: the synapse does not learn (a transport synapse reads W instead).
    a plastic dense rule (kp)
        its ``brian2_eligibility`` (kp: ``{err}_pre * rate_post``, W's product read from the other side).
    a subspace rule (P and Q synapses)
        its ``brian2[kind]`` for a factor it learns (local P: ``{err}_pre * v_post``, Q:
        ``z_pre * rate_post``; oja P: ``-z_post * ({err}_pre - rec_pre)``); None for a factor it
        does not learn (q_only's P).

    ``{err}`` becomes ``pre_signal``, the variable the presynaptic population sends back. Raises
    ValueError for an unknown label (naming the valid ones) and
    :class:`~bioplastic.backends.UnsupportedCircuitError` for a learning synapse whose unit declares
    no Brian2 form.
    """
    if plasticity == "sgd":
        return SGD_ELIGIBILITY
    unit = synapse_rule(plasticity)  # raises naming the valid labels
    if unit is None:
        return None
    kind = kind_of(name)
    if isinstance(unit, SubspaceRule):
        if kind not in unit.learns:
            return None
        expr = (unit.brian2 or {}).get(kind)
        owner = f"subspace rule {unit.name!r} (brian2[{kind!r}])"
    else:
        expr = unit.brian2_eligibility
        owner = f"rule {unit.name!r} (brian2_eligibility)"
    if not expr:
        raise UnsupportedCircuitError(f"backend 'brian2': synapses {name!r} learn by {owner}, which "
                                      "declares no Brian2 eligibility expression")
    return expr.replace("{err}", pre_signal)


def transport_code(rule) -> str:
    """The weight a transport synapse uses, ``rule.brian2_transport``, an expression of the forward
    weight ``w`` it reads; raises when the rule declares none."""
    expr = rule.brian2_transport
    if not expr:
        raise UnsupportedCircuitError(f"backend 'brian2': rule {rule.name!r} transports g(W) with no "
                                      "Brian2 expression (brian2_transport is None)")
    return expr


#: Gradient forms a subspace rule may declare in ``brian2["descends"]`` that the backend builds
#: as a circuit of weight stores instead of synapse eligibilities (non-local): the normative
#: rule's mismatch W^T - QP (see ``_network._mismatch_circuit``).
MISMATCH_FORMS = ("W^T - QP",)


def mismatch_form(plasticity: str) -> str | None:
    """The mismatch a subspace rule's factors descend (``brian2["descends"]``), or None."""
    if plasticity in ("sgd", "transport", "fixed"):
        return None
    unit = synapse_rule(plasticity)
    if not isinstance(unit, SubspaceRule) or not unit.brian2 or not unit.learns:
        return None
    form = unit.brian2.get("descends")
    if form is not None and form not in MISMATCH_FORMS:
        raise UnsupportedCircuitError(f"backend 'brian2': subspace rule {unit.name!r} descends {form!r}; "
                                      f"mismatch forms this backend builds: {', '.join(MISMATCH_FORMS)}")
    return form


def subspace_compartments(plasticity: str) -> tuple[str, ...]:
    """The extra compartments the unit owning ``plasticity`` declares (empty for non-subspace labels)."""
    unit = synapse_rule(plasticity) if plasticity != "sgd" else None
    if not isinstance(unit, SubspaceRule) or not unit.brian2:
        return ()
    comps = tuple(unit.brian2.get("compartments", ()))
    unknown = [c for c in comps if c not in COMPARTMENTS]
    if unknown:
        raise UnsupportedCircuitError(f"backend 'brian2': subspace rule {unit.name!r} needs compartment(s) "
                                      f"{', '.join(map(repr, unknown))}; valid: {', '.join(COMPARTMENTS)}")
    return comps


@dataclass(frozen=True)
class Reciprocal:
    """Reciprocal synapses ``pre -> post`` mirroring feedback factor ``mirrors`` and feeding
    compartment ``compartment`` of ``post``. ``learned`` False: they read the weights of ``mirrors``
    transposed (``source == mirrors``, a symmetric wiring); True: they are the circuit's own
    projection ``name`` with a weight store of their own (``source == name``), learned by the
    mirrored eligibility (:func:`mirrored_code`)."""

    name: str
    source: str
    pre: str
    post: str
    compartment: str
    mirrors: str = ""
    learned: bool = False


def mirrored_code(expr: str) -> str:
    """An eligibility read from the other side of the synapse: every ``_pre`` variable becomes
    ``_post`` and vice versa (Q's ``z_pre * rate_post`` -> ``z_post * rate_pre``), the product a
    reciprocal synapse forms for the same pair of neurons."""
    return re.sub(r"\b(\w+)_(pre|post)\b", lambda m: f"{m.group(1)}_{'post' if m.group(2) == 'pre' else 'pre'}",
                  expr)


def reciprocal_readouts(circuit) -> list[Reciprocal]:
    """The reciprocal read-outs the subspace rules of ``circuit`` declare, by compartment:

    * ``v`` on a bottleneck: one ``Qt{l}`` per Q out of it, h_l -> bottleneck, reading Q_l, so the
      bottleneck sums v = sum_l Q_l^T h_l (one Q for a layer pathway, every hidden layer's Q for
      low-rank direct feedback);
    * ``rec`` on the population a P reads: ``Pt{l}``, bottleneck -> that population, reading P_l,
      the reconstruction P^T z.

    When the circuit holds a projection of that name (``reciprocal="learned"``) the read-out is
    that projection, learned (``learned=True``), instead of a reader of the factor's weights.
    """
    named = circuit.projections
    projections = named.values()
    out = []

    def make(name, factor, pre, post, comp):
        learned = name in named
        return Reciprocal(name, name if learned else factor, pre, post, comp, factor, learned)

    for p in sorted(projections, key=lambda p: (p.layer, p.name)):
        if kind_of(p.name) != "P":
            continue
        for comp in subspace_compartments(p.rule):
            if comp == "v":
                out += [make(f"Qt{q.layer}", q.name, q.post, p.post, "v")
                        for q in sorted(projections, key=lambda q: q.layer)
                        if kind_of(q.name) == "Q" and q.pre == p.post]
            elif comp == "rec":
                out.append(make(f"Pt{p.layer}", p.name, p.post, p.pre, "rec"))
            else:
                raise UnsupportedCircuitError(f"backend 'brian2' has no compartment {comp!r}; valid: "
                                              f"{', '.join(COMPARTMENTS)}")
    return out
