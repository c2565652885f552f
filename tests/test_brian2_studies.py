"""The Brian2 analyses (brian2_digits, spiking_digits) train through the study mechanism.

What the study format gained for them, each against an independent computation: the digits task's
``center`` (x minus the mean training input) and ``train_samples`` (the first n training digits),
backend ``brian2``'s ``options`` checked by name and passed to its build (the spike trains' seed
following the run's); the shipped study files ``studies/brian2_digits.toml`` and
``studies/spiking_digits.toml`` are the analyses' default studies run for run; the drift the rate
analysis reports is the relative distance of the two runs' weight snapshots.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_analysis

from bioplastic import cli

STUDIES = cli.analyses_dir().parent / "studies"


load = load_analysis  # analyses/NAME.py, loaded by path as the CLI does


def sklearn_digits_train_test():
    """The bundled digits' stratified split, from scikit-learn and the split's indices: (x_train,
    labels_train, x_test) with pixels / 16."""
    from sklearn.datasets import load_digits

    from bioplastic.data import stratified_split

    raw = load_digits()
    x = raw.data.astype(np.float64) / 16.0
    train, test = stratified_split(raw.target, 0.25, 0)
    return x[train], raw.target[train], x[test]


# --------------------------------------------------------------------------------------------------
# [task] center and train_samples
# --------------------------------------------------------------------------------------------------

def test_centred_digits_are_the_inputs_minus_the_training_mean():
    from bioplastic.data import load_digits

    x_train, _, x_test = sklearn_digits_train_test()
    mean = x_train.sum(axis=0) / len(x_train)
    ds = load_digits(center=True)
    np.testing.assert_allclose(ds.x_train, x_train - mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds.x_test, x_test - mean, rtol=0, atol=1e-12)
    assert np.abs(ds.x_train.mean(axis=0)).max() < 1e-12  # zero-mean training inputs
    assert ds.x_train.min() < -0.5 and ds.x_train.max() > 0.5  # signed: ON and OFF halves needed


def test_train_samples_keeps_the_first_training_digits_and_centres_on_them():
    from bioplastic.data import load_digits

    x_train, labels, x_test = sklearn_digits_train_test()
    ds = load_digits(train_samples=100, center=True)
    mean = x_train[:100].sum(axis=0) / 100
    np.testing.assert_allclose(ds.x_train, x_train[:100] - mean, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds.labels_train, labels[:100])
    np.testing.assert_allclose(ds.x_test, x_test - mean, rtol=0, atol=1e-12)  # the test split whole
    # after classes: the first n digits of 0..2
    ds3 = load_digits(classes=3, train_samples=20)
    np.testing.assert_array_equal(ds3.x_train, x_train[labels < 3][:20])
    with pytest.raises(ValueError, match=r"train_samples must be an int in 1\.\.1347"):
        load_digits(train_samples=2000)


def test_the_study_task_loads_centred_subsets():
    from bioplastic.experiment.run import load_task
    from bioplastic.experiment.study import StudyError, study_from_mapping

    x_train, _, x_test = sklearn_digits_train_test()
    loaded = study_from_mapping({"task": {"name": "digits", "center": True, "train_samples": 256}}, check=False)
    assert loaded.runs[0]["task"]["center"] is True and loaded.runs[0]["task"]["train_samples"] == 256
    ds = load_task(loaded.study.task)
    mean = x_train[:256].mean(axis=0)
    np.testing.assert_allclose(ds.x_train, x_train[:256] - mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds.x_test, x_test - mean, rtol=0, atol=1e-12)
    # the defaults load the digits as before
    plain = load_task(study_from_mapping({"task": {"name": "digits"}}, check=False).study.task)
    np.testing.assert_array_equal(plain.x_train, x_train)
    with pytest.raises(StudyError, match=r"task\.train_samples: .*greater than 0"):
        study_from_mapping({"task": {"name": "digits", "train_samples": 0}}, check=False)
    with pytest.raises(StudyError, match=r"task\.center: must be true or false"):
        study_from_mapping({"task": {"name": "digits", "center": "yes"}}, check=False)


# --------------------------------------------------------------------------------------------------
# [backend] options of brian2
# --------------------------------------------------------------------------------------------------

def test_brian2_options_are_checked_by_name():
    from bioplastic.experiment.study import StudyError, study_from_mapping

    base = {"feedback": {"rule": "ldfa", "rank": 2}, "circuit": {"hidden": [8]}}
    with pytest.raises(StudyError) as err:
        study_from_mapping({**base, "backend": {"name": "brian2", "options": {"setle": 0.1}}}, check=False)
    text = str(err.value)
    assert "unknown key 'setle' in options of backend 'brian2' (did you mean 'settle'?)" in text
    assert "for spiking circuits:" in text and "signed_input" in text
    # rate and spiking options pass; another backend's options are its own build's business
    rate = study_from_mapping({**base, "backend": {"name": "brian2", "options": {
        "device": "runtime", "target": "numpy", "settle": 0.1}}}, check=False)
    assert rate.runs[0]["backend"]["options"] == {"device": "runtime", "target": "numpy", "settle": 0.1}
    study_from_mapping({**base, "backend": {"name": "brian2", "options": {
        "window": 100.0, "signed_input": True, "input_coding": "regular"}}}, check=False)


@pytest.mark.brian2
def test_brian2_options_reach_the_runner_and_spikes_follow_the_run_seed():
    pytest.importorskip("brian2")
    from bioplastic.experiment.run import Job, load_task
    from bioplastic.experiment.study import RunConfig, study_from_mapping

    def job(mapping: dict, seed: int) -> Job:
        run = dict(study_from_mapping({**mapping, "seeds": [seed]}).runs[0])
        config = RunConfig.model_validate(run)
        return Job(config, load_task(config.task))

    rate = job({"circuit": {"hidden": [8]}, "feedback": {"rule": "ldfa", "rank": 2},
                "backend": {"name": "brian2", "options": {"device": "runtime", "settle": 0.1, "dt": 0.005}}}, 0)
    assert rate.runner.options.device == "runtime"
    assert rate.runner.settle == pytest.approx(0.1, abs=1e-12) and rate.runner.steps == 20
    spiking = {"task": {"center": True}, "circuit": {"hidden": [8], "options": {"neuron": "lif"}},
               "feedback": {"rule": "ldfa", "rank": 2},
               "backend": {"name": "brian2", "options": {"window": 40.0, "signed_input": True}}}
    runner = job(spiking, 3).runner
    assert type(runner).__name__ == "SpikingRunner"
    assert (runner.options.seed, runner.options.window, runner.options.signed_input) == (3, 40.0, True)
    given = {**spiking, "backend": {"name": "brian2", "options": {"seed": 11, "signed_input": True}}}
    assert job(given, 3).runner.options.seed == 11  # a seed the options give is kept


# --------------------------------------------------------------------------------------------------
# The analyses' studies
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["brian2_digits", "spiking_digits"])
def test_shipped_study_is_the_analysis_default(name):
    """studies/NAME.toml resolves to exactly the runs the analysis's default settings train."""
    from bioplastic.experiment.study import load_study, study_from_mapping

    module = load(name)
    shipped = load_study(STUDIES / f"{name}.toml", check=False)
    generated = study_from_mapping(module.study(module.Config()), check=False)
    assert [r["run_id"] for r in shipped.runs] == [r["run_id"] for r in generated.runs]
    # the same runs; import_path is each study's own folder (where it looks for user modules)
    assert [{**r, "import_path": None} for r in shipped.runs] == [{**r, "import_path": None}
                                                                  for r in generated.runs]
    assert shipped.study.description == module.DESCRIPTION


def test_brian2_digits_study_pairs_the_backends_on_one_seed():
    from bioplastic.experiment.study import study_from_mapping

    module = load("brian2_digits")
    cfg = module.Config(**module.QUICK)
    runs = study_from_mapping(module.study(cfg), check=False).runs
    assert [r["backend"]["name"] for r in runs] == ["brian2", "reference"]
    assert runs[0]["backend"]["options"] == {"device": "runtime", "target": "numpy"}
    assert runs[1]["backend"]["options"] == {}
    # apart from the backend, the same run: same seed (initial weights, batch order), same circuit
    strip = [{k: v for k, v in r.items() if k not in ("backend", "run_id")} for r in runs]
    assert strip[0] == strip[1]
    assert runs[0]["seed"] == cfg.seed and runs[0]["record"]["weights_every"] == 1
    assert runs[0]["circuit"]["activation"] == "tanh"  # what circuits.mlp builds by default


def test_spiking_digits_study_carries_the_simulation():
    from bioplastic.experiment.study import study_from_mapping

    module = load("spiking_digits")
    cfg = module.Config(**module.QUICK)
    (run,) = study_from_mapping(module.study(cfg), check=False).runs
    assert run["task"]["train_samples"] == 256 and run["task"]["center"] is True
    assert run["circuit"]["options"] == {"neuron": "lif"}
    want = {k: v for k, v in module._options(cfg).items() if k != "seed"}  # the seed: the run's
    assert run["backend"]["options"] == want and want["signed_input"] is True
    assert (run["optimizer"]["lr"], run["optimizer"]["feedback_lr"]) == (cfg.lr, cfg.feedback_lr)
    whole = study_from_mapping(module.study(module.Config()), check=False).runs[0]
    assert whole["task"]["train_samples"] is None  # train_samples = 0: the whole split
    with pytest.raises(ValueError, match="train_samples must be 0"):
        module.check(module.Config(train_samples=-1))


def test_weight_drift_is_the_largest_relative_distance_of_the_snapshots(tmp_path):
    module = load("brian2_digits")
    rng = np.random.default_rng(0)
    a = {"W1": rng.normal(size=(5, 4)), "b1": np.zeros(5)}
    b = {"W1": a["W1"] + 1e-3 * rng.normal(size=(5, 4)), "b1": np.zeros(5)}
    for folder, weights in (("a", a), ("b", b)):
        (tmp_path / folder / "snapshots").mkdir(parents=True)
        np.savez(tmp_path / folder / "snapshots" / "weights_0003.npz", **weights)
    want = np.sqrt(np.sum((a["W1"] - b["W1"]) ** 2) / np.sum(b["W1"] ** 2))  # b1: 0 apart, not 0/0
    got = module.weight_drift(tmp_path / "a", tmp_path / "b", 3)
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.slow
@pytest.mark.brian2
def test_brian2_digits_trains_through_the_study_and_resumes(tmp_path):
    """A small circuit for one epoch: the history is the two runs' metrics, the drift that of their
    snapshots (0 at epoch 0: the same initial weights), and --resume trains nothing again."""
    pytest.importorskip("brian2")
    from bioplastic.experiment.run import read_metrics

    options = ["--quick", "--hidden=8", "--sweep_steps=8", "--sweep_batch=4", "-q"]
    assert cli.main(["analysis", "brian2_digits", f"--out={tmp_path}", *options]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    module = load("brian2_digits")
    folders = {name: tmp_path / "study" / "runs" / run["run_id"] for name, run in results["runs"].items()}
    (row,) = results["history"]
    for name in module.BACKENDS:
        line = read_metrics(folders[name])[-1]
        assert row[f"acc_{name}"] == line["test_accuracy"] and row[f"loss_{name}"] == line["train_loss"]
    assert results["initial_weight_drift"] == 0.0
    assert row["weight_drift"] == module.weight_drift(folders["brian2"], folders["reference"], 1)
    assert 0 < row["weight_drift"] < 1e-2  # the circuit tracks the abstract rule
    stamps = {name: (f / "metrics.jsonl").stat().st_mtime_ns for name, f in folders.items()}
    assert cli.main(["analysis", "brian2_digits", f"--out={tmp_path}", *options, "--resume=true"]) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["history"][0]["acc_brian2"] == row["acc_brian2"]
    assert {name: (f / "metrics.jsonl").stat().st_mtime_ns for name, f in folders.items()} == stamps


# --------------------------------------------------------------------------------------------------
# The training loop hands a Brian2 circuit whole epochs
# --------------------------------------------------------------------------------------------------

@pytest.mark.brian2
def test_the_loop_hands_brian2_whole_epochs_in_batch_order(monkeypatch):
    """``train`` calls a Brian2 runner's train_epoch once per epoch with that epoch's shuffled batches
    concatenated: the same weights and per-epoch losses as calling it by hand on the same order
    (the batch order of ``Dataset.batches`` with the generator of the seed)."""
    pytest.importorskip("brian2")
    import bioplastic
    import circuits
    from bioplastic.data import Dataset
    from bioplastic.experiment import train

    rng = np.random.default_rng(0)
    x = rng.random((12, 5))
    y = np.eye(3)[rng.integers(0, 3, 12)]
    ds = Dataset(x[:9], y[:9], y[:9].argmax(1), x[9:], y[9:], y[9:].argmax(1), "toy", ("a", "b", "c"))
    circuit = circuits.mlp([5, 6, 3], rule="ldfa", rank=2, subspace="local", lr=0.2, seed=1)
    looped = bioplastic.build(circuit, backend="brian2", settle=0.05)
    calls = []
    real = type(looped).train_epoch
    monkeypatch.setattr(type(looped), "train_epoch",
                        lambda self, *a, **k: calls.append(len(a[0])) or real(self, *a, **k))
    history = train(looped, ds, epochs=2, batch_size=4, seed=7)
    assert calls == [9, 9]  # one call per epoch, every training sample (batches 4, 4, 1)
    monkeypatch.setattr(type(looped), "train_epoch", real)
    by_hand = bioplastic.build(circuit, backend="brian2", settle=0.05)
    order = np.random.default_rng(7)
    for epoch in (1, 2):
        xs, ys = zip(*ds.batches(4, order))
        losses = by_hand.train_epoch(np.concatenate(xs), np.concatenate(ys), batch_size=4)
        assert history.train_loss[epoch] == pytest.approx(float(np.mean(losses)), rel=1e-12)
    for key, value in by_hand.get_weights().items():
        np.testing.assert_array_equal(looped.get_weights()[key], value, err_msg=key)


@pytest.mark.brian2
def test_a_diverging_circuit_is_reported_by_the_loop_with_its_population():
    pytest.importorskip("brian2")
    import bioplastic
    import circuits
    from bioplastic.data import Dataset
    from bioplastic.experiment import Diverged, train

    rng = np.random.default_rng(0)
    x = 1e200 * rng.random((8, 4))
    y = np.eye(3)[rng.integers(0, 3, 8)]
    ds = Dataset(x, y, y.argmax(1), x, y, y.argmax(1), "toy", ("a", "b", "c"))
    runner = bioplastic.build(circuits.mlp([4, 5, 3], rule="fa", lr=1e200, seed=3), backend="brian2", copies=2)
    with np.errstate(all="ignore"), pytest.warns(Warning), \
            pytest.raises(Diverged, match=r"diverged at epoch 1.*population 'hidden1'") as err:
        train(runner, ds, epochs=1, batch_size=2)
    assert err.value.epoch == 1 and len(err.value.history.test_accuracy) == 1  # epoch 0 kept
