r"""Spiking circuits in Brian2: LIF populations, ON/OFF error and bottleneck neurons, e-prop-style traces.

A circuit built with ``circuits.mlp(..., neuron="lif")`` runs here (``bioplastic.build(circuit,
backend="brian2", ...)`` dispatches to :class:`SpikingRunner`). It is the spiking counterpart of the
rate circuit of :mod:`bioplastic.backends.brian2` and implements the same abstract rule (arXiv
2502.20580: the error of the output reaches the hidden layer through r bottleneck neurons, B = QP)
with every quantity carried by spikes. Populations (``copies`` parallel copies of each, as in the
rate circuit) and what each synapse reads:

* **input** (n_0): Poisson (or regular) spike trains of rate ``input_rate * x`` (x >= 0); with
  ``signed_input`` an ON/OFF pair per input, rates ``input_rate * [x]+`` and ``[-x]+``, for
  centred data (the forward synapses then read +w from ON, -w from OFF, as the feedback ones do).
* **hidden** (n_1): leaky integrate-and-fire neurons (:mod:`bioplastic.neurons.lif`). The soma
  integrates a synaptic current g (time constant ``tau_syn``) opened by presynaptic spikes; the
  apical compartment u integrates the feedback spikes and never drives v. The neuron's rate is its
  spike train filtered by an exponential trace r (``tau_trace``, r = 1 at ``rate_max``).
  Its error is delta = psi(v) u, with the surrogate derivative psi of
  :data:`bioplastic.neurons.lif.SURROGATE` standing in for f'(a) (e-prop; Bellec et al. 2020).
* **output** (d): LIF neurons; yhat is their trace; their apical compartment u receives the ON and
  OFF error neurons one-to-one (u = e), and their error is u itself (the linear readout of the
  abstract rule: the output's own f-I slope is not applied, so a silent output neuron still learns).
* **target** (d): Poisson spike trains of rate ``rate_max * y`` (y >= 0).
* **error_on / error_off** (d each): the signed error e = yhat - y carried by two rectified
  populations. Each is a Poisson neuron whose rate is ``error_rate * [I]+``, I a synaptic current
  (``tau_syn``) that output spikes raise and target spikes lower (ON) or the reverse (OFF), so
  (rate_on - rate_off) / error_rate = I = yhat - y in expectation; no neuron needs a negative rate.
  A gate silences the copies that carry no sample.
* **feedback{l}_on / _off** (r each): the bottleneck z = P e, rectified the same way: the ON half
  receives +P from error_on and -P from error_off, the OFF half the reverse, each firing at
  ``bottleneck_rate * [I]+``. For the ``local`` subspace rule each also has a compartment vq fed by
  reciprocal synapses from the hidden layer (+Q^T into ON, -Q^T into OFF; they read Q's weights, as
  in the rate circuit).
* **Q / B synapses**: +w from an ON neuron, -w from its OFF partner into the hidden apical
  compartment, so u = Q (z_on - z_off) = Q z.

Plasticity (local; arXiv 2502.20580 "Learning the feedback with local rules"; e-prop's eligibility
traces). Each presentation lasts ``settle + window``. During the window (and only while learning)
every plastic synapse adds, every ``plasticity_dt``, a product of a filtered presynaptic trace and a
local postsynaptic factor, weighted so its eligibility is the product's time average:

===========  ==================================================================================
W (sgd)      presynaptic trace r x postsynaptic error delta (hidden: psi(v) u; output: u)
b            the neuron's own delta
Q (local)    sign x bottleneck trace r_pre x hidden trace r_post (sum over ON/OFF = h z^T)
P (local)    1/2 x sign x error trace r_pre x vq_post (sum over the four ON/OFF pairings = v e^T)
===========  ==================================================================================

At the end of a batch each weight store consolidates, w <- w - lr (elig / batch + decay w) (e-prop
applies accumulated updates at the end of an interval the same way). With Dale's law
(``circuits.mlp(..., dale=True)``) every weight keeps the sign of its presynaptic neuron's type,
clipped after each consolidation (:func:`bioplastic.neurons.lif.dale_signs`).

Deviations from the rate rule, measured by ``tests/test_brian2_spiking.py`` and
``analyses/spiking_digits.py``: (1) h is the LIF's f-I curve under Poisson input, not a registered
activation; (2) psi(v) is a surrogate, not f'(a); (3) rates are estimates from finite spike counts,
so one presentation's update is noisy and a product of traces differs from the product of means by
their covariance; (4) the output's f-I slope is not applied; (5) every signal lags by the time
constants of its path (``settle`` sets how much of the lag the window avoids). The mean weight
change over many presentations matches the abstract rule evaluated at the circuit's own mean rates
and mean surrogate, within a distance that shrinks as the window grows (measured on the 64-100-10
digits circuit over 64 presentations: 21% at a 10 ms window, 7% at 160 ms, 5% at 320 ms, where the
trace covariances set the floor).

Deeper circuits: with more than one hidden layer, a rule of layer topology (``ldfa``, ``fa``) sends
the error of hidden layer l + 1 to layer l. That error, delta = psi(v) u, lives in the apical
compartment of each hidden neuron and is signed, while the neuron's spikes carry its rate; so each
such hidden population gets a **relay** ``hidden{l}_error`` (2 n_l neurons per copy, ON and OFF), a
rectified Poisson pair per hidden neuron that reads that one neuron's delta (a one-to-one,
continuous read: ``I = sgn delta``) and fires at ``error_rate * [I]+``, as the output's error
neurons do (:func:`bioplastic.neurons.lif.relays`; ``constraints()`` lists the read). Rules of
direct topology (``dfa``) read the output's error neurons at every depth and need no relay.

Supported rules: those whose plastic feedback has a local form (``ldfa``/``dfa`` with a rank and
subspace ``fixed``, ``local``, ``q_only``; ``fa``/``dfa`` with fixed dense B; ``kp``, whose B
synapse from an error (or relay) neuron onto a hidden neuron accumulates sign x r_pre x r_post,
summed over the ON/OFF halves h delta^T, the transpose of W's update), any depth.
Brian2 is imported inside functions only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ... import rules
from ...circuit.init import initial_weights
from ...circuit.keys import key, kind_of
from ...neurons import lif
from ...neurons.lif import SIGNED_ROLES, SURROGATE, LIFParams, dale_signs, relays
from .._base import AbstractRunner, UnsupportedCircuitError, check_batch, unsupported_reason
from ._options import Schedule, make_schedule, schedule_arrays
from ._runner import DivergenceError, _restore_fresh, _runtime_prefs

BACKEND = "brian2"
#: Neuron models this module builds.
SPIKING_NEURONS = ("lif",)
#: Input codings: Poisson spike trains, or regular ones (one spike every 1/rate, random phase).
INPUT_CODINGS = ("poisson", "regular")
#: Code-generation targets of Brian2's runtime device.
TARGETS = ("numpy", "cython")
#: Subspace rules whose eligibility this module splits into ON/OFF pathways, by their rate form
#: (``SubspaceRule.brian2``): any registered unit with one of these forms is built.
LOCAL_P, LOCAL_Q = "{err}_pre * v_post", "z_pre * rate_post"
#: The rate form of plastic dense feedback this module builds (Kolen-Pollack's mirrored update: the
#: B synapse from an error neuron onto a hidden neuron multiplies their two rates).
LOCAL_B = "{err}_pre * rate_post"

#: Orders within the ``start`` slot of a presentation tick: read the window means, clear them,
#: consolidate, load the next sample (plasticity accumulates on its own clock at order 0).
ORDER_READOUT, ORDER_CLEAR, ORDER_ACCUMULATE, ORDER_CONSOLIDATE, ORDER_LOAD = -10, -9, 0, 1, 2

#: Integration method of every group: exponential Euler is exact for the linear, uncoupled
#: compartments (and for v under a constant drive, see tests/test_brian2_spiking.py) and treats the
#: synaptic current g as constant within a step for v; Brian2's "exact" method would solve the
#: coupled (v, g) system symbolically, which costs a minute of sympy per model on these machines.
METHOD = "exponential_euler"

#: Variables each population's window means are kept for (``m_<var>``), by population kind.
MEANS = {"input": ("r",), "target": ("r",), "lif": ("r", "psi", "u", "delta"), "signed": ("r",)}


# ------------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class SpikingOptions:
    """How a spiking circuit is simulated. Times in ms, rates in Hz (Brian2 quantities are accepted
    by :func:`build` and converted).

    Parameters
    ----------
    target : str
        Brian2 code generation, ``numpy`` (no compiler) or ``cython`` (compiled once, cached in
        ``build_dir/brian2_cache``).
    dt : float, ms
        Integration step (exact integration of the linear subthreshold dynamics; a spike is
        detected at the end of the step that crosses threshold, so an ISI is late by dt/2 on
        average: 0.4% at 100 Hz with the default).
    settle : float, ms
        Start of each presentation during which nothing is learnt or read: the time for the signal
        to cross input -> hidden -> output -> error -> bottleneck -> apical compartment.
    window : float, ms
        Learning and read-out window that follows; rates and the update are its time averages, so
        their spike-count noise shrinks as it grows.
    plasticity_dt : float, ms
        Interval at which eligibilities and window means accumulate (a multiple of dt): samples of
        the traces' product, unbiased at any interval; shorter intervals cost time (the
        eligibility of every synapse of every copy is updated) for less sampling noise.
    input_coding : str
        ``poisson`` or ``regular`` spike trains for the input (regular: one spike every
        1 / rate with a random phase, so no count noise: on the digits, regular trains at 200 Hz
        instead of Poisson ones at 100 Hz lifted the held-out accuracy after one epoch from 19%
        to 43%, ``analyses/spiking_digits.py``).
    signed_input : bool
        Carry the input by ON and OFF halves (rates ``input_rate * [x]+`` and ``[-x]+``, the
        forward synapses +w from ON, -w from OFF), so x may be negative: centred data, which
        trains far faster than raw non-negative pixels (``analyses/spiking_digits.py``).
    input_rate : float, Hz
        Rate of an input of value 1.
    error_rate, bottleneck_rate : float, Hz
        Rate of an ON (or OFF) error / bottleneck neuron carrying a signal of 1.
    lif : LIFParams
        Parameters of the hidden and output neurons (their ``rate_max`` is also the target's
        rate scale and the read-out's).
    copies : int or None
        Samples simulated side by side (None: the batch).
    record_spikes : bool
        Keep spike and trace monitors of copy 0 of every population (:meth:`SpikingRunner.recording`).
    seed : int
        Seed of Brian2's random numbers (Poisson spikes); call k of a runner uses seed + k.
    build_dir : str or None
        Where the Cython cache goes (default ``build/`` beside the package).
    """

    target: str = "numpy"
    dt: float = 0.5
    settle: float = 50.0
    window: float = 100.0
    plasticity_dt: float = 2.5
    input_coding: str = "poisson"
    signed_input: bool = False
    input_rate: float = 100.0
    error_rate: float = 100.0
    bottleneck_rate: float = 100.0
    lif: LIFParams = field(default_factory=LIFParams)
    copies: int | None = None
    record_spikes: bool = False
    seed: int = 0
    build_dir: str | None = None

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r} for spiking circuits; valid options: "
                             f"{', '.join(TARGETS)}")
        if self.input_coding not in INPUT_CODINGS:
            raise ValueError(f"unknown input_coding {self.input_coding!r}; valid options: "
                             f"{', '.join(INPUT_CODINGS)}")
        for name in ("dt", "settle", "window", "plasticity_dt", "input_rate", "error_rate",
                     "bottleneck_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive number (ms or Hz); got {value!r}")
        if not isinstance(self.lif, LIFParams):
            raise ValueError(f"lif must be a bioplastic.neurons.LIFParams; got {type(self.lif).__name__}")
        for name in ("settle", "window", "plasticity_dt"):
            ratio = getattr(self, name) / self.dt
            if abs(ratio - round(ratio)) > 1e-9 * ratio:
                raise ValueError(f"{name} ({getattr(self, name)} ms) must be a multiple of dt ({self.dt} ms)")
        for name in ("settle", "window"):
            ratio = getattr(self, name) / self.plasticity_dt
            if abs(ratio - round(ratio)) > 1e-9 * ratio:
                raise ValueError(f"{name} ({getattr(self, name)} ms) must be a multiple of plasticity_dt "
                                 f"({self.plasticity_dt} ms)")
        if self.copies is not None and (isinstance(self.copies, bool) or not isinstance(self.copies, int)
                                        or self.copies < 1):
            raise ValueError(f"copies must be a positive int or None; got {self.copies!r}")

    @property
    def presentation(self) -> float:
        """settle + window (ms)."""
        return self.settle + self.window


# ------------------------------------------------------------------------------------ support
def is_spiking(circuit) -> bool:
    """Whether every population of ``circuit`` uses a spiking neuron model (a circuit mixing rate
    and spiking populations goes to the rate backend, which refuses it naming its models)."""
    return all(n in SPIKING_NEURONS for _, n in circuit.graph.nodes(data="neuron"))


def capabilities() -> dict[str, tuple[str, ...]]:
    """What this module builds (merged into the brian2 backend's capabilities)."""
    subs = tuple(n for n, unit in rules.SUBSPACES.items() if _subspace_problem(unit) is None)
    return {"topologies": ("layer", "direct"), "forms": ("dense", "low_rank"), "subspaces": subs,
            "activations": tuple(rules.ACTIVATIONS), "neurons": SPIKING_NEURONS}


def _subspace_problem(unit) -> str | None:
    if not unit.learns:
        return None
    form = unit.brian2 or {}
    if "P" in unit.learns and form.get("P") != LOCAL_P:
        return f"its P eligibility {form.get('P')!r} is not the local form {LOCAL_P!r}"
    if "Q" in unit.learns and form.get("Q") != LOCAL_Q:
        return f"its Q eligibility {form.get('Q')!r} is not the local form {LOCAL_Q!r}"
    return None


def unsupported(circuit) -> str | None:
    """Why the spiking circuit ``circuit`` cannot be built here (None when it can)."""
    rule = circuit.learning_rule
    what = f"rule {rule.name!r}" + (f" with subspace {rule.subspace.name!r}" if rule.subspace else "")
    refuse = f"backend {BACKEND!r} does not build the spiking (lif) circuit of {what}"
    supported = ("supported for spiking circuits: ldfa or dfa with a rank and subspace "
                 + ", ".join(capabilities()["subspaces"]) + "; fa or dfa with fixed B; kp (B learns by "
                 "the mirrored, local update); any depth")
    models = {n for _, n in circuit.graph.nodes(data="neuron")}
    if models != {"lif"}:
        return f"{refuse}: it mixes neuron models {sorted(models)}; every population must be 'lif'"
    if rule.form == "low_rank":
        problem = _subspace_problem(rule.subspace)
        if problem:
            return f"{refuse}: subspace rule {rule.subspace.name!r}: {problem}; {supported}"
    elif rule.form == "dense":
        if rule.plastic and rule.brian2_eligibility != LOCAL_B:
            return (f"{refuse}: its plastic feedback B has eligibility {rule.brian2_eligibility!r}, not "
                    f"the local form {LOCAL_B!r}; {supported}")
    else:
        return f"{refuse}: feedback of form {rule.form!r} (weight transport); {supported}"
    return unsupported_reason(BACKEND, circuit, capabilities())


def check_supported(circuit) -> None:
    reason = unsupported(circuit)
    if reason is not None:
        raise UnsupportedCircuitError(reason)


# ------------------------------------------------------------------------------------ helpers
def _block_pairs(copies: int, n_pre: int, n_post: int):
    """All-to-all synapses inside each copy: (i_pre, j_post, k) with k = post * n_pre + pre."""
    pre = np.repeat(np.arange(n_pre), n_post)
    post = np.tile(np.arange(n_post), n_pre)
    offsets = np.arange(copies)
    i = (offsets[:, None] * n_pre + pre[None, :]).ravel()
    j = (offsets[:, None] * n_post + post[None, :]).ravel()
    return i, j, np.tile(post * n_pre + pre, copies)


def _pad_rows(values: np.ndarray) -> np.ndarray:
    """Zero rows up to the next power of two (keeps generated code, and Cython's cache, stable)."""
    rows = 1 << (len(values) - 1).bit_length()
    return np.concatenate([values, np.zeros((rows - len(values),) + values.shape[1:])])


def _ms(value):
    """A time in ms from a number (ms) or a Brian2 quantity."""
    if hasattr(value, "dim"):
        from brian2 import ms

        return float(value / ms)
    return value


def _hz(value):
    if hasattr(value, "dim"):
        from brian2 import Hz

        return float(value / Hz)
    return value


@dataclass
class _Model:
    """The Brian2 objects of one assembled spiking circuit."""

    copies: int
    groups: dict = field(default_factory=dict)      # Brian2 group name -> NeuronGroup
    stores: dict = field(default_factory=dict)      # weight key -> NeuronGroup (w, elig)
    synapses: dict = field(default_factory=dict)
    monitors: dict = field(default_factory=dict)    # read-outs of the window means
    recorders: dict = field(default_factory=dict)   # spike/trace monitors (record_spikes)
    other: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)       # a user's objects (SpikingRunner.extend)
    signed: tuple = ()                               # populations split into ON/OFF halves
    namespace: dict = field(default_factory=dict)   # constants every equation names
    sim: object = None                               # clocks: integration (dt),
    plasticity: object = None                        # eligibility sampling (plasticity_dt),
    ticks: object = None                             # presentations (settle + window)
    network: object = None                           # the Brian2 Network, once built

    @property
    def objects(self) -> list:
        return [*self.groups.values(), *self.stores.values(), *self.synapses.values(),
                *self.monitors.values(), *self.recorders.values(), *self.other, *self.extra.values()]


# ------------------------------------------------------------------------------------ runner
class SpikingRunner(AbstractRunner):
    """A spiking circuit (LIF, ON/OFF errors) in Brian2; see the module docstring for the biology.

    Parameters
    ----------
    circuit : bioplastic.Circuit
        Built with ``neuron="lif"``.
    options : SpikingOptions
    weights : mapping, optional
        Initial weights (default :func:`bioplastic.circuit.init.initial_weights`, projected on
        Dale's signs when the circuit has ``dale``).

    Attributes
    ----------
    timing : dict
        Of the last call: presentations, samples, simulated and wall seconds, ``sim_s_per_wall_s``.
    means : dict
        Of the last call, per sample (rows in sample order): the window means of every population's
        trace ``<pop>.r`` (rates in units of their scale; ``error_on.r``, ``error_off.r`` for the
        halves of a signed population), of the hidden surrogate ``hidden1.psi``, apical
        ``hidden1.u`` and error ``hidden1.delta`` (= psi u); ``output.r`` is yhat.
    signs : dict
        Under Dale's law, weight key -> the sign (+1 excitatory, -1 inhibitory) of each presynaptic
        neuron (of the ON half; its OFF partner has the other); empty otherwise. Weights set by
        ``set_weights`` are taken as given and clipped to these signs at the first consolidation.
    """

    backend = "brian2"
    #: train_epoch simulates all its batches in one Brian2 run (the training loop of
    #: bioplastic.experiment hands it whole epochs)
    simulates_epochs = True

    def __init__(self, circuit, options: SpikingOptions | None = None, weights=None):
        check_supported(circuit)
        super().__init__(circuit)
        self.options = options or SpikingOptions()
        self.dale = bool(self.circuit.graph.graph.get("dale", False))
        self.build_dir = Path(self.options.build_dir) if self.options.build_dir else \
            Path(__file__).resolve().parents[3] / "build"
        self.weights = initial_weights(self.circuit)
        self.signs = self._dale_signs() if self.dale else {}
        for k, s in self.signs.items():
            self.weights[k] = np.abs(self.weights[k]) * s[None, :]
        if weights is not None:
            self.set_weights(weights)
        self.timing: dict = {}
        self.means: dict = {}
        self._models: dict = {}
        self._recording: dict = {}
        self._calls = 0
        self._last_copies: int | None = None
        self._extensions: list = []

    def _dale_signs(self) -> dict[str, np.ndarray]:
        """Weight key -> the sign of each presynaptic neuron (the ON neuron's, for signed populations)."""
        seed = self.circuit.params.seed
        names = list(self.circuit.graph.nodes)
        out = {}
        for proj in self.circuit.projections.values():
            if proj.role == "error":
                continue
            n_pre = self.circuit.graph.nodes[proj.pre]["size"]
            out[proj.name] = dale_signs(n_pre, seed, names.index(proj.pre))
        return out

    # ------------------------------------------------------------------- contract
    def train_step(self, x, y) -> float:
        x, y = check_batch(self.circuit, x, y)
        return float(self.train_epoch(x, y, batch_size=len(x))[0])

    def train_epoch(self, x, y, batch_size: int) -> np.ndarray:
        """Train on consecutive batches of ``x``, ``y`` (non-negative) in one Brian2 run.

        Returns
        -------
        ndarray, shape (n_batches,)
            Loss 1/2 ||yhat - y||^2 of each batch before its step, yhat the window-mean output rate.
        """
        x, y = check_batch(self.circuit, x, y)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        copies = self.options.copies or min(int(batch_size), len(x))
        schedule = make_schedule(len(x), copies, int(batch_size), learn=True)
        yhat = self._run(schedule, x, y)
        per_sample = 0.5 * np.sum((yhat - y) ** 2, axis=1)
        starts = np.arange(0, len(x), batch_size)
        return np.add.reduceat(per_sample, starts) / np.diff(np.append(starts, len(x)))

    def predict(self, x) -> np.ndarray:
        """Window-mean output rates (units of ``lif.rate_max``), shape (batch, d)."""
        x, _ = check_batch(self.circuit, x)
        copies = self.options.copies or self._last_copies or min(len(x), 64)
        schedule = make_schedule(len(x), copies, len(x), learn=False)
        return self._run(schedule, x, None)

    def recording(self) -> dict:
        """Spikes and traces of copy 0 during the last call (``record_spikes=True``).

        Returns
        -------
        dict
            Brian2 group name (``input``, ``hidden1``, ``output``, ``target``, ``error_on``,
            ``error_off``, ``feedback2_on``, ...) -> dict with ``t`` (s) and ``i`` (neuron) of every
            spike, ``size``, and for signed and output populations ``trace_t`` (s) and ``trace``
            (samples, size) of the rate trace r; ``presentation`` (s) is settle + window.
        """
        return dict(self._recording)

    # ------------------------------------------------------------------- open circuit
    def extend(self, fn) -> SpikingRunner:
        """Add one's own Brian2 objects to every network this runner builds, as
        :meth:`Brian2Runner.extend` does for rate circuits.

        ``fn(model)`` gets the assembled model (``groups`` by Brian2 group name, e.g. ``hidden1``,
        ``error`` (both halves), ``stores``, ``synapses``, the clocks ``sim``, ``plasticity`` and
        ``ticks``, ``namespace``) and returns a Brian2 object, a sequence or a dict of them. They
        join the network before its fresh state is stored, so they survive every training call
        (each call starts them afresh, as it does the circuit); read them from
        ``runner.model().extra``. Example: a Poisson population of inhibitory interneurons onto the
        apical compartments of ``hidden1``::

            def interneurons(model):
                n = len(model.groups["hidden1"])
                inh = PoissonGroup(n, 20 * Hz, clock=model.sim, name="interneurons")
                syn = Synapses(inh, model.groups["hidden1"], on_pre="u_post -= 0.01",
                               clock=model.sim, name="interneurons_to_hidden1")
                syn.connect(j="i")
                return [inh, syn, SpikeMonitor(inh, name="interneuron_spikes")]

        Networks built before are dropped (the next call rebuilds them). Returns the runner.
        """
        if not callable(fn):
            raise TypeError(f"extend needs a callable fn(model) -> Brian2 objects; got {fn!r}")
        self._extensions.append(fn)
        self._models.clear()
        return self

    def model(self, copies: int | None = None) -> _Model:
        """The Brian2 objects of the circuit with ``copies`` parallel copies (default: those of the
        last call, else ``options.copies``, else 1), built if no call has built them yet; objects
        added to ``model.network`` survive the following calls (prefer :meth:`extend`)."""
        copies = copies or self._last_copies or self.options.copies or 1
        with _runtime_prefs(self.options.target, self.build_dir / "brian2_cache"):
            return self._network(copies)[0]

    def export(self, format: str = "markdown", copies: int | None = None) -> str:
        """The built model in a readable form (populations with their equations, weight stores,
        synapses, clocks, constants; :func:`._export.describe`): ``markdown`` or ``json``."""
        from . import _export

        return _export.render(_export.describe(self, self.model(copies)), format)

    def simulation_facts(self, model: _Model) -> dict:
        """The clocks and times of ``model`` for :func:`._export.describe`."""
        o = self.options
        return {"copies": model.copies, "dt_ms": o.dt, "settle_ms": o.settle, "window_ms": o.window,
                "plasticity_dt_ms": o.plasticity_dt, "target": o.target,
                "input": f"{o.input_coding} at {o.input_rate:g} Hz" + (" (ON/OFF)" if o.signed_input else ""),
                "clocks": {model.sim.name: o.dt * 1e-3, model.plasticity.name: o.plasticity_dt * 1e-3,
                           model.ticks.name: o.presentation * 1e-3},
                "summary": (f"{model.copies} parallel copies; LIF neurons, dt {o.dt:g} ms; each "
                            f"presentation {o.settle:g} ms settling + {o.window:g} ms learning window, "
                            f"eligibilities sampled every {o.plasticity_dt:g} ms; input "
                            f"{o.input_coding} spike trains at {o.input_rate:g} Hz; target {o.target}")}

    def _network(self, copies: int):
        import brian2 as b2

        if copies not in self._models:
            b2.seed(self.options.seed)  # the random phases of regular input trains are drawn here
            model = _assemble(self.circuit, copies, self.options, self.signs)
            from ._network import add_extra

            for fn in self._extensions:
                add_extra(model, fn)
            net = model.network = b2.Network(*model.objects)
            net.store("fresh")
            net._bioplastic_stored = {obj.name for obj in net.objects}
            self._models[copies] = (model, net)
        return self._models[copies]

    # ------------------------------------------------------------------- simulation
    def _check_signs(self, x, y):
        if np.any(x < 0) and not self.options.signed_input:
            raise ValueError("a spiking circuit encodes x as firing rates: x must be >= 0 (got a minimum "
                             f"of {x.min():g}); rectify the data, or pass signed_input=True for ON/OFF "
                             "input halves")
        if y is not None and np.any(y < 0):
            raise ValueError("a spiking circuit encodes the target as firing rates: y must be >= 0 "
                             f"(got a minimum of {y.min():g})")

    def _arrays(self, schedule: Schedule, x, y) -> dict:
        """Values of the TimedArray schedules: tick rows (one per presentation, plus an idle one)
        and the window weights on the plasticity clock."""
        o = self.options
        n_pres = schedule.slots.shape[0]
        # the rate circuit's tick rows; a spiking presentation k learns during its own window, so its
        # learn flag sits on row k, not on the tick k + 1 that closes it
        arrays = schedule_arrays(schedule, x, y, self.circuit.sizes[-1])
        arrays["learn_sched"] = np.zeros(n_pres + 1)
        if schedule.learn:
            arrays["learn_sched"][:n_pres] = 1.0
        per = round(o.presentation / o.plasticity_dt)
        start = round(o.settle / o.plasticity_dt)
        one = np.zeros(per)
        one[start:] = o.plasticity_dt / o.window  # weights that sum to 1 over a window
        window = np.concatenate([np.tile(one, n_pres), np.zeros(per)])
        return {**arrays, "win_sched": window}

    def _run(self, schedule: Schedule, x, y) -> np.ndarray:
        import brian2 as b2

        self._check_signs(x, y)
        o = self.options
        arrays = self._arrays(schedule, x, y)
        n_pres, copies = schedule.slots.shape
        start = time.perf_counter()
        with _runtime_prefs(o.target, self.build_dir / "brian2_cache"):
            model, net = self._network(copies)
            _restore_fresh(net)
            for k, s in model.stores.items():
                s.w_ = self.weights[k].ravel()
            ns = dict(model.namespace)
            for name, values in arrays.items():
                step = o.plasticity_dt if name == "win_sched" else o.presentation
                ns[name] = b2.TimedArray(_pad_rows(values), dt=step * b2.ms, name=name)
            b2.seed(o.seed + self._calls)
            self._calls += 1
            t0 = time.perf_counter()
            net.run((n_pres * o.presentation + o.dt) * b2.ms, namespace=ns)
            run_s = time.perf_counter() - t0
            problem = _non_finite(model)
            if problem:
                raise DivergenceError(
                    f"backend 'brian2': the spiking circuit diverged during this call ({problem}); the "
                    "weights are left as they were before it. Lower lr or feedback_lr")
            for k, s in model.stores.items():
                self.weights[k] = np.asarray(s.w_[:], dtype=np.float64).reshape(self.weights[k].shape).copy()
            means = {label: np.asarray(getattr(mon, "m_" + label.split(".")[1])).T
                     for label, mon in model.monitors.items()}
            self._recording = _collect_recording(model, o) if o.record_spikes else {}
        wall = time.perf_counter() - start
        self._last_copies = copies
        valid = schedule.slots >= 0
        order = schedule.slots[valid]
        self.means = {}
        for label, values in means.items():
            per_pres = values[1:n_pres + 1].reshape(n_pres, copies, -1)  # row k + 1: presentation k
            out = np.empty((len(order), per_pres.shape[-1]))
            out[order] = per_pres[valid]
            pop, var = label.split(".")
            if pop in model.signed:  # ON half first, then OFF
                n = out.shape[1] // 2
                self.means[f"{pop}_on.{var}"], self.means[f"{pop}_off.{var}"] = out[:, :n], out[:, n:]
            else:
                self.means[label] = out
        sim_s = n_pres * o.presentation * 1e-3
        self.timing = dict(target=o.target, copies=copies, presentations=n_pres, samples=len(order),
                           presentation_ms=o.presentation, dt_ms=o.dt, sim_s=sim_s, run_s=run_s,
                           wall_s=wall, sim_s_per_wall_s=sim_s / run_s, samples_per_s=len(order) / run_s)
        return self.means["output.r"]


# ------------------------------------------------------------------------------------ assembly
def lif_equations(role: str, bias: str | None) -> list[str]:
    """Brian2 equations of a LIF population (:mod:`bioplastic.neurons.lif`), reading constants
    ``tau_m, v_rest, v_th, delta_v, drive_offset, tau_syn, tau_apical, tau_trace`` and the surrogate's.

    The soma integrates the synaptic drive g (and the bias); the apical compartment u integrates
    feedback and never drives v; r is the rate trace; delta is the neuron's error, psi(v) u for a
    hidden neuron, u for an output neuron (the linear readout's error). ``bias``: the declaration
    of the bias variable (``"bias : 1 (linked)"``), or None for no bias.
    """
    drive = "drive_offset + g" + (" + bias" if bias else "")
    eqs = [f"dv/dt = (v_rest - v + delta_v * ({drive})) / tau_m : volt (unless refractory)",
           "dg/dt = -g / tau_syn : 1", "du/dt = -u / tau_apical : 1", "dr/dt = -r / tau_trace : 1",
           f"psi = {SURROGATE} : 1", "delta = psi * u : 1" if role == "hidden" else "delta = u : 1"]
    return eqs + ([bias] if bias else [])


def _constants(p: LIFParams) -> dict:
    import brian2 as b2

    ms, mV = b2.ms, b2.mV
    return dict(tau_m=p.tau_m * ms, v_rest=p.v_rest * mV, v_reset=p.v_reset * mV, v_th=p.v_th * mV,
                delta_v=p.delta_v * mV, drive_offset=p.drive_offset, tau_syn=p.tau_syn * ms,
                tau_apical=p.tau_apical * ms, tau_trace=p.tau_trace * ms, gamma_psi=p.gamma_psi,
                w_psi=p.w_psi * mV)


def simulate_lif(drives, duration: float = 1000.0, params: LIFParams = LIFParams(), dt: float = 0.01,
                 record_v: bool = True) -> dict:
    """Simulate uncoupled LIF neurons of this backend's equations under constant drives.

    Parameters
    ----------
    drives : array_like, shape (n,)
        Dimensionless drive a of each neuron (held by its bias; no synaptic input).
    duration, dt : float, ms
    params : LIFParams
    record_v : bool
        Keep the membrane potential of every neuron at every step.

    Returns
    -------
    dict
        ``rate`` (n,) Hz (spike count / duration), ``t`` (steps,) ms and ``v`` (n, steps) mV when
        recorded, ``psi`` (n, steps) the surrogate, ``trace`` (n,) the rate trace's time average
        over the second half (units of ``rate_max``).
    """
    import brian2 as b2

    drives = np.asarray(drives, dtype=np.float64)
    net = b2.Network()
    eqs = lif_equations("hidden", "bias : 1") + ["m : 1"]
    jump = 1.0 / (params.tau_trace * 1e-3 * params.rate_max)
    grp = b2.NeuronGroup(len(drives), "\n".join(eqs), threshold="v > v_th", reset=f"v = v_reset; r += {jump!r}",
                         refractory=params.t_ref * b2.ms, method=METHOD, dt=dt * b2.ms)
    grp.v = params.v_rest * b2.mV
    grp.bias = drives
    half = duration / 2
    grp.run_regularly(f"m += int(t >= {half!r}*ms) * r * dt / ({half!r}*ms)", dt=dt * b2.ms)
    spikes = b2.SpikeMonitor(grp)
    net.add(grp, spikes)
    if record_v:
        mon = b2.StateMonitor(grp, ["v", "psi"], record=True)
        net.add(mon)
    net.run(duration * b2.ms, namespace=_constants(params))
    out = {"rate": np.asarray(spikes.count[:], dtype=np.float64) / (duration * 1e-3),
           "trace": np.asarray(grp.m[:])}
    if record_v:
        out.update(t=np.asarray(mon.t / b2.ms), v=np.asarray(mon.v / b2.mV), psi=np.asarray(mon.psi))
    return out


def _assemble(circuit, copies: int, o: SpikingOptions, signs: dict) -> _Model:
    """The Brian2 objects of a spiking circuit with ``copies`` parallel copies."""
    import brian2 as b2

    p = o.lif
    ms, mV = b2.ms, b2.mV
    g = circuit.graph
    model = _Model(copies=copies)
    sim = b2.Clock(dt=o.dt * ms, name="spiking_clock")
    plast = b2.Clock(dt=o.plasticity_dt * ms, name="plasticity_clock")
    ticks = b2.Clock(dt=o.presentation * ms, name="presentation_clock")
    const = _constants(p)
    model.namespace = const
    model.sim, model.plasticity, model.ticks = sim, plast, ticks
    scale = {"input": o.input_rate, "hidden": p.rate_max, "output": p.rate_max, "target": p.rate_max,
             "error": o.error_rate, "feedback": o.bottleneck_rate}
    rule = circuit.learning_rule
    local = rule.form == "low_rank" and "P" in rule.subspace.learns
    params = circuit.params
    reads_vq = {n for n, r in g.nodes(data="role") if r == "feedback"} if local else set()
    relay = relays(circuit)  # hidden population -> its error relay (deeper circuits only)
    sizes = {**dict(g.nodes(data="size")), **{r: g.nodes[h]["size"] for h, r in relay.items()}}

    def accumulate(group, variables):
        group.run_regularly("\n".join(f"m_{v} += win_sched(t) * {v}" for v in variables), clock=plast,
                            when="start", order=ORDER_ACCUMULATE, name=f"{group.name}_means")
        group.run_regularly("\n".join(f"m_{v} = 0" for v in variables), clock=ticks, when="start",
                            order=ORDER_CLEAR, name=f"{group.name}_clear")
        for v in variables:
            model.monitors[f"{group.name}.{v}"] = b2.StateMonitor(
                group, f"m_{v}", record=True, clock=ticks, when="start", order=ORDER_READOUT,
                name=f"{group.name}_mean_{v}")

    trace = "dr/dt = -r / tau_trace : 1"
    for name, attrs in g.nodes(data=True):
        role, n = attrs["role"], attrs["size"] * copies
        jump = f"r += {1.0 / (p.tau_trace * 1e-3 * scale[role])!r}"
        if role in ("input", "target"):
            var, rate = ("x", o.input_rate) if role == "input" else ("y", p.rate_max)
            halves = role == "input" and o.signed_input
            eqs = [f"{var} : 1", trace, "m_r : 1"]
            # a signed input: ON and OFF halves (as for the error), firing at rate [x]+ and [-x]+
            value = f"clip(sgn * {var}, 0, inf)" if halves else var
            if halves:
                eqs += ["sgn : 1 (constant)", "column : integer (constant)"]
            if role == "input" and o.input_coding == "regular":
                eqs.append(f"dphase/dt = {value} * {rate!r} * Hz : 1")
                threshold, reset = "phase > 1", f"phase -= 1; {jump}"
            else:
                threshold, reset = f"rand() < {value} * {rate!r} * Hz * dt", jump
            grp = b2.NeuronGroup(2 * n if halves else n, "\n".join(eqs), threshold=threshold, reset=reset,
                                 method=METHOD, clock=sim, name=name)
            if role == "input" and o.input_coding == "regular":
                grp.phase = "rand()"
            if halves:
                c, m = np.divmod(np.arange(2 * n), 2 * attrs["size"])
                grp.column = c * attrs["size"] + m % attrs["size"]
                grp.sgn = np.tile(np.repeat([1.0, -1.0], attrs["size"]), copies)
                model.signed += (name,)
            grp.run_regularly(f"{var} = {var}_sched(t, {'column' if halves else 'i'})", clock=ticks,
                              when="start", order=ORDER_LOAD, name=f"{name}_loader")
            model.groups[name] = grp
            accumulate(grp, MEANS[role])
        elif role in ("hidden", "output"):
            bias = attrs["bias"]
            eqs = lif_equations(role, "bias : 1 (linked)" if bias else None)
            eqs += [f"m_{v} : 1" for v in MEANS["lif"]] + (["elig_b : 1 (linked)"] if bias else [])
            grp = b2.NeuronGroup(n, "\n".join(eqs), threshold="v > v_th", reset=f"v = v_reset; {jump}",
                                 refractory=p.t_ref * ms, method=METHOD, clock=sim, name=name)
            grp.v = p.v_rest * mV
            model.groups[name] = grp
            accumulate(grp, MEANS["lif"])
        elif role in SIGNED_ROLES:
            # one group per population: in copy c, neurons c*2n .. c*2n+n-1 are the ON half (sgn = +1),
            # the next n the OFF half (sgn = -1); each fires at rate * [I]+ (a rectified Poisson neuron)
            eqs = ["dI/dt = -I / tau_syn : 1", trace, "m_r : 1", "sgn : 1 (constant)"]
            if role == "error":
                eqs += ["gate : 1", "column : integer (constant)"]
            if name in reads_vq:
                eqs.append("dvq/dt = -vq / tau_apical : 1")
            gate = "gate * " if role == "error" else ""
            grp = b2.NeuronGroup(2 * n, "\n".join(eqs),
                                 threshold=f"rand() < {gate}{scale[role]!r} * Hz * clip(I, 0, inf) * dt",
                                 reset=jump, method=METHOD, clock=sim, name=name)
            grp.sgn = np.tile(np.repeat([1.0, -1.0], attrs["size"]), copies)
            if role == "error":
                # both halves of copy c, neuron m read the gate of column c * d + m
                c, m = np.divmod(np.arange(2 * n), 2 * attrs["size"])
                grp.column = c * attrs["size"] + m % attrs["size"]
                grp.run_regularly("gate = gate_sched(t, column)", clock=ticks, when="start",
                                  order=ORDER_LOAD, name=f"{name}_loader")
            model.groups[name] = grp
            model.signed += (name,)
            accumulate(grp, MEANS["signed"])
        else:
            raise UnsupportedCircuitError(f"backend 'brian2' has no spiking equations for population role "
                                          f"{role!r}; roles: input, hidden, output, target, error, feedback")

    for hidden, name in relay.items():
        # ON/OFF relay of a hidden layer's error: neuron m of each half reads delta of hidden neuron m
        n = sizes[name]
        jump = f"r += {1.0 / (p.tau_trace * 1e-3 * o.error_rate)!r}"
        grp = b2.NeuronGroup(2 * n * copies, "\n".join(["I : 1", trace, "m_r : 1", "sgn : 1 (constant)"]),
                             threshold=f"rand() < {o.error_rate!r} * Hz * clip(I, 0, inf) * dt",
                             reset=jump, method=METHOD, clock=sim, name=name)
        grp.sgn = np.tile(np.repeat([1.0, -1.0], n), copies)
        model.groups[name] = grp
        model.signed += (name,)
        accumulate(grp, MEANS["signed"])

    def store(name: str, size: int, lr: float, decay: float):
        s = b2.NeuronGroup(size, "w : 1\nelig : 1\ndsign : 1 (constant)\nlr : 1 (shared, constant)\n"
                                 "decay : 1 (shared, constant)", clock=ticks, name=f"{name}_weights")
        s.lr, s.decay = lr, decay
        if name in signs:
            post = size // len(signs[name])
            s.dsign = np.tile(signs[name], post)
        if lr > 0:
            code = ("w -= lr * (consolidate_sched(t) * elig + decay * int(consolidate_sched(t) > 0) * w)\n"
                    "w = (1 - abs(dsign)) * w + dsign * clip(dsign * w, 0, inf)\n"
                    "elig *= 1 - int(consolidate_sched(t) > 0)")
            s.run_regularly(code, clock=ticks, when="start", order=ORDER_CONSOLIDATE,
                            name=f"{name}_consolidation")
        model.stores[name] = s
        return s

    learning = "learn_sched(t) * win_sched(t)"
    for l, name in enumerate(circuit.layers):
        if l and g.nodes[name]["bias"]:
            size = g.nodes[name]["size"]
            s = store(key("b", l), size, params.lr, 0.0)
            grp = model.groups[name]
            index = np.tile(np.arange(size), copies)
            grp.bias = b2.linked_var(s, "w", index=index)
            grp.elig_b = b2.linked_var(s, "elig", index=index)
            grp.run_regularly(f"elig_b += {learning} * delta", clock=plast, when="start",
                              order=ORDER_ACCUMULATE, name=f"{key('b', l)}_eligibility")

    def width(pop: str) -> int:
        """Neurons per copy of a population's group (two halves for a signed population)."""
        return sizes[pop] * (2 if pop in model.signed else 1)

    def pairs(pre: str, post: str):
        """All-to-all synapses inside each copy; (i, j, widx) with widx the (post, pre) row-major
        index of the stored weight each synapse reads (the ON and OFF halves read the same one)."""
        n_pre, n_post = sizes[pre], sizes[post]
        i, j, _ = _block_pairs(copies, width(pre), width(post))
        return i, j, (j % width(post) % n_post) * n_pre + (i % width(pre) % n_pre)

    def one_to_one(pre: str, post: str):
        """Neuron m of ``pre`` to neuron m of each half of ``post`` (or the reverse), copy by copy."""
        n = sizes[pre]
        c, m = np.divmod(np.arange(copies * n), n)
        plain = c * n + m
        halves = np.concatenate([c * 2 * n + m, c * 2 * n + n + m])
        plain = np.concatenate([plain, plain])
        return (plain, halves) if width(post) == 2 * n else (halves, plain)

    for hidden, name in relay.items():
        read = b2.Synapses(model.groups[hidden], model.groups[name], "I_post = sgn_post * delta_pre : 1 (summed)",
                           clock=sim, name=f"{name}_read")
        i, j = one_to_one(hidden, name)
        read.connect(i=i, j=j)
        model.synapses[read.name] = read

    for proj in sorted(circuit.projections.values(), key=lambda q: (q.role != "forward", q.layer, q.name)):
        pre_role, post_role = g.nodes[proj.pre]["role"], g.nodes[proj.post]["role"]
        n_pre, n_post = g.nodes[proj.pre]["size"], g.nodes[proj.post]["size"]
        # a hidden layer's error leaves it through its relay (the spikes of the layer carry its rate)
        pre = relay[proj.pre] if proj.role == "feedback" and proj.pre in relay else proj.pre
        if pre != proj.pre:
            pre_role = "error"
        pre_grp, post_grp = model.groups[pre], model.groups[proj.post]
        if proj.role == "error":
            # output -> error: +1 onto ON, -1 onto OFF (sgn_post); target -> error: the reverse
            base = 1.0 if proj.init == "identity" else -1.0
            jump = base / (p.tau_syn * 1e-3 * p.rate_max)
            syn = b2.Synapses(pre_grp, post_grp, on_pre=f"I_post += sgn_post * {jump!r}", clock=sim,
                              name=proj.name)
            i, j = one_to_one(proj.pre, proj.post)
            syn.connect(i=i, j=j)
            model.synapses[syn.name] = syn
            if proj.init == "identity":  # the error returns to the output's apical compartment
                jump = 1.0 / (p.tau_apical * 1e-3 * o.error_rate)
                syn = b2.Synapses(post_grp, pre_grp, on_pre=f"u_post += sgn_pre * {jump!r}", clock=sim,
                                  name="E_return")
                i, j = one_to_one(proj.post, proj.pre)
                syn.connect(i=i, j=j)
                model.synapses[syn.name] = syn
            continue
        if proj.role == "forward":
            target, tau = "g", p.tau_syn
        elif post_role == "hidden":
            target, tau = "u", p.tau_apical
        elif post_role == "feedback":
            target, tau = "I", p.tau_syn
        else:
            raise UnsupportedCircuitError(f"backend 'brian2': no spiking wiring for {proj.name!r} "
                                          f"({pre_role} -> {post_role})")
        kind = kind_of(proj.name)
        learns = proj.rule == "sgd" or (rule.form == "low_rank" and kind in rule.subspace.learns) or \
            (rule.form == "dense" and rule.plastic and kind == "B")
        lr = params.lr if proj.role == "forward" else params.feedback_lr
        s = store(proj.name, n_pre * n_post, lr if learns else 0.0, params.decay)
        # the sign a synapse carries: that of its presynaptic half times that of its postsynaptic one
        sign = " * ".join(["1.0"] + [f"sgn_{side}" for side, pop in (("pre", pre), ("post", proj.post))
                                     if pop in model.signed])
        jump = 1.0 / (tau * 1e-3 * scale[pre_role])
        lines = ["w : 1 (linked)", "widx : integer (constant)"] + (["elig : 1 (linked)"] if learns else [])
        syn = b2.Synapses(pre_grp, post_grp, "\n".join(lines),
                          on_pre=f"{target}_post += {sign} * w * {jump!r}", clock=sim, name=proj.name)
        i, j, widx = pairs(pre, proj.post)
        syn.connect(i=i, j=j)
        syn.widx = widx
        syn.w = b2.linked_var(s, "w", index="widx")
        if learns:
            syn.elig = b2.linked_var(s, "elig", index="widx")
            if kind == "W":  # (a signed input's halves: summed, (x_on - x_off) delta^T)
                product = f"{sign} * r_pre * delta_post"
            elif kind == "B":  # Kolen-Pollack, summed over the error's ON and OFF halves: h delta^T
                product = f"{sign} * r_pre * r_post"
            elif kind == "Q":  # summed over the ON and OFF halves: h z^T
                product = f"{sign} * r_pre * r_post"
            elif kind == "P":  # summed over the four pairings of halves: 2 v e^T, hence 1/2
                product = f"0.5 * {sign} * r_pre * vq_post"
            else:
                raise UnsupportedCircuitError(f"backend 'brian2': no spiking eligibility for {proj.name!r}")
            syn.run_regularly(f"elig += {learning} * {product}", clock=plast, when="start",
                              order=ORDER_ACCUMULATE, name=f"{proj.name}_eligibility")
        model.synapses[syn.name] = syn
        if kind == "Q" and local:
            # reciprocal read-out of the local rule: hidden -> bottleneck compartment vq = sgn Q^T h
            # (these synapses read Q's weights: a symmetric wiring, as in the rate circuit)
            jump = 1.0 / (p.tau_apical * 1e-3 * p.rate_max)
            syn = b2.Synapses(post_grp, pre_grp, "w : 1 (linked)\nwidx : integer (constant)",
                              on_pre=f"vq_post += sgn_post * w * {jump!r}", clock=sim,
                              name=f"Qt{proj.layer}")
            i, j, _ = pairs(proj.post, proj.pre)
            # Q is stored (hidden, bottleneck): the synapse hidden i -> bottleneck k reads Q[i, k]
            syn.connect(i=i, j=j)
            syn.widx = (i % width(proj.post)) * n_pre + (j % width(proj.pre) % n_pre)
            syn.w = b2.linked_var(s, "w", index="widx")
            model.synapses[syn.name] = syn

    if o.record_spikes:
        for name, grp in model.groups.items():
            n = len(grp) // copies
            # every copy's spikes (a subgroup cannot hold linked variables); copy 0 is kept
            model.recorders[f"{name}.spikes"] = b2.SpikeMonitor(grp, name=f"{name}_spikes")
            if (name in model.signed and name != "input") or g.nodes.get(name, {}).get("role") == "output":
                model.recorders[f"{name}.trace"] = b2.StateMonitor(grp, "r", record=np.arange(n),
                                                                   dt=1 * ms, name=f"{name}_trace")
    return model


def _non_finite(model: _Model) -> str | None:
    """The populations (and variables) and weight stores that went non-finite, or None."""
    found = []
    for name, grp in model.groups.items():
        bad = [v for v in ("v", "g", "u", "I", "r", "vq") if v in grp.variables
               and not np.all(np.isfinite(np.asarray(grp.variables[v].get_value())))]
        if bad:
            found.append(f"population {name!r}: {', '.join(bad)}")
    found += [f"weight store {key!r}" for key, st in model.stores.items()
              if not np.all(np.isfinite(np.asarray(st.w_[:])))]
    return "; ".join(found) or None


def _collect_recording(model: _Model, o: SpikingOptions) -> dict:
    out = {}
    for label, mon in model.recorders.items():
        name, what = label.rsplit(".", 1)
        entry = out.setdefault(name, {"presentation": o.presentation * 1e-3})
        if what == "spikes":
            size = len(mon.source) // model.copies
            keep = np.asarray(mon.i[:]) < size
            entry.update(t=np.asarray(mon.t[:])[keep], i=np.asarray(mon.i[:])[keep], size=size)
        else:
            entry.update(trace_t=np.asarray(mon.t[:]), trace=np.asarray(mon.r).T)
    for name in [n for n in out if n in model.signed]:  # split into the ON and OFF halves
        entry = out.pop(name)
        n = entry["size"] // 2
        for half, lo in (("on", 0), ("off", n)):
            sel = (entry["i"] >= lo) & (entry["i"] < lo + n)
            part = dict(presentation=entry["presentation"], t=entry["t"][sel], i=entry["i"][sel] - lo, size=n)
            if "trace" in entry:
                part.update(trace_t=entry["trace_t"], trace=entry["trace"][:, lo:lo + n])
            out[f"{name}_{half}"] = part
    return out


def build(circuit, **options) -> SpikingRunner:
    """Build a :class:`SpikingRunner`; ``options`` are :class:`SpikingOptions` fields (times in ms or
    Brian2 quantities, rates in Hz or quantities; ``lif`` a LIFParams or a dict of its fields) and
    ``weights``."""
    weights = options.pop("weights", None)
    known = {f.name for f in fields(SpikingOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for spiking circuits on backend 'brian2'; valid "
                        f"options: {', '.join(sorted(known | {'weights'}))}")
    for name in ("dt", "settle", "window", "plasticity_dt"):
        if name in options:
            options[name] = _ms(options[name])
    for name in ("input_rate", "error_rate", "bottleneck_rate"):
        if name in options:
            options[name] = _hz(options[name])
    if isinstance(options.get("lif"), dict):
        options["lif"] = replace(LIFParams(), **options["lif"])
    return SpikingRunner(circuit, SpikingOptions(**options), weights)


def reference_update(circuit, weights: dict, x: np.ndarray, means: dict) -> dict:
    """The abstract rule's gradients (float64, :mod:`bioplastic.rules`) at a spiking circuit's own means.

    The rule is evaluated with h_0 = x, h_l = the window-mean rates of hidden layer l, the output
    error e the one the error neurons carry, (rate_on - rate_off) / error_rate (an unbiased
    estimate of yhat - y, with the error neurons' own spike-count noise), and f'(a_l) replaced by
    the mean surrogate psi of each hidden neuron: what the circuit's mean weight change should be
    if every product of traces equalled the product of their means (the statistical-equivalence
    claim of the module docstring). In a deeper circuit a relayed hidden layer's error reaches the
    synapses that read its relay (the feedback factors it feeds, the layer below) as the relay
    carries it, (rate_on - rate_off) / error_rate, an unbiased estimate of the layer's window-mean
    psi(v) u; the layer's own forward weights, whose eligibility reads psi(v) u in the neuron
    itself, get the rule's psi u at the means.

    Returns
    -------
    dict
        Weight key -> batch-mean gradient (the update is -lr times it), for every plastic matrix.
    """
    from ...rules._base import forward_gradients

    rule = circuit.learning_rule
    layers = circuit.layers
    h = [x] + [means[f"{name}.r"] for name in layers[1:]]
    error = next(n for n, r in circuit.graph.nodes(data="role") if r == "error")
    e = means[f"{error}_on.r"] - means[f"{error}_off.r"]
    psi = [None] + [means[f"{name}.psi"] for name in layers[1:-1]] + [None]
    relayed = relays(circuit)
    if rule.topology == "layer" and relayed:
        L = len(layers) - 1
        own: list = [None] * (L + 1)  # each layer's error in its neurons (its W's eligibility)
        sent: list = [None] * (L + 1)  # the error its outgoing feedback synapses read
        own[L] = sent[L] = e
        for l in range(L - 1, 0, -1):
            own[l] = psi[l] * rule.deliver(weights, l + 1, sent[l + 1])
            relay = relayed.get(layers[l])
            sent[l] = means[f"{relay}_on.r"] - means[f"{relay}_off.r"] if relay else own[l]
    else:
        own = sent = rule.layer_errors(weights, psi, e, lambda a: a)
    grads = forward_gradients(h, own, weights)
    grads.update(rule.feedback_gradients(weights, h, sent, grads))
    return grads


__all__ = ["INPUT_CODINGS", "SPIKING_NEURONS", "TARGETS", "SpikingOptions", "SpikingRunner", "build",
           "capabilities", "check_supported", "is_spiking", "lif", "lif_equations", "reference_update",
           "simulate_lif", "unsupported"]
