"""The registry of rules and subspace rules: the only lists of their names.

Everything else (circuit validation, the builders, every backend, ``bioplastic info``) derives its
options from :data:`RULES` and :data:`SUBSPACES`, so a rule registered here, from any file, is
known everywhere at once:

>>> from bioplastic.rules import Rule, register_rule          # doctest: +SKIP
>>> @register_rule
... class SignSymmetric(Rule):
...     name, form = "sign", "transport"
...     def transport(self, W):
...         return (W > 0).T * 1.0 - (W < 0).T * 1.0
"""

from __future__ import annotations

from ._base import FORMS, TOPOLOGIES
from .rule import Rule
from .subspace._base import SubspaceRule

#: Rule name -> rule class.
RULES: dict[str, type[Rule]] = {}
#: Subspace rule name -> the (stateless) rule object.
SUBSPACES: dict[str, SubspaceRule] = {}
#: Plasticity labels of synapses that are not a rule's feedback: forward SGD, weight transport, none.
BASE_PLASTICITY = ("sgd", "transport", "fixed")
#: Weight initialisations a subspace rule may ask for (see :mod:`bioplastic.circuit.init`).
FACTOR_INITS = ("normal", "expand", "svd", "orthonormal", "zeros")


def _check_name(kind: str, name, taken, reserved=BASE_PLASTICITY) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a {kind} needs a name that is a Python identifier (set the class attribute "
                         f"'name'); got {name!r}")
    if name in reserved or name in taken:
        raise ValueError(f"{kind} name {name!r} is already in use; names in use: "
                         f"{', '.join([*BASE_PLASTICITY, *RULES, *SUBSPACES])}; pass replace=True to "
                         "redefine a registered one")


def register_rule(cls: type[Rule] | None = None, *, replace: bool = False):
    """Register a credit-assignment rule class; usable as ``@register_rule``.

    The class must subclass :class:`Rule` and declare ``name``, ``topology`` and ``form``; its
    registration makes ``circuits.mlp(sizes, rule=name)`` and every supporting backend accept it.
    Returns the class.
    """
    def add(rule_cls):
        if not (isinstance(rule_cls, type) and issubclass(rule_cls, Rule)):
            raise TypeError(f"register_rule needs a subclass of bioplastic.rules.Rule; got {rule_cls!r}")
        taken = {n for n in [*RULES, *SUBSPACES] if not (replace and n == rule_cls.name)}
        _check_name("rule", rule_cls.name, taken)
        if rule_cls.topology not in TOPOLOGIES:
            raise ValueError(f"rule {rule_cls.name!r} has topology {rule_cls.topology!r}; valid: "
                             f"{', '.join(TOPOLOGIES)}")
        if rule_cls.rank not in ("none", "required", "optional"):
            raise ValueError(f"rule {rule_cls.name!r} has rank {rule_cls.rank!r}; valid: none, "
                             "required, optional")
        if rule_cls.rank != "optional" and rule_cls.form not in FORMS:
            raise ValueError(f"rule {rule_cls.name!r} has form {rule_cls.form!r}; valid: {', '.join(FORMS)}")
        if rule_cls.form == "transport" and rule_cls.transport is Rule.transport:
            raise ValueError(f"rule {rule_cls.name!r} has form 'transport' but defines no transport(W)")
        if rule_cls.plastic and rule_cls.dense_gradient is Rule.dense_gradient:
            raise ValueError(f"rule {rule_cls.name!r} has plastic dense feedback but defines no "
                             "dense_gradient(B, W, grad_w, h_prev, delta)")
        RULES[rule_cls.name] = rule_cls
        return rule_cls

    return add if cls is None else add(cls)


def register_subspace(rule: type[SubspaceRule] | SubspaceRule | None = None, *, replace: bool = False):
    """Register a subspace rule (a :class:`SubspaceRule` subclass or instance); usable as a decorator.

    Makes ``circuits.mlp(sizes, rule="ldfa", subspace=name, rank=r)`` and every supporting backend
    accept it. Returns what was passed.
    """
    def add(obj):
        inst = obj() if isinstance(obj, type) and issubclass(obj, SubspaceRule) else obj
        if not isinstance(inst, SubspaceRule):
            raise TypeError(f"register_subspace needs a bioplastic.rules.SubspaceRule; got {obj!r}")
        taken = {n for n in [*RULES, *SUBSPACES] if not (replace and n == inst.name)}
        # "fixed" names both a base label and the subspace rule that learns nothing: the same meaning
        _check_name("subspace rule", inst.name, taken, ("sgd", "transport") if not inst.learns else BASE_PLASTICITY)
        if not set(inst.learns) <= {"P", "Q"}:
            raise ValueError(f"subspace rule {inst.name!r} learns {inst.learns}; a subset of ('P', 'Q')")
        if inst.learns and type(inst).gradients is SubspaceRule.gradients:
            raise ValueError(f"subspace rule {inst.name!r} learns {inst.learns} but defines no gradients()")
        for init in inst.init:
            if init not in FACTOR_INITS:
                raise ValueError(f"subspace rule {inst.name!r} asks for init {init!r}; valid: "
                                 f"{', '.join(FACTOR_INITS)}")
        SUBSPACES[inst.name] = inst
        return obj

    return add if rule is None else add(rule)


def unregister(name: str) -> None:
    """Remove a registered rule or subspace rule (for tests and interactive redefinition)."""
    if name in RULES:
        del RULES[name]
    elif name in SUBSPACES:
        del SUBSPACES[name]
    else:
        raise KeyError(f"no rule or subspace rule {name!r}; registered: {', '.join([*RULES, *SUBSPACES])}")


def get_subspace(name: str) -> SubspaceRule:
    """The registered subspace rule ``name``; raises naming the valid options."""
    if isinstance(name, SubspaceRule):
        return name
    if name not in SUBSPACES:
        raise ValueError(f"unknown subspace {name!r}; valid options: {', '.join(SUBSPACES)}")
    return SUBSPACES[name]


def get_rule(name: str, subspace: str | None = None, low_rank: bool = False,
             reciprocal: str = "read") -> Rule:
    """The rule object for ``name`` (with ``subspace`` for low-rank forms); raises naming the options.

    Parameters
    ----------
    name : str
        A key of :data:`RULES`.
    subspace : str, optional
        Subspace rule of a low-rank rule (default ``local``).
    low_rank : bool
        For a rule whose rank is optional (dfa): build its low-rank form.
    reciprocal : str
        ``read`` or ``learned`` (see :meth:`Rule.with_reciprocal`).
    """
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; valid options: {', '.join(RULES)}")
    cls = RULES[name]
    if cls.rank == "optional":
        rule = cls(subspace, low_rank=low_rank)
    else:
        rule = cls(subspace) if cls.form == "low_rank" else cls()
    return rule.with_reciprocal(reciprocal)


def plasticity_labels() -> tuple[str, ...]:
    """Every plasticity a projection may carry: the base ones, plastic dense rules, subspace rules."""
    dense = [n for n, c in RULES.items() if c.plastic]
    return tuple(dict.fromkeys([*BASE_PLASTICITY, *dense, *SUBSPACES]))


def synapse_rule(plasticity: str):
    """The unit that owns a plasticity label: a :class:`Rule` class, a :class:`SubspaceRule`, or
    None for the base labels (``sgd``, ``transport``, ``fixed``); raises naming the valid labels."""
    if plasticity in BASE_PLASTICITY and not (plasticity in SUBSPACES and SUBSPACES[plasticity].learns):
        return None
    if plasticity in SUBSPACES:
        return SUBSPACES[plasticity]
    if plasticity in RULES and RULES[plasticity].plastic:
        return RULES[plasticity]
    raise ValueError(f"unknown plasticity {plasticity!r}; valid options: {', '.join(plasticity_labels())}")
