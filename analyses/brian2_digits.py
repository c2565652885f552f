"""The Brian2 ldfa circuit learns the digits like the abstract rule it implements.

Trains the 64-100-10 ldfa circuit (r = 4, synapse-local subspace rule; the low-dimensional error
feedback of arXiv 2502.20580) on scikit-learn's bundled digits with the Brian2 backend and, from the
same initial weights and on the same batches, with the reference backend; records per epoch the
test accuracy and training loss of both, how far their weights have drifted apart, and the Brian2
throughput. Two pictures of the mechanism go with it: the one-step distance to the abstract rule as
the presentation (settle time) grows, and the activity of every population over two presentations
(with the circuit graph, the bottleneck r wide).

The two training runs are one study (``bioplastic.experiment``; ``studies/brian2_digits.toml`` is
the default's): a grid over ``backend.name`` = brian2 (with its ``device`` and ``target`` in
``backend.options``) and reference, one seed, so both runs draw the same initial weights (the
circuit builder's seed) and the same batch order (the run's data generator); ``[record]
weights_every = 1`` keeps both runs' weights after every epoch, from which the drift is computed.
The runs stay in ``OUT/study/runs/<run_id>/`` (``--resume=true`` continues an interrupted study).
Throughput is what the study records: ``metrics.jsonl``'s ``time``, the seconds spent in training
steps up to each epoch's end (evaluation excluded), so samples/s = training samples / that epoch's
seconds. The study's loop hands the Brian2 runner each epoch's batches in one ``train_epoch`` call
(one Brian2 run per epoch, as this analysis did before it trained through the study); the time
includes Python and, on ``cpp_standalone``, the program's start and the first call's compilation,
so no compilation time is reported apart (``compile_s`` is None).

Numbers: ``--quick`` (one epoch, runtime/numpy) through the study against the same command before
it trained through the study: identical, bit for bit, for both runs (test accuracy 0.3622 each;
loss 0.46919064 Brian2, 0.46919038 reference; weights 3.6e-5 apart): the study's batch order for
epoch 1, ``default_rng(seed).permutation``, is the one this analysis drew, the builder's seed the
same initial weights. 704 samples/s (470 before, on a busier machine). From epoch 2 on the study's
data generator continues where the analysis drew ``default_rng(seed + epoch)`` afresh, so longer
runs see other batches than before (the default's ~87% test accuracy for both backends was
measured with the old loop).

Run: ``bioplastic analysis brian2_digits [--epochs=5 --device=runtime --target=cython ...]``
(``--quick``: one epoch on Brian2's numpy target, no compiler needed; ``--help``: every setting).
Writes ``results/brian2_digits/{config.json, results.json, brian2_digits.png, activity.png,
circuit.png}`` and the study in ``results/brian2_digits/study/``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import PositiveInt

import bioplastic
import circuits
from bioplastic import experiment
from bioplastic.experiment.cmdline import parse_command_line
from bioplastic.experiment.progress import Progress

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a file: the helpers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _claims  # noqa: E402


@dataclass(frozen=True)
class Config:
    hidden: PositiveInt = 100         # the 64-100-10 circuit, small enough for every device
    rank: PositiveInt = 4             # bottleneck neurons per feedback pathway
    subspace: str = "local"           # P, Q learn by the synapse-local rule
    lr: float = 0.05                  # forward and feedback learning rate (0.2 diverges here)
    batch_size: PositiveInt = 32      # samples per step, presented side by side
    epochs: PositiveInt = 5           # ~87% test accuracy for both backends
    device: Literal["cpp_standalone", "runtime"] = "cpp_standalone"  # the fastest; "runtime" with
                                      # the target below also works
    target: Literal["numpy", "cython"] = "numpy"  # runtime target
    sweep_steps: tuple[PositiveInt, ...] = (4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 48)  # settle
                                      # times (in dt) swept
    sweep_batch: PositiveInt = 32     # batch of the settle sweep
    seed: int = 0                     # initial weights and batch order, the same for both backends
    out: str = "results/brian2_digits"
    resume: bool = False              # continue an interrupted run from the study in OUT/study/


#: ``--quick`` (also ``bioplastic demo --brian2 --quick``): no compiler needed, Brian2's numpy
#: target, one epoch, a two-point settle sweep.
QUICK = {"epochs": 1, "device": "runtime", "target": "numpy", "sweep_steps": (8, 40)}

#: The study's description: this file's first line.
DESCRIPTION = __doc__.split("\n", 1)[0]
#: The backends the study compares, the circuit's first.
BACKENDS = ("brian2", "reference")


def _circuit(cfg: Config):
    return circuits.mlp([64, cfg.hidden, 10], rule="ldfa", rank=cfg.rank, subspace=cfg.subspace,
                        lr=cfg.lr, seed=cfg.seed)


def settle_sweep(cfg: Config, x, y) -> dict:
    """One train_step at each settle time: relative error of every matrix's update vs reference."""
    circuit = _circuit(cfg)
    ref = bioplastic.build(circuit, backend="reference")
    start = ref.get_weights()
    ref.train_step(x, y)
    want = ref.get_weights()
    rows = []
    for steps in cfg.sweep_steps:
        runner = bioplastic.build(circuit, backend="brian2", settle=steps * 0.005)
        runner.train_step(x, y)
        got = runner.get_weights()
        err = {k: float(np.linalg.norm((got[k] - start[k]) - (want[k] - start[k])) /
                        np.linalg.norm(want[k] - start[k])) for k in want}
        rows.append(dict(steps=steps, settle_s=runner.settle, max_error=max(err.values()), errors=err))
    default = bioplastic.build(circuit, backend="brian2")
    return dict(rows=rows, default_steps=default.steps, default_settle_s=default.settle,
                dt_s=default.dt, tau_s=default.options.tau)


def study(cfg: Config) -> dict:
    """The training runs as a study mapping (``studies/brian2_digits.toml`` is the default's): the
    circuit of :func:`_circuit` on the digits, once on Brian2 (``device``, ``target``) and once on
    the reference backend, with one seed; weights kept after every epoch."""
    return {"name": "brian2_digits", "description": DESCRIPTION, "seeds": [cfg.seed],
            "task": {"name": "digits"},
            # circuits.mlp's own default nonlinearity, as _circuit builds it
            "circuit": {"hidden": [cfg.hidden], "activation": "tanh"},
            "feedback": {"rule": "ldfa", "subspace": cfg.subspace, "rank": cfg.rank},
            "optimizer": {"lr": cfg.lr},
            "training": {"epochs": cfg.epochs, "batch_size": cfg.batch_size},
            "record": {"weights_every": 1},
            "grid": [{"backend.name": ["brian2"],
                      "backend.options": [{"device": cfg.device, "target": cfg.target}]},
                     {"backend.name": ["reference"]}]}


def train(cfg: Config, progress: bool = True) -> dict:
    """Run the study of :func:`study` in ``OUT/study`` (resumed with ``cfg.resume``); backend name
    -> ``{"run_id", "folder", "metrics"}`` (metrics: one dict per epoch, epoch 0 first)."""
    from bioplastic.experiment.run import read_metrics, run_folder
    from bioplastic.experiment.study import study_from_mapping

    loaded = study_from_mapping(study(cfg), name="brian2_digits")
    out = Path(cfg.out) / "study"
    results = _claims.run_analysis_study(
        loaded, out, 1, cfg.resume, progress,
        f"brian2_digits: 64-{cfg.hidden}-10 ldfa r={cfg.rank} on brian2 ({cfg.device}/{cfg.target}) and "
        f"reference, {cfg.epochs} epochs")
    runs = {}
    for run in loaded.runs:
        _claims.require(results, run["run_id"], f"the {run['backend']['name']} run in {out}/runs")
        folder = run_folder(out, run["run_id"])
        runs[run["backend"]["name"]] = {"run_id": run["run_id"], "folder": folder,
                                        "metrics": read_metrics(folder)}
    return runs


def weight_drift(folder_a: Path, folder_b: Path, epoch: int) -> float:
    """max over weight matrices k of ||W_a - W_b||_F / ||W_b||_F (||W_a - W_b||_F where W_b = 0: the
    biases at epoch 0), from the two runs' ``snapshots/weights_EPOCH.npz``."""
    from bioplastic.experiment.run import SNAPSHOTS

    with np.load(folder_a / SNAPSHOTS / f"weights_{epoch:04d}.npz") as a, \
            np.load(folder_b / SNAPSHOTS / f"weights_{epoch:04d}.npz") as b:
        if set(a.files) != set(b.files):
            raise ValueError(f"the runs keep different weights: {sorted(a.files)} vs {sorted(b.files)}")
        return max(float(np.linalg.norm(a[k] - b[k]) / (np.linalg.norm(b[k]) or 1.0)) for k in b.files)


def run(cfg: Config, progress: bool = True) -> dict:
    """Train both backends (the study), sweep the settle time; no plotting. ``progress``: the
    study's display, then a line per epoch and a bar for the settle sweep on stderr."""
    from bioplastic.data import load_digits

    ds = load_digits()
    runs = train(cfg, progress)
    b2, ref = (runs[name] for name in BACKENDS)
    history = []
    bar = Progress(1, desc="brian2_digits", enabled=progress)
    for before, mb, mr in zip(b2["metrics"], b2["metrics"][1:], ref["metrics"][1:]):
        epoch = mb["epoch"]
        if mr["epoch"] != epoch:
            raise ValueError(f"the runs' metrics differ in their epochs: {epoch} and {mr['epoch']}")
        seconds = mb["time"] - before["time"]
        drift = weight_drift(b2["folder"], ref["folder"], epoch)
        row = dict(epoch=epoch, loss_brian2=mb["train_loss"], loss_reference=mr["train_loss"],
                   acc_brian2=mb["test_accuracy"], acc_reference=mr["test_accuracy"], weight_drift=drift,
                   samples_per_s=len(ds.x_train) / seconds, epoch_wall_s=seconds, compile_s=None)
        history.append(row)
        bar.write(f"epoch {epoch}: accuracy brian2 {row['acc_brian2']:.3f}, reference "
                  f"{row['acc_reference']:.3f}; weights {drift:.1e} apart; "
                  f"{row['samples_per_s']:.0f} samples/s")
    sweep = settle_sweep(cfg, ds.x_train[:cfg.sweep_batch], ds.y_train[:cfg.sweep_batch])
    bar.update(1, "settle sweep")
    bar.write("settle sweep: " + ", ".join(f"{r['steps']}: {r['max_error']:.1e}" for r in sweep["rows"]))
    bar.close()
    final = history[-1]
    # the presentation the study's circuit ran with (building a runner builds no network)
    b2_runner = bioplastic.build(_circuit(cfg), backend="brian2", device=cfg.device, target=cfg.target)
    return dict(history=history, settle_sweep=sweep, settle_s=b2_runner.settle, dt_s=b2_runner.dt,
                steps_per_presentation=b2_runner.steps, device=cfg.device, target=cfg.target,
                initial_weight_drift=weight_drift(b2["folder"], ref["folder"], 0),
                runs={name: {"run_id": r["run_id"], "folder": str(r["folder"])} for name, r in runs.items()},
                timing=("samples_per_s, epoch_wall_s: from the study's metrics.jsonl time (seconds in "
                        "training, one Brian2 run per epoch, compilation included)"),
                final=dict(acc_brian2=final["acc_brian2"], acc_reference=final["acc_reference"],
                           gap_points=100 * abs(final["acc_brian2"] - final["acc_reference"]),
                           within_3_points=abs(final["acc_brian2"] - final["acc_reference"]) <= 0.03))


def plot(results: dict, cfg: Config) -> list:
    """Accuracy per epoch and the settle sweep; activity over two presentations; circuit graph."""
    from bioplastic.backends.brian2.plotting import plot_activity, plot_circuit
    from bioplastic.data import load_digits
    from bioplastic.plotting import plt, save

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    h = results["history"]
    epochs = [r["epoch"] for r in h]
    ax1.plot(epochs, [r["acc_reference"] for r in h], "o-", label="reference (abstract rule)")
    ax1.plot(epochs, [r["acc_brian2"] for r in h], "x--", label=f"brian2 ({cfg.device})")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("test accuracy")
    ax1.set_title(f"64-{cfg.hidden}-10 ldfa r={cfg.rank} ({cfg.subspace}) on the digits", fontsize=9)
    ax1.legend(fontsize=8)
    sw = results["settle_sweep"]
    ax2.semilogy([r["settle_s"] * 1e3 for r in sw["rows"]], [r["max_error"] for r in sw["rows"]], "o-")
    ax2.axhline(1e-3, color="k", ls="--", lw=0.8, label="1e-3 (equivalence tolerance)")
    ax2.axvline(sw["default_settle_s"] * 1e3, color="C2", lw=0.8, label="default settle")
    ax2.set_xlabel(f"settle time (ms); tau = {sw['tau_s'] * 1e3:g} ms, dt = {sw['dt_s'] * 1e3:g} ms")
    ax2.set_ylabel("max relative error of one step's updates")
    ax2.legend(fontsize=8)
    paths = [save(fig, f"{cfg.out}/brian2_digits.png")]

    # two presentations of one sample each: how the compartments settle, then the next sample
    ds = load_digits()
    runner = bioplastic.build(_circuit(cfg), backend="brian2", copies=1,
                              record=("rates", "errors", "bottleneck"))
    runner.train_step(ds.x_train[:2], ds.y_train[:2])
    plot_activity(runner, f"{cfg.out}/activity.png")
    plot_circuit(runner, f"{cfg.out}/circuit.png")
    return paths + [f"{cfg.out}/activity.png", f"{cfg.out}/circuit.png"]


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis brian2_digits", quick=QUICK,
                            description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=cfg.seed)
    for path in plot(results, cfg):
        print(f"figure: {path}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
