"""The abstract rules against hand-derived numbers and an independent loop-by-neuron implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close

import bioplastic
import circuits
from bioplastic import rules

LR = 0.1


def _scalar_net(rule, subspace=None, **weights):
    """1-1-1 linear network without biases; W1 = 0.5, W2 = 2, input 1, target 0."""
    c = circuits.mlp([1, 1, 1], rule=rule, rank=1 if subspace else None, subspace=subspace or "fixed",
                     activation="linear", bias=False, lr=LR)
    run = bioplastic.build(c)
    run.set_weights({"W1": [[0.5]], "W2": [[2.0]], **{k: [[v]] for k, v in weights.items()}})
    loss = run.train_step([[1.0]], [[0.0]])
    return loss, {k: float(v[0, 0]) for k, v in run.get_weights().items()}


# h1 = 0.5, yhat = 1, e = 1, loss = 1/2. grad W2 = e h1 = 0.5 -> W2 = 2 - 0.05 = 1.95 for every rule.
# The error reaching layer 1 is B e: bp B = W2 = 2; fa/kp/dfa B = 3; ldfa B = Q P = 0.5 * 2 = 1.
HAND = [
    ("bp", None, {}, {"W1": 0.5 - LR * 2.0}),
    ("fa", None, {"B2": 3.0}, {"W1": 0.5 - LR * 3.0, "B2": 3.0}),
    ("dfa", None, {"B1": 3.0}, {"W1": 0.5 - LR * 3.0, "B1": 3.0}),
    # kp: grad B2 = grad W2^T = 0.5
    ("kp", None, {"B2": 3.0}, {"W1": 0.5 - LR * 3.0, "B2": 3.0 - LR * 0.5}),
    ("ldfa", "fixed", {"P2": 2.0, "Q2": 0.5}, {"W1": 0.5 - LR * 1.0, "P2": 2.0, "Q2": 0.5}),
    # local: grad Q = h1 (P e) = 0.5 * 2 = 1; grad P = (Q h1) e = 0.25
    ("ldfa", "local", {"P2": 2.0, "Q2": 0.5}, {"W1": 0.4, "P2": 2.0 - LR * 0.25, "Q2": 0.5 - LR * 1.0}),
    # normative: D = W2^T - QP = 1; grad Q = -D P = -2; grad P = -Q D = -0.5
    ("ldfa", "normative", {"P2": 2.0, "Q2": 0.5}, {"W1": 0.4, "P2": 2.0 + LR * 0.5, "Q2": 0.5 + LR * 2.0}),
    # oja: C = e^2 = 1; grad P = -(P C - P C P P) = -(2 - 8) = 6; Q as local
    ("ldfa", "oja", {"P2": 2.0, "Q2": 0.5}, {"W1": 0.4, "P2": 2.0 - LR * 6.0, "Q2": 0.5 - LR * 1.0}),
    # q_only: P stays; Q as local
    ("ldfa", "q_only", {"P2": 2.0, "Q2": 0.5}, {"W1": 0.4, "P2": 2.0, "Q2": 0.5 - LR * 1.0}),
    # low-rank direct: z = P2 e = 2 reaches hidden 1 through Q1 = 0.5; local: grad Q1 = h1 z = 1,
    # grad P2 = (Q1 h1) e = 0.25
    ("dfa", "local", {"P2": 2.0, "Q1": 0.5}, {"W1": 0.4, "P2": 2.0 - LR * 0.25, "Q1": 0.5 - LR * 1.0}),
    ("dfa", "fixed", {"P2": 2.0, "Q1": 0.5}, {"W1": 0.4, "P2": 2.0, "Q1": 0.5}),
]


@pytest.mark.parametrize("rule,subspace,feedback,expected", HAND,
                         ids=[f"{r}-{s}" if s else r for r, s, _, _ in HAND])
def test_one_step_matches_hand_derivation(rule, subspace, feedback, expected):
    loss, w = _scalar_net(rule, subspace, **feedback)
    assert loss == pytest.approx(0.5, abs=1e-15)
    assert w["W2"] == pytest.approx(1.95, abs=1e-15)
    for key, value in expected.items():
        assert w[key] == pytest.approx(value, abs=1e-14), key


# ---------------------------------------------------------------- loop-by-neuron implementation
def _f(a, act):
    return {"tanh": math.tanh(a), "relu": max(a, 0.0), "linear": a,
            "sigmoid": 1 / (1 + math.exp(-a))}[act]


def _fp(a, act):
    return {"tanh": 1 - math.tanh(a) ** 2, "relu": float(a > 0), "linear": 1.0,
            "sigmoid": math.exp(-a) / (1 + math.exp(-a)) ** 2}[act]


def Q_dot_h(w, h, l, q):
    """Bottleneck neuron q's forward input from hidden layer l, sum_j Q_l[j, q] h_l[j]."""
    return sum(w[f"Q{l}"][j][q] * h[l][j] for j in range(len(h[l])))


def _loop_step(w, X, Y, rule, subspace, act, lr, flr, decay):
    """One batch-mean step written sample by sample and neuron by neuron (no matrix algebra)."""
    L = sum(k.startswith("W") for k in w)
    size = [len(w["W1"][0])] + [len(w[f"W{l}"]) for l in range(1, L + 1)]
    N = len(X)
    acc = {k: np.zeros_like(v) for k, v in w.items()}
    errors = []  # every sample's layer errors, for rules that read batch statistics
    for x, y in zip(X, Y):
        h, a = [list(x)], [None]
        for l in range(1, L + 1):
            al = [sum(w[f"W{l}"][i][j] * h[-1][j] for j in range(size[l - 1])) + w.get(f"b{l}", [0] * size[l])[i]
                  for i in range(size[l])]
            a.append(al)
            h.append(al if l == L else [_f(v, act) for v in al])
        delta = [None] * (L + 1)
        delta[L] = [h[L][i] - y[i] for i in range(size[L])]
        for l in range(L - 1, 0, -1):
            for_l = []
            for i in range(size[l]):
                if rule == "bp":
                    fb = sum(w[f"W{l+1}"][k][i] * delta[l + 1][k] for k in range(size[l + 1]))
                elif rule in ("fa", "kp"):
                    fb = sum(w[f"B{l+1}"][i][k] * delta[l + 1][k] for k in range(size[l + 1]))
                elif rule == "dfa" and f"P{L}" in w:  # low rank: z = P e through one bottleneck
                    P, Q = w[f"P{L}"], w[f"Q{l}"]
                    z = [sum(P[q][k] * delta[L][k] for k in range(size[L])) for q in range(len(P))]
                    fb = sum(Q[i][q] * z[q] for q in range(len(P)))
                elif rule == "dfa":
                    fb = sum(w[f"B{l}"][i][k] * delta[L][k] for k in range(size[L]))
                else:
                    P, Q = w[f"P{l+1}"], w[f"Q{l+1}"]
                    z = [sum(P[q][k] * delta[l + 1][k] for k in range(size[l + 1])) for q in range(len(P))]
                    fb = sum(Q[i][q] * z[q] for q in range(len(P)))
                for_l.append(_fp(a[l][i], act) * fb)
            delta[l] = for_l
        errors.append(delta)
        for l in range(1, L + 1):
            for i in range(size[l]):
                for j in range(size[l - 1]):
                    acc[f"W{l}"][i][j] += delta[l][i] * h[l - 1][j] / N
                if f"b{l}" in w:
                    acc[f"b{l}"][i] += delta[l][i] / N
            if l >= 2 and rule == "kp":
                for j in range(size[l - 1]):
                    for i in range(size[l]):
                        acc[f"B{l}"][j][i] += h[l - 1][j] * delta[l][i] / N
            if l < L and rule == "dfa" and f"P{L}" in w and subspace in ("local", "oja", "q_only",
                                                                          "oja_centred"):
                # the hidden layers act as one stacked layer below the single bottleneck
                P, Q = w[f"P{L}"], w[f"Q{l}"]
                for q in range(len(P)):
                    z = sum(P[q][k] * delta[L][k] for k in range(size[L]))
                    for j in range(size[l]):
                        acc[f"Q{l}"][j][q] += h[l][j] * z / N
                    if subspace == "local":
                        for k in range(size[L]):
                            acc[f"P{L}"][q][k] += Q_dot_h(w, h, l, q) * delta[L][k] / N
                    elif subspace == "oja" and l == 1:  # P's rule reads only e: count it once
                        for k in range(size[L]):
                            back = sum(sum(P[p][m] * delta[L][m] for m in range(size[L])) * P[p][k]
                                       for p in range(len(P)))
                            acc[f"P{L}"][q][k] -= z * (delta[L][k] - back) / N
            if l >= 2 and rule == "ldfa" and subspace in ("local", "oja", "q_only", "oja_centred"):
                P, Q = w[f"P{l}"], w[f"Q{l}"]
                for q in range(len(P)):
                    z = sum(P[q][k] * delta[l][k] for k in range(size[l]))
                    u = sum(Q[j][q] * h[l - 1][j] for j in range(size[l - 1]))
                    for j in range(size[l - 1]):
                        acc[f"Q{l}"][j][q] += h[l - 1][j] * z / N
                    for k in range(size[l]):
                        if subspace in ("q_only", "oja_centred"):  # P stays / after the batch
                            continue
                        if subspace == "local":
                            acc[f"P{l}"][q][k] += u * delta[l][k] / N
                        else:  # Oja: z (delta - sum_q' z_q' P_q')
                            back = sum(sum(P[p][m] * delta[l][m] for m in range(size[l])) * P[p][k]
                                       for p in range(len(P)))
                            acc[f"P{l}"][q][k] -= z * (delta[l][k] - back) / N
    if subspace == "oja_centred":  # P from the batch's centred errors, scaled by the largest unit sd
        for l in ([L] if rule == "dfa" else range(2, L + 1)):
            P, n = w[f"P{l}"], size[l]
            mean = [sum(d[l][k] for d in errors) / N for k in range(n)]
            top = max(sum((d[l][k] - mean[k]) ** 2 for d in errors) / N for k in range(n))
            C = [[sum((d[l][k] - mean[k]) * (d[l][j] - mean[j]) for d in errors) / (N * top)
                  for j in range(n)] for k in range(n)]
            PC = [[sum(P[q][m] * C[m][k] for m in range(n)) for k in range(n)] for q in range(len(P))]
            for q in range(len(P)):
                for k in range(n):
                    back = sum(sum(PC[q][j] * P[p][j] for j in range(n)) * P[p][k] for p in range(len(P)))
                    acc[f"P{l}"][q][k] -= PC[q][k] - back
    new = {}
    for k, v in w.items():
        if k.startswith("b"):
            new[k] = v - lr * acc[k]
        elif k.startswith("W"):
            new[k] = v - lr * (acc[k] + decay * v)
        elif rule == "kp" or (rule in ("ldfa", "dfa") and subspace in ("local", "oja", "oja_centred")
                              and k[0] in "PQ"):
            new[k] = v - flr * (acc[k] + decay * v)
        elif rule in ("ldfa", "dfa") and subspace == "q_only" and k.startswith("Q"):
            new[k] = v - flr * (acc[k] + decay * v)
        elif rule == "ldfa" and subspace == "normative":
            l = int(k[1:])
            D = w[f"W{l}"].T - w[f"Q{l}"] @ w[f"P{l}"]
            g = -w[f"Q{l}"].T @ D if k.startswith("P") else -D @ w[f"P{l}"].T
            new[k] = v - flr * (g + decay * v)
        else:
            new[k] = v
    return new


CASES = [("bp", None), ("fa", None), ("dfa", None), ("kp", None),
         ("ldfa", "fixed"), ("ldfa", "local"), ("ldfa", "normative"), ("ldfa", "oja"), ("ldfa", "q_only"),
         ("dfa", "fixed"), ("dfa", "local"), ("dfa", "oja"), ("dfa", "q_only"),
         ("ldfa", "oja_centred"), ("dfa", "oja_centred")]


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("rule,subspace", CASES, ids=[f"{r}-{s}" if s else r for r, s in CASES])
def test_reference_equals_loop_implementation(rule, subspace, act):
    c = circuits.mlp([3, 5, 4, 2], rule=rule, rank=2 if subspace else None,
                     subspace=subspace or "local", activation=act, lr=0.3, feedback_lr=0.2, decay=0.01,
                     seed=7)
    run = bioplastic.build(c)
    rng = np.random.default_rng(1)
    w0 = run.get_weights()
    w0 = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in w0.items()}  # nonzero biases too
    run.set_weights(w0)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    run.train_step(X, Y)
    expected = _loop_step(w0, X, Y, rule, subspace, act, 0.3, 0.2, 0.01)
    got = run.get_weights()
    assert set(got) == set(expected)
    for k in got:
        assert_close(got[k], expected[k], rtol=1e-11, atol=1e-13, what=k)


def test_train_step_is_pure():
    c = circuits.mlp([3, 4, 2], rule="ldfa", rank=1)
    w = bioplastic.initial_weights(c)
    snapshot = {k: v.copy() for k, v in w.items()}
    out = rules.train_step(w, np.ones((2, 3)), np.zeros((2, 2)), rules.get_rule("ldfa", "local"),
                           "tanh", 0.1, 0.1)
    for k in w:
        np.testing.assert_array_equal(w[k], snapshot[k])
        assert out.weights[k] is not w[k]


def test_unknown_rule_and_subspace_names_list_options():
    with pytest.raises(ValueError, match="valid options: bp, fa, dfa, kp, ldfa"):
        rules.get_rule("hebb")
    with pytest.raises(ValueError, match="valid options: fixed, normative, local, oja"):
        rules.get_rule("ldfa", "pca")
    with pytest.raises(ValueError, match="valid options: tanh"):
        rules.activation("softplus")
