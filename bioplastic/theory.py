r"""Linear-network theory of low-dimensional feedback (arXiv 2502.20580, section "Spurious solutions of fixed low-rank feedback").

Two-layer linear network :math:`\hat y = W_2 W_1 x` (W_1: k x n, W_2: m x k) trained on whitened
inputs (:math:`\langle x x^\top\rangle = I`) with input-output correlation
:math:`S = \langle y x^\top\rangle` (m x n). With residual :math:`R = S - W_2 W_1` the batch-mean
gradient flow is

.. math::

    \tau \dot W_2 = R W_1^\top, \qquad \tau \dot W_1 = B R, \qquad
    B = W_2^\top \ (\text{bp}),\ Q P \ (\text{ldfa}),

and the normative feedback follows :math:`\tau_b \dot Q = (W_2^\top - QP) P^\top`,
:math:`\tau_b \dot P = Q^\top (W_2^\top - QP)`.

With fixed P (r x m, r < m) and small initial weights, W_1 stays in span(Q) and the flow stops at the
*spurious* fixed point

.. math::

    W_2 W_1^* = S S^\top P^\top (P S S^\top P^\top)^{-1} P S,

whose loss exceeds the Eckart-Young rank-r optimum unless row(P) spans the top-r left singular
vectors of S. Adaptive (normative) feedback instead learns S's modes, r at a time.
Mode strengths :math:`\hat\sigma_j = [U^\top W_2 W_1 V]_{jj} / s_j` (S = U diag(s) V^T) measure
how much of mode j is learnt (1 = fully).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rules import get_subspace


def spurious_fixed_point(S: np.ndarray, P: np.ndarray) -> np.ndarray:
    """W_2 W_1 at the fixed point of fixed feedback P (r x m) for correlation S (m x n)."""
    S, P = np.asarray(S, float), np.asarray(P, float)
    if P.shape[1] != S.shape[0]:
        raise ValueError(f"P must have shape (r, m={S.shape[0]}); got {P.shape}")
    SSt = S @ S.T
    return SSt @ P.T @ np.linalg.solve(P @ SSt @ P.T, P @ S)


def rank_r_optimum(S: np.ndarray, r: int) -> np.ndarray:
    """Best rank-r approximation of S (Eckart-Young)."""
    u, s, vt = np.linalg.svd(np.asarray(S, float), full_matrices=False)
    return (u[:, :r] * s[:r]) @ vt[:r]


def mode_strengths(W: np.ndarray, S: np.ndarray) -> np.ndarray:
    """sigma_hat_j = [U^T W V]_jj / s_j for the end-to-end map W = W_2 W_1 (m x n)."""
    u, s, vt = np.linalg.svd(np.asarray(S, float), full_matrices=False)
    return np.diag(u.T @ np.asarray(W, float) @ vt.T) / s


def whitened_teacher(S: np.ndarray, n_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs X (N, n) with X^T X / N = I exactly, and targets Y = X S^T, so <y x^T> = S."""
    S = np.asarray(S, float)
    n = S.shape[1]
    if n_samples < n:
        raise ValueError(f"need n_samples >= n = {n} to whiten; got {n_samples}")
    X = np.random.default_rng(seed).normal(size=(n_samples, n))
    X -= X.mean(axis=0)
    evals, evecs = np.linalg.eigh(X.T @ X / n_samples)
    X = X @ evecs @ np.diag(evals ** -0.5) @ evecs.T
    return X, X @ S.T


@dataclass(frozen=True)
class LinearFlow:
    """Trajectory of the reduced dynamics (module docstring).

    Attributes
    ----------
    steps : ndarray, shape (T,)
    modes : ndarray, shape (T, min(m, n))
        Mode strengths at each recorded step.
    W1, W2 : ndarray
        Final weights.
    P, Q : ndarray
        Final feedback factors.
    """

    steps: np.ndarray
    modes: np.ndarray
    W1: np.ndarray
    W2: np.ndarray
    P: np.ndarray
    Q: np.ndarray


def linear_flow(S: np.ndarray, W1: np.ndarray, W2: np.ndarray, P: np.ndarray, Q: np.ndarray,
                feedback: str = "fixed", lr: float = 0.01, feedback_lr: float = 0.01,
                steps: int = 10_000, record_every: int = 100) -> LinearFlow:
    """Euler-integrate the reduced dynamics from given initial weights.

    Parameters
    ----------
    S : ndarray, shape (m, n)
    W1 : ndarray, shape (k, n)
    W2 : ndarray, shape (m, k)
    P : ndarray, shape (r, m)
    Q : ndarray, shape (k, r)
    feedback : {"bp", "fixed", "normative"}
    lr, feedback_lr : float
        Euler steps dt/tau and dt/tau_b.
    steps, record_every : int
    """
    if feedback not in ("bp", "fixed", "normative"):
        raise ValueError(f"unknown feedback {feedback!r}; valid options: bp, fixed, normative")
    normative = get_subspace("normative")
    W1, W2, P, Q = (np.array(a, float) for a in (W1, W2, P, Q))
    rec_t, rec_m = [], []
    for t in range(steps + 1):
        if t % record_every == 0:
            rec_t.append(t)
            rec_m.append(mode_strengths(W2 @ W1, S))
        if t == steps:
            break
        R = S - W2 @ W1
        B = W2.T if feedback == "bp" else Q @ P
        dW2, dW1 = R @ W1.T, B @ R
        if feedback == "normative":  # the rule's own specification, W2 being the layer it stands in for
            grad_p, grad_q = normative.gradients(P, Q, W2, None, None)
            Q, P = Q - feedback_lr * grad_q, P - feedback_lr * grad_p
        W2, W1 = W2 + lr * dW2, W1 + lr * dW1
    return LinearFlow(np.array(rec_t), np.array(rec_m), W1, W2, P, Q)
