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
