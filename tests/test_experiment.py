"""bioplastic.experiment and bioplastic.progress: files, seeds, the training loop, demo helpers.

The training loop is checked against a hand-written loop over the float64 abstract rule
(:func:`bioplastic.rules.train_step`) with the same batch order.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import operator
import os
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close

import bioplastic
import circuits
from analyses import demo as dm
from bioplastic import experiment as ex
from bioplastic.data import Dataset, one_hot
from bioplastic.experiment.pool import run_tasks
from bioplastic.experiment.progress import Progress, format_seconds
from bioplastic.rules import get_rule, loss, train_step


def _blobs(n_train=40, n_test=20, n_in=5, k=3, seed=0) -> Dataset:
    """Gaussian blobs around k random centres: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (k, n_in))
    lab, labt = rng.integers(0, k, n_train), rng.integers(0, k, n_test)
    x = centres[lab] + rng.normal(0, 0.5, (n_train, n_in))
    xt = centres[labt] + rng.normal(0, 0.5, (n_test, n_in))
    return Dataset(x, one_hot(lab, k), lab, xt, one_hot(labt, k), labt, "blobs", ("a", "b", "c"))


# ------------------------------------------------------------------------------------------ files

def test_write_json_converts_and_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "r.json"
    ex.write_json(path, {"a": np.float32(1.5), "b": np.arange(3), "c": (1, 2), "d": float("nan"),
                         "p": Path("x/y"), "cond": dm.Condition("ldfa", "local", 2)})
    back = json.loads(path.read_text())
    assert back == {"a": 1.5, "b": [0, 1, 2], "c": [1, 2], "d": None, "p": "x/y",
                    "cond": {"rule": "ldfa", "subspace": "local", "rank": 2, "lr": 0.03,
                             "feedback_lr": None, "decay": 0.0}}

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ex.io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        ex.write_json(path, {"new": 1})
    # the failed write leaves the previous complete file and no temporary file behind
    assert json.loads(path.read_text())["a"] == 1.5
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_written_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = ex.write_json(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_run_records_config_versions_and_time(tmp_path):
    cfg = dm.DemoConfig(epochs=3, seeds=(4,))
    ex.save_run(tmp_path, cfg, {"accuracy": 0.9}, seed=4)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["seed"] == 4 and meta["config"]["epochs"] == 3 and meta["config"]["seeds"] == [4]
    assert dm.DemoConfig.from_dict(meta["config"]) == cfg
    assert set(meta["versions"]) >= {"python", "numpy", "torch", "brian2", "bioplastic"}
    assert meta["versions"]["numpy"] == np.__version__
    assert "git_sha" in meta and dt.datetime.fromisoformat(meta["timestamp"]).tzinfo is not None
    assert json.loads((tmp_path / "results.json").read_text()) == {"accuracy": 0.9}
    ex.save_run(tmp_path / "only_config", {"x": 1})
    assert not (tmp_path / "only_config" / "results.json").exists()


def test_results_dir(tmp_path):
    path = ex.results_dir("demo", root=tmp_path)
    assert path == tmp_path / "demo" and path.is_dir()
    for bad in ("", "../escape", str(tmp_path / "abs")):
        with pytest.raises(ValueError, match="relative folder name"):
            ex.results_dir(bad, root=tmp_path)


def test_git_sha_outside_a_checkout(tmp_path):
    assert ex.git_sha(tmp_path) is None


def test_seed_everything_reproduces_global_generators():
    import torch

    draws = []
    for _ in range(2):
        ex.seed_everything(11, torch=True)
        draws.append((random.random(), np.random.rand(), float(torch.rand(1))))
    assert draws[0] == draws[1]
    ex.seed_everything(12, torch=True)
    assert random.random() != draws[0][0]


# ------------------------------------------------------------------------------------------ train

def test_train_matches_hand_loop_over_the_abstract_rule():
    ds = _blobs()
    circuit = circuits.mlp([5, 8, 3], rule="fa", lr=0.05, seed=3)
    runner = bioplastic.build(circuit)
    w0 = runner.get_weights()
    seen = []
    history = ex.train(runner, ds, epochs=3, batch_size=16, seed=7,
                       on_epoch=lambda e, rec: seen.append((e, rec["test_accuracy"])))

    # independent loop: same permutation draws, float64 rule, own loss and accuracy
    weights, rule, rng = dict(w0), get_rule("fa"), np.random.default_rng(7)

    def predict(w, x):
        return np.tanh(x @ w["W1"].T + w["b1"]) @ w["W2"].T + w["b2"]

    train_loss = [loss(predict(weights, ds.x_train), ds.y_train)]
    acc = [np.mean(predict(weights, ds.x_test).argmax(1) == ds.labels_test)]
    for _ in range(3):
        order = rng.permutation(40)
        losses = []
        for start in range(0, 40, 16):
            idx = order[start:start + 16]
            step = train_step(weights, ds.x_train[idx], ds.y_train[idx], rule, "tanh", 0.05, 0.05)
            weights = step.weights
            losses.append(step.loss)
        train_loss.append(np.mean(losses))
        acc.append(np.mean(predict(weights, ds.x_test).argmax(1) == ds.labels_test))

    for key in w0:
        assert_close(runner.get_weights()[key], weights[key], rtol=1e-12, atol=1e-14, what=key)
    assert_close(history.train_loss, train_loss, rtol=1e-12, what="train loss")
    assert_close(history.test_accuracy, acc, rtol=0, atol=0, what="test accuracy")
    test_loss = loss(predict(weights, ds.x_test), ds.y_test)
    assert_close(history.test_loss[-1], test_loss, rtol=1e-12, what="test loss")
    assert history.epochs == 3 and len(history.time) == 4 and history.time[0] == 0.0
    assert all(b >= a for a, b in zip(history.time, history.time[1:]))
    assert [e for e, _ in seen] == [0, 1, 2, 3] and [a for _, a in seen] == list(acc)
    # and it learns: loss down, accuracy up
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.test_accuracy[-1] > history.test_accuracy[0] + 0.2


def test_train_reports_divergence_with_history():
    ds = _blobs()
    # a linear network with a far too large step grows geometrically until the loss overflows
    runner = bioplastic.build(circuits.mlp([5, 8, 3], rule="bp", activation="linear", lr=5.0))
    with pytest.raises(ex.Diverged, match=r"diverged at epoch \d+, step \d+.*learning rate") as err:
        ex.train(runner, ds, epochs=20, batch_size=8, seed=0)
    # the history holds exactly the epochs completed before the blow-up
    assert 0 < err.value.epoch < 20
    assert err.value.history.epochs == err.value.epoch - 1
    assert len(err.value.history.train_loss) == err.value.epoch
    assert isinstance(err.value, FloatingPointError)


def test_train_bad_epochs():
    with pytest.raises(ValueError, match="epochs"):
        ex.train(bioplastic.build(circuits.mlp([5, 3], rule="bp")), _blobs(), -1, 8)


def test_evaluate_by_hand():
    class Fixed:
        def predict(self, x):
            return np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])[: len(x)]

    y = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    lossv, acc = ex.evaluate(Fixed(), np.zeros((3, 1)), y, np.array([0, 0, 1]), batch_size=3)
    assert acc == pytest.approx(1 / 3, abs=1e-15)
    assert lossv == pytest.approx(0.5 * (0 + 5 + 9) / 3, abs=1e-15)


# -------------------------------------------------------------------------------------- configs

def test_condition_labels_and_circuits():
    assert dm.Condition("bp").label == "bp"
    cond = dm.Condition("ldfa", "normative", 4, lr=0.01, feedback_lr=0.002)
    assert cond.label == "ldfa-normative-r4"
    c = cond.circuit((6, 8, 8, 5), "relu", seed=2)
    assert c.rule == "ldfa" and c.subspace == "normative" and c.sizes == [6, 8, 8, 5]
    assert c.params.lr == 0.01 and c.params.feedback_lr == 0.002 and c.params.seed == 2
    labels = [c.label for c in dm.DEMO_CONDITIONS]
    assert labels == ["bp", "fa", "dfa", "kp", "ldfa-fixed-r1", "ldfa-fixed-r10", "ldfa-local-r1",
                      "ldfa-local-r10", "ldfa-normative-r1", "ldfa-normative-r10"]


def test_demo_config_round_trip_and_errors():
    cfg = dm.DemoConfig(epochs=4, seeds=(1, 2))
    assert dm.DemoConfig.from_dict(json.loads(json.dumps(ex.to_jsonable(cfg)))) == cfg
    with pytest.raises(ValueError, match="unknown key 'lr'; valid keys: sizes, activation, epochs"):
        dm.DemoConfig.from_dict({"lr": 0.1})
    with pytest.raises(ValueError) as err:  # every problem at once, with its dotted path
        dm.DemoConfig.from_dict({"epochs": 0, "conditions": [{"rule": "bp", "lr": "fast"}]})
    assert err.value.problems == ["epochs: must be a positive int, got 0",
                                  "conditions.0.lr: must be a number, got 'fast'"]
    with pytest.raises(ValueError, match="epochs"):
        dm.DemoConfig(epochs=0)
    with pytest.raises(ValueError, match="seeds"):
        dm.DemoConfig(seeds=())
    with pytest.raises(ValueError, match="dtype applies to backend 'torch' only"):
        dm.DemoConfig(dtype="float64")


def test_summarize_and_table_with_a_diverged_seed():
    runs = [{"test_accuracy": [0.1, 0.9], "time": [0, 1.0], "diverged": None},
            {"test_accuracy": [0.1, 0.8], "time": [0, 3.0], "diverged": None},
            {"test_accuracy": [0.1], "time": [0], "diverged": {"epoch": 1, "step": 3}}]
    row = dm.summarize(dm.Condition("ldfa", "fixed", 1), runs)
    assert row["n_diverged"] == 1 and row["n_seeds"] == 3
    assert row["accuracy_mean"] == pytest.approx(0.85, abs=1e-15)
    assert row["accuracy_sd"] == pytest.approx(np.std([0.9, 0.8], ddof=1), abs=1e-15)
    assert row["time_mean"] == pytest.approx(4 / 3, abs=1e-15)
    gone = dm.summarize(dm.Condition("bp"), runs[2:])
    assert gone["accuracy_mean"] is None
    table = dm.format_table([row, gone]).splitlines()
    assert table[0].startswith("| rule") and "85.0 +- 7.1" in table[2] and "1/3" in table[2]
    assert "| bp" in table[3] and "1/1" in table[3]


def test_run_demo_tiny_and_independent_of_workers(tmp_path):
    cfg = dm.DemoConfig(sizes=(64, 12, 12, 10), epochs=1, seeds=(0, 1),
                        conditions=(dm.Condition("bp"), dm.Condition("ldfa", "local", 2)))
    one = dm.run_demo(cfg, tmp_path / "a", jobs=1, progress=False)
    two = dm.run_demo(cfg, tmp_path / "b", jobs=2, progress=False)
    for c1, c2 in zip(one["conditions"], two["conditions"]):
        for r1, r2 in zip(c1["runs"], c2["runs"]):
            assert r1["seed"] == r2["seed"]
            assert r1["test_accuracy"] == r2["test_accuracy"] and r1["train_loss"] == r2["train_loss"]
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["status"] == "complete" and len(saved["table"]) == 2
    assert {p.name for p in (tmp_path / "a").iterdir()} == {
        "config.json", "results.json", "table.md", "test_accuracy.png", "train_loss.png",
        "study.json", "study.toml", "runs"}  # the demo runs as a study: a folder per run
    assert sorted(p.name for p in (tmp_path / "a" / "runs").iterdir()) == [
        "rule=bp,seed=0", "rule=bp,seed=1", "rule=ldfa,subspace=local,rank=2,seed=0",
        "rule=ldfa,subspace=local,rank=2,seed=1"]
    with pytest.raises(ValueError, match="do not fit digits"):
        dm.run_demo(dm.DemoConfig(sizes=(10, 5, 10)), tmp_path / "c", progress=False)


# ----------------------------------------------------------------------------------------- pool

def test_run_tasks_in_process_and_in_workers_give_the_same_results_in_task_order():
    tasks = [(i,) for i in range(5)]
    done, ticks = [], []

    def counted(base, exponent, progress=None):  # in this process: may call back
        progress("tick", exponent)
        return base ** exponent

    here = run_tasks(counted, tasks, 1, shared=(3,), on_done=lambda i, r: done.append((i, r)),
                     on_progress=lambda i, *args: ticks.append((i, *args)))
    assert here == [1, 3, 9, 27, 81] and done == list(enumerate(here))
    assert ticks == [(i, "tick", i) for i in range(5)]
    done.clear()
    workers = run_tasks(operator.pow, tasks, 2, shared=(3,), on_done=lambda i, r: done.append((i, r)))
    assert workers == here and sorted(done) == list(enumerate(here))  # completion order may differ
    with pytest.raises(ZeroDivisionError):
        run_tasks(operator.truediv, [(1,), (0,), (2,)], 2, shared=(1,))
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        run_tasks(operator.pow, tasks, 0)


# ------------------------------------------------------------------------------------- progress

def test_progress_in_a_log_prints_a_line_per_tenth():
    out = io.StringIO()
    with Progress(100, desc="job", stream=out) as bar:
        for i in range(100):
            bar.update(1, status=f"step {i}")
        bar.write("a message")
    lines = out.getvalue().splitlines()
    assert len(lines) == 12 and "\r" not in out.getvalue()
    assert lines[-2].startswith("job [") and " 100/100 100%" in lines[-2] and "step 99" in lines[-2]
    assert lines[-1] == "a message"


def test_progress_inplace_and_disabled():
    out = io.StringIO()
    bar = Progress(4, stream=out, inplace=True)
    bar.update(4)
    bar.write("note")
    bar.close()
    text = out.getvalue()
    assert text.count("\r") >= 2 and "note\n" in text and text.endswith("\n")
    assert "4/4 100%" in bar.line()
    quiet = io.StringIO()
    with Progress(3, stream=quiet, enabled=False) as bar:
        bar.update(3)
        bar.write("x")
    assert quiet.getvalue() == ""
    with pytest.raises(ValueError, match="total"):
        Progress(-1)


def test_format_seconds():
    assert format_seconds(0) == "0:00" and format_seconds(75.4) == "1:15"
    assert format_seconds(3725) == "1:02:05"


def test_run_demo_on_torch_float64_matches_reference(tmp_path):
    pytest.importorskip("torch")
    cfg = dm.DemoConfig(sizes=(64, 12, 12, 10), epochs=1, seeds=(0,),
                        conditions=(dm.Condition("kp", decay=1e-3), dm.Condition("ldfa", "local", 2)))
    ref = dm.run_demo(cfg, tmp_path / "ref", jobs=1, progress=False)
    torch_cfg = dm.DemoConfig(**{**vars(cfg), "backend": "torch", "dtype": "float64"})
    tor = dm.run_demo(torch_cfg, tmp_path / "torch", jobs=1, progress=False)
    assert tor["build_options"] == {"dtype": "float64"}
    saved = json.loads((tmp_path / "torch" / "config.json").read_text())["config"]
    assert dm.DemoConfig.from_dict(saved) == torch_cfg
    for c_ref, c_tor in zip(ref["conditions"], tor["conditions"]):
        r, t = c_ref["runs"][0], c_tor["runs"][0]
        assert_close(t["train_loss"], r["train_loss"], rtol=1e-10, what=f"{c_ref['label']} loss")
        assert_close(t["test_loss"], r["test_loss"], rtol=1e-10, what=f"{c_ref['label']} test loss")
        assert t["test_accuracy"] == r["test_accuracy"]


def test_numpy_non_finite_scalars_become_null(tmp_path):
    ex.write_json(tmp_path / "x.json", {"a": np.float64("nan"), "b": np.float32("inf"), "c": np.int64(3)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": None, "c": 3}


def test_demo_fails_before_writing_on_a_bad_backend_and_keeps_finished_runs(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown demo backend 'jax'"):
        dm.DemoConfig(backend="jax")
    with pytest.raises(ValueError, match="CUDA is not available"):
        dm.run_demo(dm.DemoConfig(backend="torch", device="cuda", epochs=1, seeds=(0,)),
                    tmp_path / "cuda", progress=False)
    assert not (tmp_path / "cuda").exists()
    cfg = dm.DemoConfig(sizes=(64, 8, 10), epochs=1, seeds=(0,),
                        conditions=(dm.Condition("fa"), dm.Condition("bp")))
    from bioplastic.experiment import run as run_mod

    real = run_mod.Job.measures

    def fa_crashes(job, record):
        if job.config.feedback.rule == "fa":
            raise RuntimeError("simulated crash")
        return real(job, record)

    # a failing run is marked failed and the others still run; the demo then says which failed
    monkeypatch.setattr(run_mod.Job, "measures", fa_crashes)
    with pytest.raises(RuntimeError, match="1 of 2 runs failed .*rule=fa,seed=0: RuntimeError: simulated crash"):
        dm.run_demo(cfg, tmp_path / "crash", jobs=1, progress=False)
    saved = json.loads((tmp_path / "crash" / "results.json").read_text())
    assert saved["status"] == "failed" and "simulated crash" in saved["error"]
    assert [len(c["runs"]) for c in saved["conditions"]] == [0, 1]
