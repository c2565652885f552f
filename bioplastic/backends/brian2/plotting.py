"""Pictures of a Brian2 circuit: population activity over presentations, and the circuit graph.

Drawing only; the numbers come from :meth:`Brian2Runner.recording`. Needs matplotlib, not brian2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_activity(runner, path: str | Path | None = None, copy: int = 0, max_units: int = 8,
                  presentations: int | None = None):
    """One panel per recorded population variable: unit traces over the presentations of the last call.

    Parameters
    ----------
    runner : Brian2Runner
        Built with ``record=`` (e.g. ``("rates", "errors", "bottleneck")``) and run at least once.
    path : str or Path, optional
        Save the figure there.
    copy : int
        Which of the recorded copies to draw (an index into ``record_copies``).
    max_units : int
        Traces drawn per panel (the first units of the population).
    presentations : int, optional
        Draw only the first ``presentations`` presentations.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ...plotting import plt, save

    rec = {k: v for k, v in runner.recording().items() if k.split(".")[0] in runner.circuit.graph}
    if not rec:
        raise ValueError("nothing recorded from populations: build the runner with record=('rates', "
                         "'errors', 'bottleneck') (or 'population.variable') and run it first")
    fig, axes = plt.subplots(len(rec), 1, figsize=(7.5, 1.5 * len(rec) + 0.6), sharex=True,
                             squeeze=False)
    for ax, (label, entry) in zip(axes[:, 0], rec.items()):
        var = label.split(".")[1]
        t, values = entry["t"], entry[var][:, copy, :max_units]
        tick = entry["tick"]
        if presentations is not None:
            keep = t < presentations * tick + 1e-12
            t, values = t[keep], values[keep]
        ax.plot(t * 1e3, values, lw=1.0)
        for k in np.arange(0.0, t[-1] + tick / 2, tick)[1:] if len(t) else []:
            ax.axvline(k * 1e3, color="0.6", lw=0.6, ls="--")
        size = runner.circuit.graph.nodes[label.split(".")[0]]["size"]
        ax.set_ylabel(f"{label}\n({size} units)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time in the call (ms); dashed: end of a presentation (learning tick)")
    fig.suptitle(f"Brian2 {runner.circuit.rule} circuit: settle {runner.settle * 1e3:.0f} ms, "
                 f"dt {runner.dt * 1e3:g} ms, tau {runner.options.tau * 1e3:g} ms", fontsize=9)
    fig.tight_layout()
    if path is not None:
        save(fig, path)
    return fig


def plot_circuit(runner, path: str | Path | None = None):
    """The circuit graph, node area growing with population size (the bottleneck is r wide).

    Parameters
    ----------
    runner : Brian2Runner or bioplastic.Circuit
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ...plotting import plt, save

    circuit = getattr(runner, "circuit", runner)
    fig, ax = plt.subplots(figsize=(1.6 * (circuit.n_layers + 3), 4.2))
    circuit.draw(ax=ax)
    ranks = circuit.ranks
    rank_text = f", bottleneck r = {sorted(set(ranks.values()))}" if ranks else ""
    ax.set_title(f"{circuit.rule} circuit, sizes {circuit.sizes}{rank_text}", fontsize=9)
    if path is not None:
        save(fig, path)
    return fig
