r"""Measurements of feedback and errors.

* alignment angle between a feedback matrix B and the transport it replaces, W^T:
  :math:`\theta = \arccos \frac{\langle B, W^\top\rangle_F}{\lVert B\rVert_F \lVert W\rVert_F}` (degrees);
  90 means unrelated, 0 means B is a positive multiple of W^T;
* principal angles between two subspaces (columns of A and B): :math:`\cos\theta_i = \sigma_i(U_A^\top U_B)`;
* error dimensionality as the participation ratio of a covariance's eigenvalues,
  :math:`PR = (\sum_i \lambda_i)^2 / \sum_i \lambda_i^2` (1 for one direction, n for isotropic);
* explained variance of the best rank-r approximation, :math:`\sum_{i\le r} s_i^2 / \sum_i s_i^2`;
* the capture of an error covariance C (n x n) by the r rows of a feedback factor P (r x n),
  :math:`\operatorname{tr}(\tilde P C \tilde P^\top) / \sum_{i\le r} \lambda_i(C)`, with
  :math:`\tilde P` P's rows orthonormalised (QR): the error variance that crosses the bottleneck
  as a fraction of the most any r directions can carry (Ky Fan), so 1 when row(P) is C's top-r
  eigenspace and 0 when it is orthogonal to C's range; free of the scale of P and of C.

Conventions for LDFA, B = Q P has shape (n_{l-1}, n_l) like W_l^T.
"""

from __future__ import annotations

import numpy as np


def alignment_angle(B: np.ndarray, W: np.ndarray) -> float:
    """Angle in degrees between feedback ``B`` (n_{l-1}, n_l) and ``W.T`` (W: (n_l, n_{l-1}))."""
    B, Wt = np.asarray(B, float), np.asarray(W, float).T
    if B.shape != Wt.shape:
        raise ValueError(f"B has shape {B.shape} but W^T has shape {Wt.shape}")
    denom = np.linalg.norm(B) * np.linalg.norm(Wt)
    if denom == 0:
        return 90.0
    return float(np.degrees(np.arccos(np.clip(np.sum(B * Wt) / denom, -1.0, 1.0))))


def _orthonormal_columns(A: np.ndarray) -> np.ndarray:
    u, s, _ = np.linalg.svd(np.asarray(A, float), full_matrices=False)
    return u[:, s > s.max() * 1e-12] if s.size and s.max() > 0 else u[:, :0]


def principal_angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spaces of A (n, p) and B (n, q)."""
    A, B = np.atleast_2d(A), np.atleast_2d(B)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"subspaces live in different spaces: {A.shape[0]} vs {B.shape[0]} rows")
    s = np.linalg.svd(_orthonormal_columns(A).T @ _orthonormal_columns(B), compute_uv=False)
    return np.arccos(np.clip(s, -1.0, 1.0))


def participation_ratio(samples_or_cov: np.ndarray, is_covariance: bool = False) -> float:
    """Effective dimensionality of errors (rows = samples) or of a covariance matrix."""
    X = np.asarray(samples_or_cov, float)
    cov = X if is_covariance else X.T @ X / X.shape[0]
    lam = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    total = lam.sum()
    return float(total ** 2 / np.sum(lam ** 2)) if total > 0 else 0.0


def explained_variance(W: np.ndarray, r: int) -> float:
    """Fraction of ||W||_F^2 captured by its best rank-r approximation."""
    s = np.linalg.svd(np.asarray(W, float), compute_uv=False)
    return float(np.sum(s[:r] ** 2) / np.sum(s ** 2))


def subspace_capture(P: np.ndarray, C: np.ndarray) -> float:
    """tr(P~ C P~^T) / (sum of the top-r eigenvalues of C), P~ the rows of ``P`` (r, n) made
    orthonormal by QR, ``C`` (n, n) a symmetric positive semidefinite covariance; in [0, 1]
    (module docstring). P must have full row rank r <= n; a zero C gives nan."""
    P, C = np.atleast_2d(np.asarray(P, float)), np.asarray(C, float)
    r, n = P.shape
    if C.shape != (n, n):
        raise ValueError(f"C must have shape ({n}, {n}) to match P {P.shape}; got {C.shape}")
    if r > n:
        raise ValueError(f"P has {r} rows in R^{n}: at most {n} can be orthonormal")
    basis, _ = np.linalg.qr(P.T)  # (n, r), orthonormal columns spanning row(P)
    top = float(np.sum(np.linalg.eigvalsh((C + C.T) / 2)[::-1][:r]))
    if top <= 0:
        return float("nan")
    return float(np.trace(basis.T @ C @ basis) / top)


def feedback_matrices(weights: dict, rule) -> dict[int, np.ndarray]:
    """The feedback matrix in use by every pathway of a runner's weights, by layer index.

    ``rule`` is a :class:`bioplastic.rules.Rule` or a :class:`bioplastic.Circuit` (its rule). A
    layer-to-layer pathway l (2..L) gives B_l (n_{l-1}, n_l), comparable with W_l^T; a direct one
    (1..L-1) gives B_l (n_l, d). An unknown rule name raises naming the valid options.
    """
    from . import rules

    if isinstance(rule, str):
        rule = rules.get_rule(rule)
    elif not isinstance(rule, rules.Rule):
        rule = rule.learning_rule
    return rule.feedback_matrices(weights)
