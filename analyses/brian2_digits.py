"""The Brian2 ldfa circuit learns the digits like the abstract rule it implements.

Trains the 64-100-10 ldfa circuit (r = 4, synapse-local subspace rule) on scikit-learn's bundled
digits with the Brian2 backend and, from the same initial weights and on the same batches, with the
reference backend; records per epoch the test accuracy and training loss of both, how far their
weights have drifted apart, and the Brian2 throughput. Two pictures of the mechanism go with it:
the one-step distance to the abstract rule as the presentation (settle time) grows, and the activity
of every population over two presentations (with the circuit graph, the bottleneck r wide).

Run: ``bioplastic analysis brian2_digits [--epochs=5 --device=runtime --target=cython ...]``
(``--quick``: one epoch on Brian2's numpy target, no compiler needed; ``--help``: every setting).
Writes ``results/brian2_digits/{config.json, results.json, brian2_digits.png, activity.png,
circuit.png}``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from pydantic import PositiveInt

import bioplastic
import circuits
from bioplastic import experiment
from bioplastic.experiment.cmdline import parse_command_line
from bioplastic.experiment.progress import Progress


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
    seed: int = 0
    out: str = "results/brian2_digits"


#: ``--quick`` (also ``bioplastic demo --brian2 --quick``): no compiler needed, Brian2's numpy
#: target, one epoch, a two-point settle sweep.
QUICK = {"epochs": 1, "device": "runtime", "target": "numpy", "sweep_steps": (8, 40)}


def _accuracy(runner, ds) -> float:
    return float(np.mean(runner.predict(ds.x_test).argmax(1) == ds.labels_test))


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


def run(cfg: Config, progress: bool = True) -> dict:
    """Train both backends, sweep the settle time, record one presentation; no plotting.
    ``progress``: a bar on stderr, a step per epoch and one for the settle sweep."""
    from bioplastic.data import load_digits

    ds = load_digits()
    circuit = _circuit(cfg)
    b2 = bioplastic.build(circuit, backend="brian2", device=cfg.device, target=cfg.target)
    ref = bioplastic.build(circuit, backend="reference")
    history = []
    bar = Progress(cfg.epochs + 1, desc="brian2_digits", enabled=progress)
    for epoch in range(cfg.epochs):
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(ds.x_train))
        xb, yb = ds.x_train[order], ds.y_train[order]
        losses_b2 = b2.train_epoch(xb, yb, batch_size=cfg.batch_size)
        timing = dict(b2.timing)
        losses_ref = [ref.train_step(xb[s:s + cfg.batch_size], yb[s:s + cfg.batch_size])
                      for s in range(0, len(xb), cfg.batch_size)]
        wb, wr = b2.get_weights(), ref.get_weights()
        drift = max(float(np.linalg.norm(wb[k] - wr[k]) / np.linalg.norm(wr[k])) for k in wr)
        row = dict(epoch=epoch + 1, loss_brian2=float(np.mean(losses_b2)),
                   loss_reference=float(np.mean(losses_ref)), acc_brian2=_accuracy(b2, ds),
                   acc_reference=_accuracy(ref, ds), weight_drift=drift,
                   samples_per_s=timing["samples_per_s"], epoch_wall_s=timing["wall_s"],
                   compile_s=timing.get("compile_s"))
        history.append(row)
        bar.update(1, f"epoch {row['epoch']}")
        bar.write(f"epoch {row['epoch']}: accuracy brian2 {row['acc_brian2']:.3f}, reference "
                  f"{row['acc_reference']:.3f}; weights {drift:.1e} apart; "
                  f"{row['samples_per_s']:.0f} samples/s")
    sweep = settle_sweep(cfg, ds.x_train[:cfg.sweep_batch], ds.y_train[:cfg.sweep_batch])
    bar.update(1, "settle sweep")
    bar.write("settle sweep: " + ", ".join(f"{r['steps']}: {r['max_error']:.1e}" for r in sweep["rows"]))
    bar.close()
    final = history[-1]
    return dict(history=history, settle_sweep=sweep, settle_s=b2.settle, dt_s=b2.dt,
                steps_per_presentation=b2.steps, device=cfg.device, target=cfg.target,
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
