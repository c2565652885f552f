"""Layered (multilayer perceptron) circuits for every credit-assignment rule.

Populations: ``input`` (n_0), ``hidden1..hidden{L-1}``, ``output`` (d), ``target`` (d, the teaching
signal) and ``error`` (d, computes e = output - target). How the error reaches hidden layers depends on
the rule:

=======  ==================================================================================
rule     feedback pathway into layer l-1 (l = 2..L)
=======  ==================================================================================
bp       ``B{l}`` = W_l^T, plasticity ``transport`` (weight transport: not biological)
fa       ``B{l}`` fixed random (Lillicrap et al. 2016)
kp       ``B{l}`` learns with W_l's update transposed, plus decay (Kolen & Pollack 1994)
dfa      ``B{l}``: error -> hidden{l}, fixed random, for l = 1..L-1 (Nokland 2016)
ldfa     error of layer l -> ``feedback{l}`` (r_l neurons) by ``P{l}``, then -> layer l-1 by ``Q{l}``
=======  ==================================================================================
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence

from bioplastic import neurons, rules
from bioplastic.circuit import Circuit, CircuitError, Population, Projection
from bioplastic.circuit.keys import key


def _as_int(value):
    """Python int for any integer type (numpy included); other values pass through unchanged."""
    if isinstance(value, bool):
        return value
    try:
        return operator.index(value)
    except TypeError:
        return value


def _ranks(rank, rule, sizes: list[int]) -> list[int]:
    """One rank per bottleneck from one int or a sequence, checked against the rule's bounds."""
    bounds = rule.rank_bounds(sizes)
    n = len(bounds)
    if rank is None:
        raise CircuitError(f"rule {rule.name!r} needs rank=r (an int, or one int per feedback pathway, "
                           f"{n} here)")
    ranks = [_as_int(r) for r in rank] if isinstance(rank, (list, tuple)) else [_as_int(rank)] * n
    if len(ranks) != n:
        raise CircuitError(f"rank has {len(ranks)} entries; this network has {n} feedback "
                           f"pathway{'s' if n > 1 else ''} with a bottleneck (rule {rule.name!r})")
    for i, (r, hi) in enumerate(zip(ranks, bounds)):
        if isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= hi:
            continue
        if rule.topology == "layer":
            l = i + 2
            raise CircuitError(f"rank {r!r} for the feedback into layer {l - 1} is out of range: it "
                               f"must be an int in 1..{hi} = min(n_{l-1}={sizes[l-1]}, n_{l}={sizes[l]}); "
                               "pass one rank per pathway to vary it")
        raise CircuitError(f"rank {r!r} for the broadcast bottleneck is out of range: it must be an "
                           f"int in 1..{hi} = d, the output size")
    return ranks


def mlp(sizes: Sequence[int], rule: str = "ldfa", rank: int | Sequence[int] | None = None,
        subspace: str = "local", activation: str = "tanh", neuron: str = "rate",
        lr: float = 0.05, feedback_lr: float | None = None, decay: float = 0.0,
        bias: bool = True, seed: int = 0, dale: bool = False, reciprocal: str = "read",
        init_scale: float = 1.0) -> Circuit:
    """A multilayer circuit ``sizes[0] -> ... -> sizes[-1]`` trained by ``rule``.

    Parameters
    ----------
    sizes : sequence of int
        Population sizes [n_0 (input), n_1, ..., n_L = d (output)], at least two entries.
    rule : str
        Credit assignment, one of ``bp``, ``fa``, ``dfa``, ``kp``, ``ldfa``.
    rank : int or sequence of int, optional
        Feedback rank r (ldfa only): one int for every pathway, or one per pathway into layers
        1..L-1; each must lie in 1..min(n_{l-1}, n_l).
    subspace : str
        How Q and P learn (ldfa only): ``fixed``, ``normative``, ``local``, ``oja``.
    activation : str
        Hidden nonlinearity: ``tanh``, ``relu``, ``sigmoid``, ``linear``. The output is linear.
    neuron : str
        Neuron model of every population: ``rate``, or ``lif`` (leaky integrate-and-fire,
        :mod:`bioplastic.neurons.lif`: spiking hidden and output populations, Poisson input, the
        signed error and bottleneck populations carried by ON/OFF pairs; built by backend
        ``brian2``).
    lr : float
        Learning rate of W and b.
    feedback_lr : float, optional
        Learning rate of plastic feedback (kp's B, ldfa's P and Q); defaults to ``lr``.
    decay : float
        Weight decay lambda on W and plastic feedback (kp needs > 0 for B to converge to W^T).
    bias : bool
        Give hidden and output populations a bias.
    seed : int
        Seed of the initial weights.
    dale : bool
        Dale's law (``neuron="lif"`` only): every presynaptic neuron is excitatory or inhibitory
        and its outgoing weights keep that sign; reported by :meth:`~bioplastic.Circuit.constraints`.
    reciprocal : str
        How a subspace rule that reads Q^T h (``local``) or P^T z (``oja``) gets it: ``read`` (the
        reciprocal synapses read Q's or P's weights: a symmetric wiring) or ``learned`` (they hold
        their own weights ``Qt{l}``/``Pt{l}``, drawn at random and learned by the mirrored update
        with the factor's ``feedback_lr`` and ``decay``, converging to the transpose when decay > 0,
        as in Kolen-Pollack). See :mod:`bioplastic.rules.subspace`.

    init_scale : float
        Factor s > 0 on the initial forward weights W (small initial weights, as the linear theory
        of arXiv 2502.20580 assumes); feedback factors initialised from W (the ``svd`` init of
        ``local`` and ``normative``) are multiplied by sqrt(s), so that Q P stays the truncated SVD
        of the scaled W^T; random feedback keeps its draw (:func:`bioplastic.circuit.init.initial_weights`).

    Returns
    -------
    bioplastic.Circuit
        A validated circuit.
    """
    sizes = [_as_int(n) for n in sizes]
    if len(sizes) < 2 or not all(isinstance(n, int) and n >= 1 for n in sizes):
        raise CircuitError(f"sizes must be at least two positive ints (input, ..., output); got {sizes}")
    if rule not in rules.RULES:
        raise CircuitError(f"unknown rule {rule!r}; valid options: {', '.join(rules.RULES)}")
    rule_cls = rules.RULES[rule]
    low_rank = rule_cls.rank == "required" or (rule_cls.rank == "optional" and rank is not None)
    if low_rank and subspace not in rules.SUBSPACES:
        raise CircuitError(f"unknown subspace {subspace!r}; valid options: {', '.join(rules.SUBSPACES)}")
    if activation not in neurons.ACTIVATIONS:
        raise CircuitError(f"unknown activation {activation!r}; valid options: "
                           f"{', '.join(neurons.ACTIVATIONS)}")
    if neuron not in neurons.NEURON_MODELS:
        raise CircuitError(f"unknown neuron model {neuron!r}; valid options: "
                           f"{', '.join(neurons.NEURON_MODELS)}")
    if rule_cls.rank == "none" and rank is not None:
        takes = [n for n, c in rules.RULES.items() if c.rank != "none"]
        raise CircuitError(f"rank is an ldfa setting; rule {rule!r} has no rank (rules that take "
                           f"one: {', '.join(takes)})")
    try:
        learning = rules.get_rule(rule, subspace if low_rank else None, low_rank=low_rank,
                                  reciprocal=reciprocal)
    except ValueError as err:
        raise CircuitError(str(err)) from None
    feedback_lr = lr if feedback_lr is None else feedback_lr
    for name, value in (("lr", lr), ("feedback_lr", feedback_lr), ("decay", decay)):
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise CircuitError(f"{name} must be a finite number >= 0; got {value!r}")
    if dale and neuron != "lif":
        raise CircuitError(f"dale=True constrains the signs of spiking synapses; it needs neuron='lif' "
                           f"(got neuron={neuron!r})")
    seed = _as_int(seed)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise CircuitError(f"seed must be an int >= 0; got {seed!r}")
    if not (isinstance(init_scale, numbers.Real) and not isinstance(init_scale, bool)
            and math.isfinite(init_scale) and init_scale > 0):
        raise CircuitError(f"init_scale must be a finite number > 0; got {init_scale!r}")

    L = len(sizes) - 1
    d = sizes[-1]
    names = ["input"] + [f"hidden{l}" for l in range(1, L)] + ["output"]
    pops = [Population("input", sizes[0], "input", "linear", neuron)]
    pops += [Population(names[l], sizes[l], "hidden", activation, neuron, bias) for l in range(1, L)]
    pops += [Population("output", d, "output", "linear", neuron, bias),
             Population("target", d, "target", "linear", neuron),
             Population("error", d, "error", "linear", neuron)]
    projs = [Projection(key("W", l), names[l - 1], names[l], "forward", "sgd", "normal", l)
             for l in range(1, L + 1)]
    projs += [Projection("E_output", "output", "error", "error", "fixed", "identity", L),
              Projection("E_target", "target", "error", "error", "fixed", "negative_identity", L)]
    ranks = _ranks(rank, learning, sizes) if low_rank else None
    fb_pops, fb_projs = learning.feedback_circuit(names, sizes, ranks, neuron)
    circuit = Circuit.from_records(
        pops + fb_pops, projs + fb_projs, rule=rule, subspace=subspace if low_rank else None,
        lr=float(lr), feedback_lr=float(feedback_lr), decay=float(decay), seed=int(seed),
        **({"dale": True} if dale else {}), **({"reciprocal": reciprocal} if reciprocal != "read" else {}),
        **({"init_scale": float(init_scale)} if init_scale != 1.0 else {}))
    return circuit.validate()
