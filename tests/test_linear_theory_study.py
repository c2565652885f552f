"""The study format's linear teacher task, small initial weights and full-batch training, as
analyses/linear_theory.py trains through them (the linear theory of arXiv 2502.20580).

Each feature is held to an independent computation: the task's S has the given singular values and
is the draw U diag(s) V^T recomputed here; whitened inputs have X^T X / N = I; ``init_scale`` scales
the draw and keeps Q P the truncated SVD of the scaled W^T; the snapshot after N full-batch steps
equals N steps of the reference backend by hand; a bad value names its key.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_analysis

import bioplastic
import circuits
from bioplastic import cli, data, theory
from bioplastic.circuit import CircuitError
from bioplastic.experiment.run import (
    execute,
    load_snapshot,
    load_task,
    read_metrics,
    run_folder,
    step_snapshots,
)
from bioplastic.experiment.study import LinearTeacherTask, StudyError, load_study, study_from_mapping

S_VALUES = [5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5]


def recomputed_teacher(n_in: int, s: list[float], seed: int) -> np.ndarray:
    """U diag(s) V_m^T from the QR factors of normal draws, as the linear theory draws it."""
    rng = np.random.default_rng(seed)
    m = len(s)
    U, _ = np.linalg.qr(rng.normal(size=(m, m)))
    V, _ = np.linalg.qr(rng.normal(size=(n_in, n_in)))
    return U @ np.diag(s) @ V[:, :m].T


@pytest.mark.parametrize("seed", [0, 7])
def test_the_teacher_has_the_given_singular_values(seed):
    ds = load_task(LinearTeacherTask(name="linear_teacher", seed=seed))
    S = ds.info["S"]
    assert S.shape == (8, 10)
    np.testing.assert_allclose(np.linalg.svd(S, compute_uv=False), S_VALUES, rtol=0, atol=1e-12)
    np.testing.assert_allclose(S, recomputed_teacher(10, S_VALUES, seed), rtol=0, atol=1e-12)
    # every one of the 500 samples trains; the inputs from default_rng(seed + 1), then the test ones
    draw = np.random.default_rng(seed + 1)
    X = draw.normal(size=(500, 10))
    np.testing.assert_array_equal(ds.x_train, X)
    np.testing.assert_array_equal(ds.x_test, draw.normal(size=(100, 10)))
    np.testing.assert_allclose(ds.y_train, X @ S.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds.info["input_cov"], X.T @ X / 500, rtol=0, atol=1e-14)


def test_whitened_inputs_are_exactly_white():
    task = LinearTeacherTask(name="linear_teacher", whiten=True, samples=60, n_in=6,
                             singular_values=[3.0, 1.0, 0.25])
    ds = load_task(task)
    np.testing.assert_allclose(ds.x_train.T @ ds.x_train / 60, np.eye(6), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-14)
    # the same inputs as bioplastic.theory's whitened sample of this seed
    Xw, _ = theory.whitened_teacher(ds.info["S"], 60, seed=1)
    np.testing.assert_array_equal(ds.x_train, Xw)
    # the test inputs through the training inputs' map: x -> (x - mean) A, A from the raw sample
    draw = np.random.default_rng(1)
    raw, raw_test = draw.normal(size=(60, 6)), draw.normal(size=(100, 6))
    A = np.linalg.lstsq(raw - raw.mean(axis=0), ds.x_train, rcond=None)[0]
    np.testing.assert_allclose(ds.x_test, (raw_test - raw.mean(axis=0)) @ A, atol=1e-10)


@pytest.mark.parametrize("values, key, words", [
    ({"singular_values": [3.0, 2.0, 1.0], "n_in": 2}, "task.singular_values", "at most 2 modes"),
    ({"singular_values": [1.0, 2.0]}, "task.singular_values", "non-increasing"),
    ({"singular_values": [1.0, -0.5]}, "task.singular_values", "greater than 0"),
    ({"singular_values": []}, "task.singular_values", "at least 1"),
    ({"whiten": True, "samples": 10}, "task.samples", "more than 10 samples"),
    ({"test_samples": 0}, "task.test_samples", "greater than 0"),
    ({"sigma": 1.0}, "task.sigma", "valid keys: name, n_in, singular_values"),
])
def test_a_bad_task_value_names_its_key(values, key, words):
    with pytest.raises(StudyError) as err:
        study_from_mapping({"task": {"name": "linear_teacher", **values}, "circuit": {"hidden": [4]}})
    text = str(err.value)
    assert key in text and words in text, text


def test_a_misspelt_task_lists_linear_teacher():
    with pytest.raises(StudyError, match=r"task.name: unknown task 'linear'; valid options: .*linear_teacher"):
        study_from_mapping({"task": {"name": "linear"}})


def test_init_scale_scales_the_draw_and_keeps_qp_the_svd_of_the_scaled_w():
    sizes, s = [10, 16, 8], 1e-3
    for subspace in ("normative", "fixed"):
        plain = bioplastic.initial_weights(circuits.mlp(sizes, rule="ldfa", rank=2, subspace=subspace,
                                                        activation="linear", bias=False, seed=4))
        small = bioplastic.initial_weights(circuits.mlp(sizes, rule="ldfa", rank=2, subspace=subspace,
                                                        activation="linear", bias=False, seed=4,
                                                        init_scale=s))
        for k in ("W1", "W2"):
            np.testing.assert_allclose(small[k], s * plain[k], rtol=1e-15, atol=0)
        QP = small["Q2"] @ small["P2"]
        if subspace == "normative":  # the best rank-2 approximation of (s W2)^T
            u, sv, vt = np.linalg.svd(s * plain["W2"].T)
            np.testing.assert_allclose(QP, (u[:, :2] * sv[:2]) @ vt[:2], rtol=0, atol=1e-15)
        else:  # random feedback keeps its draw
            np.testing.assert_array_equal(small["P2"], plain["P2"])
            np.testing.assert_array_equal(small["Q2"], plain["Q2"])
    # the default is unchanged and stores nothing
    assert "init_scale" not in circuits.mlp(sizes, rule="bp", activation="linear").graph.graph
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(CircuitError, match="init_scale must be a finite number > 0"):
            circuits.mlp(sizes, rule="bp", init_scale=bad)


def full_batch_study(steps: int, **training) -> dict:
    return {"name": "lt", "seeds": [2],
            "task": {"name": "linear_teacher", "n_in": 6, "singular_values": [3.0, 1.5, 0.5], "samples": 40,
                     "seed": 2},
            "circuit": {"hidden": [5], "activation": "linear", "options": {"bias": False, "init_scale": 0.01}},
            "feedback": {"rule": "ldfa", "subspace": "normative", "rank": 2},
            "optimizer": {"lr": 0.1, "feedback_lr": 0.05},
            "training": {"epochs": steps, "batch_size": 40, "shuffle": False, **training},
            "record": {"weights_every_steps": 10}}


def test_full_batch_snapshots_equal_a_hand_run(tmp_path):
    run = study_from_mapping(full_batch_study(35, eval_every=5, checkpoint_every=10)).runs[0]
    assert execute(run, tmp_path)["state"] == "finished"
    folder = run_folder(tmp_path, run["run_id"])
    snaps = step_snapshots(folder)
    assert list(snaps) == [0, 10, 20, 30, 35]  # one step an epoch; and after the last
    assert [line["epoch"] for line in read_metrics(folder)] == [0, 5, 10, 15, 20, 25, 30, 35]
    lt = data.linear_teacher(6, [3.0, 1.5, 0.5], 40, 100, seed=2)
    runner = bioplastic.build(circuits.mlp([6, 5, 3], rule="ldfa", rank=2, subspace="normative",
                                           activation="linear", bias=False, lr=0.1, feedback_lr=0.05,
                                           seed=2, init_scale=0.01))
    for step in range(36):
        if step in snaps:
            got = load_snapshot(snaps[step])
            want = runner.get_weights()
            assert sorted(got) == sorted(want)
            for k in want:  # bit for bit: the same samples, in the same order, every step
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} at step {step}")
        runner.train_step(lt.x, lt.y)
    # and the reduced flow on the sample's S and Sigma follows it (tests/test_limits.py: 1e-9)
    w0, w = load_snapshot(snaps[0]), load_snapshot(snaps[35])
    flow = theory.linear_flow(lt.S, w0["W1"], w0["W2"], w0["P2"], w0["Q2"], feedback="normative", lr=0.1,
                              feedback_lr=0.05, steps=35, record_every=35, input_covariance=lt.input_cov)
    np.testing.assert_allclose(w["W2"] @ w["W1"], flow.W2 @ flow.W1, rtol=0, atol=1e-12)


def test_shuffled_full_batches_differ_only_in_rounding(tmp_path):
    """A full batch in a shuffled order is the same gradient, summed in another order."""
    ordered = study_from_mapping(full_batch_study(20)).runs[0]
    shuffled = study_from_mapping(full_batch_study(20, shuffle=True)).runs[0]
    execute(ordered, tmp_path / "a")
    execute(shuffled, tmp_path / "b")
    a = load_snapshot(step_snapshots(run_folder(tmp_path / "a", ordered["run_id"]))[20])
    b = load_snapshot(step_snapshots(run_folder(tmp_path / "b", shuffled["run_id"]))[20])
    np.testing.assert_allclose(a["W2"] @ a["W1"], b["W2"] @ b["W1"], rtol=1e-10, atol=1e-13)


def test_shipped_study_is_the_linear_theory_default():
    """studies/linear_theory.toml resolves to exactly the runs ``bioplastic analysis linear_theory``
    trains."""
    module = load_analysis("linear_theory")
    shipped = load_study(cli.analyses_dir().parent / "studies" / "linear_theory.toml", check=False)
    generated = study_from_mapping(module.study(module.Config()), check=False)
    assert len(shipped.runs) == 4
    assert [r["run_id"] for r in shipped.runs] == [r["run_id"] for r in generated.runs]
    assert [{**r, "import_path": None} for r in shipped.runs] == [{**r, "import_path": None}
                                                                  for r in generated.runs]
    # the task the analysis computes its theory on is the runs' task
    cfg = module.Config()
    assert shipped.runs[0]["task"]["whiten"] is False
    ds = load_task(LinearTeacherTask(**shipped.runs[0]["task"]))
    np.testing.assert_array_equal(ds.info["S"], module.teacher_task(cfg).S)
    np.testing.assert_array_equal(ds.x_train, module.teacher_task(cfg).x)
