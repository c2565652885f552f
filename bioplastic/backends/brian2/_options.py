"""Options and schedules of backend ``brian2``: what a run simulates, checked before any Brian2 code.

:class:`Options` (devices, targets, times, copies, monitors, extra inputs) and their validation
(:func:`resolve_options`, :func:`parse_record`); the default settle time, derived from the circuit's
longest chain of compartments (:func:`chain_depth`, :func:`default_settle`); and the layout of samples
into presentations and batches (:class:`Schedule`, :func:`make_schedule`, :func:`schedule_arrays`).

Times are physical: ``tau``, ``dt``, ``settle`` and ``record_dt`` take Brian2 quantities
(``settle=50*ms``) or plain numbers of seconds. The settle time is fixed in time, not in steps, so
``dt`` is a numerical detail: halving it leaves the settled circuit where it was (within the
documented tolerance). brian2 is imported only to convert a quantity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ._plasticity import feedback_signal, reciprocal_readouts

#: Simulation devices: Brian2's runtime mode (code objects called from Python) or C++ standalone
#: (one compiled program per schedule shape, re-run with new weights and data).
DEVICES = ("runtime", "cpp_standalone")
#: Code-generation targets of the runtime device.
TARGETS = ("numpy", "cython")
#: Shorthands accepted by ``record=``: which populations and variables each one monitors.
RECORD_SETS = {
    "rates": "the rate of the input, hidden, output and target populations",
    "errors": "the error of hidden populations (delta) and of the error population (eps)",
    "bottleneck": "the rate z of every bottleneck (ldfa, low-rank dfa)",
    "compartments": "the somatic (a) and apical (u) compartments of hidden populations",
    "weights": "every stored weight matrix, once per presentation",
}
#: Settle time of the default, in units of tau per leaky stage of the circuit's longest chain, plus
#: a margin: measured so that one train_step of every supported rule matches the reference within
#: 1e-3 relative error at any dt <= tau/2 (tests/test_brian2_time.py).
SETTLE_TAUS_PER_STAGE, SETTLE_TAUS_MARGIN = 2.0, 10.0
#: The same default in steps of the default dt = tau/2 (kept for callers that count steps).
SETTLE_STEPS_PER_STAGE, SETTLE_STEPS_MARGIN = 4, 20
#: Compartments a user's extra input (``inputs=``) may drive, by population role.
INPUT_COMPARTMENTS = {"hidden": ("soma", "apical"), "output": ("soma",), "feedback": ("soma",),
                      "error": ("soma",)}


def chain_depth(circuit) -> int:
    """Number of leaky compartments in the longest chain from the data to any compartment.

    Each compartment lags its input by about tau, so the settle time needed grows with this depth.
    The chain is read off the assembled wiring: a soma integrates its forward and error inputs (and,
    for a bottleneck, the feedback it compresses), a hidden neuron's apical compartment its feedback,
    an extra compartment (``v``, ``rec``) its reciprocal read-outs; a hidden neuron sends
    delta = f'(a) u (as deep as its deeper compartment), the output the error of its paired error
    neuron, a bottleneck z. Input and target are clamped (depth 0). For example fa through L layers:
    input -> hidden somata -> output -> error -> apical compartments, layer by layer, down; low-rank
    direct feedback: ... -> error -> the one bottleneck -> every hidden layer's apical compartment.
    """
    g = circuit.graph
    inputs: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def sends(pop: str) -> list[tuple[str, str]]:
        """The compartments behind the signal ``pop`` sends along feedback projections."""
        role = g.nodes[pop]["role"]
        if role == "hidden":
            return [(pop, "soma"), (pop, "apical")]
        if role == "output":  # its error is the rate of its paired error neuron
            partners = [post for _, post, r in g.out_edges(pop, data="role") if r == "error"]
            return [(p, "soma") for p in partners] or [(pop, "soma")]
        feedback_signal(role)  # raises for a role that sends nothing
        return [(pop, "soma")]

    for name in g.nodes:
        inputs.setdefault((name, "soma"), [])
    mirrors = {rec.name for rec in reciprocal_readouts(circuit) if rec.learned}
    for proj in circuit.projections.values():
        if proj.name in mirrors:
            continue  # a learned reciprocal feeds its compartment (below), not the soma
        post_role = g.nodes[proj.post]["role"]
        if proj.role == "feedback":
            target = (proj.post, "apical" if post_role == "hidden" else "soma")
            inputs.setdefault(target, []).extend(sends(proj.pre))
        else:
            inputs[(proj.post, "soma")].append((proj.pre, "soma"))
    for rec in reciprocal_readouts(circuit):
        inputs.setdefault((rec.post, rec.compartment), []).append((rec.pre, "soma"))

    depth: dict[tuple[str, str], int] = {}
    visiting: set = set()

    def of(comp) -> int:
        if comp in depth:
            return depth[comp]
        if comp in visiting:
            raise ValueError(f"backend 'brian2': the compartments of {comp[0]!r} feed back on themselves; "
                             "the settle time of a cyclic circuit has no depth")
        visiting.add(comp)
        sources = inputs.get(comp, [])
        depth[comp] = 1 + max(of(c) for c in sources) if sources else 0
        visiting.discard(comp)
        return depth[comp]

    return max(of(comp) for comp in inputs)


def default_settle(circuit, tau: float = 0.01) -> float:
    """Presentation time (s) used when ``settle`` is not given: (2 depth + 10) tau, with depth the
    :func:`chain_depth` of the circuit and ``tau`` (s) the compartments' time constant."""
    return (SETTLE_TAUS_PER_STAGE * chain_depth(circuit) + SETTLE_TAUS_MARGIN) * tau


def default_steps(circuit) -> int:
    """Steps of the default dt = tau/2 in :func:`default_settle` (4 depth + 20)."""
    return SETTLE_STEPS_PER_STAGE * chain_depth(circuit) + SETTLE_STEPS_MARGIN


def seconds(name: str, value):
    """``value`` in seconds: a Brian2 time quantity (``5*ms``) or a plain number taken as seconds;
    None passes through. Raises naming the option for another dimension."""
    if value is None or isinstance(value, bool):
        return value
    if hasattr(value, "dim"):  # a brian2 Quantity
        from brian2 import get_dimensions, second

        if get_dimensions(value) != second.dim or np.ndim(value) != 0:
            raise ValueError(f"{name} must be a time (e.g. {name}=5*ms) or a number of seconds; got "
                             f"{value!r}")
        return float(value / second)
    return value


@dataclass(frozen=True)
class Options:
    """How a circuit is simulated (times: Brian2 quantities such as ``5*ms``, or seconds).

    Parameters
    ----------
    device : str
        ``runtime`` or ``cpp_standalone``.
    target : str
        Code generation of the runtime device: ``numpy`` (no compiler, slow per step) or ``cython``
        (compiles each new code object once, 30-70 s for a new model on a fresh machine, cached in
        ``build_dir/brian2_cache``). Ignored by ``cpp_standalone``.
    tau : Quantity or float, s
        Time constant of every compartment (> 0); default 10 ms.
    dt : Quantity or float, s
        Integration step; default tau/2. Exact (exponential) integration, so any dt is stable, and
        a finer dt moves the settled state by less than the documented tolerance.
    settle : Quantity or float, s
        Duration of one presentation; a multiple of dt. Default :func:`default_settle`,
        (2 depth + 10) tau, whatever dt is.
    copies : int or None
        Samples simulated side by side; None: as many as the batch (one presentation per batch).
    record : tuple of str
        Monitors: shorthands of :data:`RECORD_SETS` or ``"population.variable"`` /
        ``"W1.w"`` (a stored matrix).
    record_copies : tuple of int
        Which parallel copies the population monitors record.
    record_dt : Quantity or float, s
        Sampling interval of population monitors; default dt.
    build_dir : str or None
        Where the Cython cache and standalone projects go; default ``build/`` beside the package
        (git-ignored).
    inputs : dict
        Extra summed inputs for a user's own Synapses: variable name -> ``"population.compartment"``
        (compartments: ``soma`` or, for hidden populations, ``apical``), e.g.
        ``{"I_noise": "hidden1.apical"}``. The variable is added to that compartment's drive (0
        until a user's ``Synapses`` writes it as ``I_noise_post = ... : 1 (summed)``; see
        :meth:`Brian2Runner.extend`).
    optimise : bool
        Compute per presentation what only changes between presentations (the drive of a clamped
        input), evaluate f(a), f'(a) u once per step (``(constant over dt)``), refill the schedules
        in place (so compiled modules are reused from call to call), keep every code object of a
        runtime network from call to call instead of regenerating it at each ``Network.run`` (on
        the numpy target that regeneration was ~70 % of a short ``train_step``) and keep Brian2's
        per-run garbage collection to new objects. Exact: the weights are those of the
        unoptimised circuit (False, kept as the benchmark's baseline and held to it by a test).
    """

    device: str = "runtime"
    target: str = "numpy"
    tau: float = 0.01
    dt: float | None = None
    settle: float | None = None
    copies: int | None = None
    record: tuple = ()
    record_copies: tuple = (0,)
    record_dt: float | None = None
    build_dir: str | None = None
    inputs: dict = field(default_factory=dict)
    optimise: bool = True


def _positive(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number of seconds; got {value!r}")


def in_seconds(options: Options) -> Options:
    """``options`` with every time converted to a float of seconds (see :func:`seconds`)."""
    return replace(options, **{name: seconds(name, getattr(options, name))
                               for name in ("tau", "dt", "settle", "record_dt")})


def resolve_options(circuit, options: Options) -> tuple[float, int]:
    """Check ``options`` (times in seconds, :func:`in_seconds`) against the circuit; return
    (dt in s, steps per presentation)."""
    if options.device not in DEVICES:
        raise ValueError(f"unknown device {options.device!r} for backend 'brian2'; valid options: "
                         f"{', '.join(DEVICES)}")
    if options.target not in TARGETS:
        raise ValueError(f"unknown target {options.target!r} for backend 'brian2'; valid options: "
                         f"{', '.join(TARGETS)}")
    for name in ("tau", "dt", "settle", "record_dt"):
        _positive(name, getattr(options, name), allow_none=name != "tau")
    if options.copies is not None and (isinstance(options.copies, bool) or not isinstance(options.copies, int)
                                       or options.copies < 1):
        raise ValueError(f"copies must be a positive int or None; got {options.copies!r}")
    check_inputs(circuit, options.inputs)
    dt = options.tau / 2 if options.dt is None else float(options.dt)
    settle = default_settle(circuit, options.tau) if options.settle is None else options.settle
    steps = round(settle / dt)
    if options.settle is None:
        steps = max(1, math.ceil(settle / dt - 1e-9))  # the default need not be a multiple of dt
    elif steps < 1 or abs(steps * dt - settle) > 1e-9 * settle:
        raise ValueError(f"settle ({settle} s) must be a positive multiple of dt ({dt} s)")
    return dt, steps


def check_inputs(circuit, inputs) -> None:
    """Check the ``inputs`` option: identifier -> ``"population.compartment"`` of an existing
    population and a compartment it has (:data:`INPUT_COMPARTMENTS`)."""
    if not isinstance(inputs, dict):
        raise ValueError(f"inputs must be a dict name -> 'population.compartment'; got {inputs!r}")
    g = circuit.graph
    for name, where in inputs.items():
        if not (isinstance(name, str) and name.isidentifier() and name.startswith("I_")):
            raise ValueError(f"inputs: {name!r} is not a valid input name; use an identifier starting "
                             "with 'I_' (e.g. 'I_noise')")
        pop, _, comp = str(where).partition(".")
        if pop not in g.nodes:
            raise ValueError(f"inputs[{name!r}]: no population {pop!r}; populations: {', '.join(g.nodes)}")
        valid = INPUT_COMPARTMENTS.get(g.nodes[pop]["role"], ())
        if comp not in valid:
            raise ValueError(f"inputs[{name!r}]: population {pop!r} (role {g.nodes[pop]['role']!r}) has "
                             f"no input compartment {comp!r}; valid: {', '.join(valid) or 'none'}")


def parse_record(circuit, record: Sequence[str], copies_recorded: Sequence[int]) -> dict:
    """Monitor label -> (population or weight key, variables) for the ``record`` option."""
    if isinstance(record, str):
        record = (record,)
    g = circuit.graph
    keys = circuit.weight_keys()
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for item in record:
        if item == "rates":
            # the error and bottleneck rates are what "errors" and "bottleneck" record
            out.update({f"{n}.rate": (n, ("rate",)) for n, r in g.nodes(data="role")
                        if r not in ("error", "feedback")})
        elif item == "errors":
            for n, role in g.nodes(data="role"):
                if role == "hidden":
                    out[f"{n}.delta"] = (n, ("delta",))
                elif role == "error":  # also the output's error (its partner neuron's rate)
                    out[f"{n}.eps"] = (n, ("eps",))
        elif item == "bottleneck":
            out.update({f"{n}.z": (n, ("z",)) for n, r in g.nodes(data="role") if r == "feedback"})
        elif item == "compartments":
            out.update({f"{n}.a": (n, ("a",)) for n, r in g.nodes(data="role") if r == "hidden"})
            out.update({f"{n}.u": (n, ("u",)) for n, r in g.nodes(data="role") if r == "hidden"})
        elif item == "weights":
            out.update({f"{k}.w": (k, ("w",)) for k in keys})
        elif isinstance(item, str) and item.count(".") == 1:
            target, var = item.split(".")
            if target not in g.nodes and target not in keys:
                raise ValueError(f"record {item!r}: no population or weight {target!r}; populations: "
                                 f"{', '.join(g.nodes)}; weights: {', '.join(keys)}")
            out[item] = (target, (var,))
        else:
            raise ValueError(f"unknown record item {item!r}; valid options: {', '.join(RECORD_SETS)}, "
                             "or 'population.variable' / 'W1.w'")
    if not copies_recorded or any(isinstance(c, bool) or not isinstance(c, int) or c < 0
                                  for c in copies_recorded):
        raise ValueError(f"record_copies must hold copy indices >= 0; got {copies_recorded!r}")
    return out


# ------------------------------------------------------------------------------------- schedules
@dataclass(frozen=True)
class Schedule:
    """Which sample each copy sees in each presentation, and where batches end.

    Attributes
    ----------
    slots : ndarray of int, shape (presentations, copies)
        Sample index, or -1 for an idle copy (its error is gated off).
    consolidate : ndarray, shape (presentations,)
        1/batch for the presentation that closes a batch, else 0.
    learn : bool
        Whether plasticity reads the presentations (False for ``predict``).
    """

    slots: np.ndarray
    consolidate: np.ndarray
    learn: bool


def make_schedule(n_samples: int, copies: int, batch_size: int, learn: bool) -> Schedule:
    """Lay ``n_samples`` consecutive samples out in batches of ``batch_size`` over ``copies`` copies.

    Each batch takes ceil(batch/copies) presentations; a batch never shares a presentation with the
    next one, so its consolidation sees exactly its own samples.
    """
    slots, consolidate = [], []
    for start in range(0, n_samples, batch_size):
        batch = np.arange(start, min(start + batch_size, n_samples))
        n_pres = math.ceil(len(batch) / copies)
        padded = np.full(n_pres * copies, -1)
        padded[:len(batch)] = batch
        slots.append(padded.reshape(n_pres, copies))
        consolidate += [0.0] * (n_pres - 1) + [1.0 / len(batch)]
    return Schedule(np.concatenate(slots), np.array(consolidate), learn)


def schedule_arrays(schedule: Schedule, x: np.ndarray, y: np.ndarray | None, d: int) -> dict:
    """Values of the ``TimedArray`` schedules (:data:`._network.SCHEDULES`) for one run.

    Row k is what the presentation tick k sets or reads: the inputs of presentation k, and the
    learning/consolidation flags of presentation k-1 (which ends at tick k). The run has
    ``presentations + 1`` ticks; the last loads an idle presentation.
    """
    n_pres, copies = schedule.slots.shape
    valid = schedule.slots >= 0
    idx = np.where(valid, schedule.slots, 0)

    def rows(data, width):
        out = np.zeros((n_pres + 1, copies * width))
        if data is not None:
            out[:n_pres] = (data[idx] * valid[..., None]).reshape(n_pres, copies * width)
        return out

    gate = np.zeros((n_pres + 1, copies * d))
    gate[:n_pres] = np.repeat(valid, d, axis=1)
    learn = np.zeros(n_pres + 1)
    consolidate = np.zeros(n_pres + 1)
    if schedule.learn:
        learn[1:] = 1.0
        consolidate[1:] = schedule.consolidate
    else:
        gate[:] = 0.0
    return {"x_sched": rows(x, x.shape[1]), "y_sched": rows(y, d), "gate_sched": gate,
            "learn_sched": learn, "consolidate_sched": consolidate}
