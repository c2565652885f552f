"""Shared pieces of the claim analyses (rank_vs_task_dim, width_vs_rank, qp_ablation,
direct_low_rank): the tasks, one MLP training run, summaries, the figure writer.

Not an analysis itself (the leading underscore keeps it out of ``bioplastic analysis``'s list). The
CLI puts this folder on ``sys.path`` while an analysis runs, and worker processes inherit it, so the
analyses import this file as the plain module ``_claims``.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

import numpy as np

from bioplastic import experiment
from bioplastic.circuit.keys import key as weight_key

#: Widths from which ``backend="auto"`` trains on torch float32: 1.6x faster per step than the
#: reference at width 256 on one core, slower at 128 with inputs of 192 (measured).
TORCH_FROM_WIDTH = 256


def importable(path: str):
    """The analysis file at ``path`` imported under its own name, so that spawned workers can
    unpickle its functions (the CLI loads analyses under a private name a fresh process cannot
    import). Its folder goes on ``sys.path``, which spawned workers inherit."""
    folder = str(Path(path).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(Path(path).stem)


def jobs_for(jobs: int, n_tasks: int) -> int:
    """Worker processes: ``jobs``, or one per core for 0; never more than the tasks."""
    return max(1, min(jobs or (os.cpu_count() or 1), n_tasks))


def summarize(values) -> dict:
    """Mean and sd (ddof = 1; 0 for one value) over the finite values; diverged runs (None) counted."""
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if ok.size else None,
            "sd": float(ok.std(ddof=1)) if ok.size > 1 else 0.0 if ok.size else None,
            "n": int(ok.size), "diverged": int(v.size - ok.size)}


# --------------------------------------------------------------------------------------------------
# Tasks (cached per process: workers build each once)
# --------------------------------------------------------------------------------------------------

_CACHE: dict = {}


def teacher_task(n_in: int, n_out: int, task_dim: int, samples: int, noise: float, seed: int):
    """A linear teacher y = T x + noise of rank ``task_dim`` with ``n_out`` outputs, as a Dataset.

    :func:`bioplastic.data.teacher_student` draws T = A B / sqrt(d) (entries of variance 1, so each
    output of T x has variance ~ n_in on whitened inputs) and adds N(0, sigma^2) output noise. Here
    sigma^2 = noise * n_in, and the targets are divided by sqrt(n_in): outputs of variance ~ 1 (the
    scale of one-hot targets) of which a fraction ~ noise / (1 + noise) is noise. The first 3/4 of
    the samples train, the rest test.
    """
    key = ("teacher", n_in, n_out, task_dim, samples, noise, seed)
    if key not in _CACHE:
        from bioplastic import data

        ts = data.teacher_student(n_in, n_out, samples, rank=task_dim,
                                  noise=float(np.sqrt(noise * n_in)), seed=seed)
        x, y = ts.x, ts.y / np.sqrt(n_in)
        n_train = (3 * samples) // 4
        labels = y.argmax(axis=1)  # a Dataset needs labels; accuracy is not used for regression
        _CACHE[key] = data.Dataset(
            x[:n_train], y[:n_train], labels[:n_train], x[n_train:], y[n_train:], labels[n_train:],
            name="teacher", classes=tuple(str(i) for i in range(n_out)),
            info={"task_dim": task_dim, "noise": noise, "seed": seed})
    return _CACHE[key]


def digits_task(n_classes: int = 10):
    """The bundled digits restricted to classes 0..n_classes-1 (the stratified split of
    :func:`bioplastic.data.load_digits`), targets still one-hot over all 10 outputs: the output
    dimension stays 10 while the targets span ``n_classes`` dimensions."""
    key = ("digits", n_classes)
    if key not in _CACHE:
        from bioplastic import data

        ds = data.load_digits()
        if n_classes == 10:
            _CACHE[key] = ds
        else:
            tr, te = ds.labels_train < n_classes, ds.labels_test < n_classes
            _CACHE[key] = data.Dataset(
                ds.x_train[tr], ds.y_train[tr], ds.labels_train[tr], ds.x_test[te], ds.y_test[te],
                ds.labels_test[te], name=f"digits 0-{n_classes - 1}", classes=ds.classes,
                image_shape=ds.image_shape, info={**ds.info, "classes": list(range(n_classes))})
    return _CACHE[key]


def zero_loss(ds) -> float:
    """Test loss of predicting 0, 1/2 <||y||^2>: the denominator of the relative error."""
    return 0.5 * float(np.mean(np.sum(ds.y_test ** 2, axis=1)))


# --------------------------------------------------------------------------------------------------
# One training run
# --------------------------------------------------------------------------------------------------

def pathway_ranks(r: int, sizes) -> list[int]:
    """Layer-wise ldfa: rank of each pathway l = 2..L, r clipped to min(n_{l-1}, n_l)."""
    return [min(int(r), sizes[l - 1], sizes[l]) for l in range(2, len(sizes))]


def backend_for(backend: str, width: int) -> tuple[str, dict]:
    """(backend, build options): ``auto`` is torch float32 from :data:`TORCH_FROM_WIDTH` units on,
    else the float64 reference; ``torch`` is torch float32; ``reference`` the reference."""
    if backend == "auto":
        backend = "torch" if width >= TORCH_FROM_WIDTH else "reference"
    return backend, ({"dtype": "float32"} if backend == "torch" else {})


def train_mlp(ds, sizes, *, rule: str, subspace: str | None = None, rank: int | None = None,
              activation: str, lr: float, feedback_lr: float, epochs: int, batch_size: int,
              seed: int, backend: str = "auto") -> dict:
    """Train one MLP ``sizes`` on ``ds``; the final test metrics (None if training diverged).

    ``rule``: a registered rule (``bp``, ``fa``, ``dfa``, ``ldfa``, ...) or ``readout``: ldfa with
    Q = 0 held fixed, so no error reaches a hidden layer and only the readout learns. ``rank``: for
    ldfa, clipped per pathway (:func:`pathway_ranks`); for dfa, the broadcast bottleneck (<= the
    output size); None for the full-rank rules. ``subspace``: how P and Q learn.
    """
    import bioplastic
    import circuits

    readout = rule == "readout"
    kw: dict = {}
    if rule == "ldfa":
        kw = {"rank": pathway_ranks(rank, sizes), "subspace": subspace}
    elif rule == "dfa" and rank is not None:
        kw = {"rank": min(int(rank), sizes[-1]), "subspace": subspace}
    elif readout:
        kw = {"rank": 1, "subspace": "fixed"}
    circuit = circuits.mlp(sizes, rule="ldfa" if readout else rule, activation=activation, lr=lr,
                           feedback_lr=feedback_lr, seed=seed, **kw)
    name, options = backend_for(backend, max(sizes[1:-1]))
    runner = bioplastic.build(circuit, backend=name, **options)
    if readout:
        runner.set_weights({weight_key("Q", l): np.zeros(circuit.shape(weight_key("Q", l)))
                            for l in range(2, len(sizes))})
    experiment.seed_everything(seed)
    t0 = time.perf_counter()
    try:
        hist = experiment.train(runner, ds, epochs, batch_size, seed=seed)
        diverged = False
    except FloatingPointError as err:  # reported as diverged, not dropped
        hist = getattr(err, "history", None) or experiment.History()
        diverged = True
    scale = zero_loss(ds)
    loss, acc = list(hist.test_loss), list(hist.test_accuracy)
    return {"rule": rule, "subspace": subspace, "rank": rank, "ranks": kw.get("rank"), "seed": seed,
            "sizes": list(sizes), "backend": name, "diverged": diverged,
            "test_accuracy": None if diverged or not acc else acc[-1],
            "test_loss": None if diverged or not loss else loss[-1],
            "relative_error": None if diverged or not loss else loss[-1] / scale,
            "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------

def save_figure(fig, stem: str | os.PathLike) -> list[str]:
    """Write ``stem``.svg and ``stem``.png (the PNG through :func:`bioplastic.plotting.save`, which
    closes the figure); the two paths."""
    from bioplastic.plotting import save

    svg = Path(f"{stem}.svg")
    svg.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(svg)
    png = save(fig, f"{stem}.png")
    return [str(png), str(svg)]


RULE_STYLE = {"bp": dict(color="black", ls="-", marker="x"),
              "fa": dict(color="#9467bd", ls="--", marker="+"),
              "dfa": dict(color="#8c564b", ls="-.", marker="*"),
              "readout": dict(color="#bcbd22", ls=":", marker="."),
              "fixed": dict(color="#7f7f7f", ls=":", marker="s"),
              "local": dict(color="#1f77b4", ls="-", marker="o"),
              "normative": dict(color="#2ca02c", ls="--", marker="^"),
              "oja": dict(color="#d62728", ls="-.", marker="D"),
              "q_only": dict(color="#ff7f0e", ls=(0, (5, 2, 1, 2)), marker="v")}


# --------------------------------------------------------------------------------------------------
# A sweep of conditions x seeds on one task (width_vs_rank, qp_ablation, direct_low_rank)
# --------------------------------------------------------------------------------------------------

METRICS = ("test_accuracy", "relative_error")


def dataset(setup: dict):
    """The task ``setup`` names: ``{"task": "digits", "classes": k}`` or ``{"task": "teacher",
    "teacher_in", "teacher_out", "task_dim", "teacher_samples", "teacher_noise", "task_seed"}``."""
    if setup["task"] == "digits":
        return digits_task(setup.get("classes", 10))
    if setup["task"] == "teacher":
        return teacher_task(setup["teacher_in"], setup["teacher_out"], setup["task_dim"],
                            setup["teacher_samples"], setup["teacher_noise"], setup["task_seed"])
    raise ValueError(f"unknown task {setup['task']!r}; valid options: digits, teacher")


def train_condition(setup: dict, cond: dict, seed: int) -> dict:
    """One run of ``cond`` (label, rule, subspace, rank, width) on ``setup``'s task and training
    settings (activation, lr, feedback_lr, epochs, batch_size, depth, backend)."""
    ds = dataset(setup)
    sizes = [ds.n_in] + [cond["width"]] * setup["depth"] + [ds.y_train.shape[1]]
    res = train_mlp(ds, sizes, rule=cond["rule"], subspace=cond.get("subspace"),
                    rank=cond.get("rank"), activation=setup["activation"], lr=setup["lr"],
                    feedback_lr=setup["feedback_lr"], epochs=setup["epochs"],
                    batch_size=setup["batch_size"], seed=seed, backend=setup["backend"])
    return {**res, "label": cond["label"], "width": cond["width"]}


def run_conditions(setup: dict, conds: list[dict], seeds, jobs: int, desc: str,
                   progress: bool = True) -> tuple[list[dict], int]:
    """Every condition for every seed (in worker processes when ``jobs`` > 1); (runs in task
    order, jobs used). Prints one line per finished run."""
    from bioplastic.experiment.pool import run_tasks
    from bioplastic.experiment.progress import Progress

    tasks = [(c, s) for c in conds for s in seeds]
    # widest first: their runs are the longest, started first they balance the workers
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i][0]["width"])
    jobs = jobs_for(jobs, len(tasks))
    metric = "test_accuracy" if setup["task"] == "digits" else "relative_error"
    bar = Progress(len(tasks), desc=desc, enabled=progress)
    bar.write(f"{desc} on {setup['task']}: {len(conds)} conditions x {len(seeds)} seeds x "
              f"{setup['epochs']} epochs, {jobs} process{'es' if jobs > 1 else ''}")

    def report(_, res):
        value = res[metric]
        bar.update(1, res["label"])
        bar.write(f"  {res['label']:<26} width {res['width']:<4} seed {res['seed']}: {metric} "
                  f"{'diverged' if value is None else f'{value:.4f}'}  ({res['seconds']:.1f} s)")

    # workers import train_condition from the module _claims: this folder is on their sys.path
    with bar:
        done = run_tasks(train_condition, [tasks[i] for i in order], jobs, shared=(setup,), on_done=report,
                         torch=setup["backend"] != "reference")
    runs: list = [None] * len(tasks)
    for i, res in zip(order, done):
        runs[i] = res
    return runs, jobs


def summaries(conds: list[dict], runs: list[dict]) -> list[dict]:
    """Per condition: its fields, the seeds, every metric per seed and its mean +- sd."""
    out = []
    for c in conds:
        mine = [r for r in runs if r["label"] == c["label"] and r["width"] == c["width"]]
        entry = {**c, "seeds": [r["seed"] for r in mine]}
        for m in METRICS:
            entry[m] = [r[m] for r in mine]
            entry[f"{m}_summary"] = summarize(entry[m])
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------------
# Metric against rank (qp_ablation, direct_low_rank)
# --------------------------------------------------------------------------------------------------

PANELS = {"test_accuracy": "final test accuracy",
          "relative_error": r"relative test error $\|\hat y - y\|^2 / \|y\|^2$"}


def plot_against_rank(results: dict, lines: dict, title: str, n_seeds: int):
    """Accuracy and relative error against r: one line per entry of ``results["lines"]`` (mean +- sd,
    ``lines[key] = (label, style)``), the references horizontal (mean, +- sd band); the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, axes = plt.subplots(1, 2, figsize=(12.4, 4.4), squeeze=False)
    ranks = results["ranks"]
    for ax, (metric, ylabel) in zip(axes[0], PANELS.items()):
        for ref in results["references"]:
            s = ref[f"{metric}_summary"]
            if s["mean"] is None:
                continue
            style = RULE_STYLE[ref["label"]]
            ax.axhline(s["mean"], color=style["color"], ls=style["ls"], lw=1.4,
                       label=REFERENCE_LABELS.get(ref["label"], ref["label"]))
            ax.axhspan(s["mean"] - s["sd"], s["mean"] + s["sd"], color=style["color"], alpha=0.1,
                       lw=0)
        for key, entries in results["lines"].items():
            label, style = lines[key]
            r = [e["rank"] for e in entries]
            m = [np.nan if e[f"{metric}_summary"]["mean"] is None else e[f"{metric}_summary"]["mean"]
                 for e in entries]
            sd = [np.nan if e[f"{metric}_summary"]["sd"] is None else e[f"{metric}_summary"]["sd"]
                  for e in entries]
            ax.errorbar(r, m, yerr=sd, lw=1.7, ms=5, capsize=3, label=label, **style)
            for ri, mi, e in zip(r, m, entries):
                if e[f"{metric}_summary"]["diverged"]:
                    ax.annotate(f"{e[f'{metric}_summary']['diverged']} div.", (ri, mi), fontsize=6,
                                color=style["color"], xytext=(3, -9), textcoords="offset points")
        if metric == "relative_error":
            ax.set_yscale("log")
        ax.set_xticks(ranks)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("feedback rank r")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(f"{title}; mean +- sd over {n_seeds} seed{'s' * (n_seeds > 1)}", fontsize=10)
    return fig


REFERENCE_LABELS = {"bp": "bp", "fa": "fa", "dfa": "dfa (full rank, d = 10)",
                    "readout": "readout only (r = 0)"}


def rank_table(results: dict, head: str, metric: str = "test_accuracy") -> str:
    """References, then one row per line with its value at every rank, as text."""
    def fmt(s):
        return "div." if s["mean"] is None else f"{s['mean']:.3f}+-{s['sd']:.3f}"

    rows = [head]
    rows += [f"  {ref['label']:<14} {fmt(ref[f'{metric}_summary'])}" for ref in results["references"]]
    rows.append(f"  {'r':<14} " + " ".join(f"{r:>13}" for r in results["ranks"]))
    for key, entries in results["lines"].items():
        by_rank = {e["rank"]: fmt(e[f"{metric}_summary"]) for e in entries}
        rows.append(f"  {key:<14} " + " ".join(f"{by_rank.get(r, ''):>13}" for r in results["ranks"]))
    return "\n".join(rows)
