"""The runner of backend ``brian2``: devices and the runner contract (options and schedules: :mod:`._options`).

Weights enter and leave Brian2 only at the edge of a call (``set_weights``/``get_weights``, and the
start and end of ``train_step``/``train_epoch``/``predict``); every change inside a call is made by
the synapses' own eligibility and consolidation code.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...circuit.init import initial_weights
from .._base import AbstractRunner, check_batch
from . import _network
from ._options import (
    DEVICES,
    RECORD_SETS,
    SETTLE_STEPS_MARGIN,
    SETTLE_STEPS_PER_STAGE,
    TARGETS,
    Options,
    Schedule,
    chain_depth,
    default_settle,
    default_steps,
    in_seconds,
    make_schedule,
    parse_record,
    resolve_options,
    schedule_arrays,
)
from ._support import check_supported

# the options and schedule names, importable from here as before the split into _options
__all__ = ["DEVICES", "RECORD_SETS", "SETTLE_STEPS_MARGIN", "SETTLE_STEPS_PER_STAGE", "TARGETS",
           "Brian2Runner", "DivergenceError", "Options", "Schedule", "build", "chain_depth",
           "default_settle", "default_steps",
           "make_schedule", "parse_record", "resolve_options", "schedule_arrays"]


class DivergenceError(FloatingPointError):
    """A run produced non-finite activity or weights; the message names the populations and stores."""


# --------------------------------------------------------------------------------------- brian2
def _default_build_dir() -> Path:
    root = Path(__file__).resolve().parents[3]
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / "build"


def _aligned_tick(steps: int, dt: float) -> float:
    """steps * dt, nudged by a few ulp if needed so that tick / dt is exactly ``steps``.

    Brian2's ``TimedArray`` warns about misaligned grids when the ratio is not an exact integer in
    floating point (0.005 * 28 / 0.005 is 28.000000000000004); a few ulp change no tick.
    """
    tick = steps * dt
    for _ in range(16):
        ratio = tick / dt
        if ratio == steps:
            return tick
        tick = np.nextafter(tick, -np.inf if ratio > steps else np.inf)
    return steps * dt


#: Schedules of the runtime device hold at least this many rows (while a schedule stays under
#: :data:`SCHEDULE_BYTES`), so that a train_step and an epoch of up to that many presentations
#: share one generated code (a TimedArray's row count is part of its code; Cython compiles each).
MIN_SCHEDULE_ROWS, SCHEDULE_BYTES = 64, 16 * 2 ** 20


def _pad_rows(values: np.ndarray, min_rows: int = 1) -> np.ndarray:
    """Append zero rows up to the next power of two, at least ``min_rows`` (rows past the run's
    end are never read)."""
    rows = max(1 << (len(values) - 1).bit_length(), min_rows)
    return np.concatenate([values, np.zeros((rows - len(values),) + values.shape[1:])])


def _min_rows(values: np.ndarray) -> int:
    """The largest power of two <= :data:`MIN_SCHEDULE_ROWS` whose rows of ``values`` fit in
    :data:`SCHEDULE_BYTES`."""
    row_bytes = max(1, values[0].nbytes if len(values) else 8)
    rows = MIN_SCHEDULE_ROWS
    while rows > 1 and rows * row_bytes > SCHEDULE_BYTES:
        rows //= 2
    return rows


def _fill_schedules(model: _network.Model, arrays: dict, tick, share: bool = True) -> None:
    """Write this call's schedules into the model's ``TimedArray`` objects, in place.

    The same objects (fixed names, rows padded to a power of two) serve every call that fits, so
    the generated code, Brian2's code-generation caches and Cython's compiled modules are reused:
    a TimedArray's row count is part of its code, its values are not. A call needing more rows
    replaces them once by larger ones. ``share``: pad to at least :func:`_min_rows` rows, so calls
    of different lengths share the code (False: the next power of two only).
    """
    import brian2 as b2

    for k, v in arrays.items():
        current = model.timed.get(k)
        if current is None or current.values.shape[0] < len(v) or current.values.shape[1:] != v.shape[1:]:
            model.timed[k] = b2.TimedArray(_pad_rows(v, _min_rows(v) if share else 1), dt=tick, name=k)
        else:
            current.values[:len(v)] = v
            current.values[len(v):] = 0.0


@contextlib.contextmanager
def _frozen_gc():
    """Let ``Network.run``'s own ``gc.collect()`` (Brian2 calls it to warn about objects left out
    of a network) scan only objects made since the call began: with many Python objects alive it
    costs ~0.3 s per run, more than a short train_step simulates. Nothing is left uncollected:
    :func:`gc.unfreeze` hands the frozen objects back to the collector afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _code_key(model: _network.Model) -> tuple:
    """What the generated code of ``model`` depends on between calls: each schedule object (a
    larger one replaces it; the key holds them, so a replaced one's id is never reused while it is
    compared) and the namespace's constants (baked into the code objects)."""
    return (tuple((k, model.timed[k]) for k in sorted(model.timed)),
            tuple(sorted((k, repr(v)) for k, v in model.namespace.items() if k not in model.timed)))


def _baked(obj) -> str:
    """What a code object of runner ``obj`` bakes in besides the network's key: the own namespace
    and the scalar constants (``(shared, constant)``) of the group it runs for."""
    group = getattr(obj, "group", None)
    group = obj if group is None else group
    names = sorted((k, repr(v)) for k, v in (getattr(group, "namespace", None) or {}).items())
    constants = [(name, repr(np.asarray(var.get_value()).tolist()))
                 for name, var in getattr(group, "variables", {}).items()
                 if getattr(var, "scalar", False) and getattr(var, "constant", False) and hasattr(var, "get_value")]
    return repr((names, constants))


def _reuse_code(net, key: tuple) -> None:
    """Let every code runner of ``net`` keep its code objects from run to run while ``key`` holds.

    ``Network.run`` regenerates each runner's code objects (parsing, unit checks, templates: ~70 %
    of a short train_step on the numpy target) although nothing they depend on changed: the
    circuit's arrays are updated in place (weights, restored state, schedules refilled by
    :func:`_fill_schedules`), and what a code object bakes in (constants, sizes, the schedule
    objects) is what ``key`` names, with the group's own namespace and scalar constants
    (:func:`_baked`, so a value a user changes between calls is seen). A runner made since (a
    user's object) or a changed key generates afresh. Exact: the same code runs on the same arrays.
    """
    from brian2.core.network import _get_all_objects
    from brian2.groups.group import CodeRunner

    net._bioplastic_code_key = key
    for obj in _get_all_objects(net.objects):
        if not isinstance(obj, CodeRunner) or "create_code_objects" in vars(obj):
            continue
        generate = obj.create_code_objects  # the class's method, bound to obj

        def create_code_objects(run_namespace, obj=obj, generate=generate):
            now = (net._bioplastic_code_key, _baked(obj))
            if getattr(obj, "_bioplastic_code_key", None) != now:
                generate(run_namespace)
                obj._bioplastic_code_key = now

        obj.create_code_objects = create_code_objects


def _restore_fresh(net) -> None:
    """Restore the fresh state of ``net``; objects a user added since it was stored join it at
    their current (never run) state, so ``net.add(...)`` between calls does not break the next one."""
    added = [obj for obj in net.objects if obj.name not in net._bioplastic_stored]
    if added:
        net.remove(*added)
        net.restore("fresh")
        net.add(*added)
        net.store("fresh")
        net._bioplastic_stored = {obj.name for obj in net.objects}
    else:
        net.restore("fresh")


@contextlib.contextmanager
def _runtime_prefs(target: str, cache_dir: Path):
    """Brian2's code-generation preferences are global; set ours for one call, then restore."""
    from brian2 import prefs

    saved = prefs.codegen.target, prefs.codegen.runtime.cython.cache_dir
    prefs.codegen.target = target
    if target == "cython":
        cache_dir.mkdir(parents=True, exist_ok=True)
        prefs.codegen.runtime.cython.cache_dir = str(cache_dir)
    try:
        yield
    finally:
        prefs.codegen.target, prefs.codegen.runtime.cython.cache_dir = saved


@dataclass
class _Program:
    """A compiled standalone project for one schedule shape."""

    device: object
    model: _network.Model
    timed: dict
    directory: Path
    compile_s: float


class Brian2Runner(AbstractRunner):
    """A circuit of rate populations in Brian2 (see the package docstring for the biology).

    Parameters
    ----------
    circuit : bioplastic.Circuit
    options : Options
    weights : mapping, optional
        Initial weights; defaults to :func:`bioplastic.circuit.init.initial_weights`.

    Attributes
    ----------
    dt, settle : float, s
        Integration step and presentation duration in use.
    timing : dict
        Of the last call: device, samples, presentations, wall and simulation seconds, seconds per
        sample, settle time; ``compile_s`` for a call that had to build.
    """

    backend = "brian2"
    #: train_epoch simulates all its batches in one Brian2 run (the training loop of
    #: bioplastic.experiment hands it whole epochs)
    simulates_epochs = True

    def __init__(self, circuit, options: Options | None = None, weights=None):
        check_supported(circuit)  # before validation: a spiking model is valid, just not built here
        super().__init__(circuit)
        self.options = in_seconds(options or Options())
        self.dt, self.steps = resolve_options(circuit, self.options)
        self.settle = _aligned_tick(self.steps, self.dt)
        self.record = parse_record(circuit, self.options.record, self.options.record_copies)
        self.build_dir = Path(self.options.build_dir) if self.options.build_dir else _default_build_dir()
        self.weights = initial_weights(circuit)
        if weights is not None:
            self.set_weights(weights)
        self.timing: dict = {}
        self._models: dict = {}
        self._recording: dict = {}
        self._last_copies: int | None = None
        self._extensions: list = []

    # ------------------------------------------------------------------- contract
    def train_step(self, x, y):
        x, y = check_batch(self.circuit, x, y)
        return float(self.train_epoch(x, y, batch_size=len(x))[0])

    def train_epoch(self, x, y, batch_size: int) -> np.ndarray:
        """Train on consecutive batches of ``x``, ``y`` in one simulation run.

        Parameters
        ----------
        x : ndarray, shape (n, n_0)
        y : ndarray, shape (n, d)
        batch_size : int
            Samples per batch-mean step (the last batch may be smaller). Shuffle before calling.

        Returns
        -------
        ndarray, shape (n_batches,)
            Loss of each batch before its step, read from the settled error population.
        """
        x, y = check_batch(self.circuit, x, y)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        copies = self.options.copies or min(int(batch_size), len(x))
        schedule = make_schedule(len(x), copies, int(batch_size), learn=True)
        eps, _ = self._run(schedule, x, y)
        per_sample = 0.5 * np.sum(eps ** 2, axis=1)
        starts = np.arange(0, len(x), batch_size)
        return np.add.reduceat(per_sample, starts) / np.diff(np.append(starts, len(x)))

    def predict(self, x):
        x, _ = check_batch(self.circuit, x)
        # reuse the copies of the last call (no new model to build) unless the user fixed them
        copies = self.options.copies or self._last_copies or min(len(x), 256)
        schedule = make_schedule(len(x), copies, len(x), learn=False)
        _, yhat = self._run(schedule, x, None)
        return yhat

    # ------------------------------------------------------------------- open circuit
    def extend(self, fn) -> Brian2Runner:
        """Add one's own Brian2 objects to the circuit, in every network this runner builds.

        ``fn(model)`` is called with each assembled :class:`~._network.Model` (its ``groups`` by
        population name, ``synapses`` by projection name, ``stores``, the clocks ``sim`` and
        ``ticks``, ``namespace``) and returns the new objects: a ``NeuronGroup``, ``Synapses``,
        monitor, ..., a sequence or a dict of them. They join the network before its fresh state
        is stored, so they survive every training call (each call starts them afresh, as it does
        the circuit) and enter standalone programs. A synapse can drive a circuit population
        through an input named in the ``inputs`` option; afterwards read them from
        ``runner.model().extra``.

        Example: Ornstein-Uhlenbeck noise on the apical compartments of ``hidden1``
        (``inputs={"I_noise": "hidden1.apical"}``)::

            def noise(model):
                n = len(model.groups["hidden1"])
                src = NeuronGroup(n, "dx/dt = -x / (5*ms) + 0.1 * xi / sqrt(5*ms) : 1",
                                  method="euler", clock=model.sim, name="noise")
                syn = Synapses(src, model.groups["hidden1"], "I_noise_post = x_pre : 1 (summed)",
                               clock=model.sim, name="noise_to_hidden1")
                syn.connect(j="i")
                return [src, syn, StateMonitor(src, "x", record=[0], name="noise_monitor")]

            runner.extend(noise)

        Networks built before are dropped (the next call rebuilds them). Returns the runner.
        """
        if not callable(fn):
            raise TypeError(f"extend needs a callable fn(model) -> Brian2 objects; got {fn!r}")
        self._extensions.append(fn)
        self._models.clear()
        return self

    def model(self, copies: int | None = None) -> _network.Model:
        """The Brian2 objects of the circuit with ``copies`` parallel copies (runtime device).

        Default: the copies of the last call, else ``options.copies``, else 1. Builds the network
        if no call has yet (so one can inspect it or add objects to ``model.network`` before
        training: objects added there survive the following calls of that network; prefer
        :meth:`extend`, which also reaches networks built later).
        """
        copies = copies or self._last_copies or self.options.copies or 1
        if self.options.device != "runtime":
            fits = [key for key in self._models if key[0] == copies]
            if not fits:
                raise ValueError(f"no standalone program with {copies} copies is built yet; run a "
                                 "call first, or use device='runtime' to inspect a model")
            return self._models[max(fits)].model
        model, net = self._network(copies)
        if not getattr(net, "_bioplastic_ran", False):
            # a run of zero duration generates the code (what export() reads, e.g. the
            # once-per-step subexpressions) and tells Brian2 the objects are in use
            import brian2 as b2

            idle = make_schedule(copies, copies, copies, learn=False)
            arrays = schedule_arrays(idle, np.zeros((copies, self.circuit.sizes[0])), None,
                                     self.circuit.sizes[-1])
            with _runtime_prefs(self.options.target, self.build_dir / "brian2_cache"):
                _fill_schedules(model, arrays, self.settle * b2.second)
                with _frozen_gc():
                    net.run(0 * b2.second, namespace={**model.namespace, **model.timed})
            net._bioplastic_ran = True
        return model

    def _network(self, copies: int):
        import brian2 as b2

        with _runtime_prefs(self.options.target, self.build_dir / "brian2_cache"):
            if copies not in self._models:
                model = self._assemble(copies)
                net = model.network = b2.Network(*model.objects)
                # the fresh state (t = 0, compartments at rest, empty monitors) every call starts from
                net.store("fresh")
                net._bioplastic_stored = {obj.name for obj in net.objects}
                self._models[copies] = (model, net)
        return self._models[copies]

    def export(self, format: str = "markdown", copies: int | None = None) -> str:
        """The built model in a readable form: every population, weight store and synapse group
        with its equations, parameters and the code it runs at each presentation, the clocks and
        constants (see :func:`._export.describe`).

        Parameters
        ----------
        format : str
            ``markdown`` (text with tables) or ``json``.
        copies : int, optional
            Which network (see :meth:`model`); the copies change only the group sizes.
        """
        from . import _export

        return _export.render(_export.describe(self, self.model(copies)), format)

    def simulation_facts(self, model: _network.Model) -> dict:
        """The clocks and times of ``model`` for :func:`._export.describe`."""
        o = self.options
        return {"copies": model.copies, "dt_s": self.dt, "settle_s": self.settle,
                "steps_per_presentation": self.steps, "tau_s": o.tau, "device": o.device,
                "target": o.target, "optimise": o.optimise,
                "clocks": {model.sim.name: self.dt, model.ticks.name: self.settle},
                "summary": (f"{model.copies} parallel copies; dt {self.dt * 1e3:g} ms, presentation "
                            f"(settle) {self.settle * 1e3:g} ms = {self.steps} steps, tau "
                            f"{o.tau * 1e3:g} ms; device {o.device} ({o.target})")}

    def constraints(self) -> list[dict]:
        """:meth:`bioplastic.Circuit.constraints` plus what this backend's circuit adds.

        Each row's ``wiring`` gains the backend's own shortcuts: the parallel copies of a batch
        share every synapse's weight and eligibility (linked variables into one store) unless
        ``copies=1``, and plasticity is gated by broadcast third factors (a learning flag and a
        consolidation signal carrying 1/batch).
        """
        copies = self.options.copies
        shared = ("the batch's parallel copies share each synapse's weight and eligibility (linked "
                  "variables into one store; copies=1 presents a batch in sequence instead)")
        third = ("plasticity is gated by broadcast third factors: a learning flag at the end of each "
                 "presentation and a consolidation signal carrying 1/batch")
        rows = self.circuit.constraints()
        for row in rows:
            row["wiring"] = [*row["wiring"], *([] if copies == 1 else [shared]), third]
        return rows

    # ------------------------------------------------------------------- recording
    def recording(self) -> dict:
        """What the ``record`` monitors saw during the last call.

        Returns
        -------
        dict
            Label -> dict with ``t`` (samples,) in s from the start of the call and the variable,
            shaped (samples, copies recorded, size) for populations or (samples, post, pre) for
            weights; ``tick`` (s) is the presentation duration.
        """
        return dict(self._recording)

    # ------------------------------------------------------------------- simulation
    def _run(self, schedule: Schedule, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Simulate ``schedule``; return the settled error and output of every scheduled sample."""
        d = self.circuit.sizes[-1]
        arrays = schedule_arrays(schedule, x, y, d)
        n_pres, copies = schedule.slots.shape
        start = time.perf_counter()
        if self.options.device == "runtime":
            eps, yhat, info = self._run_runtime(copies, n_pres, arrays)
        else:
            eps, yhat, info = self._run_standalone(copies, n_pres, arrays)
        wall = time.perf_counter() - start
        self._last_copies = copies
        valid = schedule.slots >= 0
        order = schedule.slots[valid]
        n = len(order)
        eps_s, yhat_s = np.empty((n, d)), np.empty((n, d))
        # readout row k + 1 holds the settled state of presentation k
        eps_s[order] = eps.reshape(-1, copies, d)[1:n_pres + 1][valid]
        yhat_s[order] = yhat.reshape(-1, copies, d)[1:n_pres + 1][valid]
        run = info.get("simulation_s", info["run_s"])
        self.timing = dict(device=self.options.device, target=self.options.target if
                           self.options.device == "runtime" else "cpp", copies=copies,
                           presentations=n_pres, samples=n, settle_s=self.settle, dt_s=self.dt,
                           steps_per_presentation=self.steps, tau_s=self.options.tau, wall_s=wall,
                           s_per_sample=run / n, samples_per_s=n / run, **info)
        return eps_s, yhat_s

    def _duration(self, n_pres: int):
        from brian2 import second

        # one step past the last tick, so the tick that reads the last presentation runs
        return ((n_pres * self.steps + 1) * self.dt) * second

    def _assemble(self, copies: int, timed=None) -> _network.Model:
        if self.record and max(self.options.record_copies) >= copies:
            raise ValueError(f"record_copies {self.options.record_copies} names a copy this call does "
                             f"not have: it simulates {copies} copies (0..{copies - 1})")
        model = _network.assemble(self.circuit, copies, self.dt, self.settle, self.options.tau, timed,
                                  self.options.inputs, self.options.optimise)
        _network.add_monitors(model, self.circuit, self.record, self.options.record_copies,
                              self.options.record_dt or self.dt)
        for fn in self._extensions:
            _network.add_extra(model, fn)
        return model

    def _collect(self, model: _network.Model) -> tuple[np.ndarray, np.ndarray]:
        """Read weights, read-outs and recordings back after a run; raise :class:`DivergenceError`
        (keeping the weights from before the call) when the run went non-finite."""
        problem = _network.non_finite(model)
        if problem:
            raise DivergenceError(
                f"backend 'brian2': the circuit diverged during this call ({problem}); the weights "
                "are left as they were before it. Lower lr or feedback_lr, or check the inputs' scale")
        for key in self.weights:
            self.weights[key] = np.asarray(model.stores[key].w[:], dtype=np.float64).reshape(
                self.weights[key].shape).copy()
        self._recording = {}
        for label, mon in model.monitors.items():
            target, variables = self.record[label]
            entry = {"t": np.asarray(mon.t[:]) - (float(mon.t[0]) if len(mon.t) else 0.0),
                     "tick": self.settle}
            for var in variables:
                values = np.asarray(getattr(mon, var)).T  # (samples, recorded)
                if target in model.stores:
                    values = values.reshape((len(values),) + self.weights[target].shape)
                else:
                    values = values.reshape(len(values), len(self.options.record_copies), -1)
                entry[var] = values
            self._recording[label] = entry
        return np.asarray(model.readout["eps"].eps).T, np.asarray(model.readout["yhat"].a).T

    def _run_runtime(self, copies: int, n_pres: int, arrays: dict):
        import brian2 as b2

        model, net = self._network(copies)
        with _runtime_prefs(self.options.target, self.build_dir / "brian2_cache"):
            _restore_fresh(net)
            for key, store in model.stores.items():
                if key in self.weights:
                    store.w_ = self.weights[key].ravel()
            fast = self.options.optimise
            if not fast:  # the baseline: new schedules every call, Brian2's full gc.collect
                model.timed.clear()
            _fill_schedules(model, arrays, self.settle * b2.second, share=fast)
            if fast:
                _reuse_code(net, _code_key(model))
            start = time.perf_counter()
            with _frozen_gc() if fast else contextlib.nullcontext():
                net.run(self._duration(n_pres), namespace={**model.namespace, **model.timed})
            run_s = time.perf_counter() - start
            net._bioplastic_ran = True
            eps, yhat = self._collect(model)
        return eps, yhat, {"run_s": run_s}

    def _program_dir(self, copies: int, n_pres: int) -> Path:
        spec = dict(circuit=self.circuit.to_dict(), options=asdict(self.options), steps=self.steps,
                    dt=self.dt, copies=copies, presentations=n_pres)
        digest = hashlib.sha1(repr(sorted(spec.items())).encode()).hexdigest()[:12]
        return self.build_dir / "brian2_standalone" / f"{self.circuit.rule}_{copies}x{n_pres}_{digest}"

    def _build_program(self, copies: int, n_pres: int, arrays: dict) -> _Program:
        import brian2 as b2
        from brian2.devices.cpp_standalone.device import CPPStandaloneDevice
        from brian2.devices.device import reset_device

        directory = self._program_dir(copies, n_pres)
        device = CPPStandaloneDevice()
        b2.set_device(device, build_on_run=False)
        try:
            tick = self.settle * b2.second
            timed = {k: b2.TimedArray(np.zeros_like(v), dt=tick, name=k) for k, v in arrays.items()}
            model = self._assemble(copies, timed)
            net = b2.Network(*model.objects)
            net.run(self._duration(n_pres), namespace=dict(model.namespace))
            start = time.perf_counter()
            device.build(directory=str(directory), compile=True, run=False, with_output=False)
            compile_s = time.perf_counter() - start
        finally:
            reset_device()
        return _Program(device, model, timed, directory, compile_s)

    def _run_standalone(self, copies: int, n_pres: int, arrays: dict):
        info = {}
        # A compiled program runs a fixed number of presentations. Reuse the shortest one that is
        # long enough, idling through the rest: simulating a presentation costs milliseconds,
        # compiling a program tens of seconds.
        fits = [key for key in self._models if key[0] == copies and key[1] >= n_pres]
        if fits:
            program = self._models[min(fits, key=lambda key: key[1])]
        else:
            program = self._models[(copies, n_pres)] = self._build_program(copies, n_pres, arrays)
            info["compile_s"] = program.compile_s
        model = program.model
        info["presentations_simulated"] = len(next(iter(program.timed.values())).values) - 1
        run_args = {model.stores[k].w: self.weights[k].ravel() for k in self.weights}
        for k, v in arrays.items():
            rows = program.timed[k].values.shape[0]
            run_args[program.timed[k]] = np.concatenate([v, np.zeros((rows - len(v),) + v.shape[1:])])
        start = time.perf_counter()
        program.device.run(directory=str(program.directory), with_output=False, run_args=run_args)
        info["run_s"] = time.perf_counter() - start
        # the network's own run time, as the binary reports it (no process start or file I/O)
        info["simulation_s"] = float(getattr(program.device, "_last_run_time", info["run_s"]))
        eps, yhat = self._collect(model)
        # the data files of this call are not needed again; the compiled program is
        program.device.delete(code=False, data=False, run_args=True, directory=False, force=True)
        return eps, yhat, info


def build(circuit, device: str = "runtime", target: str = "numpy", **options) -> Brian2Runner:
    """Build a :class:`Brian2Runner`; see :class:`Options` for ``options`` (and ``weights``)."""
    weights = options.pop("weights", None)
    known = set(Options.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for backend 'brian2'; valid options: "
                        f"{', '.join(sorted(known | {'weights'}))}")
    if "record" in options:
        rec = options["record"]
        options["record"] = (rec,) if isinstance(rec, str) else tuple(rec)
    if "record_copies" in options:
        options["record_copies"] = tuple(options["record_copies"])
    return Brian2Runner(circuit, Options(device=device, target=target, **options), weights)
