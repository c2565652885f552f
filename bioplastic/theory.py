r"""Linear-network theory of low-dimensional feedback (arXiv 2502.20580, section "Spurious solutions of fixed low-rank feedback").

Two-layer linear network :math:`\hat y = W_2 W_1 x` (W_1: k x n, W_2: m x k) learning a teacher
:math:`y = S x` (S: m x n) from inputs with second moment :math:`\Sigma = \langle x x^\top\rangle`
(n x n; the paper whitens, :math:`\Sigma = I`). The loss is
:math:`\tfrac12 \langle\lVert y - W_2 W_1 x\rVert^2\rangle = \tfrac12 \operatorname{tr} (S - W)\Sigma(S - W)^\top`
with :math:`W = W_2 W_1`, so with residual :math:`R = (S - W_2 W_1)\Sigma` the batch-mean gradient
flow is

.. math::

    \tau \dot W_2 = R W_1^\top, \qquad \tau \dot W_1 = B R, \qquad
    B = W_2^\top \ (\text{bp}),\ Q P \ (\text{ldfa}),

and the normative feedback follows :math:`\tau_b \dot Q = (W_2^\top - QP) P^\top`,
:math:`\tau_b \dot P = Q^\top (W_2^\top - QP)`. The data enter only through S and
:math:`\Sigma`; full-batch gradient descent on a finite sample is this flow with the sample's
:math:`\Sigma = X^\top X / N` and :math:`S = \langle y x^\top\rangle \Sigma^{-1}`.

With fixed P (r x m, r < m) and small initial weights, W_1 stays in span(Q), and the flow stops where
:math:`P (S - W) \Sigma = 0` and :math:`(S - W)\Sigma W_1^\top = 0`: at the *spurious* fixed point

.. math::

    W_2 W_1^* = S \Sigma S^\top P^\top (P S \Sigma S^\top P^\top)^{-1} P S

(:math:`S S^\top P^\top (P S S^\top P^\top)^{-1} P S` for whitened inputs). Its loss exceeds the
rank-r optimum :math:`U_r U_r^\top S` (U_r: the top-r eigenvectors of :math:`S \Sigma S^\top`; the
Eckart-Young truncation of S when :math:`\Sigma = I`) unless row(P) = span(U_r). This derivation is
ours (the authors' linear-theory script integrates the whitened flow; the paper's equations were
not available to us), checked against the simulation in tests/test_limits.py.
Mode strengths :math:`\hat\sigma_j = [U^\top W_2 W_1 V]_{jj} / s_j` (S = U diag(s) V^T) measure
how much of mode j is learnt (1 = fully).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rules import get_subspace


def _covariance(sigma, n: int) -> np.ndarray:
    """The input second moment (n, n): identity when None (whitened inputs)."""
    if sigma is None:
        return np.eye(n)
    sigma = np.asarray(sigma, float)
    if sigma.shape != (n, n):
        raise ValueError(f"input_covariance must have shape ({n}, {n}); got {sigma.shape}")
    return sigma


def spurious_fixed_point(S: np.ndarray, P: np.ndarray, input_covariance: np.ndarray | None = None
                         ) -> np.ndarray:
    """W_2 W_1 at the fixed point of fixed feedback P (r x m) for the teacher S (m x n).

    ``input_covariance``: the inputs' second moment Sigma = <x x^T> (n x n), e.g. X^T X / N of the
    sample actually trained on; None for whitened inputs (Sigma = I). Module docstring for the
    formula; at it, P (S - W) Sigma = 0.
    """
    S, P = np.asarray(S, float), np.asarray(P, float)
    if P.shape[1] != S.shape[0]:
        raise ValueError(f"P must have shape (r, m={S.shape[0]}); got {P.shape}")
    SSt = S @ _covariance(input_covariance, S.shape[1]) @ S.T
    return SSt @ P.T @ np.linalg.solve(P @ SSt @ P.T, P @ S)


def rank_r_optimum(S: np.ndarray, r: int, input_covariance: np.ndarray | None = None) -> np.ndarray:
    """The rank-r map W minimising tr (S - W) Sigma (S - W)^T: U_r U_r^T S, U_r the top-r
    eigenvectors of S Sigma S^T (reduced-rank regression); for Sigma = I (None) the Eckart-Young
    truncation of S."""
    S = np.asarray(S, float)
    if input_covariance is None:
        u, s, vt = np.linalg.svd(S, full_matrices=False)
        return (u[:, :r] * s[:r]) @ vt[:r]
    _, vecs = np.linalg.eigh(S @ _covariance(input_covariance, S.shape[1]) @ S.T)
    top = vecs[:, ::-1][:, :r]
    return top @ (top.T @ S)


def loss(W: np.ndarray, S: np.ndarray, input_covariance: np.ndarray | None = None) -> float:
    """The population loss 1/2 <||S x - W x||^2> = 1/2 tr (S - W) Sigma (S - W)^T."""
    D = np.asarray(S, float) - np.asarray(W, float)
    return float(0.5 * np.trace(D @ _covariance(input_covariance, D.shape[1]) @ D.T))


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
                steps: int = 10_000, record_every: int = 100,
                input_covariance: np.ndarray | None = None) -> LinearFlow:
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
    input_covariance : ndarray, shape (n, n), optional
        Sigma = <x x^T>; None for whitened inputs (Sigma = I). Mode strengths are always taken
        against the SVD of S.
    """
    if feedback not in ("bp", "fixed", "normative"):
        raise ValueError(f"unknown feedback {feedback!r}; valid options: bp, fixed, normative")
    normative = get_subspace("normative")
    W1, W2, P, Q = (np.array(a, float) for a in (W1, W2, P, Q))
    S = np.asarray(S, float)
    sigma = _covariance(input_covariance, S.shape[1])
    rec_t, rec_m = [], []
    for t in range(steps + 1):
        if t % record_every == 0:
            rec_t.append(t)
            rec_m.append(mode_strengths(W2 @ W1, S))
        if t == steps:
            break
        R = (S - W2 @ W1) @ sigma
        B = W2.T if feedback == "bp" else Q @ P
        dW2, dW1 = R @ W1.T, B @ R
        if feedback == "normative":  # the rule's own specification, W2 being the layer it stands in for
            grad_p, grad_q = normative.gradients(P, Q, W2, None, None)
            Q, P = Q - feedback_lr * grad_q, P - feedback_lr * grad_p
        W2, W1 = W2 + lr * dW2, W1 + lr * dW1
    return LinearFlow(np.array(rec_t), np.array(rec_m), W1, W2, P, Q)
