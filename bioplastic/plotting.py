"""Matplotlib helpers: saving figures. Drawing only, no computation a test would need.

Nothing here selects a matplotlib backend: the user's choice (``MPLBACKEND``, ``matplotlib.use``)
stands; without a display, matplotlib itself falls back to Agg.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


def save(fig, path: str | Path) -> Path:
    """Save a figure (format from the suffix), creating folders; closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:  # figures laid out as constrained keep their layout
        fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def save_figure(fig, stem: str | Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Save a figure as ``stem.png`` and ``stem.svg`` (raster to look at, vector to edit and print),
    creating folders; closes it. The paths, in ``formats`` order."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, dpi=130)
        paths.append(path)
    plt.close(fig)
    return paths

