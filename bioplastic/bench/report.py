"""The benchmark's figure and table (:mod:`.step_time` computes the numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(results: dict[str, Any], cfg, path: str | Path | None = None) -> Path:
    """Measured ldfa/bp step-time ratio and analytic FLOP ratio against r, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import save

    names = list(results["models"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes[0], names):
        variants = results["models"][name]["variants"]
        ranks = [r for r in cfg.ranks if f"ldfa_r{r}" in variants]
        flop = [variants[f"ldfa_r{r}"]["flop_ratio"] for r in ranks]
        ax.fill_between(ranks, [0.95 * f for f in flop], [1.05 * f for f in flop], color="C0",
                        alpha=0.15, label="FLOP ratio +- 5%")
        ax.plot(ranks, flop, "C0--", label="analytic FLOP ratio")
        if "profile_prediction" in variants[f"ldfa_r{ranks[0]}"]:
            ax.plot(ranks, [variants[f"ldfa_r{r}"]["profile_prediction"] for r in ranks], "C7:",
                    label="FLOP ratio on bp's matmul time")
        ax.plot(ranks, [variants[f"ldfa_r{r}"]["cost_ratio"] for r in ranks], "C4s--", ms=3,
                label="counted cost model")
        ax.plot(ranks, [variants[f"ldfa_r{r}"]["ratio"] for r in ranks], "C1o-",
                label="measured time ratio")
        if f"plain_r{ranks[0]}" in variants:
            ax.plot(ranks, [variants[f"plain_r{r}"]["ratio"] for r in ranks], "C2x:",
                    label="hand-written LDFA MLP")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.set_title(f"{name} (batch {results['models'][name]['batch']})", fontsize=9)
        ax.set_xlabel("feedback rank r")
    axes[0][0].set_ylabel("ldfa / bp per training step")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=7,
               frameon=False)
    fig.suptitle(f"LDFA vs backprop step cost on {results['device']}", fontsize=10)
    return save(fig, path or Path(cfg.out) / "bench.png")


def format_table(results: dict[str, Any], cfg) -> str:
    """One line per model and rank: measured ratio, FLOP ratio, their gap, machinery overhead."""
    lines = [f"{'model':<8} {'variant':<10} {'ms/step':>9} {'ratio':>7} {'flop':>7} {'gap':>7} "
             f"{'cost':>7} {'c-gap':>7} {'mm-pred':>8} {'vs plain':>9}"]
    for name, res in results["models"].items():
        for v, d in res["variants"].items():
            plain = d.get("overhead_vs_plain")
            pred = d.get("profile_prediction")
            lines.append(f"{name:<8} {v:<10} {1e3 * d['median_s']:9.1f} {d['ratio']:7.3f} "
                         f"{d['flop_ratio']:7.3f} {d['gap']:+7.1%} "
                         f"{d['cost_ratio']:7.3f} {d['gap_cost']:+7.1%} "
                         f"{'' if pred is None else format(pred, '8.3f'):>8} "
                         f"{'' if plain is None else format(plain, '+9.1%'):>9}")
    lines.append("ratio: median per-round ldfa/bp step time; flop: analytic matmul-FLOP ratio; gap: "
                 "ratio/flop - 1; cost: ratio of the counted cost model (every executed operator's "
                 "FLOPs and bytes on this machine's roofline, bioplastic.bench.costmodel); c-gap: ratio/cost "
                 "- 1; mm-pred: flop ratio applied to bp's profiled matmul time only; vs plain: time "
                 "over a hand-written LDFA MLP")
    return "\n".join(lines)


__all__ = ["format_table", "plot"]
