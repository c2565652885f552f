"""End-to-end runs of the analysis scripts at tiny scale, through the ``bioplastic analysis`` command.

Each test runs one analysis in a few seconds, then checks that its files exist and parse, that its
headline numbers are sane, and that a number it reports at step 0 equals an independent
computation from the initial weights (closed forms, plain numpy forward passes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_analysis

import bioplastic
import circuits
from bioplastic import cli, data


def run_analysis(name: str, out, *options: str) -> dict:
    """Run ``bioplastic analysis NAME --out=OUT OPTIONS``; return its results.json (checked)."""
    status = cli.main(["analysis", name, f"--out={out}", *options])
    assert status == 0, f"bioplastic analysis {name} exited with {status}"
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["out"] == str(out)
    return json.loads((out / "results.json").read_text())


load = load_analysis  # analyses/NAME.py, loaded by path as the CLI does


def pngs(out) -> list[str]:
    """Names of the non-empty PNG files in ``out`` (checked by their signature), each with its SVG
    twin."""
    found = []
    for path in sorted(out.glob("*.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        svg = path.with_suffix(".svg")
        assert svg.exists() and b"<svg" in svg.read_bytes()[:2000], f"{svg} missing or not an SVG"
        found.append(path.name)
    return found


def relu_forward(weights: dict, x: np.ndarray, n_layers: int, act: str) -> np.ndarray:
    """Plain numpy MLP forward pass (hidden ``act``, linear output), independent of bioplastic.rules."""
    f = {"relu": lambda a: np.maximum(a, 0.0), "linear": lambda a: a}[act]
    h = x
    for l in range(1, n_layers + 1):
        a = h @ weights[f"W{l}"].T + weights[f"b{l}"]
        h = a if l == n_layers else f(a)
    return h


# --------------------------------------------------------------------------------------------------
# accuracy_vs_rank
# --------------------------------------------------------------------------------------------------

def test_accuracy_vs_rank_digits(tmp_path):
    res = run_analysis("accuracy_vs_rank", tmp_path, "--epochs=3", "--seeds=0,1", "--ranks=1,40",
                       '--subspaces=["local"]', '--references=["bp","readout"]', "--jobs=1")
    assert pngs(tmp_path) == ["accuracy_vs_rank.png"]
    assert res["metric"] == "test_accuracy" and res["sizes"] == [64, 32, 32, 10]
    # r is clipped per pathway to min(n_{l-1}, n_l): 40 -> 32 into layer 1, 10 from the output
    assert [e["ranks"] for e in res["ldfa"]["local"]] == [[1, 1], [32, 10]]
    bp = res["references"]["bp"]["test_accuracy"]
    assert bp["n"] == 2 and bp["diverged"] == 0
    assert bp["mean"] > 0.3, f"bp should beat chance (0.1) clearly after 3 epochs; got {bp['mean']}"
    # the summary is the mean and the ddof=1 sd of the per-seed finals
    finals = [r["test_accuracy"] for r in res["runs"] if r["label"] == "bp"]
    assert bp["mean"] == pytest.approx(np.mean(finals), abs=1e-12)
    assert bp["sd"] == pytest.approx(np.std(finals, ddof=1), abs=1e-12)
    # readout only and bp start from the same network (forward weights drawn first for every rule)
    for seed in (0, 1):
        first = {r["label"]: r["curve_accuracy"][0] for r in res["runs"] if r["seed"] == seed}
        assert first["bp"] == first["readout"] == first["ldfa-local-r1"]


def test_accuracy_vs_rank_teacher_in_worker_processes(tmp_path):
    n_in, n_out, d, n, task_seed = 50, 20, 5, 400, 1000
    res = run_analysis("accuracy_vs_rank", tmp_path, "--task=teacher", "--epochs=5", "--seeds=0",
                       "--ranks=5", '--subspaces=["normative"]', '--references=["bp","readout"]',
                       f"--teacher_samples={n}", "--jobs=2")
    assert pngs(tmp_path) == ["accuracy_vs_rank.png"]
    assert res["metric"] == "relative_error" and res["task_dim"] == d and res["jobs"] == 2
    rel = {label: res["references"][label]["relative_error"]["mean"] for label in ("bp", "readout")}
    assert rel["bp"] < 0.5 * rel["readout"] and rel["readout"] < 1.0, rel
    # epoch-0 relative error recomputed from the initial weights and the teacher data
    ts = data.teacher_student(n_in, n_out, n, rank=d, seed=task_seed)
    x, y = ts.x[3 * n // 4:], ts.y[3 * n // 4:] / np.sqrt(n_in)
    w0 = bioplastic.initial_weights(circuits.mlp([n_in, 32, 32, n_out], rule="bp",
                                                 activation="linear", seed=0))
    expected = np.sum((relu_forward(w0, x, 3, "linear") - y) ** 2) / np.sum(y ** 2)
    bp_run = next(r for r in res["runs"] if r["label"] == "bp")
    assert bp_run["curve_relative_error"][0] == pytest.approx(expected, rel=1e-10)


def test_accuracy_vs_rank_rejects_bad_options():
    module = load("accuracy_vs_rank")
    with pytest.raises(ValueError, match="unknown task 'mnist'; valid options: digits, teacher"):
        module.check(module.Config(task="mnist"))
    with pytest.raises(ValueError, match="valid options: fixed, local, normative, oja"):
        module.check(module.Config(subspaces=("svd",)))
    with pytest.raises(ValueError, match="ranks must be positive ints"):
        module.check(module.Config(ranks=(0, 2)))


# --------------------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------------------

def test_alignment(tmp_path):
    r, sizes = 3, [64, 64, 64, 10]
    res = run_analysis("alignment", tmp_path, "--epochs=3", "--seeds=0", "--record_every=21", "--jobs=1",
                       '--conditions=["bp","fa","kp","ldfa-normative","ldfa-oja","ldfa-oja_centred"]')
    assert pngs(tmp_path) == ["alignment_angle.png", "error_dimension.png", "subspace_angle.png",
                              "subspace_capture.png"]
    conds = res["conditions"]
    assert res["steps"] == [0, 21, 42, 63, 84, 105, 126]  # 42 steps per epoch (drop_last)

    # kp: B learns with W's update, so its angle to W^T falls (90.5 -> 84.9 and 90.2 -> 85.5
    # measured); fa's B is fixed and W aligns more slowly (B2: 90.5 -> 89.3)
    kp, fa = conds["kp"]["runs"][0]["angle"], conds["fa"]["runs"][0]["angle"]
    for l in ("2", "3"):
        assert kp[l][-1] < kp[l][0] - 3, f"kp angle B{l}: {kp[l][0]:.1f} -> {kp[l][-1]:.1f}"
    assert kp["2"][-1] < fa["2"][-1] - 2

    dataset = data.load_digits()
    x, y = dataset.x_train, dataset.y_train
    # normative starts at QP = truncated SVD of W^T: cos(angle) = sqrt(explained variance of W)
    w0 = bioplastic.initial_weights(circuits.mlp(sizes, rule="ldfa", rank=r, subspace="normative",
                                                 activation="relu", seed=0))
    for l in ("2", "3"):
        s = np.linalg.svd(w0[f"W{l}"], compute_uv=False)
        expected = np.degrees(np.arccos(np.sqrt(np.sum(s[:r] ** 2) / np.sum(s ** 2))))
        got = conds["ldfa-normative"]["runs"][0]["angle"][l][0]
        assert got == pytest.approx(expected, abs=1e-9), f"B{l}"
        assert conds["ldfa-normative"]["runs"][0]["optimum_angle"][l][0] == pytest.approx(got, abs=1e-9)

    # oja, output pathway at step 0: principal angles between row(P3) and the top-r right singular
    # vectors of the output errors e (the eigenvectors of <e e^T>)
    w0 = bioplastic.initial_weights(circuits.mlp(sizes, rule="ldfa", rank=r, subspace="oja",
                                                 activation="relu", seed=0))
    e = relu_forward(w0, x, 3, "relu") - y
    top = np.linalg.svd(e, full_matrices=False)[2][:r].T  # (10, r)
    p_basis = np.linalg.svd(w0["P3"].T, full_matrices=False)[0]
    cosines = np.clip(np.linalg.svd(p_basis.T @ top, compute_uv=False), -1, 1)
    expected = np.sort(np.degrees(np.arccos(cosines)))
    got = conds["ldfa-oja"]["runs"][0]["principal_angles"]["3"][0]
    np.testing.assert_allclose(got, expected, atol=1e-7)
    # ... and the capture of <e e^T> by row(P3): tr(P~ C P~^T) / top-r eigenvalues, P~ orthonormal
    C = e.T @ e / len(e)
    captured = np.trace(p_basis.T @ C @ p_basis) / np.sum(np.linalg.eigvalsh(C)[-r:])
    assert conds["ldfa-oja"]["runs"][0]["capture"]["3"][0] == pytest.approx(captured, rel=1e-10)
    centred = e - e.mean(axis=0)
    C = centred.T @ centred / len(e)
    captured = np.trace(p_basis.T @ C @ p_basis) / np.sum(np.linalg.eigvalsh(C)[-r:])
    assert conds["ldfa-oja"]["runs"][0]["capture_centred"]["3"][0] == pytest.approx(captured, rel=1e-10)
    # oja_centred starts from the same weights; every ldfa pathway, the output one included, is
    # reported, and in these 126 steps it captures more of the hidden error than oja does
    # (0.06 -> 1.00 against 0.06 -> 0.16 measured: its covariance is scale-free, oja's shrinks
    # with the error)
    centred_run = conds["ldfa-oja_centred"]["runs"][0]
    assert centred_run["capture"]["3"][0] == conds["ldfa-oja"]["runs"][0]["capture"]["3"][0]
    for key in ("capture", "capture_centred", "principal_angles", "angle"):
        assert set(centred_run[key]) == {"2", "3"}, key
    assert centred_run["capture"]["2"][-1] > 0.9 > conds["ldfa-oja"]["runs"][0]["capture"]["2"][-1]

    # bp at step 0: participation ratio of the output error from its singular values
    w0 = bioplastic.initial_weights(circuits.mlp(sizes, rule="bp", activation="relu", seed=0))
    s2 = np.linalg.svd(relu_forward(w0, x, 3, "relu") - y, compute_uv=False) ** 2
    got = conds["bp"]["runs"][0]["participation_ratio"]["3"][0]
    assert got == pytest.approx(np.sum(s2) ** 2 / np.sum(s2 ** 2), rel=1e-10)

    # bookkeeping: random r-subspaces of R^10 sit between 0 and 90 degrees
    assert 40 < res["random_subspace_angle"]["3"] < 80
    assert all(c["summary"]["diverged"] == 0 for c in conds.values())


# --------------------------------------------------------------------------------------------------
# linear_theory
# --------------------------------------------------------------------------------------------------

def test_linear_theory(tmp_path):
    res = run_analysis("linear_theory", tmp_path, "--steps=400", "--record_every=50", "--jobs=1")
    assert pngs(tmp_path) == ["mode_strengths.png", "modes_vs_rank.png"]
    conds = res["conditions"]
    assert conds["bp"]["steps"] == [0, 50, 100, 150, 200, 250, 300, 350, 400]
    # the reduced flow on the sample's S and Sigma is the simulation's own full-batch dynamics
    for name, entry in conds.items():
        assert entry["max_gap_theory_simulation"] < 1e-9, name
        np.testing.assert_allclose(entry["simulation"], entry["theory"], atol=1e-9)
    assert min(conds["bp"]["simulation"][-1][:6]) > 0.95  # bp: the strong modes by step 400
    # fixed feedback reaches the fixed point of the sample covariance (1e-5 measured), not the
    # whitened formula's (5%), and cannot beat the rank-r optimum
    fixed = conds["fixed"]
    assert fixed["relative_distance_to_fixed_point"] < 0.01
    assert fixed["relative_distance_to_whitened_formula"] > 0.03
    assert res["whitened_fixed"]["relative_distance_to_fixed_point"] < 0.01
    assert fixed["loss_ratio_to_rank_r_optimum"] > 1.0
    np.testing.assert_allclose(fixed["final_modes"], fixed["fixed_point_modes"], atol=0.01)
    # normative rank-2 feedback learns the top r = 2 modes first and nothing else yet
    final = np.array(conds["normative"]["simulation"][-1])
    assert np.all(final[:2] > 0.95) and np.all(np.abs(final[2:]) < 0.05), final
    assert conds["normative"]["first_learnt_step"][2:] == [None] * 6

    # the closed forms recomputed here from the seed: teacher, sample, each rank's random P
    m, n_in, samples = 8, 10, 500
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(m, m)))
    V, _ = np.linalg.qr(rng.normal(size=(n_in, n_in)))
    S = (U * np.array([5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5])) @ V[:, :m].T
    X = np.random.default_rng(1).normal(size=(samples, n_in))
    sigma = X.T @ X / samples
    np.testing.assert_allclose(res["input_covariance"], sigma, atol=1e-14)
    u, s, vt = np.linalg.svd(S)
    sweep = res["sweep"]
    assert sweep["ranks"] == list(range(1, m + 1))
    for i, r in enumerate(sweep["ranks"]):
        P = bioplastic.initial_weights(circuits.mlp([n_in, 16, m], rule="ldfa", rank=r, subspace="fixed",
                                                    activation="linear", bias=False, seed=0))["P2"]
        SS = S @ sigma @ S.T
        fixed_point = SS @ P.T @ np.linalg.inv(P @ SS @ P.T) @ P @ S
        expected = np.diag(u.T @ fixed_point @ vt[:m].T) / s
        np.testing.assert_allclose(sweep["fixed"]["formula_modes"][i], expected, atol=1e-9)
        # ... which the run reaches, at every rank
        np.testing.assert_allclose(sweep["fixed"]["final_modes"][i], expected, atol=0.01)
        # the rank-r optimum: top-r eigenvectors of S Sigma S^T, close to modes 1..r of S
        top = np.linalg.eigh(SS)[1][:, ::-1][:, :r]
        optimum = np.diag(u.T @ top @ top.T @ S @ vt[:m].T) / s
        np.testing.assert_allclose(sweep["optimum_modes"][i], optimum, atol=1e-9)
        assert np.all(optimum[:r] > 0.95) and np.all(optimum[r:] < 0.05)
    # normative: at the early snapshot (step 400 here) no rank has learnt more than r modes
    early = np.array(sweep["normative"]["early_modes"])
    assert sweep["normative"]["early_step"] == 400
    for i, r in enumerate(sweep["ranks"]):
        assert sweep["normative"]["learnt_modes_early"][i] == int(np.sum(early[i] >= 0.9)) <= r


def test_linear_theory_rejects_bad_options():
    module = load("linear_theory")
    with pytest.raises(ValueError, match=r"rank and sweep_ranks must be <= min\(m = 8"):
        module.check(module.Config(sweep_ranks=(1, 9)))
