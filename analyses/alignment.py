r"""Alignment over training: does the feedback come to carry backprop's signal, and in which subspace?

Four measurements, taken every ``record_every`` steps on the training set
(:mod:`bioplastic.metrics`; from the runs' weight snapshots), for every feedback pathway, the one
from the output error included:

* the alignment angle between each pathway's feedback B_l (n_{l-1}, n_l) and the transport it
  replaces, :math:`\theta_l = \angle(B_l, W_l^\top)` (fa, kp, and ldfa with B_l = Q_l P_l; 90 degrees:
  unrelated, 0: B_l a positive multiple of W_l^T), next to the smallest angle any rank-r matrix
  reaches (the truncated SVD of W_l^T);
* for ldfa, the principal angles between the feedback subspace, the row space of P_l (the r
  directions of the layer-l error that cross the bottleneck), and the top-r principal subspace of
  the error covariance :math:`C_l = \langle \delta_l \delta_l^\top \rangle` (uncentred, as Oja's rule
  uses it), against the mean angle between random r-dimensional subspaces;
* for ldfa, the capture of the error by the bottleneck,
  :math:`\operatorname{tr}(\tilde P_l C_l \tilde P_l^\top) / \sum_{i \le r} \lambda_i(C_l)` with
  :math:`\tilde P_l` P_l's rows orthonormalised (:func:`bioplastic.metrics.subspace_capture`): the
  error variance that crosses, as a fraction of the most any r directions carry. It is free of the
  scale of P and of the error, and unlike the principal angles it does not depend on how well the
  top-r subspace is separated from the rest (1: that subspace, or an equally good one). Reported
  for the uncentred C_l and for the centred covariance (the one ``oja_centred`` follows);
* the participation ratio :math:`(\sum_i \lambda_i)^2 / \sum_i \lambda_i^2` of every layer's error,
  the error dimensionality that reaches it.

The errors delta_l are the ones each rule delivers (:meth:`AbstractRule.layer_errors` on the current
weights), so a rule's measurements describe its own training.

Conditions: bp, fa, kp and ldfa at rank r = 3 with the subspace rules fixed, local, normative, oja
and oja_centred (the authors' Oja variant: centred error covariance scaled by the largest unit
standard deviation). kp decays W and B (``kp_decay``); ldfa-local, -oja and -oja_centred decay W, P
and Q as the authors do (``ldfa_decay``, the per-step shrink of their AdamW); fa, fixed and normative
do not decay. Deviations from the authors' code that remain here: SGD on the MSE of one-hot targets
(they use Adam or AdamW on cross-entropy, clamping the propagated error to [-1, 1]); Oja's P on the
raw mean <delta delta^T> in ``oja`` (theirs is centred, scaled and summed over the batch:
``oja_centred``, whose docstring lists its own deviations) and on the error of the output pathway
too (their linear layer can use the one-hot labels there); P with random orthonormal rows and Q with
fa's gain for oja (theirs: PyTorch's default init); the local rule's factors start at the SVD of W,
as theirs do.

What the default run shows (digits, MLP 64-64-64-10 ReLU, 40 epochs, 3 seeds; first -> last,
mean): kp's feedback aligns with W^T (B2 90.6 -> 44.0 degrees, output pathway B3 89.7 -> 31.4), fa's
slowly (84.9, 69.0). Local and normative feedback sit at the best angle a rank-3 matrix can reach
(B2 65.8 against 65.5 and 65.6; B3 51.5 and 49.1 against 49.4 and 49.1) but not in the error's
principal subspace: they capture 0.12 and 0.09 of the hidden pathway's top-3 error variance and
0.37 and 0.35 of the output error's, little more than fixed random feedback (0.04, 0.43). Oja's P
finds the hidden pathway's error subspace (principal angle 79 -> 5 degrees, capture 0.05 -> 0.98),
but not the output error's (59 -> 70 degrees, random subspaces sit at 60; capture 0.51 -> 0.50: the
output error's spectrum is flat, participation ratio 7.6 of 10). The centred variant finds both
(hidden 79 -> 3 degrees, capture 1.00; output 59 -> 53 degrees, capture 0.75), yet its output
feedback stays orthogonal to W^T (B3 87.8 degrees) and it trains worst of the adaptive rules: test
accuracy bp 95.3 %, fa 94.8, kp 93.6, ldfa oja 92.1, local 87.2, normative 86.9, fixed 86.4,
oja_centred 78.9. With kp's decay (0.03) instead of ``ldfa_decay``, local, oja and oja_centred
collapse (57, 59, 48 %), and oja's hidden P shrinks to row norms 0.37-0.59 (seed 0): the decay then outweighs
the small raw error covariance (top eigenvalue ~0.03), while oja_centred's scaled one stays ~1.

Training is one study (``studies/alignment.toml`` is the default's; its runs in ``OUT/study/runs``):
batches without the short last one (``[training] drop_last``) and every weight saved every
``record_every`` steps and after the last (``[record] weights_every_steps``); the measurements are
then taken on those snapshots and the training set, as functions of the weights. This gives the
numbers of the training loop it replaced bit for bit (``--quick``: every number of results.json
identical; same initial weights, batch order, steps); the numbers above were measured with that loop.

Run: ``bioplastic analysis alignment [--rank=3 --epochs=20 ...]`` (``--quick`` for a small check,
``--help`` for every setting; ``--resume=true`` continues the study in OUT/study, e.g. one run by
``bioplastic run studies/alignment.toml --out results/alignment/study``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveInt

from bioplastic import experiment, metrics, rules
from bioplastic.circuit.keys import key as weight_key
from bioplastic.experiment.cmdline import parse_command_line
from bioplastic.experiment.progress import Progress

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a file: the helpers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _claims  # noqa: E402

#: The study's description: this file's first line.
DESCRIPTION = __doc__.split("\n", 1)[0]

#: Condition name -> (rule, subspace); ``bp`` is the reference (angle 0 by construction).
CONDITIONS = {"bp": ("bp", None), "fa": ("fa", None), "kp": ("kp", None),
              "ldfa-fixed": ("ldfa", "fixed"), "ldfa-local": ("ldfa", "local"),
              "ldfa-normative": ("ldfa", "normative"), "ldfa-oja": ("ldfa", "oja"),
              "ldfa-oja_centred": ("ldfa", "oja_centred")}
#: Conditions trained with weight decay, and the Config field that sets it: those whose feedback
#: follows the forward weights by the Kolen-Pollack argument (W and the feedback decay together).
DECAYED = {"kp": "kp_decay", "ldfa-local": "ldfa_decay", "ldfa-oja": "ldfa_decay",
           "ldfa-oja_centred": "ldfa_decay"}


@dataclass(frozen=True)
class Config:
    sizes: tuple[PositiveInt, ...] = (64, 64, 64, 10)  # digits MLP; hidden 64 > rank, so
                                   # subspaces are a choice
    activation: str = "relu"       # as the demo
    rank: PositiveInt = 3          # ldfa rank r < d = 10: which r directions cross is the question
    conditions: tuple[Literal["bp", "fa", "kp", "ldfa-fixed", "ldfa-local", "ldfa-normative",
                              "ldfa-oja", "ldfa-oja_centred"], ...] = tuple(CONDITIONS)  # bp: the
                                   # participation-ratio reference
    lr: float = 0.03               # the demo's rate
    feedback_lr: float = 0.03      # = lr, as kp's B must move with W's step; Oja stable at width 64
    kp_decay: float = 0.03         # B - W^T decays as (1 - lr decay)^t: the demo's 1e-3 left 73 deg
    ldfa_decay: float = 1.7e-3     # weight decay of W, P and Q in ldfa-local, -oja and -oja_centred,
                                   # as the authors train these rules: lr * decay = 5e-5 per step, the
                                   # shrink of their AdamW for the local rule (lr 5e-4, wd 0.1; their Oja
                                   # code: Adam with L2 4e-4). Over these 1680 steps it removes only 8%
                                   # of the Kolen-Pollack mismatch Q^T - P W; kp's 0.03 collapsed these
                                   # runs (test accuracy 0.57, 0.59, 0.48, loss rising: the decay
                                   # outweighs their small feedback gradients). 0 for fa, fixed, normative
    epochs: PositiveInt = 40
    batch_size: PositiveInt = 32
    record_every: PositiveInt = 20  # steps between measurements (42 steps per epoch on digits)
    seeds: tuple[NonNegativeInt, ...] = (0, 1, 2)  # each seed: initial weights and batch order
    random_draws: PositiveInt = 500  # Monte Carlo draws for the random-subspace angle
    jobs: NonNegativeInt = 0       # worker processes of the study; 0: one per core
    out: str = "results/alignment"
    resume: bool = False           # continue an interrupted run from the study in OUT/study/


#: ``--quick``: one seed, two epochs, in this process.
QUICK = {"seeds": (0,), "epochs": 2, "jobs": 1}


def check(cfg: Config) -> None:
    """Raise a clear error on a bad config, before any training."""
    bad = [c for c in cfg.conditions if c not in CONDITIONS]
    if bad:
        raise ValueError(f"unknown conditions {bad}; valid options: {', '.join(CONDITIONS)}")
    if len(cfg.sizes) < 3:
        raise ValueError(f"sizes needs a hidden layer (at least 3 entries); got {cfg.sizes}")
    if cfg.record_every < 1 or cfg.epochs < 1 or not cfg.seeds:
        raise ValueError("record_every and epochs must be >= 1 and seeds non-empty; got "
                         f"{cfg.record_every}, {cfg.epochs}, {cfg.seeds}")


# --------------------------------------------------------------------------------------------------
# Pure measurement functions
# --------------------------------------------------------------------------------------------------

def layer_errors(weights: dict, x: np.ndarray, y: np.ndarray, rule, act: str) -> tuple[list, float]:
    """(delta_l (n, n_l) for l = 1..L, loss) that ``rule`` delivers with ``weights`` on (x, y)."""
    L = rules.n_layers(weights)
    fprime = rules.activation(act).fprime
    a, h = rules.forward(weights, x, L, act)
    e = h[-1] - y
    return rule.layer_errors(weights, a, e, fprime)[1:], rules.loss(h[-1], y)


def top_subspace(cov: np.ndarray, r: int) -> np.ndarray:
    """Orthonormal basis (n, r) of the top-r eigenvectors of a symmetric covariance."""
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, ::-1][:, :r]


def random_subspace_angle(n: int, r: int, draws: int, seed: int = 0) -> float:
    """Mean principal angle (degrees) between two uniformly random r-dimensional subspaces of R^n."""
    if r >= n:
        return 0.0
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(draws):
        total += np.mean(metrics.principal_angles(rng.normal(size=(n, r)), rng.normal(size=(n, r))))
    return float(np.degrees(total / draws))


def measure(weights: dict, rule_name: str, rule, act: str, x: np.ndarray, y: np.ndarray) -> dict:
    """Every measurement of one moment of training (module docstring)."""
    L = rules.n_layers(weights)
    deltas, loss = layer_errors(weights, x, y, rule, act)
    out = {"loss": loss, "angle": {}, "optimum_angle": {}, "principal_angles": {}, "capture": {},
           "capture_centred": {},
           "participation_ratio": {str(l): metrics.participation_ratio(deltas[l - 1])
                                   for l in range(1, L + 1)}}
    if not rule.exact_gradient and rule.topology == "layer":  # B_l is comparable with W_l^T
        for l, B in metrics.feedback_matrices(weights, rule).items():
            out["angle"][str(l)] = metrics.alignment_angle(B, weights[weight_key("W", l)])
    if rule_name == "ldfa":
        for l in range(2, L + 1):
            # the smallest angle any rank-r B reaches: the truncated SVD of W^T (Eckart-Young),
            # cos = sqrt(explained variance)
            ev = metrics.explained_variance(weights[weight_key("W", l)], weights[weight_key("P", l)].shape[0])
            out["optimum_angle"][str(l)] = float(np.degrees(np.arccos(np.sqrt(min(ev, 1.0)))))
            P, d = weights[weight_key("P", l)], deltas[l - 1]
            second_moment = d.T @ d / d.shape[0]
            top = top_subspace(second_moment, P.shape[0])
            out["principal_angles"][str(l)] = np.degrees(metrics.principal_angles(P.T, top)).tolist()
            out["capture"][str(l)] = metrics.subspace_capture(P, second_moment)
            out["capture_centred"][str(l)] = metrics.subspace_capture(P, np.cov(d.T, bias=True))
    return out


# --------------------------------------------------------------------------------------------------
# Training (one study), then the measurements on its weight snapshots
# --------------------------------------------------------------------------------------------------

def condition_settings(cfg: Config, name: str) -> dict:
    """The dotted study keys of condition ``name``: its rule, subspace rule and rank, and its decay."""
    rule_name, subspace = CONDITIONS[name]
    out: dict = {"feedback.rule": rule_name}
    if rule_name == "ldfa":
        out.update({"feedback.subspace": subspace, "feedback.rank": cfg.rank})
    if name in DECAYED:
        out["optimizer.decay"] = getattr(cfg, DECAYED[name])
    return out


def study(cfg: Config) -> dict:
    """Every condition for every seed as a study mapping (``studies/alignment.toml`` is the
    default's): the digits, the MLP of ``sizes``, batches without the short last one
    (``drop_last``), and the weights saved every ``record_every`` steps (``weights_every_steps``),
    from which :func:`measure_run` takes the measurements."""
    grids = [{k: [v] for k, v in condition_settings(cfg, name).items()} for name in cfg.conditions]
    return {"name": "alignment", "description": DESCRIPTION, "seeds": [int(s) for s in cfg.seeds],
            "task": {"name": "digits"},
            "circuit": {"hidden": list(cfg.sizes[1:-1]), "activation": cfg.activation},
            "optimizer": {"lr": cfg.lr, "feedback_lr": cfg.feedback_lr},
            "training": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "drop_last": True},
            "record": {"weights_every_steps": cfg.record_every},
            "backend": {"name": "reference"},
            "grid": _claims._merge_grids(grids)}


def condition_of(run: dict) -> str:
    """The condition (a key of :data:`CONDITIONS`) a resolved run trains."""
    found = [n for n, (rule, sub) in CONDITIONS.items()
             if run["feedback"]["rule"] == rule and run["feedback"]["subspace"] == sub]
    if len(found) != 1:
        raise ValueError(f"run {run['run_id']} is none of the conditions {', '.join(CONDITIONS)}")
    return found[0]


def measure_run(folder, rule_name: str, subspace: str | None, act: str, x: np.ndarray, y: np.ndarray) -> dict:
    """The measurements (:func:`measure`) of every weight snapshot of one run folder, as series over
    steps."""
    from bioplastic.experiment.run import load_snapshot, step_snapshots

    rule = rules.get_rule(rule_name, subspace)
    series: dict = {"step": [], "loss": [], "angle": {}, "optimum_angle": {},
                    "principal_angles": {}, "capture": {}, "capture_centred": {},
                    "participation_ratio": {}}
    for step, path in step_snapshots(folder).items():
        m = measure(load_snapshot(path), rule_name, rule, act, x, y)
        series["step"].append(step)
        series["loss"].append(m["loss"])
        for key in ("angle", "optimum_angle", "principal_angles", "capture", "capture_centred",
                    "participation_ratio"):
            for l, v in m[key].items():
                series[key].setdefault(l, []).append(v)
    return series


def _mean_sd(curves: list) -> dict:
    """Mean and sd (ddof = 1; 0 for one seed) over seeds of curves, cut to the shortest (a run
    that diverged stops early)."""
    n = min(len(c) for c in curves)
    arr = np.array([c[:n] for c in curves], dtype=float)
    sd = arr.std(axis=0, ddof=1) if len(arr) > 1 else np.zeros(n)
    return {"mean": arr.mean(axis=0).tolist(), "sd": sd.tolist()}


def summarize(runs: list) -> dict:
    """Per-quantity mean/sd curves over seeds, and the first and last values (mean, sd)."""
    out: dict = {"loss": _mean_sd([r["loss"] for r in runs])}
    for key in ("angle", "optimum_angle", "capture", "capture_centred", "participation_ratio"):
        out[key] = {l: _mean_sd([r[key][l] for r in runs]) for l in runs[0][key]}
    # the mean over the r principal angles summarises a subspace's distance in one number
    out["mean_principal_angle"] = {
        l: _mean_sd([np.mean(r["principal_angles"][l], axis=1) for r in runs])
        for l in runs[0]["principal_angles"]}
    accs = [r["test_accuracy"] for r in runs if r["test_accuracy"] is not None]
    out["test_accuracy"] = {"mean": float(np.mean(accs)) if accs else None,
                            "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0}
    out["diverged"] = sum(r["diverged"] for r in runs)

    def ends(curve):
        return {"first": curve["mean"][0], "last": curve["mean"][-1], "last_sd": curve["sd"][-1]}

    out["ends"] = {key: {l: ends(c) for l, c in out[key].items()}
                   for key in ("angle", "optimum_angle", "participation_ratio",
                               "mean_principal_angle", "capture", "capture_centred")}
    return out


def run(cfg: Config, progress: bool = True) -> dict:
    """Train every condition for every seed (one study, its runs in ``OUT/study/runs``), then
    measure every run's weight snapshots; no plotting. ``progress``: a bar on stderr."""
    from bioplastic.experiment.run import load_task, run_folder
    from bioplastic.experiment.study import RunConfig, study_from_mapping

    check(cfg)
    t0 = time.perf_counter()
    loaded = study_from_mapping(study(cfg))
    dataset = load_task(RunConfig.model_validate(loaded.runs[0]).task)
    if dataset.n_in != cfg.sizes[0] or dataset.n_classes != cfg.sizes[-1]:
        raise ValueError(f"sizes {cfg.sizes} do not fit digits: the first must be {dataset.n_in} "
                         f"and the last {dataset.n_classes}")
    L = len(cfg.sizes) - 1
    jobs = _claims.jobs_for(cfg.jobs, len(loaded.runs))
    folder = Path(cfg.out) / "study"
    header = (f"alignment on digits: MLP {'-'.join(map(str, cfg.sizes))} {cfg.activation}, rank "
              f"{cfg.rank}, {len(cfg.conditions)} conditions x {len(cfg.seeds)} seeds x {cfg.epochs} "
              f"epochs, {jobs} process{'es' if jobs > 1 else ''}")
    results = _claims.run_analysis_study(loaded, folder, jobs, cfg.resume, progress, header)
    x, y = dataset.x_train, dataset.y_train
    by_run = {(condition_of(r), r["seed"]): r["run_id"] for r in loaded.runs}
    conds = {}
    bar = Progress(len(cfg.conditions) * len(cfg.seeds), desc="measuring", enabled=progress)
    with bar, experiment.single_threaded():
        for name in cfg.conditions:
            rule, subspace = CONDITIONS[name]
            runs = []
            for seed in cfg.seeds:
                run_id = by_run[name, seed]
                result = _claims.require(results, run_id, "run", ("finished", "diverged"))
                diverged = result["state"] == "diverged"
                series = measure_run(run_folder(folder, run_id), rule, subspace, cfg.activation, x, y)
                runs.append(dict(series, seed=seed, run_id=run_id, diverged=diverged,
                                 test_accuracy=None if diverged else result["metrics"]["test_accuracy"]))
                last = runs[-1]
                angles = " ".join(f"B{l} {v[-1]:.1f}" for l, v in last["angle"].items())
                acc = "diverged" if diverged else f"{last['test_accuracy']:.3f}"
                bar.update(1, f"{name} s{seed}")
                bar.write(f"  {name:<15} seed {seed}: angle to W^T (deg) {angles or '-'}; test acc {acc}")
            conds[name] = {"rule": rule, "subspace": subspace, "runs": runs, "summary": summarize(runs)}
    steps = min((c["runs"][0]["step"] for c in conds.values()), key=len)
    ranks = {str(l): min(cfg.rank, cfg.sizes[l - 1], cfg.sizes[l]) for l in range(2, L + 1)}
    chance = {l: random_subspace_angle(cfg.sizes[int(l)], r, cfg.random_draws, seed=int(l))
              for l, r in ranks.items()}
    steps_per_epoch = dataset.x_train.shape[0] // cfg.batch_size
    return {"sizes": list(cfg.sizes), "steps": steps, "steps_per_epoch": steps_per_epoch,
            "ranks": ranks, "random_subspace_angle": chance, "task_dim": cfg.sizes[-1],
            "conditions": conds, "jobs": jobs, "total_time": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------

STYLE = {"bp": dict(color="black", ls="-"), "fa": dict(color="#9467bd", ls="--"),
         "kp": dict(color="#ff7f0e", ls="-"), "ldfa-fixed": dict(color="#7f7f7f", ls=":"),
         "ldfa-local": dict(color="#1f77b4", ls="-"), "ldfa-normative": dict(color="#2ca02c", ls="--"),
         "ldfa-oja": dict(color="#d62728", ls="-."),
         "ldfa-oja_centred": dict(color="#8c564b", ls="-")}


def _band(ax, t, curve, name):
    m, sd = np.array(curve["mean"]), np.array(curve["sd"])
    t = t[:len(m)]
    ax.plot(t, m, lw=1.7, label=name, **STYLE[name])
    ax.fill_between(t, m - sd, m + sd, color=STYLE[name]["color"], alpha=0.15, lw=0)


def _pathway(l: str, sizes) -> str:
    src = "output error" if int(l) == len(sizes) - 1 else f"layer {l}"
    return f"B{l}: {src} -> layer {int(l) - 1}"


def plot(results: dict, cfg: Config) -> list:
    """Four figures: alignment angles, subspace angles, subspace capture, error participation
    ratios."""
    import matplotlib.pyplot as plt

    from bioplastic.plotting import save_figure

    conds = results["conditions"]
    t = np.array(results["steps"]) / results["steps_per_epoch"]
    sizes = results["sizes"]
    L = len(sizes) - 1
    pathways = [str(l) for l in range(2, L + 1)]
    n_seeds = len(cfg.seeds)
    tail = f"digits, MLP {'-'.join(map(str, sizes))}; mean +- sd over {n_seeds} seed{'s' * (n_seeds > 1)}"
    paths = []

    fig, axes = plt.subplots(1, len(pathways), figsize=(5.2 * len(pathways), 4), squeeze=False)
    for ax, l in zip(axes[0], pathways):
        for name, c in conds.items():
            if l in c["summary"]["angle"]:
                _band(ax, t, c["summary"]["angle"][l], name)
            if l in c["summary"]["optimum_angle"]:
                opt = c["summary"]["optimum_angle"][l]["mean"]
                ax.plot(t[:len(opt)], opt, lw=0.8, color=STYLE[name]["color"], ls=(0, (1, 2)))
        ax.set_title(_pathway(l, sizes), fontsize=10)
        ax.set_ylim(0, 95)
        ax.axhline(90, color="0.6", lw=0.8, ls=(0, (2, 3)))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(r"angle between $B_l$ and $W_l^\top$ (degrees)")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(f"feedback alignment (ldfa rank r = {cfg.rank}; thin dotted: the best rank-r angle, "
                 f"arccos sqrt(explained variance of W_l))\n{tail}", fontsize=10)
    paths += [str(p) for p in save_figure(fig, f"{cfg.out}/alignment_angle")]

    ldfa = {n: c for n, c in conds.items() if c["rule"] == "ldfa"}
    if ldfa:
        fig, axes = plt.subplots(1, len(pathways), figsize=(5.2 * len(pathways), 4), squeeze=False)
        for ax, l in zip(axes[0], pathways):
            for name, c in ldfa.items():
                _band(ax, t, c["summary"]["mean_principal_angle"][l], name)
            chance = results["random_subspace_angle"][l]
            ax.axhline(chance, color="0.5", lw=1, ls=(0, (2, 3)), label="random subspaces")
            r = results["ranks"][l]
            ax.set_title(f"{_pathway(l, sizes)}: row(P{l}) vs top-{r} of C{l}", fontsize=10)
            ax.set_ylim(0, 92)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("mean principal angle (degrees)")
        axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        fig.suptitle("feedback subspace vs principal subspace of the layer's error covariance "
                     f"C = <delta delta^T>\n{tail}", fontsize=10)
        paths += [str(p) for p in save_figure(fig, f"{cfg.out}/subspace_angle")]

        kinds = (("capture", "C = <delta delta^T>"), ("capture_centred", "centred C = Cov(delta)"))
        fig, axes = plt.subplots(len(kinds), len(pathways), figsize=(5.2 * len(pathways), 7.2),
                                 squeeze=False, sharex=True)
        for row, (key, label) in zip(axes, kinds):
            for ax, l in zip(row, pathways):
                for name, c in ldfa.items():
                    _band(ax, t, c["summary"][key][l], name)
                ax.set_title(f"{_pathway(l, sizes)}, r = {results['ranks'][l]}: {label}", fontsize=9)
                ax.set_ylim(0, 1.02)
                ax.grid(alpha=0.3)
            row[0].set_ylabel("tr(P C P^T) / sum of the top-r eigenvalues of C")
        for ax in axes[-1]:
            ax.set_xlabel("epoch")
        axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        fig.suptitle("error variance crossing the bottleneck, as a fraction of the most any r directions "
                     f"carry (P's rows orthonormalised; 1: the top-r subspace)\n{tail}", fontsize=10)
        paths += [str(p) for p in save_figure(fig, f"{cfg.out}/subspace_capture")]

    layers = [str(l) for l in range(1, L + 1)]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.6 * len(layers), 4), squeeze=False)
    for ax, l in zip(axes[0], layers):
        for name, c in conds.items():
            _band(ax, t, c["summary"]["participation_ratio"][l], name)
        ax.axhline(cfg.rank, color="#d62728", lw=0.8, ls=(0, (2, 3)))
        ax.text(t[-1], cfg.rank, f"r = {cfg.rank}", fontsize=7, ha="right", va="bottom",
                color="#d62728")
        ax.set_title(f"{'output' if int(l) == L else 'hidden layer ' + l} error (n = {sizes[int(l)]})",
                     fontsize=10)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("participation ratio of the error")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(f"error dimensionality that reaches each layer\n{tail}", fontsize=10)
    paths += [str(p) for p in save_figure(fig, f"{cfg.out}/error_dimension")]
    return paths


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis alignment", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=list(cfg.seeds))
    for path in plot(results, cfg):
        print(f"figure: {path}")
    print(f"first -> last value, mean over {len(cfg.seeds)} seeds ({results['total_time']:.0f} s):")
    for name, c in results["conditions"].items():
        ends = c["summary"]["ends"]
        parts = [f"angle B{l} {e['first']:.1f} -> {e['last']:.1f}" for l, e in ends["angle"].items()]
        parts += [f"subspace B{l} {e['first']:.1f} -> {e['last']:.1f}"
                  for l, e in ends["mean_principal_angle"].items()]
        parts += [f"capture B{l} {e['first']:.2f} -> {e['last']:.2f} (centred "
                  f"{ends['capture_centred'][l]['first']:.2f} -> {ends['capture_centred'][l]['last']:.2f})"
                  for l, e in ends["capture"].items()]
        parts.append("PR " + ", ".join(f"{e['last']:.2f}" for e in ends["participation_ratio"].values()))
        print(f"  {name:<15} " + "; ".join(parts))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
