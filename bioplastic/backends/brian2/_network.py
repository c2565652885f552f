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
    mirrored_code,
    mismatch_form,
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
#: Name of the one-to-one synapses returning each error neuron's rate to its output neuron.
RETURN = "E_return"

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
    mismatch : dict
        ``mismatch{l}`` -> the group holding W_l^T - Q_l P_l (normative rule only; see
        :func:`_mismatch_circuit`).
    extra : dict
        The user's own objects (:meth:`Brian2Runner.extend`), Brian2 name -> object.
    network : brian2.Network or None
        The network the runner runs (runtime device; set by the runner).
    timed : dict
        Schedule name -> the ``TimedArray`` the runtime device refills in place each call.
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
    extra: dict = field(default_factory=dict)
    mismatch: dict = field(default_factory=dict)
    network: object = None
    timed: dict = field(default_factory=dict)

    @property
    def objects(self) -> list:
        """Everything a ``Network`` needs."""
        return [*self.groups.values(), *self.stores.values(), *self.mismatch.values(),
                *self.synapses.values(), *self.readout.values(), *self.monitors.values(),
                *self.extra.values()]


# ----------------------------------------------------------------------------------- equations
def population_equations(role: str, activation: str, soma_inputs: list[str], apical_inputs: list[str],
                         bias: bool, extra: dict[str, list[str]], optimise: bool = True) -> str:
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
    optimise : bool
        Mark f(a) and f'(a) u ``(constant over dt)``: evaluated once per neuron and step instead of
        once per reading synapse (exact: every reader runs before the state update of the step).
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
            # the output's error is the rate of its paired error neuron, delivered by the one-to-one
            # return synapse E_return (a summed variable, see assemble)
            lines += ["rate = a : 1", "delta : 1"]
        else:
            f, fprime = activation_code(activation)
            flag = " (constant over dt)" if optimise else ""
            lines += [f"du/dt = ({' + '.join(apical_inputs) or '0'} - u) / tau : 1",
                      f"rate = {f} : 1{flag}", f"delta = ({fprime}) * u : 1{flag}"]
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


#: Consolidation of a store that descends a gradient it holds itself (``grad``, the normative
#: rule's): at the tick closing a batch, w <- w - lr (grad + decay w). The gradient was summed at
#: the previous tick from the weights of this batch (no weight changes inside a batch).
DESCENT_CODE = """
w -= lr * int(consolidate_sched(t) > 0) * (grad + decay * w)
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
             timed: dict | None = None, inputs: dict | None = None, optimise: bool = True) -> Model:
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
    inputs : dict, optional
        The user's extra summed inputs, name -> ``"population.compartment"`` (:class:`Options`).
    optimise : bool
        See :class:`Options`: f(a) once per step, and the drive of a clamped input population
        summed once per presentation (its summed-variable updater runs on the presentation clock,
        after the loader, as in Brian2's Nicola & Clopath 2017 example).

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
    reciprocals = reciprocal_readouts(circuit)
    mirrors = {rec.name for rec in reciprocals if rec.learned}
    for proj in projections.values():
        if proj.name in mirrors:
            continue  # built with the reciprocal read-outs below
        current = f"I_{proj.name}"
        post_role = g.nodes[proj.post]["role"]
        if proj.role == "feedback" and post_role == "hidden":
            apical[proj.post].append(current)
        else:
            soma[proj.post].append(current)
    for rec in reciprocals:
        extra[rec.post].setdefault(rec.compartment, []).append(f"I_{rec.name}")
    for current, where in (inputs or {}).items():
        pop, _, comp = where.partition(".")
        (apical if comp == "apical" else soma)[pop].append(current)

    for name, attrs in g.nodes(data=True):
        eqs = population_equations(attrs["role"], attrs["activation"], soma[name], apical[name],
                                   attrs["bias"] and attrs["role"] in ("hidden", "output"), extra[name],
                                   optimise)
        group = b2.NeuronGroup(copies * attrs["size"], eqs, method="exact", clock=sim, name=name)
        model.groups[name] = group

    def store(name: str, size: int, lr: float, decay: float, descends: bool = False):
        # descends: the store holds a gradient of its own (grad, summed from other stores by the
        # mismatch circuit) instead of an eligibility of its synapses
        s = b2.NeuronGroup(size, "w : 1\nelig : 1\nlr : 1 (shared, constant)\n"
                                 "decay : 1 (shared, constant)" + ("\ngrad : 1" if descends else ""),
                           clock=ticks, name=f"{name}_weights")
        s.lr, s.decay = lr, decay
        if lr > 0:
            s.run_regularly(DESCENT_CODE if descends else CONSOLIDATION_CODE, clock=ticks, when="start",
                            order=ORDER_CONSOLIDATE, name=f"{name}_consolidation")
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
        # the output's error is its paired error neuron's rate, returned by a one-to-one synapse
        # (the circuit's E_output read backwards). Its sum runs at the start of every step, before
        # plasticity reads it, so delta is the error neuron's current rate.
        error, output = model.groups[errors[0]], model.groups[circuit.layers[-1]]
        syn = b2.Synapses(error, output, "delta_post = rate_pre : 1 (summed)", clock=sim, name=RETURN)
        syn.connect(i=np.arange(len(error)), j=np.arange(len(error)))
        upd = syn.summed_updaters["delta_post"]
        upd.when, upd.order = "start", ORDER_ELIGIBILITY - 1
        model.synapses[RETURN] = syn

    # projections: one Synapses object for all copies; weights linked into the stores
    rule = circuit.learning_rule
    for proj in sorted(projections.values(), key=lambda p: (p.role != "forward", p.layer, p.name)):
        if proj.name in mirrors:
            continue
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
        descends = mismatch_form(proj.rule) is not None
        learn = None if descends else eligibility_code(proj.rule, proj.name, signal)
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
            source = store(proj.name, n_pre * n_post, lr if learn or descends else 0.0, params.decay,
                           descends)
        syn.w = b2.linked_var(source, "w", index="widx")
        if optimise and pre_role == "input" and proj.role == "forward":
            # the input is clamped for a presentation and w changes only at ticks: sum its drive
            # once per presentation, after consolidation and the loader (exact). Brian2 has no
            # public setter for a summed updater's clock; its own Nicola & Clopath 2017 example
            # sets the private _clock the same way.
            upd = syn.summed_updaters[f"{current}_post"]
            upd._clock, upd.when, upd.order = ticks, "start", ORDER_LOAD + 1
        if learn is not None:
            syn.elig = b2.linked_var(source, "elig", index="widx")
            syn.run_regularly(f"elig += learn_sched(t) * ({learn})", clock=ticks, when="start",
                              order=ORDER_ELIGIBILITY, name=f"{proj.name}_eligibility")
        model.synapses[proj.name] = syn

    # reciprocal read-outs the subspace rules declare (see reciprocal_readouts): they carry the
    # presynaptic rate with either the weights of the feedback factor they mirror, read transposed
    # (a symmetric wiring), or their own, learned by the factor's eligibility read from the other
    # side of the synapse (reciprocal="learned", Kolen-Pollack style)
    for rec in reciprocals:
        n_pre, n_post = g.nodes[rec.pre]["size"], g.nodes[rec.post]["size"]
        learn = None
        if rec.learned:
            factor = projections[rec.mirrors]
            own = eligibility_code(factor.rule, factor.name, feedback_signal(g.nodes[factor.pre]["role"]))
            learn = None if own is None else mirrored_code(own)
        lines = ["w : 1 (linked)", "widx : integer (constant)", f"I_{rec.name}_post = w * rate_pre : 1 (summed)"]
        if learn is not None:
            lines.append("elig : 1 (linked)")
        syn = b2.Synapses(model.groups[rec.pre], model.groups[rec.post], "\n".join(lines), clock=sim,
                          name=rec.name)
        i, j, k = _block_pairs(copies, n_pre, n_post)
        syn.connect(i=i, j=j)
        if rec.learned:
            syn.widx = k
            source = store(rec.name, n_pre * n_post, params.feedback_lr if learn else 0.0, params.decay)
        else:
            syn.widx = _transposed_index(i, j, n_pre, n_post)
            source = model.stores[rec.source]
        syn.w = b2.linked_var(source, "w", index="widx")
        if learn is not None:
            syn.elig = b2.linked_var(source, "elig", index="widx")
            syn.run_regularly(f"elig += learn_sched(t) * ({learn})", clock=ticks, when="start",
                              order=ORDER_ELIGIBILITY, name=f"{rec.name}_eligibility")
        model.synapses[rec.name] = syn

    for l in sorted({p.layer for p in projections.values() if mismatch_form(p.rule) is not None}):
        _mismatch_circuit(model, circuit, l)

    # loaders: the next sample enters at the start of each presentation
    for name, attrs in g.nodes(data=True):
        code = {"input": "x = x_sched(t, i)", "target": "y = y_sched(t, i)",
                "error": "gate = gate_sched(t, i)"}.get(attrs["role"])
        if code:
            model.groups[name].run_regularly(code, clock=ticks, when="start", order=ORDER_LOAD,
                                             name=f"{name}_loader")

    return model


def _mismatch_circuit(model: Model, circuit, l: int) -> None:
    r"""The normative rule's gradients for pathway l as a circuit of weight stores (non-local).

    Arxiv 2502.20580, "A normative rule for the feedback": Q and P descend
    J = 1/2 ||W^T - QP||^2, so grad_Q = -M P^T and grad_P = -Q^T M with the mismatch
    M = W^T - QP (m, n). A ``mismatch{l}`` group of m n elements holds M (its ``wt`` linked to the
    forward store W_l, ``qp`` summed from Q and P); ``grad`` of the Q and P stores is summed from
    M and the other factor. Every synapse here joins elements of weight stores, not neurons: the
    wiring :meth:`bioplastic.Circuit.constraints` reports as non-local. It runs on the presentation
    clock (after consolidation), so M is that of the weights in use.
    """
    import brian2 as b2

    W, P, Q = (model.stores[key(k, l)] for k in ("W", "P", "Q"))
    m, n = circuit.weight_shape(key("W", l))[::-1]  # W_l is (n, m)
    r = circuit.weight_shape(key("P", l))[0]
    ticks = model.ticks
    # Brian2 synapses cannot read a presynaptic linked variable, so M is a plain variable set at
    # each tick: Q P summed, then M = W^T - Q P, then the gradients summed (all after consolidation)
    mis = b2.NeuronGroup(m * n, "wt : 1 (linked)\nqp : 1\nmis : 1", clock=ticks, name=f"mismatch{l}")
    mis.run_regularly("mis = wt - qp", clock=ticks, when="start", order=ORDER_LOAD + 3,
                      name=f"mismatch{l}_update")
    j, i = np.divmod(np.arange(m * n), n)  # element j n + i of M
    mis.wt = b2.linked_var(W, "w", index=i * m + j)
    jj, ii, kk = (a.ravel() for a in np.meshgrid(np.arange(m), np.arange(n), np.arange(r), indexing="ij"))
    e_m, e_q, e_p = jj * n + ii, jj * r + kk, kk * n + ii  # the (j, i, k) element of M, Q, P

    def synapses(name, pre, post, i_pre, j_post, expr, other, other_idx, order):
        syn = b2.Synapses(pre, post, f"ow : 1 (linked)\noidx : integer (constant)\n{expr} : 1 (summed)",
                          clock=ticks, name=name)
        syn.connect(i=i_pre, j=j_post)
        syn.oidx = other_idx
        syn.ow = b2.linked_var(other, "w", index="oidx")
        upd = next(iter(syn.summed_updaters.values()))
        upd.when, upd.order = "start", order
        model.synapses[name] = syn

    # (QP)_ji = sum_k Q_jk P_ki; grad Q_jk = -(M P^T)_jk; grad P_ki = -(Q^T M)_ki
    synapses(f"QP{l}", Q, mis, e_q, e_m, "qp_post = w_pre * ow", P, e_p, ORDER_LOAD + 2)
    synapses(f"gradQ{l}", mis, Q, e_m, e_q, "grad_post = -mis_pre * ow", P, e_p, ORDER_LOAD + 4)
    synapses(f"gradP{l}", mis, P, e_m, e_p, "grad_post = -mis_pre * ow", Q, e_q, ORDER_LOAD + 4)
    model.mismatch[f"mismatch{l}"] = mis


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


def add_extra(model: Model, fn) -> None:
    """Call a user's ``fn(model)`` and keep the Brian2 objects it returns in ``model.extra``.

    ``fn`` gets the assembled :class:`Model` (its ``groups``, ``synapses``, ``stores``, clocks
    ``sim`` and ``ticks``, and ``namespace``) and returns one Brian2 object, a sequence of them
    or a dict of them (None: nothing to add).
    """
    from brian2 import BrianObject

    made = fn(model)
    if made is None:
        return
    objects = list(made.values()) if isinstance(made, dict) else \
        list(made) if isinstance(made, (list, tuple, set)) else [made]
    taken = {obj.name for obj in model.objects}
    for obj in objects:
        if not isinstance(obj, BrianObject):
            raise TypeError(f"an extension must return Brian2 objects (NeuronGroup, Synapses, monitors, "
                            f"...); {getattr(fn, '__name__', fn)!r} returned {obj!r}")
        if obj.name in taken:
            raise ValueError(f"an extension returned an object named {obj.name!r}, a name already in "
                             f"the circuit; taken: {', '.join(sorted(taken))}")
        taken.add(obj.name)
        model.extra[obj.name] = obj


def non_finite(model: Model) -> str | None:
    """What went non-finite in a run (populations and their variables, weight stores, and the
    first presentation whose settled error was not finite), or None when everything is finite."""
    found = []
    eps = np.asarray(model.readout["eps"].eps) if "eps" in model.readout else np.zeros((0, 0))
    for name, group in model.groups.items():
        bad = [var for var in group.equations.diff_eq_names
               if not np.all(np.isfinite(np.asarray(getattr(group, var + "_"))))]
        if bad:
            found.append(f"population {name!r} ({', '.join(sorted(bad))})")
    stores = [name for name, s in model.stores.items() if not np.all(np.isfinite(np.asarray(s.w_)))]
    if stores:
        found.append(f"weights {', '.join(stores)}")
    if eps.size and not np.all(np.isfinite(eps)):
        first = int(np.argmax(~np.all(np.isfinite(eps), axis=0)))
        found.append(f"the error population's settled rate first non-finite at presentation tick {first}")
    return "; ".join(found) or None
