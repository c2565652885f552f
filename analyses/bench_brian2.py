"""Training throughput of the Brian2 rate circuit: samples per second by device, optimised vs baseline.

The 64-100-10 ldfa circuit (r = 4, local subspace rule) at the backend's default settle time
(equivalence grade: the script measures the one-step update error against the reference and
records it next to the speed) is trained on the digits on every device (runtime numpy, runtime
Cython, C++ standalone) in two ways: ``train_step`` on consecutive batches (one Brian2 run per
batch, what a first-time user writes) and ``train_epoch`` (one run for the whole epoch). Each is
measured twice in the same run: with the backend's exact optimisations (``optimise=True``: f(a)
once per step, the clamped input's drive once per presentation, schedules refilled in place) and
without them (``optimise=False``, the baseline); the ratio is robust to a busy machine, the
absolute numbers are not.

Numbers: ``samples_per_s`` is samples over the wall time of the calls (train_step: everything a
user waits for, code generation included; train_epoch: the simulation proper, ``run()`` or the
standalone binary's network time); first calls (compilation) are timed apart.

The spiking circuit (the same 64-100-10 sizes, ``neuron="lif"``, the settings of
``analyses/spiking_digits.py``: 150 ms presentations, dt 0.5 ms, 64 copies) is timed on the numpy
target: simulated seconds per wall-clock second and samples per second of ``train_epoch``, at
batches of 64 (copies) against batches of 8 in the same run (the ratio: what simulating digits side
by side buys).

Run: ``bioplastic analysis bench_brian2`` (``--quick`` for numpy only, ``--help`` for every
setting). Writes ``results/bench_brian2/{config.json, results.json, bench_brian2.png}``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
from pydantic import NonNegativeInt, PositiveInt

import bioplastic
import circuits
from bioplastic import experiment
from bioplastic.experiment.cmdline import parse_command_line
from bioplastic.experiment.progress import Progress


@dataclass(frozen=True)
class Config:
    hidden: PositiveInt = 100         # the 64-100-10 circuit of analyses/brian2_digits.py
    rank: PositiveInt = 4             # feedback rank r
    subspace: str = "local"           # the synapse-local LDFA rule
    batch_size: PositiveInt = 50      # = parallel copies of the circuit
    devices: tuple[str, ...] = ("runtime:numpy", "runtime:cython", "cpp_standalone")  # device[:target]
    modes: tuple[str, ...] = ("train_step", "train_epoch")  # how the samples are fed
    step_batches: PositiveInt = 8     # timed train_step calls per device
    samples: NonNegativeInt = 0       # samples per timed train_epoch; 0 = all 1347 digits
    repeats: PositiveInt = 2          # timed epochs per device (the best is kept: noise only slows)
    baseline: bool = True             # also time optimise=False in the same run (the ratio)
    goals: tuple[float, ...] = (600.0, 1500.0, 3000.0)  # samples/s goals of numpy train_step,
                                      # cython and standalone (2 quiet cores)
    spiking_samples: NonNegativeInt = 256  # digits per timed spiking epoch; 0: no spiking rows
    spiking_batches: tuple[PositiveInt, ...] = (64, 8)  # copies simulated side by side (64: the
                                      # spiking_digits batch; 8 the comparison)
    seed: int = 0
    out: str = "results/bench_brian2"


#: ``--quick``: the numpy target only, few samples, one repeat.
QUICK = {"devices": ("runtime:numpy",), "samples": 100, "step_batches": 2, "repeats": 1,
         "spiking_samples": 64, "spiking_batches": (64,)}
MODES = ("train_step", "train_epoch")


def _device(spec: str) -> dict:
    device, _, target = spec.partition(":")
    return dict(device=device, target=target or "numpy")


def equivalence_error(circuit, x, y) -> float:
    """Largest relative error of one step's matrix updates, brian2 (numpy target) vs reference."""
    ref = bioplastic.build(circuit, backend="reference")
    start = ref.get_weights()
    ref.train_step(x, y)
    runner = bioplastic.build(circuit, backend="brian2")
    runner.train_step(x, y)
    want, got = ref.get_weights(), runner.get_weights()
    return max(float(np.linalg.norm((got[k] - start[k]) - (want[k] - start[k])) /
                     np.linalg.norm(want[k] - start[k])) for k in want)


def time_mode(runner, mode: str, x, y, cfg: Config) -> dict:
    """Warm up (compile), then time ``mode``; returns samples/s and the first call's time."""
    b = cfg.batch_size
    start = time.perf_counter()
    runner.train_step(x[:b], y[:b]) if mode == "train_step" else runner.train_epoch(x, y, batch_size=b)
    first = time.perf_counter() - start
    if mode == "train_step":
        n = cfg.step_batches * b
        start = time.perf_counter()
        for k in range(cfg.step_batches):
            runner.train_step(x[k * b:(k + 1) * b], y[k * b:(k + 1) * b])
        return dict(samples_per_s=n / (time.perf_counter() - start), first_call_s=first, samples=n)
    best = 0.0
    for _ in range(cfg.repeats):
        runner.train_epoch(x, y, batch_size=b)
        best = max(best, runner.timing["samples_per_s"])
    return dict(samples_per_s=best, first_call_s=first, samples=len(x),
                wall_samples_per_s=len(x) / runner.timing["wall_s"])


def run(cfg: Config, progress: bool = True) -> dict:
    """Time every (device, mode, optimised or baseline); no plotting. ``progress``: a bar on stderr."""
    from bioplastic.data import load_digits

    ds = load_digits()
    n = cfg.samples or len(ds.x_train)
    order = np.random.default_rng(cfg.seed).permutation(len(ds.x_train))[:n]
    x, y = ds.x_train[order], ds.y_train[order]
    circuit = circuits.mlp([64, cfg.hidden, 10], rule="ldfa", rank=cfg.rank, subspace=cfg.subspace,
                           lr=0.05, seed=cfg.seed)
    error = equivalence_error(circuit, x[:cfg.batch_size], y[:cfg.batch_size])
    out = {"samples": n, "rows": [], "equivalence_error": error, "load_average_before": os.getloadavg()}
    variants = (True, False) if cfg.baseline else (True,)
    bar = Progress(len(cfg.devices) * len(cfg.modes) * len(variants), desc="bench_brian2", enabled=progress)
    bar.write(f"64-{cfg.hidden}-10: one-step update error at the default settle {error:.2e}")
    for spec in cfg.devices:
        for mode in cfg.modes:
            for optimise in variants:
                runner = bioplastic.build(circuit, backend="brian2", optimise=optimise, **_device(spec))
                row = dict(device=spec, mode=mode, optimise=optimise, settle_s=runner.settle,
                           dt_s=runner.dt, steps_per_presentation=runner.steps,
                           load_average=os.getloadavg()[0], **time_mode(runner, mode, x, y, cfg))
                out["rows"].append(row)
                bar.update(1, f"{spec} {mode}")
                bar.write(f"  {spec:16s} {mode:11s} {'optimised' if optimise else 'baseline ':9s} "
                          f"{row['samples_per_s']:7.0f} samples/s, first call {row['first_call_s']:5.1f} s")
    out["spiking"] = time_spiking(x, y, cfg, bar) if cfg.spiking_samples else []
    bar.close()
    for row in out["rows"]:
        if row["optimise"]:
            base = [r for r in out["rows"] if not r["optimise"] and r["device"] == row["device"]
                    and r["mode"] == row["mode"]]
            row["ratio_to_baseline"] = row["samples_per_s"] / base[0]["samples_per_s"] if base else None
    out["load_average_after"] = os.getloadavg()
    out["goals"] = goals(out["rows"], cfg)
    return out


def time_spiking(x, y, cfg: Config, bar) -> list[dict]:
    """Simulated s per wall s and samples/s of the spiking circuit's train_epoch, per batch size
    (after one warm-up call that generates the code)."""
    circuit = circuits.mlp([64, cfg.hidden, 10], rule="ldfa", rank=cfg.rank, subspace=cfg.subspace,
                           neuron="lif", lr=0.2, feedback_lr=0.02, seed=cfg.seed)
    xs, ys = x[:cfg.spiking_samples] - x.mean(axis=0), y[:cfg.spiking_samples]
    rows = []
    for batch in cfg.spiking_batches:
        runner = bioplastic.build(circuit, backend="brian2", signed_input=True, input_coding="regular",
                                  input_rate=200.0, dt=0.5, settle=50.0, window=100.0, plasticity_dt=2.5)
        runner.train_epoch(xs[:batch], ys[:batch], batch_size=batch)  # code generation
        runner.train_epoch(xs, ys, batch_size=batch)
        t = runner.timing
        rows.append(dict(device="spiking:numpy", copies=t["copies"], samples=t["samples"],
                         presentation_ms=t["presentation_ms"], dt_ms=t["dt_ms"],
                         sim_s_per_wall_s=t["sim_s_per_wall_s"], samples_per_s=t["samples_per_s"],
                         load_average=os.getloadavg()[0]))
        bar.write(f"  spiking numpy, {batch} copies: {t['sim_s_per_wall_s']:.3f} simulated s per wall s, "
                  f"{t['samples_per_s']:.1f} samples/s")
    if len(rows) > 1:
        for row in rows[1:]:
            row["ratio_of_first_to_this"] = rows[0]["samples_per_s"] / row["samples_per_s"]
    return rows


def goals(rows: list[dict], cfg: Config) -> list[dict]:
    """The issue's goals against the optimised rows: numpy train_step, Cython and standalone
    (their best mode)."""
    out = []
    for (spec, modes), goal in zip((("runtime:numpy", ("train_step",)),
                                    ("runtime:cython", MODES), ("cpp_standalone", MODES)), cfg.goals):
        got = [r["samples_per_s"] for r in rows if r["device"] == spec and r["mode"] in modes and r["optimise"]]
        if got:
            out.append(dict(device=spec, modes=list(modes), goal=goal, best=max(got), met=max(got) >= goal))
    return out


def table(results: dict) -> str:
    """The rows as a markdown table (for the README)."""
    lines = ["| device | mode | optimised samples/s | baseline samples/s | ratio | first call (s) |",
             "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        if not row["optimise"]:
            continue
        base = next((r for r in results["rows"] if not r["optimise"] and r["device"] == row["device"]
                     and r["mode"] == row["mode"]), None)
        lines.append(f"| {row['device']} | {row['mode']} | {row['samples_per_s']:.0f} | "
                     f"{base['samples_per_s']:.0f} | {row['ratio_to_baseline']:.2f}x | "
                     f"{row['first_call_s']:.1f} |" if base else
                     f"| {row['device']} | {row['mode']} | {row['samples_per_s']:.0f} | - | - | "
                     f"{row['first_call_s']:.1f} |")
    if results.get("spiking"):
        lines += ["", "| spiking circuit | copies | simulated s / wall s | samples/s |", "|---|---|---|---|"]
        lines += [f"| {r['device']} | {r['copies']} | {r['sim_s_per_wall_s']:.3f} | {r['samples_per_s']:.1f} |"
                  for r in results["spiking"]]
    return "\n".join(lines)


def plot(results: dict, cfg: Config):
    """Bars: samples/s per (device, mode), optimised next to baseline, the goals as ticks."""
    from bioplastic.plotting import plt, save

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    labels = [f"{d}\n{m}" for d in cfg.devices for m in cfg.modes]
    for k, optimise in enumerate((True, False)):
        vals = [next((r["samples_per_s"] for r in results["rows"] if r["device"] == d and r["mode"] == m
                      and r["optimise"] == optimise), np.nan) for d in cfg.devices for m in cfg.modes]
        pos = np.arange(len(labels)) + (k - 0.5) * 0.4
        ax.bar(pos, vals, 0.4, label="optimised" if optimise else "baseline (optimise=False)")
        for p, v in zip(pos, vals):
            if np.isfinite(v):
                ax.text(p, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    for g in results["goals"]:
        idx = [i for i, (d, m) in enumerate((d, m) for d in cfg.devices for m in cfg.modes)
               if d == g["device"] and m in g["modes"]]
        for i in idx:
            ax.plot([i - 0.4, i + 0.4], [g["goal"]] * 2, "k--", lw=0.8)
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("training samples / s")
    row = results["rows"][0]
    ax.set_title(f"Brian2 64-{cfg.hidden}-10 ldfa r={cfg.rank}, batch {cfg.batch_size}, settle "
                 f"{row['settle_s'] * 1e3:.0f} ms (dt {row['dt_s'] * 1e3:g} ms), error "
                 f"{results['equivalence_error']:.1e}; dashes: goals", fontsize=8)
    ax.legend(fontsize=7)
    return save(fig, f"{cfg.out}/bench_brian2.png")


def check(cfg: Config) -> None:
    """Raise a clear error on a config this benchmark cannot run."""
    bad = [spec for spec in cfg.devices if _device(spec)["device"] not in ("runtime", "cpp_standalone")]
    if bad or not cfg.devices:
        raise ValueError(f"devices must be runtime[:numpy or :cython] or cpp_standalone; got {list(cfg.devices)}")
    if not cfg.modes or any(m not in MODES for m in cfg.modes):
        raise ValueError(f"modes must be among {', '.join(MODES)}; got {list(cfg.modes)}")


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis bench_brian2", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    with experiment.single_threaded():
        results = run(cfg, progress=not cl.quiet)
    results["table"] = table(results)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=cfg.seed)
    print(results["table"])
    print(f"figure: {plot(results, cfg)}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
