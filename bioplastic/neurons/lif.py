r"""The leaky integrate-and-fire neuron (``neuron="lif"``) as a unit: parameters, f-I curve, surrogate.

A LIF neuron's membrane potential v (mV) relaxes to rest and integrates a dimensionless drive
:math:`a` (the spiking counterpart of a rate neuron's pre-activation, :mod:`bioplastic.neurons`):

.. math::

    \tau_m \dot v = v_\mathrm{rest} - v + \Delta V\,(a_0 + a), \qquad \Delta V = v_\mathrm{th} - v_\mathrm{rest},

with a spike and a reset to :math:`v_\mathrm{reset}` when v crosses :math:`v_\mathrm{th}`, and a
refractory period :math:`t_\mathrm{ref}` during which v is clamped. The offset :math:`a_0`
(``drive_offset``) sets where a = 0 sits: with a_0 = 1 the membrane rests at threshold for a = 0,
so the neuron fires for any a > 0 and is silent for a <= 0 (a rectifying, relu-like f-I curve).
The rate a synapse reads is the neuron's spike train filtered by an exponential trace of time
constant :math:`\tau_\mathrm{trace}`, scaled so that ``rate_max`` Hz reads as h = 1.

Where the rate neuron's learning rule reads f'(a), a spiking neuron reads a surrogate derivative of
its membrane potential, the pseudo-derivative of e-prop (Bellec et al. 2020, "A solution to the
learning dilemma for recurrent networks of spiking neurons", Nat. Commun. 11:3625, eq. for
:math:`\psi`), defined once in :data:`SURROGATE` as a triangle peaking at threshold:

.. math::

    \psi(v) = \gamma\,\max\!\big(0,\ 1 - |v - v_\mathrm{th}| / w_\psi\big).

Every backend reads this module: :func:`surrogate` evaluates :data:`SURROGATE` with numpy, and the
Brian2 backend pastes the same string into its equations (``bioplastic/backends/brian2/_spiking.py``).
:func:`membrane` (the analytic subthreshold solution for a constant drive) and :func:`rate` (the
analytic f-I curve of a noiseless LIF) are the specifications its tests hold the simulation to.

Units: times in ms, potentials in mV, rates in Hz (what a Brian2 user writes: ``10*ms``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

#: The surrogate derivative psi(v) (dimensionless), as one expression of the membrane potential
#: ``v`` and the parameters ``v_th``, ``w_psi`` (same unit as v) and ``gamma_psi``; ``clip``,
#: ``abs`` and ``inf`` are Brian2 (and, here, numpy) functions.
SURROGATE = "gamma_psi * clip(1 - abs(v - v_th) / w_psi, 0, inf)"


@dataclass(frozen=True)
class LIFParams:
    """Parameters of a LIF population (units in each name's description).

    Parameters
    ----------
    tau_m : float, ms
        Membrane time constant.
    v_rest, v_reset, v_th : float, mV
        Resting potential, reset after a spike, firing threshold (v_th > v_rest, v_reset < v_th).
    t_ref : float, ms
        Absolute refractory period (v clamped at v_reset).
    tau_syn : float, ms
        Decay of the synaptic current a presynaptic spike opens (forward and error inputs).
    tau_apical : float, ms
        Decay of the apical (feedback) compartment; it never drives v.
    tau_trace : float, ms
        Time constant of the exponential trace that reads a spike train as a rate.
    rate_max : float, Hz
        The firing rate that reads as h = 1 (a trace of ``rate_max`` Hz averages to 1).
    drive_offset : float
        a_0, dimensionless: the constant drive added to every neuron, in units of
        v_th - v_rest (1: a = 0 puts the steady-state potential at threshold).
    gamma_psi : float
        Height of the surrogate derivative (dimensionless).
    w_psi : float, mV
        Half-width of the surrogate's triangle.
    """

    tau_m: float = 10.0
    v_rest: float = -65.0
    v_reset: float = -65.0
    v_th: float = -50.0
    t_ref: float = 2.0
    tau_syn: float = 5.0
    tau_apical: float = 10.0
    tau_trace: float = 20.0
    rate_max: float = 100.0
    drive_offset: float = 1.0
    gamma_psi: float = 1.0
    w_psi: float = 15.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                raise ValueError(f"LIFParams.{f.name} must be a finite number; got {value!r}")
        for name in ("tau_m", "tau_syn", "tau_apical", "tau_trace", "rate_max", "w_psi"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LIFParams.{name} must be > 0; got {getattr(self, name)!r}")
        if self.t_ref < 0 or self.gamma_psi < 0:
            raise ValueError("LIFParams.t_ref and gamma_psi must be >= 0")
        if not self.v_th > self.v_rest or not self.v_reset < self.v_th:
            raise ValueError(f"LIFParams needs v_rest < v_th and v_reset < v_th; got v_rest="
                             f"{self.v_rest}, v_reset={self.v_reset}, v_th={self.v_th} (mV)")

    @property
    def delta_v(self) -> float:
        """v_th - v_rest (mV): the potential one unit of drive adds."""
        return self.v_th - self.v_rest

    def to_dict(self) -> dict:
        """Plain dict (for JSON)."""
        return asdict(self)


def steady_potential(a, params: LIFParams = LIFParams()) -> np.ndarray:
    """Potential (mV) a constant drive ``a`` holds the membrane at, ignoring the threshold."""
    return params.v_rest + params.delta_v * (params.drive_offset + np.asarray(a, dtype=np.float64))


def membrane(t, a, v0: float | None = None, params: LIFParams = LIFParams()) -> np.ndarray:
    """Analytic subthreshold membrane potential (mV) at times ``t`` (ms) for a constant drive ``a``.

    v(t) = v_inf + (v0 - v_inf) exp(-t / tau_m), with v_inf = :func:`steady_potential`; valid until
    the first spike. ``v0`` defaults to v_rest.
    """
    v_inf = steady_potential(a, params)
    v0 = params.v_rest if v0 is None else v0
    return v_inf + (v0 - v_inf) * np.exp(-np.asarray(t, dtype=np.float64) / params.tau_m)


def rate(a, params: LIFParams = LIFParams()) -> np.ndarray:
    """Analytic f-I curve (Hz) of a noiseless LIF under a constant drive ``a``.

    nu = 1 / (t_ref + tau_m ln((v_inf - v_reset) / (v_inf - v_th))) for v_inf > v_th, else 0.
    """
    v_inf = steady_potential(a, params)
    out = np.zeros_like(v_inf)
    on = v_inf > params.v_th
    isi_ms = params.t_ref + params.tau_m * np.log((v_inf[on] - params.v_reset) / (v_inf[on] - params.v_th))
    out[on] = 1e3 / isi_ms
    return out


def surrogate(v, params: LIFParams = LIFParams()) -> np.ndarray:
    """The surrogate derivative psi(v) of :data:`SURROGATE` for potentials ``v`` (mV), with numpy."""
    names = {"clip": np.clip, "abs": np.abs, "inf": np.inf, "v": np.asarray(v, dtype=np.float64),
             "v_th": params.v_th, "w_psi": params.w_psi, "gamma_psi": params.gamma_psi}
    return eval(SURROGATE, {"__builtins__": {}}, names)  # noqa: S307 (a fixed module constant)


#: Fraction of excitatory neurons in a population under Dale's law (``circuits.mlp(dale=True)``),
#: the cortical proportion; each neuron's type is drawn from the circuit's seed.
DALE_EXCITATORY_FRACTION = 0.8

#: Populations a spiking circuit splits into ON and OFF halves (their signal is signed).
SIGNED_ROLES = ("error", "feedback")


def relays(circuit) -> dict[str, str]:
    """Hidden populations whose error leaves them through a feedback projection (layer topology,
    below the top hidden layer) -> the name of the ON/OFF relay population that carries it.

    A hidden LIF neuron's spikes carry its rate h, not its error delta = psi(v) u (signed, in its
    apical compartment), so a circuit with more than one hidden layer sends each such error on
    through a pair of rectified relay neurons per hidden neuron, each reading that one neuron's
    apical error."""
    g = circuit.graph
    return {pre: f"{pre}_error" for pre, _, role in g.edges(data="role")
            if role == "feedback" and g.nodes[pre]["role"] == "hidden"}


def dale_signs(n: int, seed: int, salt: int) -> np.ndarray:
    """Dale type of ``n`` presynaptic neurons: +1 (excitatory, a fraction
    :data:`DALE_EXCITATORY_FRACTION`) or -1 (inhibitory), reproducible from ``seed`` and ``salt``."""
    rng = np.random.default_rng([seed, salt])
    return np.where(rng.random(n) < DALE_EXCITATORY_FRACTION, 1.0, -1.0)


def constraint_facts(circuit, row: dict) -> dict:
    """What a spiking (LIF) circuit adds to a row of :meth:`bioplastic.Circuit.constraints`.

    Keys: ``neuron`` (``lif``), ``signed_populations`` (populations carried by ON/OFF pairs),
    ``dale`` (whether every weight keeps its presynaptic neuron's sign), ``feedback_neurons``
    doubled (the error reaches the layer through ON and OFF bottleneck halves) and an extended
    ``symmetric`` (and ``wiring``, when the row has one) list: the ON and OFF halves of a signed projection read one stored weight (+w from
    the ON neuron, -w from the OFF neuron), a weight sharing like that of the batch copies.
    """
    g = circuit.graph
    relayed = relays(circuit)
    signed = sorted([n for n, r in g.nodes(data="role") if r in SIGNED_ROLES] + list(relayed.values()))
    dale = bool(g.graph.get("dale", False))
    symmetric = list(row.get("symmetric", []))
    symmetric.append("the ON and OFF halves of each signed population (" + ", ".join(signed) +
                     ") read one stored weight per synapse pair: +w from ON, -w from OFF")
    for hidden, relay in relayed.items():
        symmetric.append(f"the error psi(v) u of {hidden} leaves it through the ON/OFF relay {relay}: "
                         f"each relay neuron reads the apical error of one {hidden} neuron (a "
                         "one-to-one, continuous read) and fires at a rate proportional to its "
                         "rectified value")
    if dale:
        symmetric.append("Dale's law: each presynaptic neuron is excitatory or inhibitory "
                         f"({DALE_EXCITATORY_FRACTION:.0%} excitatory) and all its outgoing weights keep "
                         "its sign (clipped at consolidation); an OFF neuron has the opposite type of "
                         "its ON partner; the error neurons' comparison (output minus target) is "
                         "wired directly, its inhibitory relay not modelled")
    facts = {"neuron": "lif", "signed_populations": signed, "dale": dale, "symmetric": symmetric}
    if row.get("feedback_neurons") is not None and (row.get("source") in signed or row.get("source") in relayed):
        # the pathway's signal crosses an ON/OFF pair of populations: twice the neurons
        facts["feedback_neurons"] = 2 * row["feedback_neurons"]
    if isinstance(row.get("wiring"), list):
        facts["wiring"] = row["wiring"] + [f"shared: {s}" for s in symmetric[len(row.get("symmetric", [])):]]
    return facts


__all__ = ["DALE_EXCITATORY_FRACTION", "SIGNED_ROLES", "SURROGATE", "LIFParams", "constraint_facts",
           "dale_signs", "membrane", "rate", "relays", "steady_potential", "surrogate"]
