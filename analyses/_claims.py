"""Shared pieces of the claim analyses (rank_vs_task_dim, width_vs_rank, qp_ablation,
direct_low_rank): the tasks, one MLP training run, summaries, the figure writer.

Not an analysis itself (the leading underscore keeps it out of ``bioplastic analysis``'s list). The
CLI puts this folder on ``sys.path`` while an analysis runs, and worker processes inherit it, so the
analyses import this file as the plain module ``_claims``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np

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
# Runs: every claim analysis trains through the study mechanism (bioplastic.experiment)
# --------------------------------------------------------------------------------------------------
#
# A ``setup`` names the task and the training settings shared by a sweep: ``task`` ("digits", with
# ``classes`` kept, or "teacher", with ``teacher_in``, ``teacher_out``, ``task_dim``,
# ``teacher_samples``, ``teacher_noise``, ``task_seed``), ``activation``, ``lr``, ``feedback_lr``,
# ``epochs``, ``batch_size``, ``depth``, ``backend``. A condition (``cond``) names one network and
# rule: ``label``, ``rule`` (a registered rule, or ``readout``), ``subspace``, ``rank``, ``width``.
# Both become a study (:func:`study_mapping`) that :func:`bioplastic.experiment.launch.run_study`
# runs, or one run that :func:`bioplastic.experiment.run.execute` trains: the analyses, ``bioplastic
# run`` and the study files under ``studies/`` share one training path.

SETUP_TASKS = ("digits", "teacher")


def task_section(setup: dict) -> dict:
    """The study's ``[task]`` for ``setup``.

    The teacher: :func:`bioplastic.data.teacher_student` draws T = A B / sqrt(k) (outputs of
    variance ~ n_in on whitened inputs); ``teacher_noise`` is the fraction of the output variance
    that is noise, N(0, noise * n_in), and the targets are divided by sqrt(n_in) (the study's
    ``scale``): outputs of variance ~ 1, the scale of one-hot targets. The first 3/4 of the samples
    train. The digits: the classes 0..classes-1 of the bundled 8x8 digits (stratified split), targets
    one-hot over all 10 outputs.
    """
    if setup["task"] == "digits":
        classes = setup.get("classes", 10)
        return {"name": "digits", **({"classes": classes} if classes != 10 else {})}
    if setup["task"] == "teacher":
        return {"name": "teacher_student", "n_in": setup["teacher_in"], "d": setup["teacher_out"],
                "rank": setup["task_dim"], "samples": setup["teacher_samples"],
                "noise": float(np.sqrt(setup["teacher_noise"] * setup["teacher_in"])),
                "seed": setup["task_seed"], "test_fraction": 0.25, "scale": True}
    raise ValueError(f"unknown task {setup['task']!r}; valid options: {', '.join(SETUP_TASKS)}")


def digits_setup(cfg) -> dict:
    """The setup of a sweep on all ten digits from an analysis config's ``depth``, ``activation``,
    ``lr``, ``feedback_lr``, ``epochs``, ``batch_size`` and ``backend``."""
    return {"task": "digits", "classes": 10, "depth": cfg.depth, "activation": cfg.activation,
            "lr": cfg.lr, "feedback_lr": cfg.feedback_lr, "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "backend": cfg.backend}


def zero_loss(ds) -> float:
    """Test loss of predicting 0, 1/2 <||y||^2>: the denominator of the relative error."""
    return 0.5 * float(np.mean(np.sum(ds.y_test ** 2, axis=1)))


def sizes_of(setup: dict, width: int) -> list[int]:
    """Population sizes of the MLP of ``setup`` at hidden ``width``."""
    if setup["task"] == "digits":
        n_in, n_out = 64, 10
    elif setup["task"] == "teacher":
        n_in, n_out = setup["teacher_in"], setup["teacher_out"]
    else:
        raise ValueError(f"unknown task {setup['task']!r}; valid options: {', '.join(SETUP_TASKS)}")
    return [n_in] + [int(width)] * setup["depth"] + [n_out]


def pathway_ranks(r: int, sizes) -> list[int]:
    """Layer-wise ldfa: rank of each pathway l = 2..L, r clipped to min(n_{l-1}, n_l)."""
    return [min(int(r), sizes[l - 1], sizes[l]) for l in range(2, len(sizes))]


def backend_for(backend: str, width: int) -> tuple[str, dict]:
    """(backend, build options): ``auto`` is torch float32 from :data:`TORCH_FROM_WIDTH` units on,
    the float64 reference below."""
    if backend == "auto":
        backend = "torch" if width >= TORCH_FROM_WIDTH else "reference"
    return backend, ({"dtype": "float32"} if backend == "torch" else {})


def settings(setup: dict, cond: dict) -> dict:
    """The dotted study keys of one condition: network, rule and backend.

    ``readout`` is ldfa with Q = 0 held fixed, so no error reaches a hidden layer and only the
    readout learns. ldfa's rank is clipped per pathway (:func:`pathway_ranks`, the study's
    ``clip_rank``); dfa's rank, the broadcast bottleneck, to the output size."""
    sizes = sizes_of(setup, cond["width"])
    rule, rank = cond["rule"], cond.get("rank")
    out: dict = {"circuit.hidden": sizes[1:-1]}
    if rule == "readout":
        out.update({"feedback.rule": "ldfa", "feedback.subspace": "fixed", "feedback.rank": 1,
                    "circuit.zero": ["Q"]})
    elif rule == "ldfa":
        out.update({"feedback.rule": "ldfa", "feedback.subspace": cond["subspace"], "feedback.rank": int(rank),
                    "feedback.clip_rank": True})
    elif rank is not None:
        out.update({"feedback.rule": rule, "feedback.subspace": cond["subspace"],
                    "feedback.rank": min(int(rank), sizes[-1])})
    else:
        out["feedback.rule"] = rule
    name, options = backend_for(setup["backend"], max(sizes[1:-1]))
    out["backend.name"] = name
    if "dtype" in options:
        out["backend.dtype"] = options["dtype"]
    return out


def _merge_grids(grids: list[dict]) -> list[dict]:
    """Fewer grids, the same runs: two grids with the same keys that differ in the values of one key
    only are one grid (a cartesian product stays one when a single factor grows)."""
    grids = [dict(g) for g in grids]
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(grids):
            for j in range(i + 1, len(grids)):
                b = grids[j]
                if a.keys() != b.keys():
                    continue
                differ = [k for k in a if a[k] != b[k]]
                if len(differ) == 1:
                    k = differ[0]
                    a[k] = a[k] + [v for v in b[k] if v not in a[k]]
                    del grids[j]
                    merged = True
                    break
            if merged:
                break
    return grids


def study_mapping(setup: dict, conds: list[dict], seeds, name: str, description: str = "") -> dict:
    """The study (what its TOML file holds) of every condition for every seed: the settings every
    run shares in their sections, then the conditions as few ``[[grid]]`` s as give exactly them."""
    points, seen = [], set()
    for cond in conds:
        point = settings(setup, cond)
        key = json.dumps(point, sort_keys=True)
        if key not in seen:  # two labels for one network (bp at a width the sweep already has)
            seen.add(key)
            points.append(point)
    mapping = {"name": name, "description": description, "seeds": [int(s) for s in seeds],
               "task": task_section(setup),
               "circuit": {"activation": setup["activation"]},
               "optimizer": {"lr": setup["lr"], "feedback_lr": setup["feedback_lr"]},
               "training": {"epochs": setup["epochs"], "batch_size": setup["batch_size"]},
               "record": {"relative_error": True}}
    # a key every condition sets to one value goes in its section; the rest are swept
    shared = {k: v for k, v in points[0].items()
              if all(k in p and json.dumps(p[k]) == json.dumps(v) for p in points)}
    for k, v in shared.items():
        section, field = k.split(".")
        mapping.setdefault(section, {})[field] = v
    mapping["grid"] = _merge_grids([{k: [v] for k, v in p.items() if k not in shared} for p in points])
    if mapping["grid"] == [{}]:
        del mapping["grid"]
    return mapping


def _dotted(run: dict, key: str):
    value = run
    for part in key.split("."):
        value = value[part]
    return value


def _record(setup: dict, cond: dict, seed: int, result: dict, lines: list[dict]) -> dict:
    """One run's numbers as the analyses report them (None where it diverged or failed): the final
    metrics and, from its per-epoch ``lines``, the curves of test accuracy and relative error."""
    sizes = sizes_of(setup, cond["width"])
    line = result.get("metrics") or {}
    ok = result["state"] == "finished"
    return {"label": cond["label"], "rule": cond["rule"], "subspace": cond.get("subspace"),
            "rank": cond.get("rank"), "width": cond["width"], "seed": seed, "sizes": sizes,
            "ranks": (pathway_ranks(cond["rank"], sizes) if cond["rule"] == "ldfa"
                      else None if cond.get("rank") is None or cond["rule"] == "readout"
                      else min(int(cond["rank"]), sizes[-1])),
            "backend": backend_for(setup["backend"], max(sizes[1:-1]))[0], "run_id": result["run_id"],
            "state": result["state"], "diverged": result["state"] == "diverged",
            "error": result.get("error"),
            **{m: line.get(m) if ok else None for m in ("test_accuracy", "test_loss", "relative_error")},
            "curve_accuracy": [x["test_accuracy"] for x in lines],
            "curve_relative_error": [x.get("relative_error") for x in lines],
            "seconds": line.get("time")}


def train_condition(setup: dict, cond: dict, seed: int, out: str | os.PathLike | None = None,
                    resume: bool = False) -> dict:
    """Train one condition for one seed, in this process, as a one-run study; its numbers
    (:func:`_record`). ``out``: the study folder its run folder goes in (``out/runs/<run_id>``);
    default a temporary folder, removed afterwards."""
    import tempfile

    from bioplastic.experiment.run import execute, read_metrics, run_folder
    from bioplastic.experiment.study import make_run_id, study_from_mapping

    point = settings(setup, cond)
    loaded = study_from_mapping(study_mapping(setup, [cond], [seed], "run"), check=False)
    run = dict(loaded.runs[0])
    task = task_section(setup)
    dim = task.get("classes", task.get("rank", ""))
    run["run_id"] = make_run_id({"task": f"{task['name']}{dim}", **point}, seed)
    def go(folder) -> dict:
        result = execute(run, folder, resume=resume)
        return _record(setup, cond, seed, result, read_metrics(run_folder(folder, run["run_id"])))

    if out is not None:
        return go(out)
    with tempfile.TemporaryDirectory(prefix="bioplastic-") as tmp:
        return go(tmp)


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


def run_analysis_study(loaded, folder, jobs: int, resume: bool, progress: bool, header: str) -> dict:
    """Run an analysis's study ``loaded`` in ``folder``: on the process pool for more than one job,
    else in this process; continued with ``resume``, else started afresh. Its results by run id
    (``state``, ``error``, ``metrics``, ...)."""
    from bioplastic.experiment.launch import run_study

    return run_study(loaded, folder, resume=resume, overwrite=not resume,
                     executor="process" if jobs > 1 else "inprocess", jobs=jobs, progress=progress,
                     header=header).results


def require(results: dict, run_id: str, what: str, states=("finished",)) -> dict:
    """The result of run ``run_id``; raises naming ``what`` when its state is not one of ``states``
    (its log in the run folder says why)."""
    result = results[run_id]
    if result["state"] not in states:
        raise RuntimeError(f"{what} ({run_id}) {result['state']}: {result.get('error')}")
    return result


def run_conditions(setup: dict, conds: list[dict], seeds, jobs: int, desc: str,
                   progress: bool = True, out: str | os.PathLike | None = None,
                   resume: bool = False) -> tuple[list[dict], int]:
    """Every condition for every seed, as one study (:func:`study_mapping`) run by the study
    mechanism on the process pool (in this process for one job); (runs in condition-major order,
    jobs used). The study's folder is ``out`` (a run folder per run, resumable with ``resume``;
    default a temporary folder). Prints one line per finished run."""
    import tempfile

    from bioplastic.experiment.run import read_metrics, run_folder
    from bioplastic.experiment.study import study_from_mapping

    loaded = study_from_mapping(study_mapping(setup, conds, seeds, desc))
    jobs = jobs_for(jobs, len(loaded.runs))
    def matches(run: dict, point: dict) -> bool:
        # every key the condition sets, the keys that tell conditions apart at their defaults where it
        # does not (dfa without a rank is not dfa with one; readout is ldfa fixed with Q zeroed)
        expected = {"feedback.rank": None, "feedback.clip_rank": False, "circuit.zero": []} | point
        return all(_dotted(run, k) == v for k, v in expected.items())

    def run_id(cond: dict, seed: int) -> str:
        point = settings(setup, cond)
        found = [r["run_id"] for r in loaded.runs if r["seed"] == seed and matches(r, point)]
        if len(found) != 1:
            raise RuntimeError(f"condition {cond['label']} seed {seed} matches {len(found)} runs of the study")
        return found[0]

    header = (f"{desc} on {setup['task']}: {len(conds)} conditions x {len(seeds)} seeds x "
              f"{setup['epochs']} epochs, {jobs} process{'es' if jobs > 1 else ''}")

    def go(folder) -> dict:
        results = run_analysis_study(loaded, folder, jobs, resume, progress, header)
        return {i: (res, read_metrics(run_folder(folder, i))) for i, res in results.items()}

    if out is None:
        with tempfile.TemporaryDirectory(prefix="bioplastic-") as tmp:
            results = go(tmp)
    else:
        results = go(out)
    runs = [_record(setup, c, s, *results[run_id(c, s)]) for c in conds for s in seeds]
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
