"""Accuracy vs feedback rank: an error of the task's dimensionality suffices, if its subspace adapts.

LDFA sends each layer's error back through r bottleneck neurons, B_l = Q_l P_l of rank r (Hanut &
Kadmon, arXiv 2502.20580). The paper's claim: r of the order of the task dimension d reaches
backprop-level performance, and fixed (task-agnostic) random low-rank feedback does worse. In the
linear theory of :mod:`bioplastic.theory` (our derivation), fixed feedback with r < d converges to
the spurious fixed point W2 W1 = S S^T P^T (P S S^T P^T)^-1 P S, and no longer once r >= d = rank(S).

For every rank r and subspace rule (fixed, local, normative, oja), the same MLP is trained on

* ``digits``: the bundled 8 x 8 digits (d = 10 classes); metric: test accuracy after the last
  epoch (not the best epoch, as the authors' code reports);
* ``teacher``: a linear teacher y = T x of rank d (``task_dim``) with more outputs than d
  (:func:`bioplastic.data.teacher_student`); metric: final relative test error
  ||yhat - y||^2 / ||y||^2,

over several seeds (mean +- sd). The references are bp, fa and dfa, and ``readout``: no feedback at
all (r = 0: the hidden layers keep their initial weights, only the readout learns), the floor that
any feedback has to lift. The rank r is applied to every feedback pathway, clipped to
min(n_{l-1}, n_l) (so the pathway from the d-dimensional output never exceeds d).

Hidden layers are 32 wide by default because on digits random hidden features and a trained readout
already reach 82-86 % at width 128 (measured), which leaves little for the feedback to show; at
width 32 the readout alone reaches ~57 % and bp ~92 %.

Run: ``bioplastic analysis accuracy_vs_rank [--task=teacher --epochs=30 --seeds=0,1,2 ...]``
(``--quick`` for a small check, ``--help`` for every setting).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveInt

from bioplastic import experiment
from bioplastic.experiment.cmdline import parse_command_line

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a file: the helpers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _claims  # noqa: E402
from _claims import summarize  # noqa: E402

#: The study's description: this file's first line.
DESCRIPTION = __doc__.split("\n", 1)[0]

#: Tasks this analysis knows, with their metric.
TASKS = {"digits": "test_accuracy", "teacher": "relative_error"}
#: Reference conditions: rule name -> plot label.
REFERENCES = {"bp": "bp", "fa": "fa", "dfa": "dfa", "readout": "readout only (r = 0)"}
SUBSPACES = ("fixed", "local", "normative", "oja")


@dataclass(frozen=True)
class Config:
    task: Literal["digits", "teacher"] = "digits"  # bundled digits, or linear teacher (task_dim)
    width: PositiveInt = 32        # hidden units: narrow enough that the hidden layers must learn
    depth: PositiveInt = 2         # hidden layers (one feedback pathway into each)
    ranks: tuple[PositiveInt, ...] = (1, 2, 3, 5, 8, 10, 16, 32)  # r of every pathway, clipped
                                   # to min(n_{l-1}, n_l)
    subspaces: tuple[Literal["fixed", "local", "normative", "oja"], ...] = SUBSPACES  # ldfa rules
    references: tuple[Literal["bp", "fa", "dfa", "readout"], ...] = ("bp", "fa", "dfa", "readout")
                                   # horizontal lines
    activation: str = "relu"       # digits: with tanh every rule and rank landed within 2 % (measured)
    teacher_activation: str = "linear"  # teacher: the linear theory's setting
    lr: float = 0.03               # the demo's rate: the largest stable for every rule on digits
    feedback_lr: float = 0.01      # Oja diverged at 0.03 on teacher (eta * lambda_max(C) ~ 1 early)
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 32
    seeds: tuple[NonNegativeInt, ...] = (0, 1, 2)  # each seed: initial weights and batch order
    backend: str = "reference"     # numpy: 0.3-0.4 ms/step vs torch 0.5-0.9 here (measured)
    jobs: NonNegativeInt = 0       # worker processes; 0: one per core
    teacher_in: PositiveInt = 50   # teacher input dimension n (> width, so random features miss T)
    teacher_out: PositiveInt = 20  # teacher outputs m (> task_dim: r < m can still suffice)
    task_dim: PositiveInt = 5      # teacher rank d, the task dimension
    teacher_samples: PositiveInt = 2000  # split 3:1 into train and test
    task_seed: int = 1000          # not 0: teacher_student(seed=0) would draw W1's first numbers
    out: str = "results/accuracy_vs_rank"
    resume: bool = False           # continue an interrupted run from the study in OUT/study/


#: ``--quick``: two ranks, one seed, two epochs, in this process.
QUICK = {"ranks": (1, 10), "seeds": (0,), "epochs": 2, "jobs": 1}


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------

def check(cfg: Config) -> None:
    """Raise a clear error on a bad config, before any training."""
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; valid options: {', '.join(TASKS)}")
    bad = [s for s in cfg.subspaces if s not in SUBSPACES]
    if bad:
        raise ValueError(f"unknown subspaces {bad}; valid options: {', '.join(SUBSPACES)}")
    bad = [s for s in cfg.references if s not in REFERENCES]
    if bad:
        raise ValueError(f"unknown references {bad}; valid options: {', '.join(REFERENCES)}")
    if not cfg.ranks or not all(isinstance(r, int) and r >= 1 for r in cfg.ranks):
        raise ValueError(f"ranks must be positive ints; got {cfg.ranks!r}")
    if not cfg.seeds:
        raise ValueError("seeds must name at least one seed")
    if cfg.depth < 1 or cfg.width < 1:
        raise ValueError(f"depth and width must be >= 1; got {cfg.depth}, {cfg.width}")
    if cfg.jobs < 0:
        raise ValueError(f"jobs must be >= 0 (0: one per core); got {cfg.jobs}")


# --------------------------------------------------------------------------------------------------
# The task and the study (every run trains through bioplastic.experiment's study mechanism)
# --------------------------------------------------------------------------------------------------

def setup_of(cfg: Config) -> dict:
    """The task and training settings every run shares (``_claims.task_section`` says how the
    teacher's targets are scaled: outputs of unit variance, like the digits' one-hot targets)."""
    common = {"task": cfg.task, "depth": cfg.depth, "lr": cfg.lr, "feedback_lr": cfg.feedback_lr,
              "epochs": cfg.epochs, "batch_size": cfg.batch_size, "backend": cfg.backend}
    if cfg.task == "digits":
        return {**common, "classes": 10, "activation": cfg.activation}
    return {**common, "teacher_in": cfg.teacher_in, "teacher_out": cfg.teacher_out,
            "task_dim": cfg.task_dim, "teacher_samples": cfg.teacher_samples, "teacher_noise": 0.0,
            "task_seed": cfg.task_seed, "activation": cfg.teacher_activation}


def task_data(cfg: Config):
    """(Dataset, sizes, activation, d, target scale) of the task, as the study's runs load it."""
    from bioplastic.experiment.run import load_task
    from bioplastic.experiment.study import DigitsTask, TeacherStudentTask

    section = _claims.task_section(setup_of(cfg))
    model = DigitsTask if section["name"] == "digits" else TeacherStudentTask
    ds = load_task(model(**section))
    sizes = _claims.sizes_of(setup_of(cfg), cfg.width)
    d = ds.n_classes if cfg.task == "digits" else cfg.task_dim
    act = cfg.activation if cfg.task == "digits" else cfg.teacher_activation
    return ds, sizes, act, d, _claims.zero_loss(ds)


def as_conditions(cfg: Config, conds: list[tuple]) -> list[dict]:
    """The conditions of :func:`conditions` in the form ``_claims`` trains."""
    return [{"label": label, "rule": rule, "subspace": sub,
             "rank": None if ranks is None else int(label.rsplit("-r", 1)[1]), "width": cfg.width}
            for label, rule, sub, ranks in conds]


def study(cfg: Config) -> dict:
    """The sweep as a study mapping (``studies/accuracy_vs_rank.toml`` and
    ``accuracy_vs_rank_teacher.toml`` are the defaults'): every run this analysis trains."""
    sizes = _claims.sizes_of(setup_of(cfg), cfg.width)
    name = "accuracy_vs_rank" + ("" if cfg.task == "digits" else f"_{cfg.task}")
    return _claims.study_mapping(setup_of(cfg), as_conditions(cfg, conditions(cfg, sizes)), cfg.seeds,
                                 name, DESCRIPTION + f" ({cfg.task})")


# --------------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------------

def conditions(cfg: Config, sizes, notes: list | None = None) -> list[tuple]:
    """(label, rule, subspace, pathway ranks) of every condition; effective duplicates dropped
    (and said so in ``notes``)."""
    out = [(ref, ref, None, None) for ref in cfg.references]
    seen = set()
    for r in sorted(set(cfg.ranks)):
        ranks = _claims.pathway_ranks(r, sizes)
        if tuple(ranks) in seen:
            if notes is not None:
                notes.append(f"  rank {r}: same pathway ranks {ranks} as a smaller r; skipped")
            continue
        seen.add(tuple(ranks))
        out += [(f"ldfa-{s}-r{r}", "ldfa", s, ranks) for s in cfg.subspaces]
    return out


def run(cfg: Config, progress: bool = True) -> dict:
    """Train every condition for every seed; no plotting. ``progress``: a bar on stderr."""
    check(cfg)
    ds, sizes, act, d, scale = task_data(cfg)
    notes: list[str] = []
    conds = conditions(cfg, sizes, notes)
    metric = TASKS[cfg.task]
    t0 = time.perf_counter()
    if progress:
        for note in notes:
            print(note, file=sys.stderr)
    runs, jobs = _claims.run_conditions(setup_of(cfg), as_conditions(cfg, conds), cfg.seeds, cfg.jobs,
                                        "accuracy_vs_rank", progress, out=f"{cfg.out}/study",
                                        resume=cfg.resume)

    def stats(label):
        mine = [r for r in runs if r["label"] == label]
        return {key: summarize([r[key] for r in mine])
                for key in ("test_accuracy", "test_loss", "relative_error")}

    references = {ref: stats(ref) for ref in cfg.references}
    ldfa = {s: [dict(rank=int(label.rsplit("-r", 1)[1]), ranks=ranks, **stats(label))
                for label, rule, sub, ranks in conds if sub == s]
            for s in cfg.subspaces}
    return {"task": cfg.task, "metric": metric, "sizes": sizes, "activation": act,
            "task_dim": d, "chance": 1.0 / ds.n_classes if cfg.task == "digits" else None,
            "target_loss_scale": scale, "jobs": jobs, "references": references, "ldfa": ldfa,
            "runs": runs, "total_time": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------------

SUBSPACE_STYLE = {"fixed": dict(color="#7f7f7f", marker="s", ls=":"),
                  "local": dict(color="#1f77b4", marker="o", ls="-"),
                  "normative": dict(color="#2ca02c", marker="^", ls="--"),
                  "oja": dict(color="#d62728", marker="D", ls="-.")}
REFERENCE_STYLE = {"bp": dict(color="black", ls="-"), "fa": dict(color="#9467bd", ls="--"),
                   "dfa": dict(color="#8c564b", ls="-."), "readout": dict(color="#bcbd22", ls=":")}


def plot(results: dict, cfg: Config):
    """Final metric vs rank r (log axis), one line per subspace rule, references horizontal."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from bioplastic.plotting import save_figure

    metric = results["metric"]
    panels = [(metric, "test accuracy" if metric == "test_accuracy" else
               r"relative test error $\|\hat y - y\|^2 / \|y\|^2$")]
    if metric == "test_accuracy":
        panels.append(("test_loss", r"test loss $\frac{1}{2}\|\hat y - y\|^2$"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels) + 1.6, 4.6), squeeze=False)
    ranks_all = sorted({e["rank"] for entries in results["ldfa"].values() for e in entries})
    for ax, (key, ylabel) in zip(axes[0], panels):
        for ref, entry in results["references"].items():
            m, sd = entry[key]["mean"], entry[key]["sd"]
            if m is None:
                continue
            style = REFERENCE_STYLE[ref]
            ax.axhline(m, lw=1.4, label=REFERENCES[ref], **style)
            ax.axhspan(m - sd, m + sd, color=style["color"], alpha=0.10, lw=0)
        for sub, entries in results["ldfa"].items():
            r = np.array([e["rank"] for e in entries])
            m = np.array([np.nan if e[key]["mean"] is None else e[key]["mean"] for e in entries])
            sd = np.array([np.nan if e[key]["sd"] is None else e[key]["sd"] for e in entries])
            style = SUBSPACE_STYLE[sub]
            ax.errorbar(r, m, yerr=sd, lw=1.8, ms=5, capsize=3, label=f"ldfa {sub}", **style)
            for ri, e in zip(r, entries):
                if e[key]["diverged"]:
                    ax.annotate(f"{e[key]['diverged']} div.", (ri, m[list(r).index(ri)]),
                                fontsize=6, color=style["color"], xytext=(3, -9),
                                textcoords="offset points")
        d = results["task_dim"]
        ax.axvline(d, color="0.5", lw=0.8, ls=(0, (2, 3)))
        ax.text(d, 1.0, f" r = d = {d}", transform=ax.get_xaxis_transform(), fontsize=8,
                color="0.35", va="bottom")
        if metric == "test_accuracy" and key == metric and results["chance"] is not None:
            ax.axhline(results["chance"], color="0.7", lw=0.8)
            ax.text(ranks_all[0], results["chance"], " chance", fontsize=7, color="0.5", va="bottom")
        if key == "relative_error":  # spans decades on the teacher task
            ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xticks(ranks_all)
        ax.set_xticklabels([str(v) for v in ranks_all])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(r"feedback rank $r$ (every pathway, clipped to $\min(n_{l-1}, n_l)$)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    n_seeds = len(cfg.seeds)
    task = ("digits" if results["task"] == "digits" else
            f"linear teacher, task dimension d = {results['task_dim']}, "
            f"{results['sizes'][-1]} outputs")
    fig.suptitle(f"{task}\nMLP {'-'.join(map(str, results['sizes']))} {results['activation']}, "
                 f"{cfg.epochs} epochs; mean +- sd over {n_seeds} seed{'s' * (n_seeds > 1)}",
                 fontsize=10)
    return save_figure(fig, f"{cfg.out}/accuracy_vs_rank")[0]


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis accuracy_vs_rank", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=list(cfg.seeds))
    print(f"figure: {plot(results, cfg)}")
    metric = results["metric"]

    def fmt(s):
        return "diverged" if s["mean"] is None else f"{s['mean']:.3g} +- {s['sd']:.2g}"

    print(f"{metric} (mean +- sd over {len(cfg.seeds)} seeds), {results['total_time']:.0f} s:")
    for ref, entry in results["references"].items():
        print(f"  {ref:<10} {fmt(entry[metric])}")
    for sub, entries in results["ldfa"].items():
        print(f"  ldfa {sub:<9} " + "  ".join(f"r={e['rank']}: {fmt(e[metric])}" for e in entries))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
