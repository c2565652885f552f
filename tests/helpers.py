"""One tolerance helper for every numeric comparison in the tests."""

from __future__ import annotations

import numpy as np


def assert_close(actual, expected, *, rtol: float = 1e-10, atol: float = 1e-12, what: str = ""):
    """Elementwise |actual - expected| <= atol + rtol * |expected|, with a readable failure."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    worst = np.argmax(err - bound) if err.size else 0
    assert np.all(err <= bound), (
        f"{what}: max abs error {err.max():.3e} (at flat index {worst}: {actual.flat[worst]!r} vs "
        f"{expected.flat[worst]!r}); tolerance atol={atol}, rtol={rtol}")
