"""Linear theory vs simulation: fixed low-rank feedback stalls at a spurious fixed point, adaptive
feedback learns the task's modes (the linear theory of Hanut & Kadmon, arXiv 2502.20580).

A two-layer linear network y = W2 W1 x (10-16-8) learns a teacher y = S x with
S = U diag(5, 4, 3, 2.5, 2, 1.5, 1, 0.5) V^T from 500 Gaussian inputs, full batch, not whitened.
Every mode strength sigma_hat_j = [U^T W2 W1 V]_jj / s_j is taken against this one SVD of S, for
the simulation and the theory alike.

* *Simulation*: one study (``studies/linear_theory.toml`` is the default's; runs in
  ``OUT/study/runs``), on the reference backend: bp, fixed rank-r feedback and normative rank-r
  feedback from small initial weights (``circuits.mlp``'s ``init_scale``), full-batch steps in the
  stored order (task ``linear_teacher``, ``batch_size = samples``, ``shuffle = false``), the weights
  saved every ``record_every`` steps (``weights_every_steps``); a metrics line (with the test loss
  on ``test_samples`` fresh inputs, which this analysis does not read) every ``eval_every`` steps,
  not every step: a metrics line (evaluation, a synced line, a status file, a log line) costs
  ~20 ms, a step of this small network ~0.3 ms (measured; 40 000 steps of normative feedback: 39 s
  in the loop this replaced, 45 s as a study run with its 801 snapshots, on 2 busy cores).
  Normative factors start as the truncated SVD of the scaled initial W2 (Q P = its best rank-r
  approximation, as the builder's ``svd`` init and the authors' script do), not of the full-scale
  draw.
* *Theory*: the reduced flow on the data's second-order statistics S and Sigma = X^T X / N
  (:func:`bioplastic.theory.linear_flow`; Sigma = I is the paper's whitened theory). On a full
  batch this is the simulation's own dynamics written in S and Sigma, so the two curves coincide
  (the gap is reported); the content is the closed forms it is compared with.
* *Closed forms* (derived here, :mod:`bioplastic.theory`): fixed feedback P stops at
  W* = S Sigma S^T P^T (P S Sigma S^T P^T)^-1 P S, where P (S - W*) Sigma = 0; the rank-r optimum
  keeps the top r modes (for Sigma = I, the Eckart-Young truncation of S). The fixed point is
  computed with the sample's Sigma: the whitened formula (Sigma = I) misses these 500 unwhitened
  samples by 5%, and the formula evaluated on the sample correlation <y x^T> = S Sigma as if the
  inputs were white (this analysis before) by 14%.
* *Rank sweep*: for r = 1..m, fixed and normative feedback run for ``steps`` through the reduced
  flow on the sample's S and Sigma (the reference backend's full-batch dynamics, held equal to it
  to 1e-9 by tests/test_limits.py, at a twentieth of the cost), their final mode strengths
  against the fixed-point formula and the rank-r optimum.

What the default run shows (seed 0, 40 000 steps, r = 2; results.json holds every number): fixed
feedback lands 0.29% from the sample-covariance fixed point, the same 0.29% as on exactly whitened
inputs (what remains is the slow drift of the small initial W1 outside span(Q): 0.01% after 1000
steps, 0.6% after 80 000), against 5.2% from the whitened formula and 14% from the formula applied
to <y x^T> as if the inputs were white. Its loss is 1.5x the rank-2 optimum's and its modes are
scrambled (0.76, 0.03, 0.93, 0.22, 0.04, ...). Across r = 1..7 the reached modes match the formula
to 0.01 (distances 0.05-0.4%), with 1.1x (r = 1) to 15x (r = 7) the rank-r optimum's loss.
Normative feedback learns the top r modes first: at step 1000 it holds exactly modes 1..r at every
r = 1..7 (r = 8: modes 1-7, mode 8 at 0.2). Then it learns past its rank, one mode at a time and,
overall, ever more slowly: at r = 2, modes 1 and 2 by steps 250 and 300, mode 3 by 5 350, mode 4 by
18 400 (it then settles near 0.87 until mode 5 arrives at 26 250), modes 6-8 not within 40 000
steps (the reduced flow continued to 200 000: mode 6 at 76 300, mode 7 at 140 600, mode 8 not yet).
Beyond the top r the order is not always kept (r = 1 after 40 000 steps: modes 3, 4, 5 at 0.77,
0.35, 0.86). The rank limits how fast normative feedback learns, not how many modes: at every r the
final state holds more than the rank-r optimum's r modes (2, 5, 6, 6, 6, 7, 8, 8 for r = 1..8).

Training through the study gives the numbers of the loop it replaced bit for bit (``--quick``:
every number of results.json identical); the numbers above were measured with that loop.

Run: ``bioplastic analysis linear_theory [--steps=20000 ...]`` (``--quick`` for a small check,
``--help`` for every setting; ``--resume=true`` continues the study in OUT/study, e.g. one run by
``bioplastic run studies/linear_theory.toml --out results/linear_theory/study``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

import bioplastic
import circuits
from bioplastic import data, experiment, theory
from bioplastic.experiment.cmdline import parse_command_line
from bioplastic.experiment.progress import Progress

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a file: the helpers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _claims  # noqa: E402

#: The study's description: this file's first paragraph.
DESCRIPTION = " ".join(__doc__.split("\n\n", 1)[0].split())


@dataclass(frozen=True)
class Config:
    n_in: PositiveInt = 10   # input dimension n
    n_hidden: PositiveInt = 16  # hidden width k (wider than the task)
    singular_values: tuple[PositiveFloat, ...] = (5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5)  # teacher
                             # modes; m = len
    rank: PositiveInt = 2    # feedback rank r < m of the three trajectories
    sweep_ranks: tuple[PositiveInt, ...] = (1, 2, 3, 4, 5, 6, 7, 8)  # ranks of the final-mode sweep
    samples: PositiveInt = 500  # finite sample, not whitened: the fixed point is computed with its
                             # X^T X / N (the whitened formula misses by 5%)
    lr: float = 0.04         # forward step (dt / tau)
    feedback_lr: float = 0.04  # normative Q, P step (dt / tau_b)
    init_scale: float = 1e-3  # small initial weights (the fixed-point derivation assumes them);
                             # normative Q, P scale with them (sqrt each: QP = SVD of the scaled W2^T)
    steps: PositiveInt = 40_000
    record_every: PositiveInt = 50  # fine enough for the first modes, learnt within ~500 steps
    learnt: float = 0.9      # a mode counts as learnt once sigma_hat_j reaches this
    early_step: PositiveInt = 1000  # the sweep's snapshot of normative feedback before its final
                             # state: at 1000 steps it holds the top r modes and little else
    seed: NonNegativeInt = 0
    test_samples: PositiveInt = 100  # the runs' test set: fresh inputs drawn after the training
                             # ones (the study's test loss; the analysis reads only the weights)
    eval_every: PositiveInt = 1000  # steps (= full-batch epochs) between the runs' metrics lines:
                             # one per step would cost ~65x the step itself (20 ms against 0.3 ms)
    jobs: NonNegativeInt = 0  # worker processes of the study; 0: one per core
    out: str = "results/linear_theory"
    resume: bool = False     # continue an interrupted run from the study in OUT/study/


#: ``--quick``: a thousand steps, in this process.
QUICK = {"steps": 1000, "record_every": 100, "jobs": 1}

TITLES = {"bp": "backprop", "fixed": "fixed rank-{r} feedback", "normative": "normative rank-{r} feedback"}


def teacher_task(cfg: Config) -> data.LinearTeacher:
    """The teacher S = U diag(s) V^T and the 500 training inputs, as the study's ``linear_teacher``
    task draws them (:func:`bioplastic.data.linear_teacher`)."""
    return data.linear_teacher(cfg.n_in, cfg.singular_values, cfg.samples, cfg.test_samples, seed=cfg.seed)


def check(cfg: Config) -> None:
    """Raise a clear error on a config this analysis cannot run."""
    m = len(cfg.singular_values)
    if not cfg.singular_values or m > cfg.n_in:
        raise ValueError(f"singular_values: the teacher needs 1 to n_in = {cfg.n_in} modes; got {m}")
    bad = [r for r in (cfg.rank, *cfg.sweep_ranks) if r > min(m, cfg.n_hidden)]
    if bad:
        raise ValueError(f"rank and sweep_ranks must be <= min(m = {m}, n_hidden = {cfg.n_hidden}); "
                         f"got {bad}")
    if cfg.samples <= cfg.n_in:
        raise ValueError(f"samples must be > n_in = {cfg.n_in} (to whiten centred inputs); got {cfg.samples}")
    if cfg.steps % cfg.record_every:
        raise ValueError(f"steps must be a multiple of record_every = {cfg.record_every} (the final weights "
                         f"are the last recorded ones); got {cfg.steps}")


def initial_weights(cfg: Config, subspace: str, rank: int) -> dict:
    """Initial weights of one condition: the circuit's draw, W scaled by ``init_scale``; for
    normative feedback Q, P by sqrt(init_scale), the truncated SVD of the scaled W2^T (the builder's
    ``init_scale``)."""
    rule = "bp" if subspace == "bp" else "ldfa"
    circuit = circuits.mlp([cfg.n_in, cfg.n_hidden, len(cfg.singular_values)], rule=rule,
                           rank=None if rule == "bp" else rank, subspace="local" if rule == "bp" else subspace,
                           activation="linear", bias=False, lr=cfg.lr, feedback_lr=cfg.feedback_lr,
                           seed=cfg.seed, init_scale=cfg.init_scale)
    return {"circuit": circuit, "weights": bioplastic.initial_weights(circuit)}


#: The simulated runs: name -> (dotted study keys). ``whitened_fixed``: fixed feedback on exactly
#: whitened inputs (X^T X / N = I), where the whitened fixed-point formula is exact.
def run_settings(cfg: Config) -> dict[str, dict]:
    """The dotted study keys of each simulated run."""
    ldfa = {"feedback.rule": "ldfa", "feedback.rank": cfg.rank}
    return {"bp": {"feedback.rule": "bp"},
            "fixed": {**ldfa, "feedback.subspace": "fixed"},
            "normative": {**ldfa, "feedback.subspace": "normative"},
            "whitened_fixed": {"task.whiten": True, **ldfa, "feedback.subspace": "fixed"}}


def study(cfg: Config) -> dict:
    """The simulations as a study mapping (``studies/linear_theory.toml`` is the default's): the
    10-16-8 linear network, small initial weights (``init_scale``), full-batch steps in the stored
    order, the weights saved every ``record_every`` steps; bp, fixed and normative feedback at rank
    r, and fixed feedback on whitened inputs."""
    settings = run_settings(cfg)
    grids = [{"feedback.rule": ["bp"]},
             {"feedback.rule": ["ldfa"], "feedback.subspace": ["fixed", "normative"], "feedback.rank": [cfg.rank]},
             {k: [v] for k, v in settings["whitened_fixed"].items()}]
    return {"name": "linear_theory", "description": DESCRIPTION, "seeds": [int(cfg.seed)],
            "task": {"name": "linear_teacher", "n_in": cfg.n_in,
                     "singular_values": [float(v) for v in cfg.singular_values], "whiten": False,
                     "samples": cfg.samples, "test_samples": cfg.test_samples, "seed": int(cfg.seed)},
            "circuit": {"hidden": [cfg.n_hidden], "activation": "linear",
                        "options": {"bias": False, "init_scale": cfg.init_scale}},
            "optimizer": {"lr": cfg.lr, "feedback_lr": cfg.feedback_lr},
            "training": {"epochs": cfg.steps, "batch_size": cfg.samples, "shuffle": False,
                         "eval_every": cfg.eval_every, "checkpoint_every": 10 * cfg.eval_every},
            "record": {"weights_every_steps": cfg.record_every},
            "backend": {"name": "reference"},
            "grid": grids}


def train_study(cfg: Config, progress: bool = True) -> dict[str, dict]:
    """Run the study (its runs in ``OUT/study/runs``); per simulated run, its weights by step (the
    snapshots at multiples of ``record_every``)."""
    from bioplastic.experiment.run import load_snapshot, run_folder, step_snapshots
    from bioplastic.experiment.study import study_from_mapping

    loaded = study_from_mapping(study(cfg))
    jobs = _claims.jobs_for(cfg.jobs, len(loaded.runs))
    folder = Path(cfg.out) / "study"
    results = _claims.run_analysis_study(
        loaded, folder, jobs, cfg.resume, progress,
        f"linear theory: {len(loaded.runs)} simulated runs x {cfg.steps} steps, {jobs} process{'es' if jobs > 1 else ''}")
    dotted = _claims._dotted
    out = {}
    for name, keys in run_settings(cfg).items():
        found = [r for r in loaded.runs if all(dotted(r, k) == v for k, v in keys.items())
                 and (name == "whitened_fixed" or not dotted(r, "task.whiten"))]
        if len(found) != 1:
            raise RuntimeError(f"simulated run {name} matches {len(found)} runs of the study")
        run_id = found[0]["run_id"]
        _claims.require(results, run_id, f"simulated run {name}")
        snaps = step_snapshots(run_folder(folder, run_id))
        out[name] = {step: load_snapshot(path) for step, path in snaps.items() if step % cfg.record_every == 0}
    return out


def first_learnt(steps, modes, level: float) -> list:
    """Per mode, the first recorded step at which sigma_hat_j >= level (None: never)."""
    modes = np.asarray(modes)
    return [int(steps[np.argmax(modes[:, j] >= level)]) if np.any(modes[:, j] >= level) else None
            for j in range(modes.shape[1])]


def _relative(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def simulate(cfg: Config, subspace: str, snapshots: dict, S, sigma) -> dict:
    """One condition's simulation (its weight snapshots from the study's run on the reference
    backend), with its reduced flow alongside."""
    steps = sorted(snapshots)
    if steps != list(range(0, cfg.steps + 1, cfg.record_every)):
        raise RuntimeError(f"the {subspace} run's snapshots are at steps {steps[:3]}...{steps[-3:]}, not every "
                           f"{cfg.record_every} of {cfg.steps}")
    w0 = snapshots[0]
    m = S.shape[0]
    sim = np.array([theory.mode_strengths(snapshots[t]["W2"] @ snapshots[t]["W1"], S) for t in steps])
    flow = theory.linear_flow(S, w0["W1"], w0["W2"], w0.get("P2", np.eye(m)[:cfg.rank]),
                              w0.get("Q2", np.zeros((cfg.n_hidden, cfg.rank))),
                              feedback="bp" if subspace == "bp" else subspace, lr=cfg.lr,
                              feedback_lr=cfg.feedback_lr, steps=cfg.steps,
                              record_every=cfg.record_every, input_covariance=sigma)
    w = snapshots[steps[-1]]
    W = w["W2"] @ w["W1"]
    return {"W": W, "P0": w0.get("P2"), "steps": flow.steps, "simulation": sim, "theory": flow.modes,
            "max_gap_theory_simulation": float(np.abs(sim - flow.modes).max())}


def sweep(cfg: Config, S, sigma) -> dict:
    """Final mode strengths against r: fixed and normative feedback through the reduced flow."""
    m = S.shape[0]
    out = {"ranks": list(cfg.sweep_ranks), "optimum_modes": [], "fixed": {}, "normative": {}}
    early = min(cfg.early_step, cfg.steps)
    fixed = {"final_modes": [], "formula_modes": [], "relative_distance_to_fixed_point": [],
             "loss_ratio_to_rank_r_optimum": []}
    normative = {"early_step": early, "early_modes": [], "final_modes": [], "learnt_modes": [],
                 "learnt_modes_early": []}
    for r in cfg.sweep_ranks:
        best = theory.rank_r_optimum(S, r, sigma)
        out["optimum_modes"].append(theory.mode_strengths(best, S).tolist())
        best_loss = theory.loss(best, S, sigma)
        for subspace, entry in (("fixed", fixed), ("normative", normative)):
            w = initial_weights(cfg, subspace, r)["weights"]
            flow = theory.linear_flow(S, w["W1"], w["W2"], w["P2"], w["Q2"], feedback=subspace,
                                      lr=cfg.lr, feedback_lr=cfg.feedback_lr, steps=cfg.steps,
                                      record_every=early, input_covariance=sigma)
            W = flow.W2 @ flow.W1
            entry["final_modes"].append(theory.mode_strengths(W, S).tolist())
            if subspace == "fixed":
                fp = theory.spurious_fixed_point(S, w["P2"], sigma)
                entry["formula_modes"].append(theory.mode_strengths(fp, S).tolist())
                entry["relative_distance_to_fixed_point"].append(_relative(W, fp))
                entry["loss_ratio_to_rank_r_optimum"].append(
                    theory.loss(W, S, sigma) / best_loss if r < m else None)
            else:
                entry["early_modes"].append(flow.modes[1].tolist())
                entry["learnt_modes_early"].append(int(np.sum(flow.modes[1] >= cfg.learnt)))
                entry["learnt_modes"].append(int(np.sum(theory.mode_strengths(W, S) >= cfg.learnt)))
    out["fixed"], out["normative"] = fixed, normative
    return out


def run(cfg: Config, progress: bool = True) -> dict:
    """Simulate bp, fixed and normative feedback (one study), integrate the theory alongside, check
    the fixed point on whitened inputs, and sweep the rank; no plotting. ``progress``: a bar on
    stderr."""
    check(cfg)
    task = teacher_task(cfg)
    S = task.S
    sigma = task.input_cov  # what the simulation actually sees (not I): X^T X / N
    out = {"S": S.tolist(), "input_covariance": sigma.tolist(), "conditions": {}}
    t0 = time.perf_counter()
    snapshots = train_study(cfg, progress)
    out["study_seconds"] = time.perf_counter() - t0
    bar = Progress(5, desc="linear_theory", enabled=progress)
    bar.write(f"linear theory vs simulation: {cfg.steps} steps x 3 conditions, a whitened check and "
              f"a sweep over r = {list(cfg.sweep_ranks)}")
    for name in ("bp", "fixed", "normative"):
        t0 = time.perf_counter()
        sim = simulate(cfg, name, snapshots[name], S, sigma)
        W = sim["W"]
        entry = {"steps": sim["steps"].tolist(), "simulation": sim["simulation"].tolist(),
                 "theory": sim["theory"].tolist(),
                 "max_gap_theory_simulation": sim["max_gap_theory_simulation"],
                 "final_modes": theory.mode_strengths(W, S).tolist(),
                 "relative_error_to_teacher": _relative(W, S),
                 "first_learnt_step": first_learnt(sim["steps"], sim["simulation"], cfg.learnt)}
        if name == "fixed":
            fp = theory.spurious_fixed_point(S, sim["P0"], sigma)
            entry["fixed_point_modes"] = theory.mode_strengths(fp, S).tolist()
            entry["relative_distance_to_fixed_point"] = _relative(W, fp)
            # the same formula for whitened inputs (Sigma = I), and applied to the sample
            # correlation <y x^T> = S Sigma as if the inputs were white (this analysis before)
            entry["relative_distance_to_whitened_formula"] = _relative(
                W, theory.spurious_fixed_point(S, sim["P0"]))
            entry["relative_distance_to_formula_on_sample_correlation"] = _relative(
                W, theory.spurious_fixed_point(S @ sigma, sim["P0"]))
            best = theory.rank_r_optimum(S, cfg.rank, sigma)
            entry["relative_distance_to_rank_r_optimum"] = _relative(W, best)
            entry["loss_ratio_to_rank_r_optimum"] = theory.loss(W, S, sigma) / theory.loss(best, S, sigma)
        entry["seconds"] = time.perf_counter() - t0  # the theory and the measures (training: study_seconds)
        out["conditions"][name] = entry
        bar.update(1, name)
        bar.write(f"  {name:9s} rel. error to teacher {entry['relative_error_to_teacher']:.3f}  "
                  f"({entry['seconds']:.1f} s)")

    # the same fixed feedback on exactly whitened inputs (X^T X / N = I), where the formula is exact
    whitened = snapshots["whitened_fixed"]
    w = whitened[max(whitened)]
    fp = theory.spurious_fixed_point(S, whitened[0]["P2"])
    out["whitened_fixed"] = {"relative_distance_to_fixed_point": _relative(w["W2"] @ w["W1"], fp)}
    bar.update(1, "whitened")
    t0 = time.perf_counter()
    out["sweep"] = sweep(cfg, S, sigma)
    out["sweep"]["seconds"] = time.perf_counter() - t0
    bar.update(1, "sweep")
    bar.close()
    return out


def plot(results: dict, cfg: Config) -> list:
    """Two figures: mode strengths against step (simulation solid, theory dashed, fixed point
    dotted); final mode strengths against r with the closed forms overlaid."""
    import matplotlib.pyplot as plt

    from bioplastic.plotting import save_figure

    conds = results["conditions"]
    m = len(cfg.singular_values)
    colours = plt.cm.viridis(np.linspace(0, 0.9, m))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, (name, entry) in zip(axes, conds.items()):
        t = np.array(entry["steps"])
        sim, th = np.array(entry["simulation"]), np.array(entry["theory"])
        for j, c in enumerate(colours):
            ax.plot(t, sim[:, j], color=c, lw=1.6, label=f"mode {j + 1}")
            ax.plot(t, th[:, j], color=c, lw=1.2, ls="--")
            if "fixed_point_modes" in entry:
                ax.axhline(entry["fixed_point_modes"][j], color=c, ls=":", lw=1)
        ax.set_title(TITLES[name].format(r=cfg.rank), fontsize=10)
        ax.set_xscale("symlog", linthresh=cfg.record_every)  # events from ~10^2 to ~10^4 steps
        ax.set_xlim(0, cfg.steps)
        ax.set_xlabel("step (linear to the first record, logarithmic beyond)")
    axes[0].set_ylabel(r"mode strength $\hat\sigma_j$")
    axes[0].legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle("solid: simulation (reference backend), dashed: reduced flow on the sample's S and "
                 "Sigma, dotted: predicted spurious fixed point (sample Sigma)", fontsize=9)
    paths = [str(p) for p in save_figure(fig, f"{cfg.out}/mode_strengths")]

    sw = results["sweep"]
    ranks = np.array(sw["ranks"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), gridspec_kw={"width_ratios": [1.25, 1, 1]})
    ax = axes[0]
    final, formula = np.array(sw["fixed"]["final_modes"]), np.array(sw["fixed"]["formula_modes"])
    for j, c in enumerate(colours):
        ax.plot(ranks, formula[:, j], color=c, lw=1.2)
        ax.plot(ranks, final[:, j], color=c, marker="o", ls="none", ms=5, label=f"mode {j + 1}")
    ax.set_title(f"fixed random rank-r feedback after {cfg.steps} steps\nmarkers: end of run, "
                 "lines: fixed-point formula (sample Sigma)", fontsize=9)
    ax.set_xlabel("feedback rank r")
    ax.set_ylabel(r"final mode strength $\hat\sigma_j$")
    ax.set_xticks(ranks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    norm = sw["normative"]
    for ax, key, when in ((axes[1], "early_modes", norm["early_step"]), (axes[2], "final_modes", cfg.steps)):
        modes = np.array(norm[key]).T  # (mode, rank)
        image = ax.imshow(modes, vmin=0, vmax=1, cmap="Greys", origin="lower", aspect="auto",
                          extent=(-0.5, len(ranks) - 0.5, 0.5, m + 0.5))
        for i, r in enumerate(ranks):  # the rank-r optimum keeps modes 1..r: its edge
            ax.plot([i - 0.5, i + 0.5], [r + 0.5, r + 0.5], color="#d62728", lw=2)
            for j in range(m):
                ax.text(i, j + 1, f"{modes[j, i]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if modes[j, i] > 0.5 else "black")
        ax.set_xticks(range(len(ranks)), [str(r) for r in ranks])
        ax.set_yticks(range(1, m + 1))
        ax.set_xlabel("feedback rank r")
        ax.set_ylabel("mode j")
        ax.set_title(f"normative rank-r feedback at step {when}: $\\hat\\sigma_j$\nred: the rank-r "
                     "optimum keeps modes 1..r", fontsize=9)
    fig.colorbar(image, ax=axes[2], fraction=0.05)
    paths += [str(p) for p in save_figure(fig, f"{cfg.out}/modes_vs_rank")]
    return paths


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis linear_theory", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=cfg.seed)
    for path in plot(results, cfg):
        print(f"figure: {path}")
    fixed, norm = results["conditions"]["fixed"], results["conditions"]["normative"]
    print(f"fixed feedback: distance to the predicted fixed point {fixed['relative_distance_to_fixed_point']:.4f} "
          f"with the sample covariance ({results['whitened_fixed']['relative_distance_to_fixed_point']:.4f} on "
          f"whitened inputs; {fixed['relative_distance_to_whitened_formula']:.4f} to the whitened formula), "
          f"loss / rank-{cfg.rank} optimum {fixed['loss_ratio_to_rank_r_optimum']:.2f}")
    print(f"normative: error to teacher {norm['relative_error_to_teacher']:.4f}; first step each mode "
          f"reaches {cfg.learnt}: {norm['first_learnt_step']}")
    sw = results["sweep"]
    print("sweep over r: distance to the fixed point " + ", ".join(
        f"r={r}: {d:.4f}" for r, d in zip(sw["ranks"], sw["fixed"]["relative_distance_to_fixed_point"]))
        + "; modes normative feedback learnt: " + ", ".join(
        f"r={r}: {n}" for r, n in zip(sw["ranks"], sw["normative"]["learnt_modes"])))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
