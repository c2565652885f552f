r"""Backend ``brian2``: the circuit as Brian2 rate populations with local plasticity in the synapses.

This package is the only place in bioplastic that imports brian2, and it does so lazily (inside
functions), so ``import bioplastic`` stays free of it.

Populations and compartments
----------------------------
Every population of the circuit is a ``NeuronGroup`` of rate neurons. Each compartment relaxes to
its drive with one time constant :math:`\tau`:

.. math::

    \tau \dot a = -a + b + \textstyle\sum_{\text{forward}} W h_{\text{pre}}
    \quad\text{(soma)}, \qquad
    \tau \dot u = -u + \textstyle\sum_{\text{feedback}} B\, s_{\text{pre}}
    \quad\text{(apical dendrite)},

    h = f(a), \qquad \delta = f'(a)\, u,

    \tau \dot\varepsilon = -\varepsilon + g\,(\hat y - y) \quad\text{(error population)}, \qquad
    \tau \dot z = -z + P \delta \quad\text{(bottleneck of r neurons)}.

* **input** and **target**: rates clamped to the data (``x``, ``y``) for a presentation.
* **hidden** populations: two compartments. The soma integrates the forward drive and sets the rate
  h = f(a); the apical dendrite integrates the feedback and never drives the rate (forward and
  error signals stay apart, as in apical-dendrite models of credit assignment). The neuron
  signals its error delta = f'(a) u: the dendritic error gated by the soma's own gain.
* **output**: a linear soma, yhat = a; its error is the rate of its partner in the error
  population, returned by one-to-one synapses (``E_return``), which its incoming synapses read.
* **error**: epsilon relaxes to g (yhat - y), with yhat through ``E_output`` (+1) and y through
  ``E_target`` (-1); the gate g is 1 while the neuron's copy carries a sample, else 0.
* **feedback{l}** (ldfa): a bottleneck of r neurons, z = P_l delta_l: the only signal crossing from
  layer l to layer l-1. ``Q{l}`` carries it to the apical dendrites of layer l-1.
* **feedback** (dfa with a rank): one bottleneck of r neurons, z = P_L epsilon, read by the error
  population through ``P{L}`` and broadcast to every hidden layer l by its own ``Q{l}``.
* fa/kp: ``B{l}`` from layer l's error (delta, or epsilon for the top) to layer l-1's dendrites; dfa:
  ``B{l}`` from the error population to every hidden layer; bp (any ``transport`` rule): ``B{l}``
  synapses that *read* the forward synapse W_l and use the rule's ``brian2_transport`` of it
  (bp: w itself; weight transport, flagged by :meth:`bioplastic.Circuit.constraints`).

At the fixed point a = W h + b, u = B delta_above, so delta is the abstract rule's layer error
(:mod:`bioplastic.rules`); the settle time decides how close the circuit gets to it.

Plasticity, read locally
------------------------
At the end of every presentation (a learning tick of the presentation clock) each plastic synapse
adds a product of what it can see to its eligibility ``elig``; at the end of a batch it consolidates
(:data:`_network.CONSOLIDATION_CODE`):

.. math::

    w \leftarrow w - \eta\,(\mathrm{elig}/B + \lambda w), \qquad \mathrm{elig} \leftarrow 0,

with eta the circuit's ``lr`` (forward weights, biases) or ``feedback_lr`` (plastic feedback) and
lambda its ``decay`` (not on biases). What each synapse reads is declared by the unit that owns
its plasticity label (:func:`bioplastic.rules.synapse_rule`), never listed here
(:func:`_plasticity.eligibility_code`); the built-in units declare:

=====================  ===================================================================
synapse                reads (declared by)
=====================  ===================================================================
W (sgd)                presynaptic rate h, postsynaptic error delta (the backend's own)
b (bias)               the neuron's own error delta (the backend's own)
B (kp)                 presynaptic error delta, postsynaptic rate h (``brian2_eligibility``)
Q (local/oja/q_only)   presynaptic bottleneck rate z = P delta, postsynaptic rate h
                       (``SubspaceRule.brian2["Q"]``)
P (local)              presynaptic error delta, the bottleneck's forward compartment v
P (oja)                bottleneck rate z, presynaptic error delta and its reconstruction P^T z
P (q_only, fixed)      nothing: the factor does not learn
=====================  ===================================================================

A subspace rule may need a quantity that is not a plain rate; it declares the compartment in
``brian2["compartments"]`` (:data:`_plasticity.COMPARTMENTS`): ``v``, the forward projection
v = sum_l Q_l^T h_l at the bottleneck (one layer below for ldfa, every hidden layer for low-rank
dfa), and ``rec``, the reconstruction P^T z at the error neurons P reads. Each is fed by reciprocal
synapses (``Qt{l}``, ``Pt{l}``) that either read the weights of Q and P (a symmetric reciprocal
wiring of the feedback loop, reported by :meth:`bioplastic.Circuit.constraints`) or, in a circuit
built with ``reciprocal="learned"``, hold weights of their own learned by the factor's eligibility
read from the other side of the synapse (Kolen-Pollack style). The ``normative`` rule, which reads
W and QP, is built as a circuit of weight stores summing the mismatch W^T - QP (``mismatch{l}``;
non-local, and reported so). A rule with no Brian2 form (a transport rule whose
``brian2_transport`` is None; plastic dense feedback without ``brian2_eligibility``; a subspace
rule with neither eligibilities nor a mismatch form) is refused by :func:`unsupported`, which
names what is supported (:func:`capabilities`, derived from the registries).

Simulation
----------
* **Parallel copies.** A presentation shows ``copies`` samples side by side: each ``NeuronGroup``
  holds ``copies * size`` neurons and each ``Synapses`` object connects within copies. All copies
  of a synapse read one weight, kept with its eligibility in a store (``W1_weights``, ...; one
  element per synapse of the circuit, row-major (post, pre)), through Brian2 linked variables; the
  copies' products sum into the same eligibility. By default copies = batch size, so a batch is
  one presentation; with fewer copies a batch spans several presentations and the eligibility
  accumulates over them.
* **Schedules.** Inputs, targets, gates and the learning/consolidation flags come from
  ``TimedArray`` schedules, one row per presentation, so one ``run()`` covers a whole epoch
  (:meth:`Brian2Runner.train_epoch`); ``train_step`` is the one-batch case.
* **Devices.** ``device="runtime"`` with ``target="numpy"`` (default: no compiler, fine for small
  circuits and tests) or ``"cython"`` (fast after a one-off compilation cached in
  ``build/brian2_cache``); ``device="cpp_standalone"`` compiles one C++ program per schedule shape
  under ``build/brian2_standalone`` and re-runs it with new weights and data (``run_args``).
* **Time.** Physical: ``tau``, ``dt``, ``settle`` and ``record_dt`` take Brian2 quantities
  (``settle=200*ms``) or seconds. Exact exponential integration with step ``dt`` (default tau/2,
  tau = 10 ms); a presentation lasts ``settle``, by default :func:`default_settle` =
  (2 depth + 10) tau with depth the longest chain of compartments, whatever ``dt`` is, so a finer
  ``dt`` keeps the circuit settled. ``runner.timing`` records the settle time, the time per sample
  and, for a call that compiled, the compilation time apart. A run whose activity or weights go
  non-finite raises :class:`DivergenceError` naming the populations (weights left as before).
* **Open circuits.** ``runner.extend(fn)`` adds one's own ``NeuronGroup``/``Synapses``/monitors
  to every network the runner builds (they survive training calls); ``inputs=`` gives them a
  summed input into a population's soma or apical compartment; ``runner.model()`` returns the
  Brian2 objects, ``runner.export()`` the built model as markdown or JSON, and
  ``runner.constraints()`` the circuit's constraints plus this backend's own shortcuts.

Example
-------
>>> import bioplastic, circuits                                       # doctest: +SKIP
>>> c = circuits.mlp([64, 100, 10], rule="ldfa", rank=4, subspace="local")
>>> runner = bioplastic.build(c, backend="brian2", device="cpp_standalone")
>>> losses = runner.train_epoch(x, y, batch_size=32)
>>> runner.timing["samples_per_s"], runner.settle
"""

from __future__ import annotations

from .._base import UnsupportedCircuitError
from ._options import (
    DEVICES,
    RECORD_SETS,
    TARGETS,
    Options,
    chain_depth,
    default_settle,
    default_steps,
    make_schedule,
)
from ._runner import Brian2Runner, DivergenceError, build
from ._support import SUPPORTED_NEURONS, capabilities, check_supported, unsupported

__all__ = ["DEVICES", "RECORD_SETS", "SUPPORTED_NEURONS", "TARGETS", "Brian2Runner", "DivergenceError",
           "Options", "UnsupportedCircuitError", "build", "capabilities", "chain_depth", "check_supported",
           "default_settle", "default_steps", "make_schedule", "unsupported"]


# ------------------------------------------------------------------ spiking circuits (neuron="lif")
# Circuits of spiking neurons are built by ._spiking (LIF populations, ON/OFF error and bottleneck
# neurons); these wrappers send them there and everything else to the rate backend above.
from . import _spiking  # noqa: E402

_rate_build, _rate_unsupported, _rate_capabilities = build, unsupported, capabilities


def build(circuit, **options):  # noqa: F811
    """Build a runner: :class:`Brian2Runner` for rate circuits (see :class:`Options`), or
    :class:`._spiking.SpikingRunner` for ``neuron="lif"`` circuits (see :class:`._spiking.SpikingOptions`)."""
    return (_spiking.build if _spiking.is_spiking(circuit) else _rate_build)(circuit, **options)


def unsupported(circuit):  # noqa: F811
    """Why this backend cannot build ``circuit`` (None when it can); spiking circuits included."""
    return (_spiking.unsupported if _spiking.is_spiking(circuit) else _rate_unsupported)(circuit)


def capabilities():  # noqa: F811
    """What this backend builds; ``neurons`` lists the rate and the spiking models."""
    caps = dict(_rate_capabilities())
    caps["neurons"] = tuple(caps["neurons"]) + _spiking.SPIKING_NEURONS
    return caps


SpikingOptions, SpikingRunner = _spiking.SpikingOptions, _spiking.SpikingRunner
__all__ += ["SpikingOptions", "SpikingRunner"]
