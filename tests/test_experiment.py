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
                    "cond": {"rule": "ldfa", "subspace": "local", "rank": 2, "lr": None,
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

def test_condition_labels():
    assert dm.Condition("bp").label == "bp"
    cond = dm.Condition("ldfa", "normative", 4, lr=0.01, feedback_lr=0.002)
    assert cond.label == "ldfa-normative-r4"
    labels = [c.label for c in dm.DEMO_CONDITIONS]
    assert labels == ["bp", "fa", "kp", "ldfa-fixed-r1", "ldfa-fixed-r10", "ldfa-normative-r1",
                      "ldfa-normative-r10", "ldfa-local-r1", "ldfa-local-r10", "ldfa-oja-r1", "ldfa-oja-r10"]


def test_demo_config_round_trip_and_errors():
    cfg = dm.DemoConfig(epochs=4, seeds=(1, 2), channels=(4, 8), dtype="float64")
    assert dm.DemoConfig.from_dict(json.loads(json.dumps(ex.to_jsonable(cfg)))) == cfg
    with pytest.raises(ValueError, match="unknown key 'sizes' .*; valid keys: task, test_fraction, split_seed"):
        dm.DemoConfig.from_dict({"sizes": [64, 10]})
    with pytest.raises(ValueError) as err:  # every problem at once, with its dotted path
        dm.DemoConfig.from_dict({"epochs": 0, "conditions": [{"rule": "bp", "lr": "fast"}]})
    assert err.value.problems == ["epochs: must be a positive int, got 0",
                                  "conditions.0.lr: must be a number or none, got 'fast'"]
    with pytest.raises(ValueError, match="epochs"):
        dm.DemoConfig(epochs=0)
    with pytest.raises(ValueError, match="seeds"):
        dm.DemoConfig(seeds=())
    with pytest.raises(ValueError, match="unknown demo task 'cifar10'; valid options: mnist5000, digits"):
        dm.DemoConfig(task="cifar10")
    with pytest.raises(ValueError, match="rule 'dfa' has no per-layer form .*valid options: bp, fa, kp, ldfa"):
        dm.DemoConfig(conditions=(dm.Condition("dfa"),))


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


#: A tiny demo for tests: the CNN with 2 and 4 maps and 8 hidden units on the 8 x 8 digits.
TINY = dict(task="digits", channels=(2, 4), hidden=8)


def test_run_demo_tiny_and_independent_of_workers(tmp_path):
    cfg = dm.DemoConfig(**TINY, epochs=1, seeds=(0, 1),
                        conditions=(dm.Condition("bp"), dm.Condition("ldfa", "local", 2)))
    one = dm.run_demo(cfg, tmp_path / "a", jobs=1, progress=False)
    two = dm.run_demo(cfg, tmp_path / "b", jobs=2, progress=False)
    for c1, c2 in zip(one["conditions"], two["conditions"]):
        for r1, r2 in zip(c1["runs"], c2["runs"]):
            assert r1["seed"] == r2["seed"]
            assert r1["test_accuracy"] == r2["test_accuracy"] and r1["train_loss"] == r2["train_loss"]
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["status"] == "complete" and len(saved["table"]) == 2
    # mean and sd over seeds, recomputed from the runs' own metrics files
    for row in saved["table"]:
        finals = [json.loads((tmp_path / "b" / "runs" / run / "metrics.jsonl").read_text().splitlines()[-1])
                  ["test_accuracy"] for run in sorted(os.listdir(tmp_path / "b" / "runs"))
                  if run.startswith("rule=bp," if row["rule"] == "bp" else "rule=ldfa,")]
        assert row["accuracy_mean"] == pytest.approx(np.mean(finals), abs=1e-15)
        assert row["accuracy_sd"] == pytest.approx(np.std(finals, ddof=1), abs=1e-15)
    assert {p.name for p in (tmp_path / "a").iterdir()} == {
        "config.json", "results.json", "table.md", "claims.md", "study.json", "study.toml", "runs",
        *(f"{fig}.{fmt}" for fig in ("test_accuracy", "train_loss", "accuracy_by_rule")
          for fmt in ("png", "svg"))}  # the demo runs as a study: a folder per run
    assert sorted(p.name for p in (tmp_path / "a" / "runs").iterdir()) == [
        "rule=bp,seed=0", "rule=bp,seed=1", "rule=ldfa,subspace=local,rank=2,seed=0",
        "rule=ldfa,subspace=local,rank=2,seed=1"]
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        dm.run_demo(cfg, tmp_path / "c", jobs=0, progress=False)


def _row(label, accuracy, sd=0.0):
    rule, subspace, rank = (label.split("-") + [None, None])[:3] if label.startswith("ldfa") else (label, None, None)
    return {"label": label, "rule": rule, "subspace": subspace, "rank": int(rank[1:]) if rank else None,
            "accuracy_mean": accuracy, "accuracy_sd": sd, "n_seeds": 1, "n_diverged": 0 if accuracy else 1,
            "time_mean": 1.0}


def test_claims_follow_from_the_numbers():
    cfg = dm.DemoConfig(margin=0.02)
    # the hypothesis: adaptive r = d within the margin of bp, r = 1 short of it, fixed worse
    good = {"bp": 0.98, "fa": 0.90, "kp": 0.975, "ldfa-fixed-r1": 0.30, "ldfa-fixed-r10": 0.85,
            "ldfa-normative-r1": 0.70, "ldfa-normative-r10": 0.95, "ldfa-local-r1": 0.80,
            "ldfa-local-r10": 0.979, "ldfa-oja-r1": 0.50, "ldfa-oja-r10": 0.95}
    verdicts = dm.claims([_row(k, v) for k, v in good.items()], cfg, scale="SCALE")
    assert [c["claim"] for c in verdicts] == ["dimension_d_suffices", "fixed_low_rank_misassigns",
                                              "rank_about_d", "random_start_feedback"]
    assert [c["supported"] for c in verdicts] == [True, True, True, True]
    one, two, three, four = (c["sentence"] for c in verdicts)
    assert "supported. At r = 10, normative reaches 95.0 %, local reaches 97.9 %, oja reaches 95.0 %" in one
    assert "within 2.0 points of bp: local; not: normative, oja (SCALE)." in one
    assert "At r = 1 fixed feedback reaches 30.0 %, the best adaptive rule (local) 80.0 %" in two
    assert verdicts[1]["numbers"] == {"ldfa-fixed-r1": 0.30, "ldfa-local-r1": 0.80,
                                      "ldfa-fixed-r10": 0.85, "ldfa-local-r10": 0.979}
    assert "within 2.0 points of bp at r = 10 but not at r = 1: local" in three
    assert "only kp is within 2.0 points of bp (98.0 %)" in four
    # the same table with r = 1 as good as r = d, fixed as good as adaptive, nothing near bp
    bad = dict(good, **{"ldfa-local-r1": 0.979, "ldfa-fixed-r1": 0.975, "ldfa-normative-r10": 0.90,
                        "ldfa-oja-r10": 0.90, "kp": 0.5})
    verdicts = dm.claims([_row(k, v) for k, v in bad.items()], cfg)
    assert [c["supported"] for c in verdicts] == [True, False, False, True]
    assert "not supported" in verdicts[1]["sentence"] and "only ldfa-fixed-r1 is within" in verdicts[3]["sentence"]
    assert ("5000 real MNIST digits, small CNN (conv 16/32 maps, FC 128), cross-entropy loss, "
            "Adam 0.001 (P, Q 0.01), 5 epochs, 1 seed") in verdicts[0]["sentence"]
    worse = dict(good, **{"ldfa-local-r10": 0.95})  # now no adaptive rule is within 2 points at r = d
    assert [c["supported"] for c in dm.claims([_row(k, v) for k, v in worse.items()], cfg)][:3] == \
        [False, True, False]
    # a diverged condition counts as worse than anything; a missing one leaves its claim open
    verdicts = dm.claims([_row("bp", 0.98), _row("ldfa-fixed-r1", None), _row("ldfa-local-r1", 0.5)], cfg)
    assert [c["supported"] for c in verdicts] == [None, True, None, False]
    assert "fixed feedback reaches diverged" in verdicts[1]["sentence"] and "none are within" in verdicts[3]["sentence"]
    assert verdicts[1]["numbers"]["ldfa-fixed-r1"] is None


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


def test_run_demo_in_float64_and_its_figures_hold_its_numbers(tmp_path):
    cfg = dm.DemoConfig(**TINY, epochs=1, seeds=(0,), dtype="float64",
                        conditions=(dm.Condition("kp", decay=1e-3), dm.Condition("ldfa", "oja", 2)))
    out = dm.run_demo(cfg, tmp_path, jobs=1, progress=False)
    assert out["build_options"] == {"dtype": "float64"}
    saved = json.loads((tmp_path / "config.json").read_text())["config"]
    assert dm.DemoConfig.from_dict(saved) == cfg
    run = json.loads((tmp_path / "runs" / "rule=kp,decay=0.001,seed=0" / "config.json").read_text())["config"]
    assert run["backend"]["dtype"] == "float64" and run["optimizer"] == {
        **run["optimizer"], "name": "adam", "lr": 1e-3, "decay": 1e-3}
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["bars"] == {"ranks": [2], "subspaces": ["oja"],
                               "bars": {"oja": {"2": {"mean": results["table"][1]["accuracy_mean"],
                                                      "sd": 0.0, "n_diverged": 0}}},
                               "references": {"kp": {"mean": results["table"][0]["accuracy_mean"],
                                                     "sd": 0.0, "n_diverged": 0}}}
    assert results["notes"] == [dm.DFA_NOTE]


def test_numpy_non_finite_scalars_become_null(tmp_path):
    ex.write_json(tmp_path / "x.json", {"a": np.float64("nan"), "b": np.float32("inf"), "c": np.int64(3)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": None, "c": 3}


def test_demo_fails_before_writing_on_a_bad_device_and_keeps_finished_runs(tmp_path, monkeypatch):
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            dm.run_demo(dm.DemoConfig(**TINY, device="cuda", epochs=1, seeds=(0,)),
                        tmp_path / "cuda", progress=False)
        assert not (tmp_path / "cuda").exists()
    cfg = dm.DemoConfig(**TINY, epochs=1, seeds=(0,), conditions=(dm.Condition("fa"), dm.Condition("bp")))
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
