"""The study format's step-granular weight snapshots and batch options, as analyses/alignment.py
trains through them (arXiv 2502.20580: the alignment of learned low-rank feedback over training).

Each feature is held to an independent computation: the snapshot after N steps equals N steps of the
reference backend run by hand; a resumed run writes the same snapshots as an uninterrupted one;
evaluating every k epochs changes no weight; a bad value names its key.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import interrupt_at_epoch, load_analysis

import bioplastic
import circuits
from bioplastic import cli, data
from bioplastic.experiment import run as run_mod
from bioplastic.experiment.run import (
    execute,
    load_checkpoint,
    load_snapshot,
    read_metrics,
    run_folder,
    step_snapshots,
)
from bioplastic.experiment.study import StudyError, load_study, study_from_mapping

#: A small circuit on the digits with learned low-rank feedback (P and Q change every step).
SMALL = {"name": "small", "seeds": [3], "task": {"name": "digits"},
         "circuit": {"hidden": [8], "activation": "tanh"},
         "feedback": {"rule": "ldfa", "subspace": "local", "rank": 2},
         "optimizer": {"lr": 0.05, "feedback_lr": 0.02},
         "training": {"epochs": 2, "batch_size": 32, "drop_last": True},
         "record": {"weights_every_steps": 10}}


def mapping(**sections) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in SMALL.items()}
    for section, values in sections.items():
        out[section] = {**out.get(section, {}), **values}
    return out


def one_run(m: dict) -> dict:
    return study_from_mapping(m).runs[0]


def hand_run(seed: int, epochs: int, batch_size: int, drop_last: bool) -> dict[int, dict]:
    """The weights after every step of SMALL's circuit trained by hand on the reference backend,
    the batches drawn as the study draws them (``default_rng(seed)``, one permutation per epoch)."""
    ds = data.load_digits()
    circuit = circuits.mlp([64, 8, 10], rule="ldfa", rank=2, subspace="local", activation="tanh",
                           lr=0.05, feedback_lr=0.02, seed=seed)
    runner = bioplastic.build(circuit)
    rng = np.random.default_rng(seed)
    weights, step = {0: runner.get_weights()}, 0
    for _ in range(epochs):
        for xb, yb in ds.batches(batch_size, rng, drop_last=drop_last):
            runner.train_step(xb, yb)
            step += 1
            weights[step] = runner.get_weights()
    return weights


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_step_snapshots_equal_a_hand_run(tmp_path):
    run = one_run(mapping())
    assert execute(run, tmp_path)["state"] == "finished"
    snaps = step_snapshots(run_folder(tmp_path, run["run_id"]))
    # 1347 training digits in batches of 32, the last 3 dropped: 42 steps an epoch, 84 in all;
    # every 10 steps, at step 0 and after the last step
    assert list(snaps) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 84]
    hand = hand_run(3, 2, 32, drop_last=True)
    assert max(hand) == 84
    for step, path in snaps.items():
        assert_same(load_snapshot(path), hand[step])  # bit for bit: the same float64 steps


def test_without_drop_last_the_short_batch_is_a_step(tmp_path):
    run = one_run(mapping(training={"drop_last": False}, record={"weights_every_steps": 43}))
    execute(run, tmp_path)
    snaps = step_snapshots(run_folder(tmp_path, run["run_id"]))
    assert list(snaps) == [0, 43, 86]  # 43 steps an epoch (the last of 3 samples)
    hand = hand_run(3, 2, 32, drop_last=False)
    assert max(hand) == 86
    assert_same(load_snapshot(snaps[86]), hand[86])


def test_a_resumed_run_writes_the_same_snapshots(tmp_path, monkeypatch):
    run = one_run(mapping(training={"epochs": 4, "checkpoint_every": 1}, record={"weights_every_steps": 25}))
    execute(run, tmp_path / "whole")
    real = interrupt_at_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        execute(run, tmp_path / "cut")
    monkeypatch.setattr(run_mod, "append_jsonl", real)
    cut = run_folder(tmp_path / "cut", run["run_id"])
    state = load_checkpoint(cut / run_mod.CHECKPOINT)
    assert (state["epoch"], state["step"]) == (2, 84)  # the step count is kept with the checkpoint
    # the interrupted epoch left snapshots of steps 100 and 125, to be written again
    assert list(step_snapshots(cut)) == [0, 25, 50, 75, 100, 125]
    assert execute(run, tmp_path / "cut", resume=True)["state"] == "finished"
    whole = step_snapshots(run_folder(tmp_path / "whole", run["run_id"]))
    resumed = step_snapshots(cut)
    assert list(whole) == list(resumed) == [0, 25, 50, 75, 100, 125, 150, 168]
    for step in whole:
        assert_same(load_snapshot(resumed[step]), load_snapshot(whole[step]))


def test_evaluating_every_k_epochs_changes_no_weight(tmp_path):
    every = one_run(mapping(training={"epochs": 7}))
    sparse = one_run(mapping(training={"epochs": 7, "eval_every": 3, "checkpoint_every": 3}))
    execute(every, tmp_path / "every")
    execute(sparse, tmp_path / "sparse")
    dense_lines = read_metrics(run_folder(tmp_path / "every", every["run_id"]))
    lines = read_metrics(run_folder(tmp_path / "sparse", sparse["run_id"]))
    assert [line["epoch"] for line in lines] == [0, 3, 6, 7]  # every 3rd epoch, and the last
    for line in lines:
        dense = dense_lines[line["epoch"]]
        assert line["test_loss"] == dense["test_loss"] and line["test_accuracy"] == dense["test_accuracy"]
    # train_loss: the mean batch loss since the previous line (42 batches each epoch, so the mean of
    # the epochs' means)
    expected = np.mean([dense_lines[e]["train_loss"] for e in (4, 5, 6)])
    assert lines[2]["train_loss"] == pytest.approx(expected, rel=1e-12)
    a = step_snapshots(run_folder(tmp_path / "every", every["run_id"]))
    b = step_snapshots(run_folder(tmp_path / "sparse", sparse["run_id"]))
    assert list(a) == list(b)
    assert_same(load_snapshot(a[max(a)]), load_snapshot(b[max(b)]))


@pytest.mark.parametrize("section, values, key, words", [
    ("record", {"weights_every_steps": 0}, "record.weights_every_steps", "greater than 0"),
    ("record", {"weights_every_steps": 2.5}, "record.weights_every_steps", "must be an int"),
    ("training", {"drop_last": "yes"}, "training.drop_last", "must be true or false"),
    ("training", {"shuffle": 1}, "training.shuffle", "must be true or false"),
    ("training", {"eval_every": 0}, "training.eval_every", "greater than 0"),
    ("training", {"eval_every": 3, "checkpoint_every": 4}, "training.checkpoint_every",
     "multiple of training.eval_every = 3"),
])
def test_a_bad_value_names_its_key(section, values, key, words):
    with pytest.raises(StudyError) as err:
        study_from_mapping(mapping(**{section: values}))
    text = str(err.value)
    assert key in text and words in text, text


def test_shipped_study_is_the_alignment_default():
    """studies/alignment.toml resolves to exactly the runs ``bioplastic analysis alignment`` trains."""

    module = load_analysis("alignment")
    shipped = load_study(cli.analyses_dir().parent / "studies" / "alignment.toml", check=False)
    generated = study_from_mapping(module.study(module.Config()), check=False)
    assert len(shipped.runs) == 8 * 3
    assert [r["run_id"] for r in shipped.runs] == [r["run_id"] for r in generated.runs]
    assert [{**r, "import_path": None} for r in shipped.runs] == [{**r, "import_path": None}
                                                                  for r in generated.runs]
    # every condition once per seed, with its decay
    conditions = {(module.condition_of(r), r["optimizer"]["decay"]) for r in generated.runs}
    assert conditions == {(n, getattr(module.Config(), module.DECAYED[n]) if n in module.DECAYED else 0.0)
                          for n in module.CONDITIONS}


def test_the_analysis_measures_its_runs_and_resumes(tmp_path):
    """alignment keeps one run folder per (condition, seed) under OUT/study; its measurements are
    taken on those runs' snapshots (the step-0 loss from the snapshot equals the run's epoch-0 train
    loss); --resume=true trains nothing again and gives the same numbers."""
    import json

    args = ["analysis", "alignment", f"--out={tmp_path}", "--epochs=1", "--seeds=[0]", "--jobs=1",
            '--conditions=["bp","ldfa-oja"]', "-q"]
    assert cli.main(args) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    folders = sorted((tmp_path / "study" / "runs").iterdir())
    assert [f.name for f in folders] == ["rule=bp,seed=0", "rule=ldfa,subspace=oja,rank=3,decay=0.0017,seed=0"]
    for name, cond in first["conditions"].items():
        rec = cond["runs"][0]
        lines = read_metrics(tmp_path / "study" / "runs" / rec["run_id"])
        assert rec["step"] == [0, 20, 40, 42]
        assert rec["loss"][0] == pytest.approx(lines[0]["train_loss"], rel=1e-12), name
        assert rec["test_accuracy"] == lines[-1]["test_accuracy"]
    stamps = {f.name: (f / "metrics.jsonl").stat().st_mtime_ns for f in folders}
    assert cli.main(args + ["--resume=true"]) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert {f.name: (f / "metrics.jsonl").stat().st_mtime_ns for f in folders} == stamps
    for name, cond in first["conditions"].items():
        assert again["conditions"][name]["runs"] == cond["runs"]
