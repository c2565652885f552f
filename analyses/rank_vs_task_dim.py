"""The rank the feedback needs follows the task dimension d, not the width: r* against d.

arXiv 2502.20580's central claim: an error fed back through r neurons trains a network as well as
backprop once r is of the order of the task dimension d, however wide the network; fixed
(task-agnostic) random low-rank feedback needs more. Here, for every ldfa subspace rule (fixed,
local, normative, oja, q_only) and every task, r* is the smallest r of a grid (1, 2, 4, 8, 16, 32)
whose final relative test error ||yhat - y||^2 / ||y||^2 lies within ``factor`` (1.5) of bp's at the
same width and seed; r* is plotted against d at two widths.

Tasks and scale (the defaults):

* ``teacher``: linear teacher-student regression (:func:`bioplastic.data.teacher_student`), 192
  whitened Gaussian inputs, m = 32 outputs, teacher rank d in {2, 4, 8, 16}, output noise of 2 % of
  the target variance, 1536 samples (1152 train, 384 test); a linear MLP 192-w-w-32 (two hidden
  layers, w in {32, 128}), SGD lr 0.01 (feedback 0.003), batch 32, 10 epochs.
* ``digits``: the bundled 8 x 8 digits restricted to the first k classes, k = d in {2, 4, 6, 8, 10},
  targets one-hot over all 10 outputs (the output dimension stays 10 while the targets span k); a
  ReLU MLP 64-w-w-10, w in {32, 128}, SGD lr 0.03 (feedback 0.01), batch 32, 30 epochs.

Three seeds (initial weights and batch order); each seed's r* is measured against bp of the same
seed. r* is searched upwards through the grid and each search stops at its first success
(``search=ascending``; ``search=full`` trains every rank, for the error-against-r curves). The
default trained 1361 networks in 6.7 minutes on 2 shared, busy cores (``--tasks=teacher`` alone:
about a third of that).

What the default run measured (median r* over 3 seeds, widths 32 / 128): on the teacher, local and
normative 8/8, 16/16, 32/32, 32/>32 at d = 2, 4, 8, 16; oja 2/2, 16/8, 32/32, 32/32; fixed 32/16,
32/32, >32/32, >32/>32; q_only between the two. r* grows with d at both widths and the widths stay
within one grid step, but the adaptive rules need r ~ 2d-4d, not r ~ d, in this training time: at
r = d their error is still 3-9x bp's (30 epochs instead of 10 brought d = 8 only to 3-5x). At
d = 16 the grid's top, r = 32, is the output pathway at full rank (m = 32), so r* = 32 there says
little. On the digit subsets r* does not follow the number of classes: 4-16 for every k from 2 to
10, with fixed feedback failing on 2-4 classes at width 32; the class count is not a task
dimension the way a teacher's rank is.

Deviations from the authors' protocol: the paper's evidence comes from image classification
networks (MLP, CNN, ViT) at CIFAR scale; here d is set by construction on a linear teacher and by
class subsets of the 8 x 8 digits, on small MLPs. The criterion "within a factor of bp's final test
error" is ours; the teacher's output noise exists to give every rule the same error floor, so that
the factor compares the solutions reached rather than how close to zero each gets in a fixed
number of epochs. On digits the error is the relative squared error (the trained loss), not the
classification error, which is 0 for bp on two classes and would make any factor meaningless;
accuracy is saved too. Plain SGD without weight decay for every rule (the authors' code trains the
feedback with Adam and L2 decay); r is applied to every pathway, clipped to min(n_{l-1}, n_l);
teacher widths stay below the input dimension so that random hidden features cannot solve the task
through the readout alone. Metrics are the final epoch's, not the best epoch's.

Run: ``bioplastic analysis rank_vs_task_dim [--quick] [--key=value ...]``.
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
from bioplastic.experiment.pool import run_tasks
from bioplastic.experiment.progress import Progress

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a file: the helpers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _claims  # noqa: E402

#: The study's description: this file's first line.
DESCRIPTION = __doc__.split("\n", 1)[0]

SUBSPACES = ("fixed", "local", "normative", "oja", "q_only")
TASKS = ("teacher", "digits")
#: Rules whose feedback subspace adapts to the task; the claim is about these.
ADAPTIVE = ("local", "normative")


@dataclass(frozen=True)
class Config:
    tasks: tuple[Literal["teacher", "digits"], ...] = TASKS  # regression with d by construction,
                                   # and its classification counterpart
    rules: tuple[Literal["fixed", "local", "normative", "oja", "q_only"], ...] = SUBSPACES  # ldfa
                                   # subspace rules; q_only is the paper's "update Q only" ablation
    ranks: tuple[PositiveInt, ...] = (1, 2, 4, 8, 16, 32)  # the grid r* is read from: doublings, so
                                   # "one grid step" is a factor of 2
    factor: PositiveFloat = 1.5    # r*: first r with final error <= factor x bp's (same width and
                                   # seed); 1.5 lets a rule miss half of bp's error floor (the
                                   # teacher's noise) but not a task mode
    search: Literal["ascending", "full"] = "ascending"  # ascending stops each search at r* (same
                                   # r*, about half the runs); full trains every rank
    depth: PositiveInt = 2         # hidden layers: a hidden-to-hidden pathway as well as the output's
    batch_size: PositiveInt = 32
    seeds: tuple[NonNegativeInt, ...] = (0, 1, 2)  # initial weights and batch order; r* per seed
    backend: Literal["auto", "reference", "torch"] = "auto"  # auto: torch float32 from width 256
                                   # on (1.6x faster there), the float64 reference below
    jobs: NonNegativeInt = 0       # worker processes; 0: one per core
    # teacher-student regression
    task_dims: tuple[PositiveInt, ...] = (2, 4, 8, 16)  # teacher rank d
    widths: tuple[PositiveInt, ...] = (32, 128)  # two widths 4x apart, both below teacher_in
                                   # (64 and 256 with teacher_in 384 show the same, at 5x the cost)
    teacher_in: PositiveInt = 192  # input dimension, > every width: with width >= inputs a linear
                                   # network's readout alone could fit T through random features
    teacher_out: PositiveInt = 32  # outputs m, fixed while d varies (r <= m on the output pathway)
    teacher_samples: PositiveInt = 1536  # 3/4 train (6 per input dimension), 1/4 test
    teacher_noise: float = 0.02    # output noise variance as a fraction of the target variance:
                                   # the common error floor (module docstring)
    teacher_activation: str = "linear"  # the linear theory's setting
    teacher_lr: PositiveFloat = 0.01  # 0.02-0.03 diverged for oja at width 256 (measured)
    teacher_feedback_lr: PositiveFloat = 0.003  # oja diverged at 0.01 (measured); local converges
                                   # more slowly with it, which the grid of r* shows
    teacher_epochs: PositiveInt = 10  # bp reaches its floor in ~5; 30 moved r = d of the adaptive
                                   # rules from ~8x to ~4x bp's error at d = 8 (measured), not below
    task_seed: int = 1000          # teacher draw; not 0, which the network's weights use
    # digits class subsets
    digit_classes: tuple[PositiveInt, ...] = (2, 4, 6, 8, 10)  # d = number of classes (0..k-1)
    digit_widths: tuple[PositiveInt, ...] = (32, 128)  # narrower than the teacher's: on 64 inputs
                                   # random ReLU features of width 256 let the readout alone come
                                   # within 1.2x of bp's error on two classes (measured)
    digit_activation: str = "relu"
    digit_lr: PositiveFloat = 0.03  # the demo's rate
    digit_feedback_lr: PositiveFloat = 0.01  # accuracy_vs_rank's
    digit_epochs: PositiveInt = 30  # as accuracy_vs_rank; fewer samples for fewer classes
    out: str = "results/rank_vs_task_dim"
    resume: bool = False           # reuse the runs an interrupted run left in OUT/study/runs/


#: ``--quick``: a tiny teacher and two class subsets, one seed, in this process (~20 s).
QUICK = {"rules": ("fixed", "local"), "ranks": (1, 4, 16), "seeds": (0,), "jobs": 1,
         "task_dims": (2, 8), "widths": (32, 64), "teacher_in": 96, "teacher_samples": 768,
         "teacher_epochs": 3, "digit_classes": (2, 10), "digit_widths": (32,), "digit_epochs": 3}


def check(cfg: Config) -> None:
    """Raise a clear error on a bad config, before any training."""
    bad = [r for r in cfg.rules if r not in SUBSPACES]
    if bad:
        raise ValueError(f"unknown rules {bad}; valid options: {', '.join(SUBSPACES)}")
    if not cfg.tasks or any(t not in TASKS for t in cfg.tasks):
        raise ValueError(f"tasks must name some of {', '.join(TASKS)}; got {cfg.tasks!r}")
    if not cfg.ranks or not cfg.seeds or not cfg.rules:
        raise ValueError("ranks, seeds and rules must each name at least one value")
    if "teacher" in cfg.tasks:
        if max(cfg.task_dims) > min(cfg.teacher_out, cfg.teacher_in):
            raise ValueError(f"task_dims must be <= min(teacher_out, teacher_in) = "
                             f"{min(cfg.teacher_out, cfg.teacher_in)}; got {max(cfg.task_dims)}")
        if cfg.teacher_samples < 2 * cfg.teacher_in:
            raise ValueError(f"teacher_samples must be >= 2 x teacher_in = {2 * cfg.teacher_in} "
                             f"(the inputs are whitened); got {cfg.teacher_samples}")
        if not cfg.teacher_noise >= 0:
            raise ValueError(f"teacher_noise must be >= 0; got {cfg.teacher_noise}")
    if "digits" in cfg.tasks and not all(2 <= k <= 10 for k in cfg.digit_classes):
        raise ValueError(f"digit_classes must lie in 2..10; got {cfg.digit_classes!r}")


# --------------------------------------------------------------------------------------------------
# Runs (module level so that worker processes can import them)
# --------------------------------------------------------------------------------------------------

def setup_of(cfg: Config, task: str, dim: int) -> dict:
    """The task and training settings of a cell (task, d): see ``_claims.task_section``."""
    common = {"depth": cfg.depth, "batch_size": cfg.batch_size, "backend": cfg.backend}
    if task == "teacher":
        return {**common, "task": "teacher", "teacher_in": cfg.teacher_in, "teacher_out": cfg.teacher_out,
                "task_dim": dim, "teacher_samples": cfg.teacher_samples, "teacher_noise": cfg.teacher_noise,
                "task_seed": cfg.task_seed, "activation": cfg.teacher_activation, "lr": cfg.teacher_lr,
                "feedback_lr": cfg.teacher_feedback_lr, "epochs": cfg.teacher_epochs}
    if task == "digits":
        return {**common, "task": "digits", "classes": dim, "activation": cfg.digit_activation,
                "lr": cfg.digit_lr, "feedback_lr": cfg.digit_feedback_lr, "epochs": cfg.digit_epochs}
    raise ValueError(f"unknown task {task!r}; valid options: {', '.join(TASKS)}")


def train_cell(cfg: Config, task: str, dim: int, width: int, rule: str, subspace: str | None,
               rank: int | None, seed: int) -> dict:
    """One run of the cell (task, d, width), through the study mechanism; its folder goes in
    ``OUT/study/runs/`` (kept, and reused by ``--resume``)."""
    label = rule if subspace is None else f"{rule}-{subspace}-r{rank}"
    cond = {"label": label, "rule": rule, "subspace": subspace, "rank": rank, "width": width}
    res = _claims.train_condition(setup_of(cfg, task, dim), cond, seed, out=f"{cfg.out}/study",
                                  resume=cfg.resume)
    return {"task": task, "dim": dim, **res}


def study(cfg: Config, task: str) -> dict:
    """Every run the full search (``search = "full"``) trains on ``task``, as a study mapping
    (``studies/rank_vs_task_dim_teacher.toml`` and ``..._digits.toml`` are the default's): bp and
    each rule at every rank of the grid (ranks whose clipped pathway ranks equal a smaller one's
    left out), swept over the task dimension (``task.rank``: the teacher's; ``task.classes``: the
    digits kept)."""
    dims, widths = ((cfg.task_dims, cfg.widths) if task == "teacher" else (cfg.digit_classes, cfg.digit_widths))
    setup = setup_of(cfg, task, dims[0])
    conds = []
    for width in widths:
        conds.append({"label": "bp", "rule": "bp", "subspace": None, "rank": None, "width": width})
        sizes, seen = _claims.sizes_of(setup, width), set()
        for r in sorted(set(cfg.ranks)):
            ranks = tuple(_claims.pathway_ranks(r, sizes))
            if ranks not in seen:
                seen.add(ranks)
                conds += [{"label": f"ldfa-{s}-r{r}", "rule": "ldfa", "subspace": s, "rank": r, "width": width}
                          for s in cfg.rules]
    mapping = _claims.study_mapping(setup, conds, cfg.seeds, f"rank_vs_task_dim_{task}",
                                    f"{DESCRIPTION} ({task}, full search)")
    key = "rank" if task == "teacher" else "classes"
    mapping["task"].pop(key, None)
    for grid in mapping["grid"]:
        grid[f"task.{key}"] = list(dims)
    return mapping


def search_ranks(cfg: Config, task: str, dim: int, width: int, subspace: str, seed: int,
                 bp_error: float | None) -> dict:
    """Train ldfa-``subspace`` at the grid's ranks in increasing order; r* is the first whose error
    is within ``factor`` of ``bp_error``. Ranks whose clipped pathway ranks equal a smaller rank's
    are skipped (they cannot be the smallest)."""
    sizes = _claims.sizes_of(setup_of(cfg, task, dim), width)
    runs, seen, r_star = [], set(), None
    for r in sorted(set(cfg.ranks)):
        ranks = tuple(_claims.pathway_ranks(r, sizes))
        if ranks in seen:
            continue
        seen.add(ranks)
        res = train_cell(cfg, task, dim, width, "ldfa", subspace, r, seed)
        err = res["relative_error"]
        res["ratio_to_bp"] = None if err is None or not bp_error else err / bp_error
        res["within_factor"] = bool(res["ratio_to_bp"] is not None and
                                    res["ratio_to_bp"] <= cfg.factor)
        runs.append(res)
        if res["within_factor"] and r_star is None:
            r_star = r
            if cfg.search == "ascending":
                break
    return {"task": task, "dim": dim, "width": width, "rule": subspace, "seed": seed,
            "bp_error": bp_error, "r_star": r_star, "runs": runs}


def _train(cfg: dict, *args) -> dict:
    return train_cell(Config(**cfg), *args)


def _search(cfg: dict, *args) -> dict:
    return search_ranks(Config(**cfg), *args)


# --------------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------------

def cells(cfg: Config) -> list[tuple[str, int, int]]:
    """(task, d, width) of every cell, widest first (their runs are the longest: started first, they
    balance the worker processes)."""
    out = []
    if "teacher" in cfg.tasks:
        out += [("teacher", d, w) for w in cfg.widths for d in cfg.task_dims]
    if "digits" in cfg.tasks:
        out += [("digits", k, w) for w in cfg.digit_widths for k in cfg.digit_classes]
    return sorted(out, key=lambda c: (-c[2], -c[1], c[0]))


def median_rank(values) -> float | None:
    """Median of per-seed r* with "not found" (None) counted as above the grid; None if that is
    where the median falls."""
    v = np.array([np.inf if x is None else x for x in values], dtype=float)
    m = float(np.median(v))
    return None if not np.isfinite(m) else m


def grid_index(r, grid) -> float:
    """Position of r on the grid (fractional for a median between two grid values); len(grid) for
    not found."""
    if r is None:
        return float(len(grid))
    return float(np.interp(np.log2(r), np.log2(grid), np.arange(len(grid))))


def claims(r_star: list[dict], grid, cfg: Config) -> list[dict]:
    """Per task and rule: does the median r* grow with d (never falls, and is larger at the largest d
    than at the smallest) at every width, and how many grid steps apart are the widths at most?"""
    out = []
    for task in cfg.tasks:
        for rule in cfg.rules:
            mine = [e for e in r_star if e["task"] == task and e["rule"] == rule]
            widths = sorted({e["width"] for e in mine})
            dims = sorted({e["dim"] for e in mine})
            table = {(e["width"], e["dim"]): grid_index(e["median"], grid) for e in mine}
            grows = []
            for w in widths:
                idx = [table[(w, d)] for d in dims]
                grows.append(all(b >= a for a, b in zip(idx, idx[1:])) and idx[-1] > idx[0])
            gap = max((abs(table[(widths[0], d)] - table[(widths[-1], d)]) for d in dims),
                      default=0.0)
            out.append({"task": task, "rule": rule, "widths": widths, "dims": dims,
                        "grows_with_d": dict(zip(map(str, widths), grows)),
                        "max_width_gap_steps": gap})
    return out


def run(cfg: Config, progress: bool = True) -> dict:
    """bp at every cell and seed, then the rank search of every rule; no plotting."""
    check(cfg)
    t0 = time.perf_counter()
    grid = sorted(set(cfg.ranks))
    cell_list = cells(cfg)
    bp_tasks = [(t, d, w, "bp", None, None, s) for t, d, w in cell_list for s in cfg.seeds]
    search_tasks = [(t, d, w, rule, s) for t, d, w in cell_list for rule in cfg.rules
                    for s in cfg.seeds]
    jobs = _claims.jobs_for(cfg.jobs, len(search_tasks))
    torch = cfg.backend != "reference"
    module = _claims.importable(__file__) if jobs > 1 else None
    bar = Progress(len(bp_tasks) + len(search_tasks), desc="rank_vs_task_dim", enabled=progress)
    bar.write(f"rank vs task dimension: {len(cell_list)} cells (task, d, width) x "
              f"{len(cfg.seeds)} seeds; bp, then {len(cfg.rules)} rules searched over r in {grid} "
              f"({cfg.search}); {jobs} process{'es' if jobs > 1 else ''}")
    with bar:
        bp_runs = run_tasks(module._train if module else _train, bp_tasks, jobs,
                            shared=(asdict(cfg),), torch=torch,
                            on_done=lambda i, res: bar.update(1, f"bp {res['task']} d={res['dim']}"))
        bp_error = {(r["task"], r["dim"], r["width"], r["seed"]): r["relative_error"]
                    for r in bp_runs}

        def report(index, res):
            bar.update(1, f"{res['rule']} {res['task']} d={res['dim']} w={res['width']}")
            ratios = " ".join(f"r{x['rank']}:{x['ratio_to_bp']:.2f}" if x["ratio_to_bp"] is not None
                              else f"r{x['rank']}:div" for x in res["runs"])
            bar.write(f"  {res['task']:<7} d={res['dim']:<2} w={res['width']:<3} {res['rule']:<9} "
                      f"seed {res['seed']}: r* = {res['r_star']}  (error / bp: {ratios})")

        searches = run_tasks(module._search if module else _search,
                             [(t, d, w, rule, s, bp_error[(t, d, w, s)])
                              for t, d, w, rule, s in search_tasks],
                             jobs, shared=(asdict(cfg),), torch=torch, on_done=report)

    bp = []
    for t, d, w in cell_list:
        mine = [r for r in bp_runs if (r["task"], r["dim"], r["width"]) == (t, d, w)]
        bp.append({"task": t, "dim": d, "width": w, "seeds": [r["seed"] for r in mine],
                   "relative_error": [r["relative_error"] for r in mine],
                   "test_accuracy": [r["test_accuracy"] for r in mine],
                   "summary": _claims.summarize([r["relative_error"] for r in mine])})
    r_star = []
    for t, d, w in cell_list:
        for rule in cfg.rules:
            mine = [s for s in searches if (s["task"], s["dim"], s["width"], s["rule"]) == (t, d, w, rule)]
            per_seed = [s["r_star"] for s in mine]
            r_star.append({"task": t, "dim": d, "width": w, "rule": rule,
                           "seeds": [s["seed"] for s in mine], "per_seed": per_seed,
                           "median": median_rank(per_seed),
                           "found": sum(x is not None for x in per_seed),
                           # error / bp at each rank trained, per seed (None: not trained or diverged)
                           "ratio_to_bp": [{str(x["rank"]): x["ratio_to_bp"] for x in s["runs"]}
                                           for s in mine]})
    order = {c: i for i, c in enumerate(sorted(cell_list, key=lambda c: (TASKS.index(c[0]), c[2], c[1])))}
    bp.sort(key=lambda e: order[(e["task"], e["dim"], e["width"])])
    r_star.sort(key=lambda e: (order[(e["task"], e["dim"], e["width"])], cfg.rules.index(e["rule"])))
    runs = bp_runs + [x for s in searches for x in s["runs"]]
    return {"tasks": list(cfg.tasks), "rules": list(cfg.rules), "grid": grid, "factor": cfg.factor,
            "search": cfg.search,
            "dims": {"teacher": list(cfg.task_dims), "digits": list(cfg.digit_classes)},
            "widths": {"teacher": list(cfg.widths), "digits": list(cfg.digit_widths)},
            "bp": bp, "r_star": r_star, "claims": claims(r_star, grid, cfg), "jobs": jobs,
            "n_runs": len(runs), "train_seconds": sum(r["seconds"] for r in runs), "runs": runs,
            "total_time": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------------

def plot(results: dict, cfg: Config) -> list[str]:
    """r* against d, rows = tasks, columns = the two widths; median line, per-seed points."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    grid = results["grid"]
    tasks = results["tasks"]
    n_cols = max(len(results["widths"][t]) for t in tasks)
    fig, axes = plt.subplots(len(tasks), n_cols, figsize=(4.6 * n_cols + 1.8, 3.9 * len(tasks)),
                             squeeze=False, sharey=True)
    above = grid[-1] * 2  # where "no r in the grid" is drawn
    n_rules = len(results["rules"])
    for row, task in enumerate(tasks):
        dims = results["dims"][task]
        for col in range(n_cols):
            ax = axes[row][col]
            if col >= len(results["widths"][task]):
                ax.set_visible(False)
                continue
            width = results["widths"][task][col]
            for i, rule in enumerate(results["rules"]):
                entries = [e for e in results["r_star"]
                           if e["task"] == task and e["width"] == width and e["rule"] == rule]
                entries.sort(key=lambda e: e["dim"])
                x = np.array([e["dim"] for e in entries], dtype=float)
                med = np.array([above if e["median"] is None else e["median"] for e in entries])
                style = _claims.RULE_STYLE[rule]
                shift = 2 ** ((i - (n_rules - 1) / 2) * 0.035)  # separate coinciding markers
                ax.plot(x * shift, med, lw=1.6, ms=6, label=f"ldfa {rule}", **style)
                for xe, e in zip(x, entries):
                    ys = [above if v is None else v for v in e["per_seed"]]
                    ax.scatter([xe * shift] * len(ys), ys, s=10, color=style["color"], alpha=0.45,
                               marker=style["marker"], lw=0)
            lo, hi = min(dims), max(dims)
            ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.9, ls=(0, (2, 3)), label="r = d")
            ax.axhline(above, color="0.85", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_xticks(dims)
            ax.set_xticklabels([str(d) for d in dims])
            ax.set_yticks(grid + [above])
            ax.set_yticklabels([str(r) for r in grid] + [f"> {grid[-1]}"])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("task dimension d (teacher rank)" if task == "teacher"
                          else "task dimension d (number of digit classes)")
            if col == 0:
                ax.set_ylabel(f"r* (error <= {results['factor']:g} x bp's)")
            ax.set_title(f"{task}, hidden width {width}", fontsize=10)
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    n = len(cfg.seeds)
    fig.suptitle(f"smallest feedback rank r* within {results['factor']:g}x of bp's final test error; "
                 f"line: median, dots: {n} seed{'s' * (n > 1)}", fontsize=10)
    return _claims.save_figure(fig, f"{cfg.out}/rank_vs_task_dim")


def table(results: dict) -> str:
    """The r* table as text: one row per (task, rule), one column per (width, d)."""
    lines = []
    for task in results["tasks"]:
        widths, dims = results["widths"][task], results["dims"][task]
        head = "  ".join(f"w{w} d{d}".rjust(9) for w in widths for d in dims)
        lines.append(f"{task:<8}{'':<10}{head}")
        for rule in results["rules"]:
            cells_ = []
            for w in widths:
                for d in dims:
                    e = next(e for e in results["r_star"]
                             if (e["task"], e["rule"], e["width"], e["dim"]) == (task, rule, w, d))
                    med = "-" if e["median"] is None else f"{e['median']:g}"
                    seeds = ",".join("-" if v is None else str(v) for v in e["per_seed"])
                    cells_.append(f"{med}[{seeds}]".rjust(9))
            lines.append(f"{'':<8}{rule:<10}" + "  ".join(cells_))
        bp = "  ".join(f"{e['summary']['mean']:.3g}".rjust(9) if e["summary"]["mean"] is not None
                       else "div".rjust(9)
                       for w in widths for d in dims
                       for e in results["bp"] if (e["task"], e["width"], e["dim"]) == (task, w, d))
        lines.append(f"{'':<8}{'bp error':<10}{bp}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis rank_vs_task_dim", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=list(cfg.seeds))
    print(f"figure: {', '.join(plot(results, cfg))}")
    print(f"r* = smallest r in {results['grid']} within {cfg.factor:g}x of bp's final relative test "
          f"error; median [per seed], '-' = none; {results['n_runs']} runs, "
          f"{results['total_time']:.0f} s")
    print(table(results))
    for c in results["claims"]:
        grows = ", ".join(f"w{w}: {'yes' if g else 'no'}" for w, g in c["grows_with_d"].items())
        print(f"  {c['task']:<7} {c['rule']:<9} median r* grows with d: {grows}; widths at most "
              f"{c['max_width_gap_steps']:g} grid steps apart")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
