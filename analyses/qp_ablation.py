"""Update QP against update Q only: how much does learning the error subspace (P) add?

arXiv 2502.20580 ablates the local rule: with P frozen at its random draw and only Q learning
(``q_only``), the bottleneck reads a fixed, task-agnostic r-dimensional slice of the error; with
both factors learning (``local``), P can move to the error directions that matter. Here both are
trained at r = 1..8 next to ``fixed`` (neither factor learns), with bp and fa as references.

Scale and data (the defaults): the bundled 8 x 8 digits (1347 train, 450 test images, d = 10
classes), a ReLU MLP 64-32-32-10 (narrow, so that the hidden layers have to learn: accuracy_vs_rank's
why), r on every pathway clipped to min(n_{l-1}, n_l), SGD lr 0.03 (feedback 0.01), batch 32,
30 epochs, three seeds (initial weights and batch order); metric: final test accuracy (and the
relative squared error). 78 s on 2 shared, busy cores.

What the default run measured (test accuracy, mean +- sd over 3 seeds; bp 0.920, fa 0.890): at
r = 1, 2, 4, 6, 8, update QP (local) 0.634, 0.689, 0.774, 0.799, 0.855; update Q only 0.630,
0.660, 0.753, 0.773, 0.858; neither (fixed) 0.627, 0.651, 0.746, 0.756, 0.839. Learning P adds
1-8 points at r = 2-6 and nothing at r = 1 and 8, inside the seed spread (sd 0.02-0.07) at every
rank: at this scale the ablation does not separate the rules.

Deviations from the authors' protocol: the paper's experiments use CIFAR-scale image networks
(the models of ``bioplastic.torch.models``) and the authors' code trains the feedback with Adam and
L2 decay; here the digits, a small MLP and plain SGD without decay for every rule. ``local`` starts its P and Q at
the truncated SVD of the initial W^T, ``q_only`` (and ``fixed``) at random orthonormal P and Q of
fa's gain, so the two also differ in their start (the rules' own initialisation in
``bioplastic/rules/subspace``). Final-epoch, not best-epoch, accuracy.

Run: ``bioplastic analysis qp_ablation [--quick] [--key=value ...]``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from bioplastic import experiment
from bioplastic.experiment.cmdline import parse_command_line

if str(Path(__file__).resolve().parent) not in sys.path:  # run as a file: the helpers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _claims  # noqa: E402

#: The study's description: this file's first line.
DESCRIPTION = __doc__.split("\n", 1)[0]

SUBSPACES = ("local", "q_only", "fixed", "normative", "oja")
REFERENCES = ("bp", "fa", "dfa", "readout")


@dataclass(frozen=True)
class Config:
    subspaces: tuple[Literal["local", "q_only", "fixed", "normative", "oja"], ...] = (
        "local", "q_only", "fixed")  # update QP, update Q only, update neither
    ranks: tuple[PositiveInt, ...] = (1, 2, 3, 4, 5, 6, 7, 8)  # the paper's r = 1..8
    references: tuple[Literal["bp", "fa", "dfa", "readout"], ...] = ("bp", "fa")  # horizontal lines
    width: PositiveInt = 32        # narrow: at 128 random features and a trained readout already
                                   # reach 82-86 % (accuracy_vs_rank's measurement)
    depth: PositiveInt = 2         # hidden layers
    activation: str = "relu"
    lr: PositiveFloat = 0.03       # the demo's rate
    feedback_lr: PositiveFloat = 0.01  # accuracy_vs_rank's
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 32
    seeds: tuple[NonNegativeInt, ...] = (0, 1, 2)  # initial weights and batch order
    backend: Literal["auto", "reference", "torch"] = "auto"  # auto: the float64 reference below width 256
    jobs: NonNegativeInt = 0       # worker processes; 0: one per core
    out: str = "results/qp_ablation"
    resume: bool = False           # continue an interrupted run from the study in OUT/study/


#: ``--quick``: two ranks, one seed, three epochs, in this process.
QUICK = {"ranks": (1, 4), "seeds": (0,), "epochs": 3, "jobs": 1}


def check(cfg: Config) -> None:
    if not cfg.ranks or not cfg.seeds or not cfg.subspaces:
        raise ValueError("ranks, seeds and subspaces must each name at least one value")
    bad = [s for s in cfg.subspaces if s not in SUBSPACES]
    if bad:
        raise ValueError(f"unknown subspaces {bad}; valid options: {', '.join(SUBSPACES)}")


def conditions(cfg: Config) -> list[dict]:
    out = [{"label": ref, "rule": ref, "subspace": None, "rank": None, "width": cfg.width}
           for ref in cfg.references]
    out += [{"label": f"ldfa-{s}-r{r}", "rule": "ldfa", "subspace": s, "rank": r, "width": cfg.width}
            for r in sorted(set(cfg.ranks)) for s in cfg.subspaces]
    return out


def study(cfg: Config) -> dict:
    """The sweep as a study mapping (``studies/qp_ablation.toml`` is the default's): every run this
    analysis trains, as ``bioplastic run`` trains it."""
    return _claims.study_mapping(_claims.digits_setup(cfg), conditions(cfg), cfg.seeds, "qp_ablation", DESCRIPTION)


def run(cfg: Config, progress: bool = True) -> dict:
    check(cfg)
    t0 = time.perf_counter()
    setup = _claims.digits_setup(cfg)
    conds = conditions(cfg)
    runs, jobs = _claims.run_conditions(setup, conds, cfg.seeds, cfg.jobs, "qp_ablation", progress,
                                          out=f"{cfg.out}/study", resume=cfg.resume)
    entries = _claims.summaries(conds, runs)
    return {"task": "digits", "metric": "test_accuracy", "setup": setup,
            "sizes": [64] + [cfg.width] * cfg.depth + [10], "ranks": sorted(set(cfg.ranks)),
            "references": [e for e in entries if e["rank"] is None],
            "lines": {s: [e for e in entries if e["subspace"] == s] for s in cfg.subspaces},
            "jobs": jobs, "runs": runs, "total_time": time.perf_counter() - t0}


LINE_LABELS = {"local": "ldfa local (update Q and P)", "q_only": "ldfa q_only (update Q only)",
               "fixed": "ldfa fixed (update neither)", "normative": "ldfa normative",
               "oja": "ldfa oja"}


def plot(results: dict, cfg: Config) -> list[str]:
    fig = _claims.plot_against_rank(results, {s: (LINE_LABELS[s], _claims.RULE_STYLE[s])
                                              for s in results["lines"]},
                            title=f"digits, MLP {'-'.join(map(str, results['sizes']))} "
                                  f"{cfg.activation}, {cfg.epochs} epochs: update QP against Q only",
                            n_seeds=len(cfg.seeds))
    return _claims.save_figure(fig, f"{cfg.out}/qp_ablation")


def main(argv=None) -> dict:
    cl = parse_command_line(Config(), argv, prog="bioplastic analysis qp_ablation", quick=QUICK,
                            check=check, description=__doc__.split("\n\n")[0])
    cfg = cl.config
    results = run(cfg, progress=not cl.quiet)
    experiment.save_run(cfg.out, asdict(cfg), results, seed=list(cfg.seeds))
    print(f"figure: {', '.join(plot(results, cfg))}")
    print(_claims.rank_table(results, f"test accuracy (mean +- sd over {len(cfg.seeds)} seeds), "
                                      f"{results['total_time']:.0f} s"))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
