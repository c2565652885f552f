"""Feedback dimensionality and retinal receptive fields: the retina/VVS model with rank-r feedback
into the retina's output, against exact backprop.

arXiv 2502.20580 trains the retina + ventral-visual-stream CNN of Lindsey et al. (2019, "A unified
theory of early visual representations from retina to cortex through anatomically constrained deep
CNNs") with low-dimensional error feedback of rank r into one layer only: ``vvs[0]``, the first VVS
convolution, so the error that reaches the retina's output channels has crossed an r-channel
bottleneck at every position while every other layer learns by exact backprop; it then shows the
receptive fields of the 32 retina output channels, found by activation maximisation. In Lindsey et
al. a narrow retinal output (few channels) makes the retina's fields centre-surround; the question
here is whether a narrow *error* pathway (small r) reshapes them too, with the retina's output kept
32 channels wide as the authors do.

What runs (the defaults)
------------------------
* Data: a proxy for the authors' grayscale CIFAR-10: which-picture classification of grayscale
  natural-image patches, :func:`bioplastic.data.load_patches` (scikit-image's bundled photographs
  and textures, d = 10 pictures = classes, 16 x 16 patches standardised one by one; 150 train and
  50 test patches per picture, test patches from a part of each picture that no train patch
  touches). A logistic regression on the patches' log power spectra reaches 45 % test accuracy on
  it, on their pixels 13 % (chance 10 %).
* Model: :class:`bioplastic.torch.models.RetinaVVS`: retina of two 9 x 9 convs 1 -> 32 -> 32
  (``bottleneck`` 32, the authors' value), ReLU, padding 4; one VVS conv of 32 channels (9 x 9);
  FC 32 * 16 * 16 -> 64 -> 10.
* Feedback: ``vvs.0`` converted to LDFA (:func:`bioplastic.torch.convert`) with rank r in
  {1, 2, 4, 8, 32} (32 = full rank for 32 channels, still LDFA) and the authors' 2024 subspace rule
  ``oja`` (P by Oja's subspace rule on the error covariance pooled over positions, Q by the local
  rule); every other layer plain (exact backprop), as the authors' model keeps them. ``bp``: no
  layer converted.
* Training: Adam lr 1e-3, weight decay 1e-4 (coupled L2, on every parameter, biases included),
  learning rate x 0.975 per epoch, batch 16, cross-entropy, 2 epochs (3000 patch presentations,
  188 steps); three seeds (weights, feedback and batch order; the patches are the same for every
  run). The runs are one study of :mod:`bioplastic.experiment` (:func:`study`; the default's is
  ``studies/receptive_fields.toml``, which ``bioplastic run`` trains alike): ``[model] retina_vvs``
  with ``only = ["vvs.0"]``, ``[optimizer] decay_biases``, ``[schedule] exponential``, and
  ``[record] weights_every`` = epochs, so that each run folder, ``OUT/study/runs/<run>/``, keeps
  its weights before training and after the last epoch, which the maximisation reads.
  ``--resume=true`` continues an interrupted study (finished runs are kept; an interrupted run
  starts again: no checkpoints, the runs are short).
* Receptive fields: for each of the 32 retina output channels, gradient ascent on the channel's
  pre-ReLU activation at the centre of a 32 x 32 canvas, from a zero image, 2 steps of SGD with
  lr 1 (the authors' procedure, :func:`bioplastic.torch.receptive.activation_maximisers`); the
  grids show the maximisers z-scored (the authors' display) and cropped to the 17 x 17 pixels a
  retina unit sees, sorted by the activation reached (the authors' order).
* Summaries, per run the mean over the 32 channels of: the centre-surround index and the
  orientation index of :mod:`bioplastic.metrics` (both in [0, 1], scale-free; computed on the raw
  32 x 32 maximiser), then mean +- sd (ddof 1) over seeds per condition, against r; test accuracy
  (final epoch) alongside. A run whose loss turned non-finite (none so far) counts as diverged: no
  accuracy and no index in the summaries.

Deviations from the authors' protocol, all for time (the default run is sized for about 6 minutes
on 2 cores): bundled natural-image patches instead of grayscale CIFAR-10 (proxy data, 10
which-picture classes); 16 x 16 instead of 32 x 32 images (the retina's 17 x 17 reach then covers
the whole patch during training; the fields are measured on a 32 x 32 canvas, where no unit's reach
is cut by the border); 1 VVS layer instead of 3 (Lindsey et al. found the VVS depth to shape the
retina's fields, so this matters); FC hidden width 64 instead of 1024 and no dropout; 2 epochs
instead of 120, so the networks are far from trained and their retinas close to their random
start; Adam instead of RMSprop (which, without the BatchNorm of the authors' model, stalled this
network at chance from its first steps) and batch 16 instead of 64 (more steps for the same
compute); no augmentation (flip, 10-degree rotation) and no clamping of the propagated error;
final-epoch rather than best-epoch weights. The retina output's last ReLU is left out of the
maximisation (its pre-activation is maximised, as in the authors' earlier analysis script; their
later one keeps the ReLU, which gives a blank field to a channel that is silent on a blank image).
The indices are ours: the paper shows the fields without a number.

What the default run measured, with the analysis's earlier training loop, before it trained
through the study (5.6 min on 2 cores shared with other jobs; mean over the 32
channels, mean +- sd over seeds 0-2): centre-surround index bp 0.014 +- 0.008; r = 1, 2, 4, 8, 32:
0.010 +- 0.009, 0.016 +- 0.010, 0.020 +- 0.005, 0.037 +- 0.034, 0.031 +- 0.019. Orientation index
bp 0.109 +- 0.013; r = 1..32: 0.112 +- 0.014, 0.117 +- 0.013, 0.105 +- 0.010, 0.117 +- 0.013,
0.120 +- 0.011. The untrained retinas (same seeds): 0.011 and 0.104. Test accuracy bp 0.167 +-
0.024, ldfa 0.117-0.148 (chance 0.10); 3 of the 15 ldfa runs (r = 1 and 4 seed 0, r = 4 seed 2)
and none of bp's are still at chance, their loss at ln 10. At this scale the networks have barely
left their start: every index sits within 0.03 of the untrained retina's and within the seed
spread of bp's, so the run cannot say whether feedback rank reshapes the fields. The grids show
that the stalled low-rank runs' fields are smooth blobs without an antagonistic surround
(centre-surround index near 0) and that bp's few clearly trained channels include oriented ones;
neither index measures smoothness. With 3 epochs (``--epochs=3``, 18 min on the busier machine):
bp 0.025 / 0.113 (centre-surround / orientation), r = 1 0.010 / 0.114, r = 32 0.030 / 0.123, bp
test accuracy 0.182; the same picture.

Training through the study changes the numbers of the trained runs (not of the untrained retinas),
for two reasons only. The batch order: the study draws it from numpy's generator seeded by the run's
seed, the earlier loop from ``torch.randperm`` with a torch generator of the same seed. And each
batch is made from the numpy array (the earlier loop indexed one tensor of all patches): a batch of
one channel made that way also counts as channels-last in memory, which picks another CPU
convolution kernel whose float32 sums round differently, and Adam's first steps turn such last-bit
differences of near-zero gradients into weight changes of about the learning rate. With the study's
batch order and batches, the earlier loop's weights equal the study's bit for bit (checked on the
quick setting over 2 epochs, for bp and r = 1; ``tests/test_receptive_fields.py`` checks it on a
tiny network), and so do the bp runs' with ``vvs.0`` left plain or converted to bp. ``--quick``
before / after (seed 0, one epoch; centre-surround / orientation index): bp 0.009 / 0.092, now
0.007 / 0.110; r = 1 0.010 / 0.108, now 0.012 / 0.114; r = 32 0.016 / 0.103, now 0.010 / 0.115;
test accuracy 0.10 in all (chance: one epoch of 200 patches); the untrained retina 0.010 / 0.104
both times, bit for bit. The default run was not repeated through the study.

Run: ``bioplastic analysis receptive_fields [--quick] [--resume=true] [--key=value ...]``; the
training alone: ``bioplastic run studies/receptive_fields.toml``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from bioplastic import experiment
from bioplastic.experiment.cmdline import parse_command_line

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a file: the helpers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _claims  # noqa: E402

#: The study's description: this file's first line.
DESCRIPTION = " ".join(__doc__.split("\n\n", 1)[0].split())

#: The layer whose feedback has rank r: the first VVS convolution, so the error reaching the
#: retina's output passes through r channels (the authors' ``vvs[0]``).
LDFA_LAYER = "vvs.0"

#: Subspace rules offered (bioplastic.rules.SUBSPACES holds them all; these run on convolutions).
SUBSPACES = ("oja", "local", "normative", "q_only", "fixed")

INDICES = {"centre_surround": "centre-surround index", "orientation": "orientation index"}


@dataclass(frozen=True)
class Config:
    ranks: tuple[PositiveInt, ...] = (1, 2, 4, 8, 32)  # feedback rank into the retina output
    bp: bool = True                 # the exact-backprop reference (no feedback rule on any layer)
    subspace: Literal["oja", "local", "normative", "q_only", "fixed"] = "oja"  # the authors' 2024 rule
    classes: PositiveInt = 10       # d pictures = classes of the patch task
    image_size: PositiveInt = 16    # training patch side; the authors' 32 costs 4x the time
    n_train: PositiveInt = 150      # train patches per picture: fresh patches beat repeated epochs
                                    # (60 patches x 15 epochs overfit: train loss 0.65, test 16 %)
    n_test: PositiveInt = 50        # test patches per picture
    data_seed: NonNegativeInt = 0   # patch positions, the same for every run
    bottleneck: PositiveInt = 32    # retina output channels: the authors' 32 (not the narrow case)
    channels: PositiveInt = 32      # first retina layer and VVS widths, the authors' 32
    vvs_depth: PositiveInt = 1      # the authors' 3 costs 1.5x per VVS layer added
    hidden: PositiveInt = 64        # FC head; the authors' 1024 only adds cost at this data size
    optimizer: Literal["adam", "rmsprop"] = "adam"  # the authors' RMSprop (lr 4e-4) kills this
                                    # BatchNorm-free net in its first steps (loss stuck at ln 10)
    lr: PositiveFloat = 1e-3        # Adam; 3e-3 stalled a run at chance (measured)
    weight_decay: NonNegativeFloat = 1e-4  # the authors' (coupled L2, on every parameter)
    gamma: PositiveFloat = 0.975    # learning-rate decay per epoch, the authors'
    epochs: PositiveInt = 2         # the authors' 120 is far beyond 6 minutes on 2 cores (3 took
                                    # 18 min on the busy 2 cores, 12 at lighter load)
    batch_size: PositiveInt = 16    # the authors' 64 leaves 70 steps in 3 epochs: at batch 64,
                                    # lr 1.5e-3, 5 of 15 ldfa runs were still at chance (loss ln 10)
    rf_size: PositiveInt = 32       # canvas of the maximisation, the authors' 32 x 32
    rf_steps: PositiveInt = 2       # gradient-ascent steps, the authors' 2
    rf_lr: PositiveFloat = 1.0      # their step size
    pre_relu: bool = True           # maximise the pre-ReLU activation (module docstring)
    seeds: tuple[NonNegativeInt, ...] = (0, 1, 2)  # weights, feedback and batch order
    jobs: NonNegativeInt = 0        # worker processes; 0: one per core
    out: str = "results/receptive_fields"
    resume: bool = False            # continue an interrupted run from the study in OUT/study/


#: ``--quick``: bp and two ranks, one seed, one short epoch on few patches, in this process.
QUICK = {"ranks": (1, 32), "seeds": (0,), "epochs": 1, "n_train": 20, "n_test": 10, "jobs": 1}


def check(cfg: Config) -> None:
    if not cfg.seeds:
        raise ValueError("seeds must name at least one seed")
    if not cfg.ranks and not cfg.bp:
        raise ValueError("nothing to run: give ranks or bp=true")
    if not 2 <= cfg.classes <= 16:
        raise ValueError(f"classes must lie in 2..16 (one per bundled picture); got {cfg.classes}")
    if cfg.rf_size < 17:
        raise ValueError(f"rf_size must be >= 17 so that the retina's 17 x 17 reach fits; got {cfg.rf_size}")


def conditions(cfg: Config) -> list[dict]:
    """bp first (if asked), then ldfa at each rank, ascending."""
    out = [{"label": "bp", "rank": None}] if cfg.bp else []
    return out + [{"label": f"r{r}", "rank": r} for r in sorted(set(cfg.ranks))]


# --------------------------------------------------------------------------------------------------
# The training: one study
# --------------------------------------------------------------------------------------------------

def study(cfg: Config) -> dict:
    """The training of every condition and seed as a study mapping (what a study file holds;
    ``studies/receptive_fields.toml`` is the default's).

    The retina_vvs model with feedback on :data:`LDFA_LAYER` alone (``[model] only``; bp converts it
    to exact backprop, the same numbers as leaving it plain), the patch task, Adam or RMSprop with
    coupled L2 decay on every parameter (``decay_biases``), the learning rate x gamma per epoch
    (``[schedule] exponential``), softmax cross-entropy; the weights saved before training and
    after the last epoch (``[record] weights_every``), which the maximisation reads.
    """
    grid = []
    if cfg.bp:
        grid.append({"feedback.rule": ["bp"]})
    if cfg.ranks:
        grid.append({"feedback.rule": ["ldfa"], "feedback.subspace": [cfg.subspace],
                     "feedback.rank": sorted(set(cfg.ranks))})
    return {"name": "receptive_fields", "description": DESCRIPTION, "seeds": list(cfg.seeds),
            "task": {"name": "patches", "d": cfg.classes, "size": cfg.image_size, "n_train": cfg.n_train,
                     "n_test": cfg.n_test, "seed": cfg.data_seed},
            "model": {"name": "retina_vvs",
                      "options": {"bottleneck": cfg.bottleneck, "channels": cfg.channels,
                                  "vvs_depth": cfg.vvs_depth, "hidden": cfg.hidden},
                      "only": [LDFA_LAYER]},
            "feedback": {"clip_rank": True},
            "backend": {"name": "torch"},
            "optimizer": {"name": cfg.optimizer, "lr": cfg.lr, "decay": cfg.weight_decay,
                          "decay_biases": True},
            "schedule": {"name": "exponential", "gamma": cfg.gamma},
            # short runs (about a minute each): an interrupted run restarts, no checkpoint to store
            "training": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "loss": "cross_entropy",
                         "checkpoint_every": 0},
            # the weights before training and after the last epoch, for the maximisation
            "record": {"weights_every": cfg.epochs},
            "grid": grid}


def loaded_study(cfg: Config, check_runs: bool = True):
    """The study of ``cfg``, resolved (:class:`bioplastic.experiment.study.LoadedStudy`)."""
    from bioplastic.experiment.study import study_from_mapping

    return study_from_mapping(study(cfg), name="receptive_fields", check=check_runs)


def condition_of(run: dict) -> tuple[str, int | None]:
    """(label, rank) of a resolved run: ``bp`` or ``rR``."""
    rank = run["feedback"]["rank"]
    return ("bp", None) if run["feedback"]["rule"] == "bp" else (f"r{rank}", rank)


def find_run(runs: list[dict], label: str, seed: int) -> dict:
    """The resolved run of condition ``label`` and ``seed``."""
    found = [r for r in runs if condition_of(r)[0] == label and r["seed"] == seed]
    if len(found) != 1:
        raise RuntimeError(f"condition {label} seed {seed} matches {len(found)} runs of the study")
    return found[0]


def weight_snapshots(folder: Path, run: dict) -> dict[int, Path]:
    """The run's weight snapshots by epoch (``[record] weights_every``: epoch 0 and the last)."""
    from bioplastic.experiment.run import SNAPSHOTS, run_folder

    found = {}
    for path in (run_folder(folder, run["run_id"]) / SNAPSHOTS).glob("weights_*.npz"):
        digits = path.stem.removeprefix("weights_")
        if digits.isdigit():  # weights_EPOCH, not another kind of snapshot
            found[int(digits)] = path
    return dict(sorted(found.items()))


def model_of(run: dict, folder: Path | None = None, epoch: int | None = None):
    """The converted RetinaVVS of a resolved run, built as the run builds it (its seed's initial
    weights and feedback); with the study ``folder``, loaded from the run's weight snapshot of
    ``epoch`` (default the latest: the final epoch's, or a diverged run's epoch 0). (model, epoch
    of its weights)."""
    import torch

    from bioplastic.experiment.run import Job, load_task
    from bioplastic.experiment.study import RunConfig

    config = RunConfig.model_validate(run)
    model = Job(config, load_task(config.task)).model
    if folder is None:
        return model, 0
    snapshots = weight_snapshots(folder, run)
    if not snapshots:
        raise FileNotFoundError(f"run {run['run_id']} in {folder} has no weight snapshot")
    epoch = max(snapshots) if epoch is None else epoch
    with np.load(snapshots[epoch]) as arrays:
        model.load_state_dict({k: torch.as_tensor(arrays[k]) for k in arrays.files})
    return model, epoch


def build(cfg: Config, rank: int | None, seed: int):
    """The untrained model of the study's run of ``rank`` (None: bp) and ``seed``: ldfa of ``rank``
    on :data:`LDFA_LAYER` (bp: the exact-backprop rule there), every other layer plain."""
    label = "bp" if rank is None else f"r{rank}"
    return model_of(find_run(loaded_study(cfg, check_runs=False).runs, label, seed))[0]


def retina_stage(model, pre_relu: bool):
    """The retina as a module to maximise: without its last ReLU if ``pre_relu``."""
    return model.retina[:-1] if pre_relu else model.retina


def field_indices(model, cfg: Config):
    """((fields (C, rf_size, rf_size), activations (C,)), centre-surround per channel, orientation
    per channel) of the model's retina output channels; None for a blank field."""
    from bioplastic import metrics
    from bioplastic.torch.receptive import activation_maximisers

    images, acts = activation_maximisers(retina_stage(model, cfg.pre_relu), image_size=cfg.rf_size,
                                         steps=cfg.rf_steps, lr=cfg.rf_lr)
    fields = images[:, 0]
    csi = [metrics.centre_surround_index(f) if np.any(f) else None for f in fields]
    ori = [metrics.orientation_index(f) if np.any(f) else None for f in fields]
    return (fields, acts), csi, ori


def _nanmean(values) -> float | None:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def measure_run(cfg: Config, run: dict, result: dict, folder: Path, at_init: bool) -> dict:
    """One trained run's numbers: its metrics (metrics.jsonl) and the fields of its trained retina
    (and, with ``at_init``, of its untrained one); a plain dict of numbers and arrays. ``result``:
    the study's result of the run (its ``state`` and ``error``)."""
    from bioplastic.experiment.run import read_metrics, run_folder, threads

    t0 = time.perf_counter()
    label, rank = condition_of(run)
    lines = [line for line in read_metrics(run_folder(folder, run["run_id"])) if line["epoch"] > 0]
    state = result["state"]
    finished = state == "finished"
    accuracies = [line["test_accuracy"] for line in lines]
    with threads(1, torch=True):  # one thread, as the runs train: the same fields on any machine
        model, epoch = model_of(run, folder)
        (fields, acts), csi, ori = field_indices(model, cfg)
        init = field_indices(model_of(run, folder, epoch=0)[0], cfg)[1:] if at_init else None
    out = {"label": label, "rank": rank, "seed": run["seed"], "run_id": run["run_id"], "state": state,
           "error": result.get("error"), "weights_epoch": epoch,
           "test_accuracy": accuracies[-1] if finished and accuracies else None,
           "best_test_accuracy": max(accuracies) if finished and accuracies else None,
           "test_accuracy_per_epoch": accuracies,
           "train_loss_per_epoch": [line["train_loss"] for line in lines],
           "centre_surround": csi, "orientation": ori,
           # a run that diverged counts as diverged in the summaries (its fields are its last
           # snapshot's, the untrained retina's)
           "centre_surround_mean": _nanmean(csi) if finished else None,
           "orientation_mean": _nanmean(ori) if finished else None,
           "blank_fields": int(sum(not np.any(f) for f in fields)),
           "activation": acts.tolist(), "fields": fields,
           "time": lines[-1]["time"] if lines else 0.0, "maximisation_time": time.perf_counter() - t0}
    if init is not None:
        out["centre_surround_init"], out["orientation_init"] = _nanmean(init[0]), _nanmean(init[1])
    return out


def train(cfg: Config, progress: bool = True) -> tuple:
    """Train the study of ``cfg`` into ``OUT/study`` (resumed with ``cfg.resume``); (the loaded
    study, its folder, the results by run id (``state``, ``error``, ...), worker processes used).
    Raises if a run failed (its log names why)."""
    loaded = loaded_study(cfg)
    folder = Path(cfg.out) / "study"
    jobs = _claims.jobs_for(cfg.jobs, len(loaded.runs))
    header = (f"receptive fields: {len(conditions(cfg))} conditions x {len(cfg.seeds)} seeds x "
              f"{cfg.epochs} epochs ({cfg.classes} pictures, {cfg.image_size} px); "
              f"{jobs} process{'es' if jobs > 1 else ''}")
    results = _claims.run_analysis_study(loaded, folder, jobs, cfg.resume, progress, header)
    failed = {k: v.get("error") for k, v in results.items() if v["state"] == "failed"}
    if failed:
        raise RuntimeError(f"{len(failed)} runs failed (logs: {folder}/runs/<run>/log.txt): "
                           f"{dict(list(failed.items())[:3])}")
    return loaded, folder, results, jobs


# --------------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------------

def support_box(fields: list[np.ndarray]) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1), the smallest box holding every nonzero pixel of every field."""
    nonzero = np.any(np.abs(np.concatenate([f.reshape(-1, *f.shape[-2:]) for f in fields])) > 0, axis=0)
    if not nonzero.any():
        return 0, nonzero.shape[0], 0, nonzero.shape[1]
    rows, cols = np.flatnonzero(nonzero.any(1)), np.flatnonzero(nonzero.any(0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def run(cfg: Config, progress: bool = True) -> dict:
    """Train every condition x seed (the study), measure every trained retina's fields; the
    per-condition summaries and the display grids; no plotting."""
    from bioplastic.torch.receptive import zscore

    check(cfg)
    t0 = time.perf_counter()
    conds = conditions(cfg)
    loaded, folder, results, jobs = train(cfg, progress)
    runs = []
    for c in conds:
        for s in cfg.seeds:
            # the untrained retina is the same in every condition of a seed: measured in the first
            one = find_run(loaded.runs, c["label"], s)
            res = measure_run(cfg, one, results[one["run_id"]], folder, at_init=c is conds[0])
            runs.append(res)
            if progress:
                print(f"  {res['label']:<4} seed {res['seed']}: {res['state']}, test acc {res['test_accuracy']}, "
                      f"centre-surround {_nanmean(res['centre_surround']):.3f}, "
                      f"orientation {_nanmean(res['orientation']):.3f} ({res['time']:.0f} s training)",
                      file=sys.stderr)
    box = support_box([r["fields"] for r in runs])
    display_seed = cfg.seeds[0]
    entries, grids = [], {}
    for c in conds:
        mine = [r for r in runs if r["label"] == c["label"]]
        entry = {**c, "seeds": [r["seed"] for r in mine]}
        for key in ("centre_surround", "orientation"):
            entry[key] = [r[f"{key}_mean"] for r in mine]
            entry[f"{key}_summary"] = _claims.summarize(entry[key])
            entry[f"{key}_per_channel"] = [r[key] for r in mine]
        for key in ("test_accuracy", "best_test_accuracy"):
            entry[key] = [r[key] for r in mine]
            entry[f"{key}_summary"] = _claims.summarize(entry[key])
        entry["blank_fields"] = [r["blank_fields"] for r in mine]
        entries.append(entry)
        shown = next(r for r in mine if r["seed"] == display_seed)
        order = np.argsort(-np.asarray(shown["activation"]), kind="stable")
        crop = shown["fields"][order][:, box[0]:box[1], box[2]:box[3]]
        grids[c["label"]] = {"seed": display_seed, "channels": order.tolist(),
                             "activation": [round(shown["activation"][i], 5) for i in order],
                             "centre_surround": [shown["centre_surround"][i] for i in order],
                             "orientation": [shown["orientation"][i] for i in order],
                             "images": np.round(zscore(crop), 3).tolist()}
    first = [r for r in runs if r["label"] == conds[0]["label"]]
    init = {"seeds": [r["seed"] for r in first]}
    for key in ("centre_surround", "orientation"):
        init[key] = [r[f"{key}_init"] for r in first]
        init[f"{key}_summary"] = _claims.summarize(init[key])
    return {"task": "patches", "proxy_for": "grayscale CIFAR-10 (the authors' data)",
            "metric": "mean over the retina's output channels of each index, per seed",
            "ldfa_layer": LDFA_LAYER, "subspace": cfg.subspace, "ranks": sorted(set(cfg.ranks)),
            "channels": cfg.bottleneck, "crop": list(box), "conditions": entries, "at_init": init,
            "grids": grids, "study": str(folder),
            "runs": [{k: v for k, v in r.items() if k != "fields"} for r in runs],
            "fields": {f"{r['label']}_seed{r['seed']}": r["fields"] for r in runs},
            "jobs": jobs, "total_time": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------

def montage(images, columns: int = 8, gap: int = 1) -> np.ndarray:
    """Images (n, h, w) tiled ``columns`` to a row with ``gap`` pixels of nan between them."""
    images = np.asarray(images, dtype=float)
    n, h, w = images.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = im
    return out


def _two(value: float | None) -> str:
    """Two decimals, or n/a for a missing number."""
    return "n/a" if value is None else f"{value:.2f}"


def condition_title(label: str) -> str:
    return "bp (exact backprop)" if label == "bp" else f"ldfa, r = {label[1:]}"


def plot_grids(results: dict, cfg: Config) -> list[str]:
    """One montage of the z-scored retina fields per condition (one seed)."""
    import matplotlib.pyplot as plt

    labels = list(results["grids"])
    cols = 2 if len(labels) > 1 else 1
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.9 * rows + 0.4), squeeze=False)
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    entries = {e["label"]: e for e in results["conditions"]}
    for ax, label in zip(axes.ravel(), labels):
        g = results["grids"][label]
        ax.imshow(montage(g["images"]), cmap=cmap, vmin=-3, vmax=3, interpolation="nearest")
        shown = entries[label]["seeds"].index(g["seed"])
        accuracy = entries[label]["test_accuracy"][shown]
        ax.set_title(f"{condition_title(label)}: centre-surround {_two(_nanmean(g['centre_surround']))}, "
                     f"orientation {_two(_nanmean(g['orientation']))}; test acc "
                     f"{_two(accuracy) if accuracy is not None else 'n/a (diverged)'}", fontsize=8)
        ax.set_axis_off()
    for ax in axes.ravel()[len(labels):]:
        ax.set_axis_off()
    fig.suptitle(f"Retina output fields (32 channels, activation maximisation, z-scored, seed "
                 f"{cfg.seeds[0]}, sorted by activation); patches proxy, {cfg.image_size} px, "
                 f"{cfg.epochs} epochs", fontsize=9)
    return _claims.save_figure(fig, f"{cfg.out}/receptive_fields_grid")


def plot_indices(results: dict, cfg: Config) -> list[str]:
    """Centre-surround index, orientation index and test accuracy against r; bp as a band."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    panels = {**INDICES, "test_accuracy": "final test accuracy"}
    fig, axes = plt.subplots(1, len(panels), figsize=(14.5, 4.2), squeeze=False)
    ldfa = [e for e in results["conditions"] if e["rank"] is not None]
    bp = [e for e in results["conditions"] if e["rank"] is None]
    style = _claims.RULE_STYLE
    for ax, (key, ylabel) in zip(axes[0], panels.items()):
        for e in bp:
            s = e[f"{key}_summary"]
            if s["mean"] is not None:
                ax.axhline(s["mean"], color=style["bp"]["color"], lw=1.4, label="bp")
                ax.axhspan(s["mean"] - s["sd"], s["mean"] + s["sd"], color="black", alpha=0.1, lw=0)
        if ldfa:
            r = [e["rank"] for e in ldfa]
            m = [np.nan if e[f"{key}_summary"]["mean"] is None else e[f"{key}_summary"]["mean"] for e in ldfa]
            sd = [np.nan if e[f"{key}_summary"]["sd"] is None else e[f"{key}_summary"]["sd"] for e in ldfa]
            ax.errorbar(r, m, yerr=sd, lw=1.7, ms=5, capsize=3, label=f"ldfa {results['subspace']} on "
                        f"{results['ldfa_layer']}", **style.get(results["subspace"], style["oja"]))
            for e in ldfa:
                vals = [v for v in e[key] if v is not None]
                ax.plot([e["rank"]] * len(vals), vals, ".", color="0.55", ms=3, zorder=1)
            ax.set_xscale("log", base=2)
            ax.set_xticks(r)
            ax.set_xticklabels([str(x) for x in r])
            ax.xaxis.set_minor_locator(NullLocator())
        if key in INDICES and results.get("at_init", {}).get(f"{key}_summary", {}).get("mean") is not None:
            ax.axhline(results["at_init"][f"{key}_summary"]["mean"], color="0.5", lw=1.2, ls=":",
                       label="at initialisation (before training)")
        ax.set_xlabel("feedback rank r into the retina output")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5),
                       frameon=False)
    n = len(cfg.seeds)
    fig.suptitle(f"Retina/VVS on natural-image patches (proxy for grayscale CIFAR-10; d = {cfg.classes}, "
                 f"{cfg.image_size} px, {cfg.epochs} epochs): mean over {cfg.bottleneck} channels, "
                 f"mean +- sd over {n} seed{'s' * (n > 1)} (dots: seeds)", fontsize=9)
    return _claims.save_figure(fig, f"{cfg.out}/receptive_fields_indices")


def plot(results: dict, cfg: Config) -> list[str]:
    return plot_grids(results, cfg) + plot_indices(results, cfg)


def table(results: dict) -> str:
    """The per-condition indices and accuracy as text."""
    def fmt(s):
        return "   --   " if s["mean"] is None else f"{s['mean']:.3f}+-{s['sd']:.3f}"

    rows = [f"{'':<6} {'centre-surround':>15} {'orientation':>15} {'test accuracy':>15}"]
    for e in results["conditions"]:
        rows.append(f"{e['label']:<6} {fmt(e['centre_surround_summary']):>15} "
                    f"{fmt(e['orientation_summary']):>15} {fmt(e['test_accuracy_summary']):>15}")
    return "\n".join(rows)


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis receptive_fields", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    fields = results.pop("fields")
    out = Path(cfg.out)
    experiment.save_run(out, asdict(cfg), results, seed=list(cfg.seeds))
    np.savez_compressed(out / "fields.npz", **fields)  # raw maximisers, every run (not plotted)
    print(f"figure: {', '.join(plot(results, cfg))}")
    print(f"indices (mean over channels; mean +- sd over {len(cfg.seeds)} seeds), "
          f"{results['total_time']:.0f} s\n{table(results)}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
