"""A low-dimensional error is not a narrow network: ldfa at r = 10 across widths against bp.

arXiv 2502.20580 proposes that the error's dimension, not the network's, has to match the task: a
network trained through an r-neuron error bottleneck keeps high-dimensional representations. If a
wide network keeps the benefit of its width that way, ldfa at r = 10 should track bp at each width, and clearly beat a network that is
itself 10 units wide trained by bp.

Scale and data (the defaults): the bundled 8 x 8 digits (1347 train, 450 test images, d = 10
classes); ReLU MLPs 64-w-w-10 with w in {32, 64, 128, 256} trained by bp and by ldfa (local
subspace rule) at r = 10 on every pathway (clipped to min(n_{l-1}, n_l)), plus bp at width 10;
"readout only" (no error reaches a hidden layer: ldfa with Q = 0) at every width is the floor that
random hidden features give. SGD lr 0.03 (feedback 0.01), batch 32, 30 epochs, three seeds (initial
weights and batch order); metric: final test accuracy (and the relative squared error). 2 minutes
on 2 shared, busy cores.

What the default run measured (test accuracy, mean +- sd over 3 seeds, widths 32 / 64 / 128 / 256):
bp 0.920 / 0.944 / 0.957 / 0.964; ldfa local r = 10 0.890 / 0.904 / 0.939 / 0.953; readout only
0.566 / 0.787 / 0.873 / 0.926; bp at width 10 0.622 +- 0.092. The 10-dimensional error trains
every width well above the 10-wide network and gains with width as bp does, 1-4 points below it;
at width 256 random features alone come within 4 points of bp. ``--task=teacher`` runs the same on a linear teacher of rank 10 with 32 outputs
and 384 inputs (relative error).

Deviations from the authors' protocol: the paper's experiments use CIFAR-scale image networks; here
it is the 8 x 8 digits and small MLPs, where random ReLU features of width 256 already carry most of
the accuracy (the readout-only line shows how much), so the wide end mostly tests that the
bottleneck does not hurt. Plain SGD without decay for every rule (the authors' code trains the
feedback with Adam and L2 decay); final-epoch, not best-epoch, accuracy. The comparison at width
10 is ours.

Run: ``bioplastic analysis width_vs_rank [--quick] [--key=value ...]``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from bioplastic import experiment
from bioplastic.experiment.cmdline import parse_command_line

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a file: the helpers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _claims  # noqa: E402

#: The study's description: this file's first line.
DESCRIPTION = __doc__.split("\n", 1)[0]

SUBSPACES = ("fixed", "local", "normative", "oja", "q_only")


@dataclass(frozen=True)
class Config:
    task: Literal["digits", "teacher"] = "digits"  # bundled digits (d = 10), or a linear teacher
    widths: tuple[PositiveInt, ...] = (32, 64, 128, 256)  # hidden widths, both layers
    rank: PositiveInt = 10         # the error's dimension: d of the digits
    subspaces: tuple[Literal["fixed", "local", "normative", "oja", "q_only"], ...] = ("local",)
                                   # ldfa rules: local is the synapse-local one
    narrow_width: PositiveInt = 10  # bp at this width: a network as narrow as the error
    readout: bool = True           # the readout-only floor at every width
    depth: PositiveInt = 2         # hidden layers
    activation: str = "relu"       # digits; the teacher runs linear (the linear theory's setting)
    lr: PositiveFloat = 0.03       # the demo's rate (teacher: 0.01, as rank_vs_task_dim)
    feedback_lr: PositiveFloat = 0.01  # accuracy_vs_rank's (teacher: 0.003)
    epochs: PositiveInt = 30       # digits; the teacher trains 10
    batch_size: PositiveInt = 32
    seeds: tuple[NonNegativeInt, ...] = (0, 1, 2)  # initial weights and batch order
    backend: Literal["auto", "reference", "torch"] = "auto"  # auto: torch float32 from width 256
    jobs: NonNegativeInt = 0       # worker processes; 0: one per core
    teacher_in: PositiveInt = 384  # teacher: inputs > every width (rank_vs_task_dim's why)
    teacher_out: PositiveInt = 32  # teacher outputs m
    task_dim: PositiveInt = 10     # teacher rank d = rank, as the digits' 10 classes
    teacher_samples: PositiveInt = 3072
    teacher_noise: float = 0.02    # error floor, as rank_vs_task_dim
    task_seed: int = 1000
    out: str = "results/width_vs_rank"
    resume: bool = False           # continue an interrupted run from the study in OUT/study/


#: ``--quick``: two widths, one seed, three epochs, in this process.
QUICK = {"widths": (32, 64), "seeds": (0,), "epochs": 3, "jobs": 1}


def check(cfg: Config) -> None:
    if not cfg.widths or not cfg.seeds or not cfg.subspaces:
        raise ValueError("widths, seeds and subspaces must each name at least one value")
    bad = [s for s in cfg.subspaces if s not in SUBSPACES]
    if bad:
        raise ValueError(f"unknown subspaces {bad}; valid options: {', '.join(SUBSPACES)}")
    if cfg.task == "teacher" and cfg.teacher_samples < 2 * cfg.teacher_in:
        raise ValueError(f"teacher_samples must be >= 2 x teacher_in = {2 * cfg.teacher_in}")


def setup_of(cfg: Config) -> dict:
    """The task and training settings every run shares (teacher: linear, rank_vs_task_dim's rates)."""
    common = {"task": cfg.task, "depth": cfg.depth, "batch_size": cfg.batch_size,
              "backend": cfg.backend}
    if cfg.task == "digits":
        return {**common, "classes": 10, "activation": cfg.activation, "lr": cfg.lr,
                "feedback_lr": cfg.feedback_lr, "epochs": cfg.epochs}
    return {**common, "teacher_in": cfg.teacher_in, "teacher_out": cfg.teacher_out,
            "task_dim": cfg.task_dim, "teacher_samples": cfg.teacher_samples,
            "teacher_noise": cfg.teacher_noise, "task_seed": cfg.task_seed,
            "activation": "linear", "lr": 0.01, "feedback_lr": 0.003, "epochs": 10}


def conditions(cfg: Config) -> list[dict]:
    """bp, readout only and ldfa at every width, then bp at the narrow width."""
    out = []
    for w in cfg.widths:
        out.append({"label": "bp", "rule": "bp", "subspace": None, "rank": None, "width": w})
        if cfg.readout:
            out.append({"label": "readout", "rule": "readout", "subspace": None, "rank": None,
                        "width": w})
        out += [{"label": f"ldfa-{s}", "rule": "ldfa", "subspace": s, "rank": cfg.rank, "width": w}
                for s in cfg.subspaces]
    out.append({"label": "bp-narrow", "rule": "bp", "subspace": None, "rank": None,
                "width": cfg.narrow_width})
    return out


def study(cfg: Config) -> dict:
    """The sweep as a study mapping (``studies/width_vs_rank.toml`` is the default's): every run this
    analysis trains, as ``bioplastic run`` trains it."""
    return _claims.study_mapping(setup_of(cfg), conditions(cfg), cfg.seeds, "width_vs_rank", DESCRIPTION)


def run(cfg: Config, progress: bool = True) -> dict:
    check(cfg)
    t0 = time.perf_counter()
    setup = setup_of(cfg)
    conds = conditions(cfg)
    runs, jobs = _claims.run_conditions(setup, conds, cfg.seeds, cfg.jobs, "width_vs_rank", progress,
                                          out=f"{cfg.out}/study", resume=cfg.resume)
    metric = "test_accuracy" if cfg.task == "digits" else "relative_error"
    return {"task": cfg.task, "metric": metric, "setup": setup, "widths": list(cfg.widths),
            "rank": cfg.rank, "narrow_width": cfg.narrow_width,
            "conditions": _claims.summaries(conds, runs), "jobs": jobs, "runs": runs,
            "total_time": time.perf_counter() - t0}


def series(results: dict, label: str, metric: str) -> tuple[list, list, list]:
    """(widths, means, sds) of one condition label, in width order."""
    entries = sorted((c for c in results["conditions"] if c["label"] == label),
                     key=lambda c: c["width"])
    s = [c[f"{metric}_summary"] for c in entries]
    return ([c["width"] for c in entries], [np.nan if x["mean"] is None else x["mean"] for x in s],
            [np.nan if x["sd"] is None else x["sd"] for x in s])


def plot(results: dict, cfg: Config) -> list[str]:
    """Final metric against width: bp, ldfa (r fixed), readout only; bp at the narrow width as a
    horizontal band."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    panels = (["test_accuracy", "relative_error"] if results["task"] == "digits"
              else ["relative_error"])
    labels = {"test_accuracy": "final test accuracy",
              "relative_error": r"relative test error $\|\hat y - y\|^2 / \|y\|^2$"}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 1.8, 4.3), squeeze=False)
    names = ["bp"] + (["readout"] if cfg.readout else []) + [f"ldfa-{s}" for s in cfg.subspaces]
    for ax, metric in zip(axes[0], panels):
        for name in names:
            w, m, sd = series(results, name, metric)
            style = _claims.RULE_STYLE[name.split("-", 1)[-1]]
            label = (f"ldfa {name.split('-', 1)[1]}, r = {results['rank']}" if name.startswith("ldfa")
                     else "bp" if name == "bp" else "readout only (r = 0)")
            ax.errorbar(w, m, yerr=sd, lw=1.7, ms=6, capsize=3, label=label, **style)
        _, m, sd = series(results, "bp-narrow", metric)
        ax.axhline(m[0], color="#e377c2", lw=1.3, ls="--",
                   label=f"bp at width {results['narrow_width']}")
        ax.axhspan(m[0] - sd[0], m[0] + sd[0], color="#e377c2", alpha=0.12, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(results["widths"])
        ax.set_xticklabels([str(w) for w in results["widths"]])
        ax.xaxis.set_minor_locator(NullLocator())
        if metric == "relative_error":
            ax.set_yscale("log")
        ax.set_xlabel("hidden width (both layers)")
        ax.set_ylabel(labels[metric])
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    n = len(cfg.seeds)
    task = "digits (d = 10)" if results["task"] == "digits" else \
        f"linear teacher, d = {cfg.task_dim}, {cfg.teacher_out} outputs"
    fig.suptitle(f"{task}: error of dimension r = {results['rank']} in wide networks; "
                 f"mean +- sd over {n} seed{'s' * (n > 1)}", fontsize=10)
    return _claims.save_figure(fig, f"{cfg.out}/width_vs_rank")


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis width_vs_rank", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=list(cfg.seeds))
    print(f"figure: {', '.join(plot(results, cfg))}")
    metric = results["metric"]
    print(f"{metric} (mean +- sd over {len(cfg.seeds)} seeds), {results['total_time']:.0f} s:")
    for c in results["conditions"]:
        s = c[f"{metric}_summary"]
        value = "diverged" if s["mean"] is None else f"{s['mean']:.4f} +- {s['sd']:.4f}"
        print(f"  {c['label']:<16} width {c['width']:<4} {value}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
