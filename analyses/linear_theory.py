"""Linear theory vs simulation: fixed low-rank feedback stalls at a spurious fixed point, adaptive
feedback learns the task's modes r at a time (the linear theory of Hanut & Kadmon, arXiv 2502.20580).

A two-layer linear network y = W2 W1 x learns a teacher with input-output correlation
S = U diag(s) V^T. *Simulation*: the reference backend trained on finite Gaussian samples (not
whitened, so it is not the theory by construction). *Theory*: the reduced flow on S
(:func:`bioplastic.theory.linear_flow`) from the same initial weights. The figure shows the mode
strengths sigma_hat_j(t) = [U^T W2 W1 V]_jj / s_j, simulation solid, theory dashed, for bp, fixed
rank-r feedback (with the predicted spurious fixed point dotted) and normative adaptive feedback.

Run: ``bioplastic analysis linear_theory [--steps=20000 ...]`` (``--quick`` for a small check,
``--help`` for every setting).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
from pydantic import PositiveFloat, PositiveInt

import bioplastic
import circuits
from bioplastic import experiment, theory
from bioplastic.experiment.cmdline import parse_command_line
from bioplastic.experiment.progress import Progress


@dataclass(frozen=True)
class Config:
    n_in: PositiveInt = 10   # input dimension n
    n_hidden: PositiveInt = 16  # hidden width k (wider than the task)
    singular_values: tuple[PositiveFloat, ...] = (5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5)  # teacher
                             # modes; m = len
    rank: PositiveInt = 2    # feedback rank r < m
    samples: PositiveInt = 500  # finite sample, not whitened: the fixed point assumes <xx^T> = I, so
                             # the simulation lands 14% from it at 500 samples, 7% at 3000
                             # (exactly whitened: 0.1%, tests/test_limits.py)
    lr: float = 0.04         # forward step (dt / tau)
    feedback_lr: float = 0.04  # normative Q, P step (dt / tau_b)
    init_scale: float = 1e-3  # small initial weights (the fixed-point derivation assumes them)
    steps: PositiveInt = 40_000
    record_every: PositiveInt = 250
    seed: int = 0
    out: str = "results/linear_theory"


#: ``--quick``: a thousand steps.
QUICK = {"steps": 1000, "record_every": 100}


def _teacher(cfg: Config) -> np.ndarray:
    rng = np.random.default_rng(cfg.seed)
    m = len(cfg.singular_values)
    U, _ = np.linalg.qr(rng.normal(size=(m, m)))
    V, _ = np.linalg.qr(rng.normal(size=(cfg.n_in, cfg.n_in)))
    return (U * np.asarray(cfg.singular_values)) @ V[:, :m].T


def check(cfg: Config) -> None:
    """Raise a clear error on a config this analysis cannot run."""
    if not cfg.singular_values or len(cfg.singular_values) > cfg.n_in:
        raise ValueError(f"singular_values: the teacher needs 1 to n_in = {cfg.n_in} modes; got "
                         f"{len(cfg.singular_values)}")


def run(cfg: Config, progress: bool = True) -> dict:
    """Simulate and integrate the theory for bp, fixed and normative feedback; no plotting.
    ``progress``: a bar on stderr."""
    S = _teacher(cfg)
    m = S.shape[0]
    rng = np.random.default_rng(cfg.seed + 1)
    X = rng.normal(size=(cfg.samples, cfg.n_in))
    Y = X @ S.T
    S_sample = Y.T @ X / cfg.samples  # what the simulation actually sees
    out = {"S": S.tolist(), "conditions": {}}
    bar = Progress(3, desc="linear_theory", enabled=progress)
    bar.write(f"linear theory vs simulation: {cfg.steps} steps x 3 conditions")
    for name, rule, subspace in (("bp", "bp", None), ("fixed", "ldfa", "fixed"),
                                 ("normative", "ldfa", "normative")):
        t0 = time.perf_counter()
        circuit = circuits.mlp([cfg.n_in, cfg.n_hidden, m], rule=rule,
                               rank=cfg.rank if rule == "ldfa" else None, subspace=subspace or "local",
                               activation="linear", bias=False, lr=cfg.lr, feedback_lr=cfg.feedback_lr,
                               seed=cfg.seed)
        runner = bioplastic.build(circuit)
        w = runner.get_weights()
        small = {"W1": cfg.init_scale * w["W1"], "W2": cfg.init_scale * w["W2"]}
        runner.set_weights(small)
        w0 = runner.get_weights()
        P0 = w0.get("P2", np.eye(m)[: cfg.rank])
        Q0 = w0.get("Q2", np.zeros((cfg.n_hidden, cfg.rank)))
        sim = []
        for step in range(cfg.steps + 1):
            if step % cfg.record_every == 0:
                w = runner.get_weights()
                sim.append(theory.mode_strengths(w["W2"] @ w["W1"], S))
            if step < cfg.steps:
                runner.train_step(X, Y)
        flow = theory.linear_flow(S_sample, w0["W1"], w0["W2"], P0, Q0,
                                  feedback={"bp": "bp"}.get(name, subspace), lr=cfg.lr,
                                  feedback_lr=cfg.feedback_lr, steps=cfg.steps,
                                  record_every=cfg.record_every)
        w = runner.get_weights()
        W = w["W2"] @ w["W1"]
        entry = {"steps": flow.steps.tolist(), "simulation": np.array(sim).tolist(),
                 "theory": flow.modes.tolist(),
                 "final_modes": theory.mode_strengths(W, S).tolist(),
                 "relative_error_to_teacher": float(np.linalg.norm(W - S) / np.linalg.norm(S)),
                 "seconds": time.perf_counter() - t0}
        if name == "fixed":
            fp = theory.spurious_fixed_point(S_sample, P0)
            entry["fixed_point_modes"] = theory.mode_strengths(fp, S).tolist()
            entry["relative_distance_to_fixed_point"] = float(np.linalg.norm(W - fp) / np.linalg.norm(fp))
            best = theory.rank_r_optimum(S, cfg.rank)
            entry["loss_ratio_to_rank_r_optimum"] = float(np.linalg.norm(S - W) ** 2
                                                         / np.linalg.norm(S - best) ** 2)
        out["conditions"][name] = entry
        bar.update(1, name)
        bar.write(f"  {name:9s} rel. error to teacher {entry['relative_error_to_teacher']:.3f}  "
                  f"({entry['seconds']:.1f} s)")
    bar.close()
    return out


def plot(results: dict, cfg: Config):
    """Mode strengths vs step: simulation solid, theory dashed (fixed point dotted)."""
    import matplotlib.pyplot as plt

    from bioplastic.plotting import save

    conds = results["conditions"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(cfg.singular_values)))
    for ax, (name, entry) in zip(axes, conds.items()):
        t = np.array(entry["steps"])
        sim, th = np.array(entry["simulation"]), np.array(entry["theory"])
        for j, c in enumerate(colours):
            ax.plot(t, sim[:, j], color=c, lw=1.6, label=f"mode {j + 1}")
            ax.plot(t, th[:, j], color=c, lw=1.2, ls="--")
            if "fixed_point_modes" in entry:
                ax.axhline(entry["fixed_point_modes"][j], color=c, ls=":", lw=1)
        title = {"bp": "backprop", "fixed": f"fixed rank-{cfg.rank} feedback",
                 "normative": f"normative rank-{cfg.rank} feedback"}[name]
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
    axes[0].set_ylabel(r"mode strength $\hat\sigma_j$")
    axes[0].legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle("solid: simulation, dashed: theory, dotted: predicted spurious fixed point", fontsize=9)
    return save(fig, f"{cfg.out}/mode_strengths.png")


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis linear_theory", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=cfg.seed)
    print(f"figure: {plot(results, cfg)}")
    fixed = results["conditions"]["fixed"]
    print(f"fixed feedback: distance to predicted fixed point {fixed['relative_distance_to_fixed_point']:.4f}, "
          f"loss / rank-{cfg.rank} optimum {fixed['loss_ratio_to_rank_r_optimum']:.2f}; "
          f"normative: error to teacher {results['conditions']['normative']['relative_error_to_teacher']:.4f}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
