"""bioplastic.metrics against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bioplastic import metrics


def _rotation(seed: int, n: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))[0]


def test_subspace_capture_hand_computed_diagonal_case():
    # C = diag(4, 3, 2, 1): the top-2 eigenvalues sum to 7
    C = np.diag([4.0, 3.0, 2.0, 1.0])
    e = np.eye(4)
    assert metrics.subspace_capture(e[:2], C) == pytest.approx(1.0, abs=1e-15)  # top-2 eigenvectors
    assert metrics.subspace_capture(e[2:], C) == pytest.approx(3 / 7, abs=1e-15)  # (2 + 1) / 7
    assert metrics.subspace_capture(e[[0, 3]], C) == pytest.approx(5 / 7, abs=1e-15)  # (4 + 1) / 7
    # one row halfway between e1 and e2: (4 + 3) / 2 of the top eigenvalue 4
    assert metrics.subspace_capture([[1.0, 1.0, 0.0, 0.0]], C) == pytest.approx(3.5 / 4, abs=1e-15)


def test_subspace_capture_is_one_on_the_top_eigenvectors_and_zero_orthogonal_to_the_range():
    n, r = 6, 2
    basis = _rotation(0, n)
    C = (basis * np.array([5.0, 4.0, 1.0, 0.5, 0.0, 0.0])) @ basis.T  # range: the first 4 columns
    mix = np.random.default_rng(1).normal(size=(r, r))  # any invertible mix, any scale
    assert metrics.subspace_capture(3.0 * mix @ basis[:, :r].T, C) == pytest.approx(1.0, abs=1e-12)
    assert metrics.subspace_capture(mix @ basis[:, 4:].T, C) == pytest.approx(0.0, abs=1e-12)
    # scale-free in C as well, and never above 1 (Ky Fan)
    P = np.random.default_rng(2).normal(size=(r, n))
    assert metrics.subspace_capture(P, 1e-6 * C) == pytest.approx(metrics.subspace_capture(P, C),
                                                                  rel=1e-12)
    assert 0.0 < metrics.subspace_capture(P, C) < 1.0


def test_subspace_capture_rejects_mismatched_shapes_and_gives_nan_for_zero_covariance():
    with pytest.raises(ValueError, match=r"C must have shape \(3, 3\)"):
        metrics.subspace_capture(np.eye(3)[:1], np.eye(4))
    with pytest.raises(ValueError, match="at most 2 can be orthonormal"):
        metrics.subspace_capture(np.ones((3, 2)), np.eye(2))
    assert np.isnan(metrics.subspace_capture(np.eye(3)[:1], np.zeros((3, 3))))
