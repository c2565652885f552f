"""The demo (``bioplastic demo``): one MLP trained on the bundled digits with every rule.

Trains each credit-assignment rule of :data:`DEMO_CONDITIONS` for every seed and writes curves, a
table and every number to a results folder; :data:`DEMO_CONDITIONS` documents the hyperparameters
and why. The demo runs as a study (:func:`demo_study`; the default one is ``studies/demo.toml``):
every run gets its folder in ``OUT/runs/`` with its metrics per epoch and checkpoints, and
``bioplastic demo --resume`` continues an interrupted demo.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveInt

from bioplastic.data import Dataset
from bioplastic.experiment import Diverged, save_run, seed_everything, train, write_json
from bioplastic.experiment.config import load_config

# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """One learning rule with its hyperparameters.

    Attributes
    ----------
    rule : str
        ``bp``, ``fa``, ``dfa``, ``kp`` or ``ldfa``.
    subspace : str, optional
        ldfa only: ``fixed``, ``normative``, ``local`` or ``oja``.
    rank : int, optional
        ldfa only: feedback rank r.
    lr : float
        Learning rate of W and b.
    feedback_lr : float, optional
        Of plastic feedback (default: ``lr``).
    decay : float
        Weight decay lambda on W and plastic feedback.
    """

    rule: str
    subspace: str | None = None
    rank: int | None = None
    lr: float = 0.03
    feedback_lr: float | None = None
    decay: float = 0.0

    @property
    def label(self) -> str:
        """``bp``, ``kp``, ``ldfa-local-r10``, ..."""
        if self.rule != "ldfa":
            return self.rule
        return f"ldfa-{self.subspace}-r{self.rank}"

    def circuit(self, sizes: Sequence[int], activation: str, seed: int):
        """The ``circuits.mlp`` circuit of this condition."""
        from circuits import mlp

        extra = {"rank": self.rank, "subspace": self.subspace} if self.rule == "ldfa" else {}
        return mlp(list(sizes), rule=self.rule, activation=activation, lr=self.lr,
                   feedback_lr=self.feedback_lr, decay=self.decay, seed=seed, **extra)


#: The demo's conditions. One learning rate for every rule (0.03, plain SGD, batch 32, ReLU): of
#: {0.01, 0.02, 0.03, 0.05}, 0.05 diverged for fa, dfa and fixed ldfa, and below 0.03 bp needs more
#: epochs to pass 95 %. kp alone has weight decay, which it needs for B to converge to W^T (1e-3; on
#: W as well, as the rule prescribes). Plastic feedback learns at the forward rate. Fixed rank-1
#: feedback is the one unstable condition: in 6 seeds, one blew up (loss > 1e3 or NaN) at lr 0.03,
#: 0.02 and with batch 64 alike, so the demo reports divergence instead of hiding it.
DEMO_CONDITIONS = (
    Condition("bp"),
    Condition("fa"),
    Condition("dfa"),
    Condition("kp", decay=1e-3),
    *(Condition("ldfa", subspace, rank) for subspace in ("fixed", "local", "normative")
      for rank in (1, 10)),
)


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo needs to rerun (``bioplastic demo --config results/demo/config.json``).

    Attributes
    ----------
    sizes : tuple of int
        MLP population sizes; 64 inputs (8 x 8 pixels) and 10 outputs for digits.
    activation : str
        Hidden nonlinearity (ReLU reached 97 % with bp in 60 epochs; tanh stalled near 94 %).
    epochs, batch_size : int
    seeds : tuple of int
        Each seed sets the initial weights and the batch order of every condition.
    backend : str
        ``reference`` or ``torch``.
    dtype, device : str, optional
        torch only: ``float32`` / ``float64`` and e.g. ``cpu`` / ``cuda`` (None: the backend's
        default, float32 on the CPU).
    test_fraction, split_seed : float, int
        The digits split (stratified; the same for every seed, so seeds vary only the learner).
    conditions : tuple of Condition
    """

    sizes: tuple[PositiveInt, ...] = (64, 128, 128, 10)
    activation: str = "relu"
    epochs: PositiveInt = 50
    batch_size: PositiveInt = 32
    seeds: tuple[NonNegativeInt, ...] = (0, 1, 2)
    backend: Literal["reference", "torch"] = "reference"
    dtype: Literal["float32", "float64"] | None = None
    device: str | None = None
    test_fraction: float = 0.25
    split_seed: int = 0
    conditions: tuple[Condition, ...] = DEMO_CONDITIONS

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int; got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {self.batch_size!r}")
        if not self.seeds or not all(isinstance(s, int) and s >= 0 for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty tuple of ints >= 0; got {self.seeds!r}")
        if not self.conditions:
            raise ValueError("the demo needs at least one condition")
        if self.backend not in ("reference", "torch"):
            raise ValueError(f"unknown demo backend {self.backend!r}; valid options: reference, torch")
        given = [k for k in ("dtype", "device") if getattr(self, k) is not None]
        if given and self.backend != "torch":
            raise ValueError(f"{' and '.join(given)} applies to backend 'torch' only; "
                             f"backend is {self.backend!r}")

    @property
    def build_options(self) -> dict[str, str]:
        """Keyword options of :func:`bioplastic.build` beyond the backend name."""
        return {k: v for k in ("dtype", "device") if (v := getattr(self, k)) is not None}

    @property
    def on_cpu(self) -> bool:
        """Whether the runs use CPU cores (which then decides worker processes and threads)."""
        return self.backend == "reference" or str(self.device or "cpu").startswith("cpu")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DemoConfig:
        """Inverse of ``to_jsonable(config)``; raises ConfigError (a ValueError) naming every bad
        or unknown key."""
        return load_config(cls, data)


@dataclass(frozen=True)
class DemoOptions:
    """How ``bioplastic demo`` runs; not what it computes, so not in its config.json."""

    out: str = "results/demo"        # output folder
    jobs: PositiveInt | None = None  # worker processes (none: one per core on the CPU, else 1)
    brian2: bool = False             # instead: the Brian2 ldfa circuit (64-100-10, r = 4) next to the
                                     # reference backend (analyses/brian2_digits.py; --out, --epochs)
    resume: bool = False             # continue an interrupted demo in --out from its checkpoints


#: ``bioplastic demo --quick``: one seed, two epochs, in this process; a check that everything works.
QUICK = {"epochs": 2, "seeds": (0,), "jobs": 1}


# --------------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------------

def run_condition(condition: Condition, seed: int, cfg: DemoConfig, dataset: Dataset,
                  on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Train one (condition, seed) of the demo.

    Returns its History as a dict plus ``seed``, ``wall_time`` and ``diverged`` (None, or the epoch
    and step where the loss stopped being finite; the curves then stop at the last full epoch).
    """
    import bioplastic

    circuit = condition.circuit(cfg.sizes, cfg.activation, seed)
    runner = bioplastic.build(circuit, backend=cfg.backend, **cfg.build_options)
    seed_everything(seed)  # after build, which imports torch when the backend needs it
    t0 = time.perf_counter()
    try:
        history, diverged = train(runner, dataset, cfg.epochs, cfg.batch_size, seed=seed,
                                  on_epoch=on_epoch), None
    except Diverged as err:
        history, diverged = err.history, {"epoch": err.epoch, "step": err.step}
    return {"seed": seed, "wall_time": time.perf_counter() - t0, "diverged": diverged,
            **history.to_dict()}


def summarize(condition: Condition, runs: Sequence[Mapping[str, Any]]) -> dict:
    """Final test accuracy mean and sd over the seeds that did not diverge, and their count.

    The sd is the sample sd (ddof = 1; 0 for one seed); accuracies are None when every seed
    diverged. ``time_mean`` is the mean training time per run, diverged runs included.
    """
    ok = [r for r in runs if not r.get("diverged")]
    final = np.array([r["test_accuracy"][-1] for r in ok])
    return {"label": condition.label, "rule": condition.rule, "subspace": condition.subspace,
            "rank": condition.rank, "n_seeds": len(runs), "n_diverged": len(runs) - len(ok),
            "accuracy_mean": float(final.mean()) if ok else None,
            "accuracy_sd": (float(final.std(ddof=1)) if len(ok) > 1 else 0.0) if ok else None,
            "time_mean": float(np.mean([r["time"][-1] for r in runs]))}


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The demo table as Markdown (reads as plain text in a terminal too)."""
    head = ("rule", "subspace", "r", "test accuracy (%)", "diverged", "train time / run (s)")
    body = [(r["rule"], r["subspace"] or "-", str(r["rank"]) if r["rank"] else "-",
             "-" if r["accuracy_mean"] is None
             else f"{100 * r['accuracy_mean']:.1f} +- {100 * r['accuracy_sd']:.1f}",
             f"{r['n_diverged']}/{r['n_seeds']}", f"{r['time_mean']:.2f}")
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "| " + " | ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt.format(*head), rule] + [fmt.format(*b) for b in body])


#: Curve colour per rule (ldfa: per subspace); ldfa ranks differ by line style (r = 1 dashed, thin).
CURVE_COLOURS = {"bp": "black", "fa": "C1", "dfa": "C2", "kp": "C3", "fixed": "C4", "local": "C0",
                 "normative": "C5", "oja": "C8"}


def plot_curves(results: Mapping[str, Any], out: str | os.PathLike) -> list[Path]:
    """``test_accuracy.png`` and ``train_loss.png``, one curve per condition over its seeds.

    Accuracy: mean (line) +- sd (band). Loss, on a log axis: geometric mean and the band times /
    divided by the geometric sd, the log-axis counterpart of mean +- sd (which would dip below 0).
    Diverged runs are left out and counted in the legend.
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    out = Path(out)
    written = []
    n_seeds = len(results["conditions"][0]["runs"])
    for key, ylabel, log in (("test_accuracy", "test accuracy (mean +- sd)", False),
                             ("train_loss", "train loss 1/2 ||yhat - y||^2 (geometric mean x/ sd)",
                              True)):
        fig = Figure(figsize=(7.5, 4.5), layout="constrained")
        ax = fig.add_subplot()
        for cond in results["conditions"]:
            ok = [run[key] for run in cond["runs"] if not run.get("diverged")]
            if not ok:
                continue  # nothing finite to draw; the table says it diverged
            curves = np.array(ok, dtype=np.float64)
            if log:
                logs = np.log(curves)
                centre = np.exp(logs.mean(axis=0))
                lo, hi = centre / np.exp(logs.std(axis=0)), centre * np.exp(logs.std(axis=0))
            else:
                centre, sd = curves.mean(axis=0), curves.std(axis=0)
                lo, hi = centre - sd, centre + sd
            epochs = np.arange(curves.shape[1])
            colour = CURVE_COLOURS.get(cond["subspace"] or cond["rule"], "gray")
            thin = cond["rank"] == 1
            n_bad = len(cond["runs"]) - len(ok)
            label = cond["label"] + (f" ({n_bad}/{len(cond['runs'])} diverged)" if n_bad else "")
            ax.plot(epochs, centre, "--" if thin else "-", lw=1.3 if thin else 1.9, color=colour,
                    label=label)
            ax.fill_between(epochs, lo, hi, color=colour, alpha=0.15, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0.0, 1.0)
        ax.set_title(f"digits, MLP {'-'.join(map(str, results['sizes']))}, "
                     f"{n_seeds} seed{'s' if n_seeds > 1 else ''}")
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        path = out / f"{key}.png"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written


def run_epochs(run: Mapping[str, Any]) -> int:
    """Epochs a run completed (its curves hold one more entry, epoch 0)."""
    return len(run["test_accuracy"]) - 1


def default_jobs(cfg: DemoConfig) -> int:
    """Worker processes for the demo: one per core (at most one per run) on the CPU, else one."""
    if not cfg.on_cpu:
        return 1
    return max(1, min(os.cpu_count() or 1, len(cfg.conditions) * len(cfg.seeds)))


#: Epochs between the checkpoints of a demo run (a killed demo resumes from the last one).
CHECKPOINT_EVERY = 10


def demo_study(cfg: DemoConfig) -> dict:
    """The demo as a study: the mapping a study file holds (``studies/demo.toml`` is the default's).

    One grid table per condition, each key only where the condition differs from the shared
    settings, so that run ids read ``rule=bp,seed=0``, ``rule=kp,decay=0.001,seed=0``,
    ``rule=ldfa,subspace=local,rank=10,seed=1``; runs come in the order of the conditions, seeds
    innermost.
    """
    from collections import Counter

    lr = Counter(c.lr for c in cfg.conditions).most_common(1)[0][0]
    grid = []
    for c in cfg.conditions:
        point = {"feedback.rule": [c.rule]}
        if c.rule == "ldfa":  # as Condition.circuit: rank and subspace are ldfa settings
            point.update({"feedback.subspace": [c.subspace], "feedback.rank": [c.rank]})
        if c.lr != lr:
            point["optimizer.lr"] = [c.lr]
        if c.feedback_lr is not None:
            point["optimizer.feedback_lr"] = [c.feedback_lr]
        if c.decay:
            point["optimizer.decay"] = [c.decay]
        grid.append(point)
    return {"name": "demo", "description": "bioplastic demo: every learning rule on the bundled digits",
            "seeds": list(cfg.seeds),
            "task": {"name": "digits", "test_fraction": cfg.test_fraction, "split_seed": cfg.split_seed},
            "circuit": {"hidden": list(cfg.sizes[1:-1]), "activation": cfg.activation},
            "backend": {"name": cfg.backend, **cfg.build_options},
            "optimizer": {"lr": lr},
            "training": {"epochs": cfg.epochs, "batch_size": cfg.batch_size,
                         "checkpoint_every": CHECKPOINT_EVERY},
            "grid": grid}


def _curves(out: Path, run_id: str, seed: int, result: Mapping[str, Any]) -> dict:
    """A finished or diverged study run as the demo reports it (curves, divergence)."""
    from bioplastic.experiment.run import read_metrics, run_folder

    lines = read_metrics(run_folder(out, run_id))
    curves = {k: [line[k] for line in lines] for k in ("train_loss", "test_loss", "test_accuracy", "time")}
    diverged = ({"epoch": result["epoch"], "step": result.get("step")} if result["state"] == "diverged"
                else None)
    # training time (evaluation excluded), as the table's time column
    return {"seed": seed, "run_id": run_id, "wall_time": curves["time"][-1], "diverged": diverged, **curves}


def run_demo(cfg: DemoConfig, out: str | os.PathLike, jobs: int | None = None,
             progress: bool = True, stream=None, resume: bool = False) -> dict:
    """Train every condition of ``cfg`` for every seed on digits and write the results to ``out``.

    The demo is a study (:func:`demo_study`) run by the study mechanism
    (:func:`bioplastic.experiment.launch.run_study`): every run has its folder in ``out/runs/``
    (config, metrics per epoch, status, checkpoint, log), next to the demo's own files.

    Parameters
    ----------
    cfg : DemoConfig
    out : path
        Receives ``config.json``, ``results.json`` (rewritten after each finished run),
        ``table.md``, ``test_accuracy.png``, ``train_loss.png``, and the study's ``study.json``,
        ``study.toml`` and ``runs/``.
    jobs : int, optional
        Worker processes (default :func:`default_jobs`; 1: in this process); results do not depend
        on it.
    progress : bool
        Show progress on ``stream`` (default stderr).
    resume : bool
        Continue the demo already in ``out`` (finished runs are kept, interrupted ones continue from
        their checkpoints); otherwise every run starts over.

    Returns
    -------
    dict
        What ``results.json`` holds: per condition its runs (curves per seed) and summary, the
        table rows, and the total wall time.

    Raises
    ------
    ValueError
        A config that cannot run (before anything is written).
    RuntimeError
        A run failed; the others ran, and results.json holds them and says which failed.
    """
    from bioplastic.data import load_digits
    from bioplastic.experiment.launch import run_study
    from bioplastic.experiment.study import study_from_mapping

    t_start = time.perf_counter()
    out = Path(out)
    dataset = load_digits(cfg.test_fraction, cfg.split_seed)
    if dataset.n_in != cfg.sizes[0] or dataset.n_classes != cfg.sizes[-1]:
        raise ValueError(f"sizes {cfg.sizes} do not fit digits: the first must be {dataset.n_in} "
                         f"(inputs) and the last {dataset.n_classes} (classes)")
    jobs = default_jobs(cfg) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int; got {jobs!r}")
    # checks every condition and the backend before anything is written (StudyError: a ValueError)
    loaded = study_from_mapping(demo_study(cfg), name="demo")
    tasks = [(c, s) for c in cfg.conditions for s in cfg.seeds]
    index = {run["run_id"]: i for i, run in enumerate(loaded.runs)}
    save_run(out, cfg, {"status": "running"}, seed=list(cfg.seeds))

    runs: list[dict | None] = [None] * len(tasks)
    failed: list[str] = []
    results: dict[str, Any] = {"status": "running", "sizes": list(cfg.sizes),
                               "backend": cfg.backend, "build_options": cfg.build_options,
                               "jobs": jobs}

    def assemble() -> dict:
        conds = []
        for i, c in enumerate(cfg.conditions):
            done = [r for r in runs[i * len(cfg.seeds):(i + 1) * len(cfg.seeds)] if r is not None]
            entry = {"label": c.label, "rule": c.rule, "subspace": c.subspace, "rank": c.rank,
                     "condition": c, "runs": done}
            if done:
                entry["summary"] = summarize(c, done)
            conds.append(entry)
        return dict(results, conditions=conds)

    def finished(run: dict, result: dict) -> None:
        i = index[run["run_id"]]
        if result["state"] == "failed":
            failed.append(f"{run['run_id']}: {result.get('error')}")
        else:
            runs[i] = _curves(out, run["run_id"], tasks[i][1], result)
        write_json(out / "results.json", assemble())

    data_line = (f"digits: {dataset.x_train.shape[0]} train / {dataset.x_test.shape[0]} test; MLP "
                 f"{'-'.join(map(str, cfg.sizes))} {cfg.activation}; {len(cfg.conditions)} conditions x "
                 f"{len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''} x {cfg.epochs} epoch"
                 f"{'s' if cfg.epochs > 1 else ''} "
                 f"on {cfg.backend}, {jobs} "
                 f"process{'es' if jobs > 1 else ''}")
    try:
        run_study(loaded, out, resume=resume, overwrite=not resume,
                  executor="inprocess" if jobs == 1 else "process", jobs=jobs, progress=progress,
                  stream=stream, on_result=finished, header=data_line)
        if failed:
            more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
            raise RuntimeError(f"{len(failed)} of {len(tasks)} runs failed (their logs: "
                               f"{out / 'runs'}/<run>/log.txt): " + "; ".join(failed[:3]) + more)
    except BaseException as err:
        # keep every finished run, and say why the rest is missing
        write_json(out / "results.json", dict(assemble(), status="failed",
                                              error=f"{type(err).__name__}: {err}"))
        raise

    final = assemble()
    rows = [entry["summary"] for entry in final["conditions"]]
    final.update(status="complete", table=rows, total_time=time.perf_counter() - t_start)
    plot_curves(final, out)
    (out / "table.md").write_text(format_table(rows) + "\n")
    final["total_time"] = time.perf_counter() - t_start
    write_json(out / "results.json", final)
    return final


__all__ = ["CHECKPOINT_EVERY", "Condition", "DEMO_CONDITIONS", "DemoConfig", "DemoOptions", "QUICK",
           "default_jobs", "demo_study", "format_table", "plot_curves", "run_condition", "run_demo",
           "run_epochs", "summarize"]
