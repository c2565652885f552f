r"""A circuit as Brian2 objects: rate populations with two compartments, replicated ``copies`` times.

Every population is a ``NeuronGroup`` of ``copies * size`` rate neurons: copy ``c`` of neuron ``i``
is neuron ``c * size + i``. The copies are the samples of one presentation, simulated side by side;
every copy of a synapse reads one shared weight (see :func:`assemble`). Each compartment relaxes
with one time constant :math:`\tau` to its drive (equations in the package docstring).

The schedule (which sample each copy sees, when plasticity reads, when it consolidates) arrives
through ``TimedArray`` objects named in :data:`SCHEDULES`; their values are set per call by the
runner, so one ``run()`` covers many presentations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...circuit.keys import key
from .._base import UnsupportedCircuitError
from ._plasticity import (
    COMPARTMENTS,
    FEEDBACK_SIGNAL,
    SGD_ELIGIBILITY,
    Reciprocal,
    activation_code,
    eligibility_code,
    feedback_signal,
    reciprocal_readouts,
    subspace_compartments,
    transport_code,
)

# the plasticity names (moved to _plasticity) stay importable from here
__all__ = ["COMPARTMENTS", "CONSOLIDATION_CODE", "ERROR_SIGNS", "FEEDBACK_SIGNAL", "ORDER_CONSOLIDATE",
           "ORDER_ELIGIBILITY", "ORDER_LOAD", "ORDER_READOUT", "ROLES", "SCHEDULES", "SGD_ELIGIBILITY",
           "Model", "Reciprocal", "activation_code", "add_monitors", "assemble", "eligibility_code",
           "feedback_signal", "population_equations", "reciprocal_readouts", "subspace_compartments",
           "transport_code"]

#: Names of the per-call schedules (``TimedArray`` objects, one value per presentation tick k):
#: ``x_sched``/``y_sched`` (k, copies*n) rates of the input and target populations during
#: presentation k; ``gate_sched`` (k, copies*d) whether copy c carries a sample (its error is
#: silenced otherwise); ``learn_sched`` (k,) 1 where tick k closes a presentation whose products
#: enter the eligibility; ``consolidate_sched`` (k,) 1/batch where tick k closes a batch, else 0.
SCHEDULES = ("x_sched", "y_sched", "gate_sched", "learn_sched", "consolidate_sched")

#: Population roles this backend writes equations for.
ROLES = ("input", "target", "error", "feedback", "hidden", "output")
#: Signs of the one-to-one error projections, by their init.
ERROR_SIGNS = {"identity": "1.0", "negative_identity": "-1.0"}

#: Schedule slot orders within the ``start`` slot of a presentation tick: read the settled state,
#: consolidate, then load the next sample.
ORDER_READOUT, ORDER_ELIGIBILITY, ORDER_CONSOLIDATE, ORDER_LOAD = -10, 0, 1, 2


@dataclass
class Model:
    """The Brian2 objects of one assembled circuit.

    Attributes
    ----------
    groups : dict
        Population name -> ``NeuronGroup`` (``copies * size`` neurons).
    stores : dict
        Weight key (``W1``, ``b1``, ``P2``, ...) -> ``NeuronGroup`` holding one synapse (or bias) per
        element: ``w`` (the weight) and ``elig`` (its eligibility), row-major (post, pre).
    synapses : dict
        Projection name -> ``Synapses`` (all copies), plus reciprocal read-outs ``Qt{l}``/``Pt{l}``.
    readout : dict
        ``eps`` and ``yhat``: ``StateMonitor`` of the error and output populations at each
        presentation tick (the settled state of the presentation that just ended).
    monitors : dict
        User-chosen monitors, label -> ``StateMonitor``.
    namespace : dict
        What the equations name from outside: ``tau`` and, when given, the schedules.
    sim, ticks : brian2.Clock
        The integration clock (dt) and the presentation clock (one tick per presentation).
    """

    copies: int
    sim: object = None
    ticks: object = None
    groups: dict = field(default_factory=dict)
    stores: dict = field(default_factory=dict)
    synapses: dict = field(default_factory=dict)
    readout: dict = field(default_factory=dict)
    monitors: dict = field(default_factory=dict)
    namespace: dict = field(default_factory=dict)

    @property
    def objects(self) -> list:
        """Everything a ``Network`` needs."""
        return [*self.groups.values(), *self.stores.values(), *self.synapses.values(),
                *self.readout.values(), *self.monitors.values()]


# ----------------------------------------------------------------------------------- equations
def population_equations(role: str, activation: str, soma_inputs: list[str], apical_inputs: list[str],
                         bias: bool, extra: dict[str, list[str]]) -> str:
    """Brian2 model equations of one population (see the package docstring for the reading).

    Parameters
    ----------
    role : str
        Population role (``input``, ``hidden``, ``output``, ``target``, ``error``, ``feedback``).
    activation : str
        Key of :data:`bioplastic.neurons.ACTIVATIONS` (hidden populations).
    soma_inputs, apical_inputs : list of str
        Summed-variable names (``I_W1``, ``I_B2``, ...) driving the soma and the apical compartment.
    bias : bool
        Whether the soma receives a learnt bias (a linked variable into the ``b{l}`` store).
    extra : dict
        Optional additional compartments, name -> its summed inputs: ``rec`` (the Oja
        reconstruction P^T z, on the population a P reads) and ``v`` (the forward projection
        sum_l Q_l^T h_l, on a bottleneck), as the subspace rule declares
        (:data:`._plasticity.COMPARTMENTS`).
    """
    lines = []
    currents = soma_inputs + apical_inputs + [i for inputs in extra.values() for i in inputs]
    lines += [f"{name} : 1" for name in currents]
    for comp, inputs in extra.items():
        lines.append(f"d{comp}/dt = ({' + '.join(inputs) or '0'} - {comp}) / tau : 1")
    if role == "input":
        lines += ["x : 1", "rate = x : 1"]
    elif role == "target":
        lines += ["y : 1", "rate = y : 1"]
    elif role == "error":
        lines += [f"deps/dt = (gate*({' + '.join(soma_inputs) or '0'}) - eps) / tau : 1",
                  "gate : 1", "rate = eps : 1"]
    elif role == "feedback":
        lines += [f"dz/dt = ({' + '.join(soma_inputs) or '0'} - z) / tau : 1", "rate = z : 1"]
    elif role in ("hidden", "output"):
        drive = " + ".join((["bias"] if bias else []) + soma_inputs) or "0"
        lines.append(f"da/dt = ({drive} - a) / tau : 1")
        if bias:
            lines += ["bias : 1 (linked)", "elig_b : 1 (linked)"]
        if role == "output":
            # the output's error is the rate of its paired error neuron (E_output is one-to-one)
            lines += ["rate = a : 1", "delta : 1 (linked)"]
        else:
            f, fprime = activation_code(activation)
            lines += [f"du/dt = ({' + '.join(apical_inputs) or '0'} - u) / tau : 1",
                      f"rate = {f} : 1", f"delta = ({fprime}) * u : 1"]
    else:
        raise ValueError(f"backend 'brian2' has no equations for population role {role!r}; valid "
                         f"roles: {', '.join(ROLES)}")
    return "\n".join(lines)




#: Consolidation of a store at a presentation tick: a no-op unless the tick closes a batch, when
#: ``consolidate_sched`` is 1/batch: w <- w - lr (elig / batch + decay w), and the eligibility
#: is cleared (see the package docstring).
CONSOLIDATION_CODE = """
w -= lr * (consolidate_sched(t) * elig + decay * int(consolidate_sched(t) > 0) * w)
elig *= 1 - int(consolidate_sched(t) > 0)
"""


# ------------------------------------------------------------------------------------ assembly
def _block_pairs(copies: int, n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synapse index arrays of all-to-all connectivity inside each copy, pre-major.

    Returns (i_pre, j_post, k) with ``k = post * n_pre + pre``, the row-major index of the synapse
    in its (post, pre) weight matrix.
    """
    pre = np.repeat(np.arange(n_pre), n_post)
    post = np.tile(np.arange(n_post), n_pre)
    offsets = np.arange(copies)
    i = (offsets[:, None] * n_pre + pre[None, :]).ravel()
    j = (offsets[:, None] * n_post + post[None, :]).ravel()
    k = np.tile(post * n_pre + pre, copies)
    return i, j, k


def _transposed_index(i: np.ndarray, j: np.ndarray, n_pre: int, n_post: int) -> np.ndarray:
    """Row-major index, in a (n_pre, n_post) store, of the element a synapse pre i -> post j mirrors:
    the synapse runs against the stored projection, so its pre is the store's post."""
    return (i % n_pre) * n_post + (j % n_post)


def assemble(circuit, copies: int, clock_dt: float, tick: float, tau: float,
             timed: dict | None = None) -> Model:
    """Create the Brian2 objects of ``circuit`` with ``copies`` parallel copies.

    Parameters
    ----------
    circuit : bioplastic.Circuit
        A circuit this backend supports (checked by the caller).
    copies : int
        Samples presented side by side.
    clock_dt : float, s
        Integration step.
    tick : float, s
        Duration of one presentation (the settle time): plasticity reads, consolidation and loading
        happen every ``tick``.
    tau : float, s
        Time constant of every compartment.
    timed : dict, optional
        Schedule name -> ``TimedArray`` (standalone: the arrays are part of the compiled program).

    Returns
    -------
    Model
        Without monitors (:func:`add_monitors` adds them).
    """
    import brian2 as b2

    g = circuit.graph
    sim = b2.Clock(dt=clock_dt * b2.second, name="simulation_clock")
    ticks = b2.Clock(dt=tick * b2.second, name="presentation_clock")
    model = Model(copies=copies, sim=sim, ticks=ticks,
                  namespace={"tau": tau * b2.second, **(timed or {})})
    params = circuit.params
    projections = circuit.projections

    # which summed currents reach which compartment of each population
    soma, apical = {n: [] for n in g.nodes}, {n: [] for n in g.nodes}
    extra: dict[str, dict[str, list[str]]] = {n: {} for n in g.nodes}
    for proj in projections.values():
        current = f"I_{proj.name}"
        post_role = g.nodes[proj.post]["role"]
        if proj.role == "feedback" and post_role == "hidden":
            apical[proj.post].append(current)
        else:
            soma[proj.post].append(current)
    reciprocals = reciprocal_readouts(circuit)
    for rec in reciprocals:
        extra[rec.post].setdefault(rec.compartment, []).append(f"I_{rec.name}")

    for name, attrs in g.nodes(data=True):
        eqs = population_equations(attrs["role"], attrs["activation"], soma[name], apical[name],
                                   attrs["bias"] and attrs["role"] in ("hidden", "output"), extra[name])
        group = b2.NeuronGroup(copies * attrs["size"], eqs, method="exact", clock=sim, name=name)
        model.groups[name] = group

    def store(name: str, size: int, lr: float, decay: float):
        s = b2.NeuronGroup(size, "w : 1\nelig : 1\nlr : 1 (shared, constant)\n"
                                 "decay : 1 (shared, constant)", clock=ticks, name=f"{name}_weights")
        s.lr, s.decay = lr, decay
        if lr > 0:
            s.run_regularly(CONSOLIDATION_CODE, clock=ticks, when="start", order=ORDER_CONSOLIDATE,
                            name=f"{name}_consolidation")
        model.stores[name] = s
        return s

    # biases: one store per population, read and written by every copy through linked variables
    for l, name in enumerate(circuit.layers):
        if l and g.nodes[name]["bias"]:
            n = g.nodes[name]["size"]
            s = store(key("b", l), n, params.lr, 0.0)
            group = model.groups[name]
            index = np.tile(np.arange(n), copies)
            group.bias = b2.linked_var(s, "w", index=index)
            group.elig_b = b2.linked_var(s, "elig", index=index)
            group.run_regularly("elig_b += learn_sched(t) * delta", clock=ticks, when="start",
                                order=ORDER_ELIGIBILITY, name=f"{key('b', l)}_eligibility")
    errors = [n for n, role in g.nodes(data="role") if role == "error"]
    if errors and g.nodes[circuit.layers[-1]]["role"] == "output":
        # the output's error is its paired error neuron's rate (E_output is one-to-one)
        model.groups[circuit.layers[-1]].delta = b2.linked_var(model.groups[errors[0]], "eps")

    # projections: one Synapses object for all copies; weights linked into the stores
    rule = circuit.learning_rule
    for proj in sorted(projections.values(), key=lambda p: (p.role != "forward", p.layer, p.name)):
        pre_role = g.nodes[proj.pre]["role"]
        n_pre, n_post = g.nodes[proj.pre]["size"], g.nodes[proj.post]["size"]
        signal = "rate" if proj.role in ("forward", "error") else feedback_signal(pre_role)
        current = f"I_{proj.name}"
        pre_group, post_group = model.groups[proj.pre], model.groups[proj.post]
        if proj.role == "error":
            if proj.init not in ERROR_SIGNS:
                raise UnsupportedCircuitError(
                    f"backend 'brian2' wires error projections one-to-one; {proj.name!r} has init "
                    f"{proj.init!r}; supported: {', '.join(ERROR_SIGNS)}")
            syn = b2.Synapses(pre_group, post_group,
                              f"{current}_post = {ERROR_SIGNS[proj.init]} * rate_pre : 1 (summed)",
                              clock=sim, name=proj.name)
            n = len(pre_group)
            syn.connect(i=np.arange(n), j=np.arange(n))  # one-to-one, copy by copy
            model.synapses[proj.name] = syn
            continue
        learn = eligibility_code(proj.rule, proj.name, signal)
        # a transport synapse uses g(w) of the forward weight it reads; every other one its own w
        weight = f"({transport_code(rule)})" if proj.rule == "transport" else "w"
        lines = ["w : 1 (linked)", "widx : integer (constant)",
                 f"{current}_post = {weight} * {signal}_pre : 1 (summed)"]
        if learn is not None:
            lines.append("elig : 1 (linked)")
        syn = b2.Synapses(pre_group, post_group, "\n".join(lines), clock=sim, name=proj.name)
        i, j, k = _block_pairs(copies, n_pre, n_post)
        syn.connect(i=i, j=j)
        if proj.rule == "transport":
            # weight transport: the feedback synapse reads the forward synapse W_l[pre, post]
            syn.widx = _transposed_index(i, j, n_pre, n_post)
            source = model.stores[key("W", proj.layer)]
        else:
            syn.widx = k
            lr = params.lr if proj.role == "forward" else params.feedback_lr
            source = store(proj.name, n_pre * n_post, lr if learn else 0.0, params.decay)
        syn.w = b2.linked_var(source, "w", index="widx")
        if learn is not None:
            syn.elig = b2.linked_var(source, "elig", index="widx")
            syn.run_regularly(f"elig += learn_sched(t) * ({learn})", clock=ticks, when="start",
                              order=ORDER_ELIGIBILITY, name=f"{proj.name}_eligibility")
        model.synapses[proj.name] = syn

    # reciprocal read-outs the subspace rules declare (see reciprocal_readouts): they read the
    # weights of a feedback factor transposed and carry the presynaptic rate
    for rec in reciprocals:
        n_pre, n_post = g.nodes[rec.pre]["size"], g.nodes[rec.post]["size"]
        syn = b2.Synapses(model.groups[rec.pre], model.groups[rec.post],
                          f"w : 1 (linked)\nwidx : integer (constant)\n"
                          f"I_{rec.name}_post = w * rate_pre : 1 (summed)", clock=sim, name=rec.name)
        i, j, _ = _block_pairs(copies, n_pre, n_post)
        syn.connect(i=i, j=j)
        syn.widx = _transposed_index(i, j, n_pre, n_post)
        syn.w = b2.linked_var(model.stores[rec.source], "w", index="widx")
        model.synapses[rec.name] = syn

    # loaders: the next sample enters at the start of each presentation
    for name, attrs in g.nodes(data=True):
        code = {"input": "x = x_sched(t, i)", "target": "y = y_sched(t, i)",
                "error": "gate = gate_sched(t, i)"}.get(attrs["role"])
        if code:
            model.groups[name].run_regularly(code, clock=ticks, when="start", order=ORDER_LOAD,
                                             name=f"{name}_loader")

    return model


def add_monitors(model: Model, circuit, record: dict[str, tuple[str, tuple[str, ...]]],
                 record_copies: tuple[int, ...], record_dt: float) -> None:
    """Attach the read-out monitors and the user's monitors to ``model`` (replacing earlier ones).

    Parameters
    ----------
    model : Model
    circuit : bioplastic.Circuit
    record : dict
        Monitor label -> (population or store name, variables), chosen by the user.
    record_copies : tuple of int
        Which copies the population monitors record.
    record_dt : float, s
        Sampling interval of population monitors (stores are sampled once per presentation, after
        consolidation).
    """
    import brian2 as b2

    g, ticks = circuit.graph, model.ticks
    error = next(n for n, r in g.nodes(data="role") if r == "error")
    model.readout = {
        "eps": b2.StateMonitor(model.groups[error], "eps", record=True, clock=ticks, when="start",
                               order=ORDER_READOUT, name="readout_error"),
        "yhat": b2.StateMonitor(model.groups[circuit.layers[-1]], "a", record=True, clock=ticks,
                                when="start", order=ORDER_READOUT, name="readout_output"),
    }
    model.monitors = {}
    for label, (target, variables) in record.items():
        name = "record_" + label.replace(".", "_")
        if target in model.stores:
            mon = b2.StateMonitor(model.stores[target], list(variables), record=True, clock=ticks,
                                  when="start", order=ORDER_CONSOLIDATE + 1, name=name)
        else:
            n = g.nodes[target]["size"]
            idx = np.concatenate([np.arange(c * n, (c + 1) * n) for c in record_copies])
            mon = b2.StateMonitor(model.groups[target], list(variables), record=idx,
                                  dt=record_dt * b2.second, when="end", name=name)
        model.monitors[label] = mon
