"""Limit cases and the linear theory of fixed low-rank feedback (bioplastic.theory, our derivation),
on the reference backend."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import bioplastic
import circuits
from bioplastic import metrics, rules, theory

SIZES = [6, 8, 5, 3]  # n_l <= n_{l-1} for l >= 2, so P = I (n_l x n_l) gives full rank r = n_l


def _batch(seed=0, n=16):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, SIZES[0])), rng.normal(size=(n, SIZES[-1]))


def _bp_after_one_step(w0):
    bp = bioplastic.build(circuits.mlp(SIZES, rule="bp", lr=0.2))
    bp.set_weights({k: v for k, v in w0.items() if k[0] in "Wb"})
    bp.train_step(*_batch())
    return bp.get_weights()


def test_ldfa_with_full_rank_qp_equal_to_wT_reproduces_bp():
    ranks = SIZES[2:]
    ldfa = bioplastic.build(circuits.mlp(SIZES, rule="ldfa", rank=ranks, subspace="fixed", lr=0.2))
    w0 = ldfa.get_weights()
    for l in (2, 3):
        w0[f"Q{l}"], w0[f"P{l}"] = w0[f"W{l}"].T.copy(), np.eye(SIZES[l])
    ldfa.set_weights(w0)
    ldfa.train_step(*_batch())
    expected = _bp_after_one_step(w0)
    for k in expected:
        assert_close(ldfa.get_weights()[k], expected[k], rtol=1e-13, atol=1e-15, what=k)


def test_fa_with_B_equal_to_wT_reproduces_bp():
    fa = bioplastic.build(circuits.mlp(SIZES, rule="fa", lr=0.2))
    w0 = fa.get_weights()
    w0.update({f"B{l}": w0[f"W{l}"].T.copy() for l in (2, 3)})
    fa.set_weights(w0)
    fa.train_step(*_batch())
    expected = _bp_after_one_step(w0)
    for k in expected:
        assert_close(fa.get_weights()[k], expected[k], rtol=1e-13, atol=1e-15, what=k)


@pytest.mark.parametrize("rule", ["fa", "ldfa"])
def test_without_feedback_only_the_readout_learns(rule):
    run = bioplastic.build(circuits.mlp(SIZES, rule=rule, rank=1 if rule == "ldfa" else None,
                                        subspace="fixed", lr=0.05))
    w0 = run.get_weights()
    key = "B" if rule == "fa" else "Q"
    run.set_weights({f"{key}{l}": np.zeros_like(w0[f"{key}{l}"]) for l in (2, 3)})
    x, y = _batch(n=64)
    losses = [run.train_step(x, y) for _ in range(200)]
    w = run.get_weights()
    for k in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(w[k], w0[k], err_msg=f"{k} changed without feedback")
    assert np.abs(w["W3"] - w0["W3"]).max() > 1e-2
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("r", [1, 2, 3])
def test_rank_bounds_the_delivered_error(r):
    """With linear units, the errors reaching hidden layers over a batch span at most r dimensions."""
    c = circuits.mlp([6, 8, 7, 5], rule="ldfa", rank=r, subspace="fixed", activation="linear")
    w = bioplastic.initial_weights(c)
    rng = np.random.default_rng(3)
    out = rules.train_step(w, rng.normal(size=(40, 6)), rng.normal(size=(40, 5)),
                           rules.get_rule("ldfa", "fixed"), "linear", 0.1, 0.1)
    for l in (1, 2):
        assert np.linalg.matrix_rank(out.delta[l], tol=1e-9) == r
    # the output error itself is full rank (d = 5): the bottleneck, not the task, limits it
    assert np.linalg.matrix_rank(out.delta[3]) == 5


def test_kp_feedback_converges_to_forward_transpose():
    run = bioplastic.build(circuits.mlp([6, 8, 3], rule="kp", lr=0.1, decay=0.05))
    x, y = _batch(n=32)[0], np.random.default_rng(1).normal(size=(32, 3))
    w0 = run.get_weights()
    for _ in range(1000):
        run.train_step(x, y)
    w = run.get_weights()
    # B and W^T receive the same gradient, so B - W^T only decays: exactly (1 - lr * decay)^steps
    assert_close(w["B2"] - w["W2"].T, (1 - 0.1 * 0.05) ** 1000 * (w0["B2"] - w0["W2"].T),
                 rtol=1e-9, atol=1e-12, what="B - W^T")
    assert metrics.alignment_angle(w0["B2"], w0["W2"]) > 60
    assert metrics.alignment_angle(w["B2"], w["W2"]) < 1.0


# ---------------------------------------------------------------- linear theory (paper section 3)
M, N_IN, K, R = 4, 6, 10, 2


def _teacher():
    rng = np.random.default_rng(1)
    U, _ = np.linalg.qr(rng.normal(size=(M, M)))
    V, _ = np.linalg.qr(rng.normal(size=(N_IN, N_IN)))
    return (U * np.array([3.0, 2.0, 1.5, 1.0])) @ V[:, :M].T


def test_whitened_teacher_has_the_given_correlation():
    S = _teacher()
    X, Y = theory.whitened_teacher(S, 50)
    assert_close(X.T @ X / 50, np.eye(N_IN), atol=1e-12, what="<x x^T>")
    assert_close(Y.T @ X / 50, S, atol=1e-12, what="<y x^T>")


def _linear_run(subspace, whiten=True):
    S = _teacher()
    if whiten:
        X, Y = theory.whitened_teacher(S, 50)
    else:  # a finite Gaussian sample: <x x^T> = X^T X / N is not I
        X = np.random.default_rng(4).normal(size=(50, N_IN))
        Y = X @ S.T
    run = bioplastic.build(circuits.mlp([N_IN, K, M], rule="ldfa", rank=R, subspace=subspace,
                                        activation="linear", bias=False, lr=0.05, seed=3))
    w = run.get_weights()
    if subspace == "fixed":  # small init: W1 stays in span(Q), the derivation's assumption
        run.set_weights({"W1": 1e-3 * w["W1"], "W2": 1e-3 * w["W2"]})
    else:  # small W1 only; Q P starts as the rank-r SVD of W2^T, as builders initialise it
        run.set_weights({"W1": 0.1 * w["W1"]})
    P0 = run.get_weights()["P2"]
    for _ in range(12_000):
        run.train_step(X, Y)
    w = run.get_weights()
    return S, P0, w["W2"] @ w["W1"], X.T @ X / len(X)


def test_fixed_low_rank_feedback_converges_to_the_spurious_fixed_point():
    S, P, W, _ = _linear_run("fixed")
    fixed_point = theory.spurious_fixed_point(S, P)
    assert np.linalg.norm(W - fixed_point) / np.linalg.norm(fixed_point) < 0.03
    # ... which is not the teacher, and is worse than the best rank-r map
    assert np.linalg.norm(W - S) / np.linalg.norm(S) > 0.3
    best = theory.rank_r_optimum(S, R)
    assert np.linalg.norm(S - W) > 1.05 * np.linalg.norm(S - best)


def test_fixed_feedback_on_unwhitened_samples_reaches_the_sample_covariance_fixed_point():
    """On 50 Gaussian inputs (not whitened) the run lands within 1% of the fixed point computed
    with the sample's <x x^T>; the whitened formula (Sigma = I) misses it by several percent."""
    S, P, W, sigma = _linear_run("fixed", whiten=False)
    predicted = theory.spurious_fixed_point(S, P, sigma)
    assert np.linalg.norm(W - predicted) / np.linalg.norm(predicted) < 0.01
    whitened = theory.spurious_fixed_point(S, P)
    assert np.linalg.norm(W - whitened) / np.linalg.norm(whitened) > 0.03
    # the sample-covariance loss exceeds that of the rank-r optimum under the same covariance
    best = theory.rank_r_optimum(S, R, sigma)
    assert theory.loss(W, S, sigma) > 1.05 * theory.loss(best, S, sigma)


def test_normative_adaptive_feedback_learns_the_teacher():
    S, _, W, _ = _linear_run("normative")
    assert np.linalg.norm(W - S) / np.linalg.norm(S) < 0.01
    assert_close(theory.mode_strengths(W, S), np.ones(M), atol=0.01, what="mode strengths")


def test_fixed_point_formula_is_stationary_and_exact_at_full_rank():
    S = _teacher()
    rng = np.random.default_rng(5)
    P = rng.normal(size=(R, M))
    W = theory.spurious_fixed_point(S, P)
    assert_close(P @ (S - W), np.zeros((R, N_IN)), atol=1e-12, what="P R = 0")
    P_full = rng.normal(size=(M, M))
    assert_close(theory.spurious_fixed_point(S, P_full), S, rtol=1e-9, atol=1e-12, what="r = m")
    # with row(P) = top-r left singular vectors, the fixed point is the Eckart-Young optimum
    U = np.linalg.svd(S)[0]
    assert_close(theory.spurious_fixed_point(S, U[:, :R].T), theory.rank_r_optimum(S, R),
                 atol=1e-12, what="aligned P")


def test_fixed_point_formula_with_an_input_covariance():
    """P (S - W) Sigma = 0 and (S - W) Sigma S^T P^T = 0 (both gradients vanish with W_1 in
    span(Q)); the rank-r optimum under Sigma is the fixed point of P = U_r^T and beats the fixed
    point of a random P and the Eckart-Young truncation of S in the Sigma-weighted loss."""
    S = _teacher()
    rng = np.random.default_rng(6)
    A = rng.normal(size=(N_IN, N_IN))
    sigma = A @ A.T / N_IN + 0.1 * np.eye(N_IN)
    P = rng.normal(size=(R, M))
    W = theory.spurious_fixed_point(S, P, sigma)
    assert_close(P @ (S - W) @ sigma, np.zeros((R, N_IN)), atol=1e-11, what="P R = 0")
    assert_close((S - W) @ sigma @ S.T @ P.T, np.zeros((M, R)), atol=1e-11, what="R W1^T = 0")
    assert_close(theory.spurious_fixed_point(S, P, np.eye(N_IN)), theory.spurious_fixed_point(S, P),
                 atol=1e-12, what="Sigma = I")
    top = np.linalg.eigh(S @ sigma @ S.T)[1][:, ::-1][:, :R]
    best = theory.rank_r_optimum(S, R, sigma)
    assert_close(theory.spurious_fixed_point(S, top.T, sigma), best, atol=1e-11, what="aligned P")
    assert theory.loss(best, S, sigma) < theory.loss(W, S, sigma)
    assert theory.loss(best, S, sigma) < theory.loss(theory.rank_r_optimum(S, R), S, sigma)
    # the loss is 1/2 <||S x - W x||^2> over inputs with that second moment
    X = rng.normal(size=(200, N_IN)) @ np.linalg.cholesky(sigma).T
    sample = X.T @ X / 200
    assert theory.loss(W, S, sample) == pytest.approx(0.5 * np.mean(np.sum((X @ (S - W).T) ** 2, 1)),
                                                      rel=1e-12)


def test_reduced_flow_matches_the_reference_network_on_unwhitened_samples():
    """With the sample's <x x^T>, the reduced flow is the runner's full-batch dynamics."""
    S = _teacher()
    X = np.random.default_rng(7).normal(size=(30, N_IN))
    run = bioplastic.build(circuits.mlp([N_IN, K, M], rule="ldfa", rank=R, subspace="fixed",
                                        activation="linear", bias=False, lr=0.05, seed=2))
    w0 = run.get_weights()
    for _ in range(200):
        run.train_step(X, X @ S.T)
    flow = theory.linear_flow(S, w0["W1"], w0["W2"], w0["P2"], w0["Q2"], feedback="fixed", lr=0.05,
                              steps=200, record_every=200, input_covariance=X.T @ X / 30)
    assert_close(flow.W1, run.get_weights()["W1"], rtol=1e-9, atol=1e-11, what="W1")
    assert_close(flow.W2, run.get_weights()["W2"], rtol=1e-9, atol=1e-11, what="W2")


def test_reduced_flow_matches_the_reference_network():
    """Theory (reduced ODE on S) and simulation (runner on whitened samples) follow one trajectory."""
    S = _teacher()
    X, Y = theory.whitened_teacher(S, 50)
    run = bioplastic.build(circuits.mlp([N_IN, K, M], rule="ldfa", rank=R, subspace="normative",
                                        activation="linear", bias=False, lr=0.05, seed=2))
    w0 = run.get_weights()
    for _ in range(300):
        run.train_step(X, Y)
    w = run.get_weights()
    flow = theory.linear_flow(S, w0["W1"], w0["W2"], w0["P2"], w0["Q2"], feedback="normative",
                              lr=0.05, feedback_lr=0.05, steps=300, record_every=300)
    assert_close(flow.W1, w["W1"], rtol=1e-9, atol=1e-11, what="W1")
    assert_close(flow.Q, w["Q2"], rtol=1e-9, atol=1e-11, what="Q")


# ---------------------------------------------------------------- Oja's subspace rule
def test_oja_rows_converge_to_the_top_principal_subspace():
    rng = np.random.default_rng(0)
    n, r = 8, 3
    basis, _ = np.linalg.qr(rng.normal(size=(n, n)))
    cov = (basis * np.array([5.0, 4.0, 3.0, 0.5, 0.4, 0.3, 0.2, 0.1])) @ basis.T
    chol = np.linalg.cholesky(cov)
    P, Q, W = 0.3 * rng.normal(size=(r, n)), np.zeros((4, r)), np.zeros((n, 4))
    oja = rules.subspace_rule("oja")
    for _ in range(3000):
        delta = rng.normal(size=(64, n)) @ chol.T
        grad_p, _ = oja(P, Q, W, np.zeros((64, 4)), delta)
        P = P - 0.01 * grad_p
    angles = metrics.principal_angles(P.T, basis[:, :r])
    assert angles.max() < 0.05  # radians
    assert_close(P @ P.T, np.eye(r), atol=0.02, what="P P^T")


# ---------------------------------------------------------------- Oja on the centred error (oja_centred)
def test_oja_centred_gradients_by_hand():
    """Four errors in R^2 with mean (5, -3); centred rows (-2, -1), (2, 1), (0, 1), (0, -1).

    Unit variances (population): 8/4 = 2 and 4/4 = 1, so max sd^2 = 2; E^T E = [[8, 4], [4, 4]], so
    C_hat = E^T E / (4 * 2) = [[1, 1/2], [1/2, 1/2]]. With P = [[1, 0]]: P C = (1, 1/2),
    P C P^T P = (1, 0), grad P = -(P C - P C P^T P) = (0, -1/2). Q as local: h^T (delta P^T) / 4.
    """
    delta = np.array([[3.0, -4.0], [7.0, -2.0], [5.0, -2.0], [5.0, -4.0]])
    h = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])
    P, Q = np.array([[1.0, 0.0]]), np.array([[0.3], [-0.7]])
    unit = rules.get_subspace("oja_centred")
    from bioplastic.rules.subspace.oja_centred import centred_covariance

    assert_close(centred_covariance(delta), [[1.0, 0.5], [0.5, 0.5]], atol=1e-15, what="C_hat")
    grad_p, grad_q = unit.gradients(P, Q, None, h, delta)
    assert_close(grad_p, [[0.0, -0.5]], atol=1e-15, what="grad P")
    # z = delta P^T = (3, 7, 5, 5): grad Q = (3 + 5 + 10, 7 + 5 - 5) / 4
    assert_close(grad_q, [[18 / 4], [7 / 4]], atol=1e-15, what="grad Q")
    # the error's scale and mean do not enter P's step (oja's does: C = <delta delta^T> uncentred)
    assert_close(unit.gradients(P, Q, None, h, 1e-4 * (delta + 11.0))[0], grad_p, atol=1e-12,
                 what="grad P of a shifted, scaled error")
    oja_p, _ = rules.get_subspace("oja").gradients(P, Q, None, h, delta)
    assert np.abs(oja_p - grad_p).max() > 1.0


def test_oja_centred_does_not_move_p_without_spread():
    unit = rules.get_subspace("oja_centred")
    P, Q, h = np.array([[0.6, 0.8, 0.0]]), np.ones((2, 1)), np.ones((3, 2))
    for delta in (np.array([[1.0, -2.0, 0.5]]), np.tile([1.0, -2.0, 0.5], (3, 1))):
        grad_p, _ = unit.gradients(P, Q, None, h[:len(delta)], delta)
        np.testing.assert_array_equal(grad_p, np.zeros_like(P))


def test_oja_centred_finds_the_covariance_subspace_where_a_large_mean_misleads_oja():
    """Errors = a large constant mean outside the covariance's top-r subspace + noise: Oja's rule on
    the uncentred <delta delta^T> turns P to the mean, the centred variant to the top-r subspace."""
    rng = np.random.default_rng(0)
    n, r = 6, 2
    basis = np.linalg.qr(rng.normal(size=(n, n)))[0]
    chol = basis * np.sqrt([4.0, 3.0, 0.3, 0.2, 0.1, 0.1])
    mean = 5.0 * basis[:, -1]  # along the weakest direction of the covariance
    P0 = np.linalg.qr(rng.normal(size=(n, r)))[0].T
    final = {}
    for name in ("oja", "oja_centred"):
        unit, P = rules.get_subspace(name), P0.copy()
        for _ in range(1500):
            delta = mean + rng.normal(size=(64, n)) @ chol.T
            P = P - 0.02 * unit.gradients(P, np.zeros((3, r)), None, np.zeros((64, 3)), delta)[0]
        final[name] = P
    top = basis[:, :r]
    assert metrics.principal_angles(final["oja_centred"].T, top).max() < 0.1  # radians
    assert_close(final["oja_centred"] @ final["oja_centred"].T, np.eye(r), atol=0.05, what="P P^T")
    assert metrics.principal_angles(final["oja"].T, basis[:, -1:]).min() < 0.1  # oja: the mean
