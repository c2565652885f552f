"""Study files and runs (bioplastic.experiment.study, .run, .launch; ``bioplastic run``).

* every class of mistake in a study file fails before anything trains, naming the key;
* the same study and seed give identical numbers twice, in this process and on the process pool;
* a study killed with SIGKILL and resumed equals an uninterrupted one, bit for bit (metrics and
  weights), and every file it left is readable;
* a write cut short (a failing os.replace, half a metrics line) never leaves a truncated file that
  counts; a diverging run is marked and the study goes on; a failing run keeps what it wrote;
* the shipped studies reproduce the numbers of the demo and of analyses/accuracy_vs_rank.py, and the
  shipped JSON Schema is current.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from helpers import interrupt_at_epoch

from bioplastic import cli
from bioplastic.experiment import io as bio_io
from bioplastic.experiment import run as run_mod
from bioplastic.experiment.launch import run_study
from bioplastic.experiment.run import execute, load_checkpoint, lr_factor, read_metrics, read_status
from bioplastic.experiment.study import (
    ScheduleSection,
    StudyError,
    json_schema,
    load_study,
    make_run_id,
    resolve,
    study_from_mapping,
)

ROOT = Path(__file__).resolve().parent.parent
STUDIES = ROOT / "studies"

#: A tiny study: 64-16-10 on the digits, two grid points, two seeds; a run trains in ~0.1 s.
TINY = """
name = "tiny"
seeds = [0, 1]
[circuit]
hidden = [16]
[feedback]
rule = "ldfa"
rank = 4
[optimizer]
lr = 0.05
[training]
epochs = 3
[record]
alignment = true
relative_error = true
[grid]
"feedback.subspace" = ["local", "fixed"]
"""


def write(folder: Path, text: str, name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def curves(folder: Path) -> dict[str, list[dict]]:
    """Every run's metrics, the wall-clock ``time`` left out (the one column that may differ)."""
    out = {}
    for run in sorted((folder / "runs").iterdir()):
        out[run.name] = [{k: v for k, v in line.items() if k != "time"} for line in read_metrics(run)]
    return out


def weights(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every run's final weights, from its checkpoint."""
    out = {}
    for run in sorted((folder / "runs").iterdir()):
        state = load_checkpoint(run / "checkpoint.pt")["state"]
        out[run.name] = state.get("weights") or {k: v.numpy() for k, v in state["model"].items()}
    return out


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for run in a:
        assert a[run].keys() == b[run].keys(), run
        for key in a[run]:
            assert np.array_equal(a[run][key], b[run][key]), f"{run} {key}"


# --------------------------------------------------------------------------------------------------
# Invalid study files: each class of mistake, before anything trains, naming the key
# --------------------------------------------------------------------------------------------------

MISTAKES = {
    "unknown key": ("[circuit]\nhidden = [16]\nwidht = 3\n",
                    "circuit.widht: unknown key 'widht' in [circuit] (did you mean 'width'?)"),
    "unknown top-level key": ("epoch = 3\n", "epoch: unknown key 'epoch'"),
    "wrong type": ('[training]\nepochs = "10"\n', "training.epochs: must be an int, got '10'"),
    "wrong type in a list": ("seeds = [0, 1.5]\n", "seeds.1: must be an int, got 1.5"),
    "negative": ("[training]\nbatch_size = 0\n", "training.batch_size: must be greater than 0, got 0"),
    "impossible rank": ('[circuit]\nhidden = [16]\n[feedback]\nrule = "ldfa"\nrank = 40\n',
                        "feedback.rank: rank 40 for the feedback into layer 1 is out of range"),
    "impossible rank in the grid": ('[circuit]\nhidden = [16]\n[feedback]\nrule = "ldfa"\n'
                                    '[grid]\n"feedback.rank" = [4, 40]\n',
                                    "grid.feedback.rank: rank 40 for the feedback into layer 1 is out of range"),
    "missing rank": ('[feedback]\nrule = "ldfa"\n', "feedback.rank: rule 'ldfa' needs a rank"),
    "rank without a rank": ('[feedback]\nrule = "bp"\nrank = 4\n', "feedback.rank: rule 'bp' takes no rank"),
    "unknown rule": ('[feedback]\nrule = "backprop"\n',
                     "feedback.rule: unknown rule 'backprop'; valid options: bp, fa, dfa, kp, ldfa"),
    "unknown rule in the grid": ('[feedback]\nrank = 2\n[grid]\n"feedback.rule" = ["ldfa", "nope"]\n',
                                 "grid.feedback.rule: unknown rule 'nope'"),
    "unknown subspace": ('[feedback]\nrule = "ldfa"\nrank = 2\nsubspace = "hebb"\n',
                         "feedback.subspace: unknown subspace rule 'hebb'"),
    "unknown activation": ('[circuit]\nactivation = "gelu"\n', "circuit.activation: unknown activation 'gelu'"),
    "unknown task": ('[task]\nname = "imagenet"\n', "task.name: unknown task 'imagenet'"),
    "missing data file": ('[task]\nname = "mnist"\nroot = "{tmp}/no_data"\n',
                          "task.root: mnist: file 'train-images-idx3-ubyte[.gz]' not found"),
    "unknown backend": ('[backend]\nname = "jax"\n', "backend.name: unknown backend 'jax'"),
    "torch option on numpy": ('[backend]\ndtype = "float64"\n', "backend.dtype: dtype applies to backend 'torch' only"),
    "backend option": ('[backend]\noptions = {settle = 3}\n', "backend.options: unknown key 'settle' of backend 'reference'"),
    "adam on a circuit": ('[optimizer]\nname = "adam"\n', "optimizer.name: a circuit learns by its rule's own SGD step"),
    "grid value not a list": ('[grid]\n"optimizer.lr" = 0.1\n',
                              "grid.optimizer.lr: must be a non-empty list of values to sweep, got 0.1"),
    "grid sweeps seeds": ('[grid]\nseeds = [[0], [1]]\n', "grid.seeds: seeds cannot be swept"),
    "unknown grid key": ('[grid]\n"feedback.rnk" = [1, 2]\n', "grid.feedback.rnk: unknown key 'rnk' in [feedback] "
                                                              "(did you mean 'rank'?)"),
    "circuit and model": ('[model]\nname = "mlp"\n[circuit]\nhidden = [8]\n', "give a [circuit] or a [model], not both"),
    "unknown builder": ('[circuit]\nbuilder = "circuits.tree"\n', "circuit.builder: cannot import 'circuits.tree'"),
    "not TOML": ("[training\nepochs = 3\n", "not valid TOML"),
    "too many teacher modes (defaults)": ('[task]\nname = "linear_teacher"\nn_in = 5\n',
                                          "task.singular_values: a teacher of n_in = 5 inputs has at most 5 modes; got 8"),
    "checkpoint between evaluations": ("[training]\neval_every = 5\ncheckpoint_every = 3\n",
                                       "training.checkpoint_every: must be a multiple of training.eval_every = 5"),
    "snapshot between evaluations": ("[training]\neval_every = 2\n[record]\nweights_every = 3\n",
                                     "record.weights_every: snapshots are taken with the metrics lines"),
    "more digits than the split": ("[task]\ntrain_samples = 5000\n",
                                   "task.train_samples: the training split holds 1347 samples; got 5000"),
    "every batch dropped": ("[training]\ndrop_last = true\nbatch_size = 5000\n",
                            "training.batch_size: with drop_last every batch of an epoch of 1347"),
    "spiking option on a rate circuit": ('[circuit]\nhidden = [8]\n[feedback]\nrule = "fa"\n'
                                         '[backend]\nname = "brian2"\noptions = {window = 10.0}\n',
                                         "backend.options: unknown key 'window' of backend 'brian2' for a rate circuit"),
    "rate option on a spiking circuit": ('[circuit]\nhidden = [8]\noptions = {neuron = "lif"}\n[feedback]\n'
                                         'rule = "fa"\n[backend]\nname = "brian2"\noptions = {tau = 0.01}\n',
                                         "backend.options: unknown key 'tau' of backend 'brian2' for a spiking"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_fails_before_training_naming_the_key(mistake, tmp_path, capsys):
    text, expected = MISTAKES[mistake]
    expected = expected.replace("{tmp}", str(tmp_path))
    path = write(tmp_path, text.replace("{tmp}", str(tmp_path)))
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert any(expected in p for p in err.value.problems), err.value.problems
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "-q"]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err and "Traceback" not in captured.err
    assert captured.err.startswith(f"bioplastic run: {path}: ")
    assert not out.exists()  # nothing written, nothing trained


def test_every_mistake_is_reported_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOPLASTIC_DATA", str(tmp_path / "empty"))
    path = write(tmp_path, """
        seeds = [0, 0]
        colour = "blue"
        [task]
        name = "mnist"
        [circuit]
        hidden = [16]
        widht = 3
        [feedback]
        rank = 40
        [training]
        epochs = "10"
        [grid]
        "feedback.rule" = ["ldfa", "nope"]
        """)
    with pytest.raises(StudyError) as err:
        load_study(path)
    problems = err.value.problems
    for expected in ("seeds: repeat 0", "colour: unknown key 'colour'", "circuit.widht: unknown key",
                     "training.epochs: must be an int, got '10'", "grid.feedback.rule: unknown rule 'nope'",
                     "task.name: mnist: file 'train-images-idx3-ubyte[.gz]' not found"):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert any("(set task.root or $BIOPLASTIC_DATA)" in p for p in problems)
    assert len(problems) == len(set(problems))  # each once, not once per run
    message = err.value.message()
    assert message.startswith(f"bioplastic run: {path}: {len(problems)} problems:\n  ")


# --------------------------------------------------------------------------------------------------
# The format: grids, run ids, schema
# --------------------------------------------------------------------------------------------------

def test_grids_expand_in_order_with_readable_ids(tmp_path):
    path = write(tmp_path, """
        seeds = [3, 4]
        [circuit]
        hidden = [8, 8]
        [[grid]]
        "feedback.rule" = ["bp", "fa"]
        [[grid]]
        feedback.rule = ["ldfa"]
        feedback.rank = [1, [2, 3]]
        [[grid]]
        feedback = {rule = ["kp"]}
        "optimizer.decay" = [0.001]
        """)
    loaded = load_study(path)
    ids = [r["run_id"] for r in loaded.runs]
    assert ids == ["rule=bp,seed=3", "rule=bp,seed=4", "rule=fa,seed=3", "rule=fa,seed=4",
                   "rule=ldfa,rank=1,seed=3", "rule=ldfa,rank=1,seed=4", "rule=ldfa,rank=2-3,seed=3",
                   "rule=ldfa,rank=2-3,seed=4", "rule=kp,decay=0.001,seed=3", "rule=kp,decay=0.001,seed=4"]
    assert loaded.swept == ["feedback.rule", "feedback.rank", "optimizer.decay"]
    run = loaded.runs[6]
    assert run["feedback"]["rank"] == [2, 3] and run["seed"] == 3 and run["study"] == "study"
    assert run["circuit"]["hidden"] == [8, 8] and run["training"]["epochs"] == 10  # defaults resolved
    json.dumps(loaded.runs)  # plain JSON
    # the same run twice is a mistake
    twice = write(tmp_path, '[circuit]\nhidden = [8]\n[[grid]]\n"feedback.rule" = ["bp"]\n'
                            '[[grid]]\n"feedback.rule" = ["bp", "fa"]\n', "twice.toml")
    with pytest.raises(StudyError, match="the run rule=bp,seed=0 comes twice"):
        load_study(twice)


def test_run_ids_are_safe_file_names_and_short():
    assert make_run_id({"feedback.rule": "ldfa", "feedback.rank": 4}, 0) == "rule=ldfa,rank=4,seed=0"
    assert make_run_id({"task.root": "/data/x y"}, 1) == "root=_data_x_y,seed=1"
    assert make_run_id({"a.lr": 0.1, "b.lr": 0.2}, 0, {"a.lr": "a.lr", "b.lr": "b.lr"}) == "a.lr=0.1,b.lr=0.2,seed=0"
    # a table value (backend options): its keys in order, readable
    assert make_run_id({"backend.options": {"target": "numpy", "device": "runtime"}}, 0) == \
        "options=device-runtime+target-numpy,seed=0"
    long = make_run_id({"circuit.hidden": list(range(100, 160))}, 0)
    assert len(long) == 96 and long[-9] == "~"
    assert long != make_run_id({"circuit.hidden": list(range(100, 161))}, 0)


def test_shipped_schema_is_current_and_printed(capsys):
    schema = json_schema()
    shipped = STUDIES / "study.schema.json"
    text = json.dumps(schema, indent=2) + "\n"
    if not shipped.exists() or json.loads(shipped.read_text()) != schema:
        shipped.write_text(text)
        pytest.fail(f"{shipped} was stale and has been regenerated: commit it")
    assert cli.main(["run", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema
    for section in ("task", "circuit", "model", "feedback", "backend", "optimizer", "schedule", "training",
                    "record", "grid", "seeds"):
        assert section in schema["properties"], section
    rule = schema["$defs"]["FeedbackSection"]["properties"]["rule"]
    assert "ldfa" in rule["examples"] and rule["description"]


def test_shipped_studies_are_valid():
    demo = load_study(STUDIES / "demo.toml")
    assert len(demo.runs) == 11 * 1 and demo.name == "demo_study"
    assert demo.runs[0]["model"]["name"] == "cnn" and demo.runs[0]["task"]["name"] == "mnist5000"
    rank = load_study(STUDIES / "accuracy_vs_rank.toml")
    assert len(rank.runs) == (3 + 1 + 4 * 8) * 3
    teacher = load_study(STUDIES / "accuracy_vs_rank_teacher.toml")
    assert teacher.runs[0]["task"]["name"] == "teacher_student" and teacher.runs[0]["record"]["relative_error"]


def test_schedules():
    step = ScheduleSection(name="step", step_size=2, gamma=0.5)
    assert [lr_factor(step, k, 6) for k in range(1, 7)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cosine = ScheduleSection(name="cosine", min_factor=0.1, warmup=1)
    values = [lr_factor(cosine, k, 4) for k in range(1, 5)]
    assert values[0] == pytest.approx(0.5) and values[1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi / 4)))
    assert lr_factor(ScheduleSection(), 7, 10) == 1.0


# --------------------------------------------------------------------------------------------------
# Runs: identical twice, on every local executor; the folder layout
# --------------------------------------------------------------------------------------------------

def test_same_study_same_numbers_in_process_and_on_the_pool(tmp_path):
    loaded = load_study(write(tmp_path, TINY))
    one = run_study(loaded, tmp_path / "one", executor="inprocess", progress=False)
    two = run_study(loaded, tmp_path / "two", executor="inprocess", progress=False)
    pool = run_study(loaded, tmp_path / "pool", executor="process", jobs=2, progress=False)
    assert one.count("finished") == two.count("finished") == 4 and pool.ok
    assert curves(tmp_path / "one") == curves(tmp_path / "two") == curves(tmp_path / "pool")
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "pool"))

    run = tmp_path / "one" / "runs" / "subspace=local,seed=0"
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoint.pt", "config.json", "log.txt",
                                                     "metrics.jsonl", "status.json"]
    meta = json.loads((run / "config.json").read_text())
    assert meta["run_id"] == "subspace=local,seed=0" and meta["seed"] == 0
    assert meta["config"] == loaded.runs[0]
    for key in ("versions", "git_sha", "host", "started"):
        assert key in meta
    assert meta["versions"]["numpy"] == np.__version__
    lines = read_metrics(run)
    assert [line["epoch"] for line in lines] == [0, 1, 2, 3]
    assert {"train_loss", "test_loss", "test_accuracy", "time", "alignment_2", "relative_error"} <= set(lines[0])
    assert read_status(run) == {"state": "finished", "epoch": 3, "error": None}
    assert "finished" in (run / "log.txt").read_text()
    study = json.loads((tmp_path / "one" / "study.json").read_text())
    assert [r["run_id"] for r in study["runs"]] == [r["run_id"] for r in loaded.runs]
    assert study["swept"] == ["feedback.subspace"] and (tmp_path / "one" / "study.toml").read_text() == loaded.text
    assert one.results["subspace=local,seed=0"]["metrics"] == lines[-1]
    # the command: a study already in the folder needs --resume; with it, nothing runs again
    assert cli.main(["run", str(loaded.path), "--out", str(tmp_path / "one"), "-q"]) == 2
    before = (run / "metrics.jsonl").read_bytes()
    assert cli.main(["run", str(loaded.path), "--out", str(tmp_path / "one"), "--resume", "-q"]) == 0
    assert (run / "metrics.jsonl").read_bytes() == before


def test_a_diverging_run_is_marked_and_the_study_goes_on(tmp_path, capsys):
    path = write(tmp_path, """
        [circuit]
        hidden = [16]
        [feedback]
        rule = "bp"
        [training]
        epochs = 3
        [grid]
        "optimizer.lr" = [1000.0, 0.05]
        """)
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "--executor", "inprocess"]) == 0
    captured = capsys.readouterr()
    assert "lr=1000.0,seed=0: diverged in epoch 1" in captured.err
    assert "2 runs: 1 finished, 1 diverged, 0 failed" in captured.out
    status = read_status(out / "runs" / "lr=1000.0,seed=0")
    assert status["state"] == "diverged" and status["epoch"] == 1 and "diverged at epoch 1" in status["error"]
    assert [line["epoch"] for line in read_metrics(out / "runs" / "lr=1000.0,seed=0")] == [0]
    assert read_status(out / "runs" / "lr=0.05,seed=0")["state"] == "finished"
    # a resumed study does not retry it: divergence is a result
    assert cli.main(["run", str(path), "--out", str(out), "--resume", "-q"]) == 0
    assert "2 runs (2 of them before): 1 finished, 1 diverged" in capsys.readouterr().out


def test_a_failing_run_keeps_what_it_wrote_and_the_study_goes_on(tmp_path, monkeypatch):
    loaded = load_study(write(tmp_path, TINY))
    real = run_mod.Job.measures

    def fails_in_epoch_2(self, record):
        seen = self.__dict__.setdefault("_seen", [])
        if self.config.run_id == "subspace=local,seed=1" and len(seen) == 2:
            raise RuntimeError("simulated failure")
        seen.append(record)
        return real(self, record)

    monkeypatch.setattr(run_mod.Job, "measures", fails_in_epoch_2)
    outcome = run_study(loaded, tmp_path / "out", executor="inprocess", progress=False)
    assert outcome.count("failed") == 1 and outcome.count("finished") == 3
    folder = tmp_path / "out" / "runs" / "subspace=local,seed=1"
    status = read_status(folder)
    assert status == {"state": "failed", "epoch": 1, "error": "RuntimeError: simulated failure"}
    assert [line["epoch"] for line in read_metrics(folder)] == [0, 1]
    assert "Traceback" in (folder / "log.txt").read_text() and (folder / "checkpoint.pt").exists()


# --------------------------------------------------------------------------------------------------
# Kill and resume: bit-identical to an uninterrupted study; nothing truncated that counts
# --------------------------------------------------------------------------------------------------

KILLABLE = """
name = "killable"
[circuit]
hidden = [16]
[feedback]
rule = "ldfa"
rank = 4
[optimizer]
lr = 0.02
[training]
epochs = 30
batch_size = 32
checkpoint_every = 3
[record]
alignment = true
[grid]
"feedback.subspace" = ["fixed", "normative"]
"""


def _all_files_readable(out: Path) -> dict[str, int]:
    """Every file a killed study left parses; returns run -> completed epochs."""
    json.loads((out / "study.json").read_text())
    done = {}
    for run in (out / "runs").iterdir():
        json.loads((run / "config.json").read_text())
        if (run / "status.json").exists():
            assert json.loads((run / "status.json").read_text())["state"] in run_mod.STATES
        lines = read_metrics(run)
        assert [line["epoch"] for line in lines] == list(range(len(lines)))
        assert (run / "metrics.jsonl").read_bytes().endswith(b"\n") or not lines
        if (run / "checkpoint.pt").exists():
            state = load_checkpoint(run / "checkpoint.pt")
            assert state["epoch"] <= len(lines) - 1
        # a kill during a write may leave that write's temporary file, never a cut real file
        assert all(tmp.name.startswith(".") for tmp in run.glob("*.tmp"))
        done[run.name] = len(lines) - 1
    return done


def test_resume_after_sigkill_equals_an_uninterrupted_study(tmp_path):
    path = write(tmp_path, KILLABLE)
    loaded = load_study(path)
    reference = run_study(loaded, tmp_path / "whole", executor="inprocess", progress=False)
    assert reference.count("finished") == 2
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "bioplastic", "run", str(path), "--out", str(out), "--executor",
               "inprocess", "-q"]
    metrics = out / "runs" / "subspace=normative,seed=0" / "metrics.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # killed twice: first in the torch run, then again after resuming, a few epochs on
    for kill_at, resume in ((6, False), (20, True)):
        proc = subprocess.Popen(command + (["--resume"] if resume else []), cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and metrics.read_bytes().count(b"\n") > kill_at:
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"the study ended before it could be killed: {proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        done = _all_files_readable(out)
        assert done["subspace=fixed,seed=0"] == 30
        assert kill_at <= done["subspace=normative,seed=0"] < 30
        assert read_status(out / "runs" / "subspace=normative,seed=0")["state"] == "running"
    finished = subprocess.run(command + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "2 runs (1 of them before): 2 finished" in finished.stdout
    assert "resumed from the checkpoint of epoch" in (out / "runs" / "subspace=normative,seed=0" / "log.txt").read_text()
    assert curves(out) == curves(tmp_path / "whole")
    assert_same_weights(weights(out), weights(tmp_path / "whole"))
    assert not list(out.glob("runs/*/.*.tmp")), "the resumed run clears temporary files a kill left"


def test_a_checkpoint_write_that_fails_keeps_the_previous_one(tmp_path, monkeypatch):
    run = load_study(write(tmp_path, TINY.replace("epochs = 3", "epochs = 5"))).runs[0]
    whole = execute(run, tmp_path / "whole")
    replace = os.replace
    calls = []

    def failing_replace(src, dst):
        if str(dst).endswith("checkpoint.pt"):
            calls.append(dst)
            if len(calls) == 3:  # the checkpoint of epoch 3: as if the disk filled up mid-write
                raise OSError(28, "No space left on device")
        return replace(src, dst)

    monkeypatch.setattr(bio_io.os, "replace", failing_replace)
    failed = execute(run, tmp_path / "cut")
    monkeypatch.setattr(bio_io.os, "replace", replace)
    folder = tmp_path / "cut" / "runs" / run["run_id"]
    assert failed["state"] == "failed" and "No space left on device" in failed["error"]
    assert load_checkpoint(folder / "checkpoint.pt")["epoch"] == 2  # the previous one, whole
    assert not list(folder.glob(".*.tmp"))
    again = execute(run, tmp_path / "cut", resume=True)
    assert again["state"] == "finished" and again["metrics"]["test_loss"] == whole["metrics"]["test_loss"]
    assert curves(tmp_path / "cut") == curves(tmp_path / "whole")
    assert_same_weights(weights(tmp_path / "cut"), weights(tmp_path / "whole"))


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_a_metrics_line_cut_in_half_is_ignored_and_repaired(backend, tmp_path, monkeypatch):
    text = TINY.replace("epochs = 3", "epochs = 5") + f'[backend]\nname = "{backend}"\n'
    run = load_study(write(tmp_path, text)).runs[0]
    execute(run, tmp_path / "whole")
    real_write = os.write

    def killed_mid_line(fd, data):
        if b'"epoch": 4' in data:  # half of epoch 4's line reaches the file, then the process dies
            real_write(fd, data[:len(data) // 2])
            raise KeyboardInterrupt
        return real_write(fd, data)

    monkeypatch.setattr(bio_io.os, "write", killed_mid_line)
    with pytest.raises(KeyboardInterrupt):
        execute(run, tmp_path / "cut")
    monkeypatch.setattr(bio_io.os, "write", real_write)
    folder = tmp_path / "cut" / "runs" / run["run_id"]
    assert not (folder / "metrics.jsonl").read_bytes().endswith(b"\n")  # the torn line is there...
    assert [line["epoch"] for line in read_metrics(folder)] == [0, 1, 2, 3]  # ...and does not count
    assert read_status(folder) == {"state": "running", "epoch": 3, "error": None}
    assert load_checkpoint(folder / "checkpoint.pt")["epoch"] == 3
    execute(run, tmp_path / "cut", resume=True)
    assert (folder / "metrics.jsonl").read_bytes().endswith(b"\n")
    assert curves(tmp_path / "cut") == curves(tmp_path / "whole")
    assert_same_weights(weights(tmp_path / "cut"), weights(tmp_path / "whole"))


def test_a_failing_sync_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    bio_io.write_json(target, {"state": "running", "epoch": 1}, fsync=True)

    def no_sync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(bio_io.os, "fsync", no_sync)
    with pytest.raises(OSError, match="Input/output error"):
        bio_io.write_json(target, {"state": "running", "epoch": 2}, fsync=True)
    assert json.loads(target.read_text()) == {"state": "running", "epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_a_torch_model_with_adam_and_a_schedule_resumes_bit_identically(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    path = write(tmp_path, """
        [model]
        name = "mlp"
        options = {hidden = [16], batch_norm = true}
        [feedback]
        rule = "ldfa"
        rank = 4
        subspace = "normative"
        [backend]
        name = "torch"
        [optimizer]
        name = "adam"
        lr = 0.003
        feedback_lr = 0.001
        [schedule]
        name = "cosine"
        warmup = 1
        [training]
        epochs = 5
        [record]
        alignment = true
        """)
    run = load_study(path).runs[0]
    whole = execute(run, tmp_path / "whole")
    assert whole["state"] == "finished" and any(k.startswith("alignment_net.") for k in whole["metrics"])
    real = interrupt_at_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        execute(run, tmp_path / "cut")
    monkeypatch.setattr(run_mod, "append_jsonl", real)
    assert execute(run, tmp_path / "cut", resume=True)["state"] == "finished"
    assert curves(tmp_path / "cut") == curves(tmp_path / "whole")
    a = load_checkpoint(tmp_path / "whole" / "runs" / run["run_id"] / "checkpoint.pt")["state"]
    b = load_checkpoint(tmp_path / "cut" / "runs" / run["run_id"] / "checkpoint.pt")["state"]
    for key in a["model"]:
        assert bool((a["model"][key] == b["model"][key]).all()), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for i, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert bool((value == b["optimizer"]["state"][i][key]).all()), (i, key)


def test_a_changed_study_is_not_resumed_into_the_old_folder(tmp_path):
    path = write(tmp_path, TINY)
    run_study(load_study(path), tmp_path / "out", executor="inprocess", progress=False)
    write(tmp_path, TINY.replace("epochs = 3", "epochs = 4"))
    with pytest.raises(StudyError, match="the settings of 4 run"):
        run_study(load_study(path), tmp_path / "out", resume=True, executor="inprocess", progress=False)
    # a longer grid is fine: the new runs run, the old ones are kept
    write(tmp_path, TINY.replace('["local", "fixed"]', '["local", "fixed", "normative"]'))
    outcome = run_study(load_study(path), tmp_path / "out", resume=True, executor="inprocess", progress=False)
    assert outcome.skipped == 4 and len(outcome.results) == 6


# --------------------------------------------------------------------------------------------------
# Your own rule, through imports
# --------------------------------------------------------------------------------------------------

def test_a_study_imports_a_users_rule(tmp_path):
    from bioplastic.rules import unregister

    (tmp_path / "my_sign_rule.py").write_text(textwrap.dedent("""
        import numpy as np
        from bioplastic.rules import Rule, register_rule

        @register_rule
        class SignSymmetricStudy(Rule):
            name = "sign_study"
            summary = "sign-symmetric feedback"
            form = "transport"

            def transport(self, W):
                return np.sign(W).T * np.abs(W).mean()
        """))
    path = write(tmp_path, """
        imports = ["my_sign_rule"]
        [circuit]
        hidden = [16]
        [feedback]
        rule = "sign_study"
        [training]
        epochs = 2
        """)
    try:
        loaded = load_study(path)
        outcome = run_study(loaded, tmp_path / "out", executor="inprocess", progress=False)
        assert outcome.count("finished") == 1
    finally:
        unregister("sign_study")
        sys.modules.pop("my_sign_rule", None)
        sys.path.remove(str(tmp_path.resolve()))


# --------------------------------------------------------------------------------------------------
# The shipped studies give the numbers of the demo and of the analysis they replace
# --------------------------------------------------------------------------------------------------

def _shortened(path: Path, epochs: int = 2, seeds=(0,)) -> list[dict]:
    raw = tomllib.loads(path.read_text())
    raw["training"]["epochs"] = epochs
    raw["seeds"] = list(seeds)
    return resolve(raw)[1]


def test_demo_study_gives_the_demo_numbers(tmp_path):
    """The shipped study, shrunk (the 8 x 8 digits, a CNN of 2 and 4 maps, one epoch), against the
    demo's own loop over the same model (analyses/demo.py, run_condition), which shares no code with
    the study's runner beyond the training loop."""
    from analyses import demo as dm

    raw = tomllib.loads((STUDIES / "demo.toml").read_text())
    raw["task"] = {"name": "digits", "test_fraction": 0.25, "split_seed": 0, "flatten": False}
    raw["model"]["options"] = {"channels": [2, 4], "hidden": 8}
    raw["training"]["epochs"] = 1
    runs = {r["run_id"]: r for r in resolve(raw)[1]}
    cfg = dm.DemoConfig(task="digits", test_fraction=0.25, channels=(2, 4), hidden=8, epochs=1, seeds=(0,))
    assert [c.label for c in dm.DEMO_CONDITIONS] == [
        "bp", "fa", "kp", *(f"ldfa-{s}-r{r}" for s in ("fixed", "normative", "local", "oja") for r in (1, 10))]
    assert len(runs) == len(dm.DEMO_CONDITIONS)
    digits = dm.load_data(cfg)
    pairs = {"rule=bp,seed=0": dm.Condition("bp"), "rule=kp,decay=0.001,seed=0": dm.Condition("kp", decay=1e-3),
             "rule=ldfa,subspace=oja,rank=10,feedback_lr=0.01,seed=0": dm.Condition("ldfa", "oja", 10, feedback_lr=1e-2),
             "rule=ldfa,subspace=normative,rank=1,feedback_lr=0.01,seed=0": dm.Condition("ldfa", "normative", 1,
                                                                                       feedback_lr=1e-2)}
    for run_id, condition in pairs.items():
        execute(runs[run_id], tmp_path)
        study = read_metrics(tmp_path / "runs" / run_id)
        demo = dm.run_condition(condition, 0, cfg, digits)
        for key in ("train_loss", "test_loss", "test_accuracy"):
            assert [line[key] for line in study] == demo[key], (run_id, key)


@pytest.mark.parametrize("study, task", [("accuracy_vs_rank.toml", "digits"),
                                         ("accuracy_vs_rank_teacher.toml", "teacher")])
def test_rank_study_gives_the_analysis_numbers(study, task, tmp_path):
    """The shipped study is the analysis's default sweep, run for run, and a run of it gives the
    numbers the analysis reports for that condition."""
    sys.path.insert(0, str(ROOT / "analyses"))
    try:
        import _claims
        import accuracy_vs_rank as avr
    finally:
        sys.path.remove(str(ROOT / "analyses"))
    generated = study_from_mapping(avr.study(avr.Config(task=task)), check=False).runs
    shipped = load_study(STUDIES / study, check=False).runs
    assert [{**r, "import_path": None} for r in shipped] == [{**r, "import_path": None} for r in generated]
    runs = {r["run_id"]: r for r in _shortened(STUDIES / study)}
    cfg = avr.Config(task=task, epochs=2, seeds=(0,))
    conditions = {c["label"]: c for c in avr.as_conditions(cfg, avr.conditions(cfg, avr.task_data(cfg)[1]))}
    pairs = {"rule=fa,seed=0": "fa", "rule=ldfa,subspace=fixed,rank=1,zero=Q,seed=0": "readout",
             "rule=ldfa,subspace=oja,rank=16,clip_rank=true,seed=0": "ldfa-oja-r16"}
    for run_id, label in pairs.items():
        execute(runs[run_id], tmp_path)
        study_lines = read_metrics(tmp_path / "runs" / run_id)
        analysis = _claims.train_condition(avr.setup_of(cfg), conditions[label], 0)
        assert [line["test_accuracy"] for line in study_lines] == analysis["curve_accuracy"], run_id
        if task == "teacher":
            assert [line["relative_error"] for line in study_lines] == analysis["curve_relative_error"]


def test_the_demo_is_the_shipped_demo_study_and_resumes(tmp_path):
    from analyses import demo as dm
    from bioplastic.experiment.study import canonical, study_from_mapping, to_toml

    raw = dm.demo_study(dm.DemoConfig())
    assert tomllib.loads(to_toml(raw)) == raw
    mine = study_from_mapping(raw, name="demo").runs
    shipped = load_study(STUDIES / "demo.toml").runs
    assert [r["run_id"] for r in mine] == [r["run_id"] for r in shipped]
    assert [canonical({**r, "study": ""}) for r in mine] == [canonical({**r, "study": ""}) for r in shipped]

    cfg = dm.DemoConfig(task="digits", channels=(2, 4), hidden=8, epochs=2, seeds=(0,),
                        conditions=(dm.Condition("bp"),))
    first = dm.run_demo(cfg, tmp_path, jobs=1, progress=False)
    assert (tmp_path / "study.toml").read_text() == to_toml(dm.demo_study(cfg))
    log = tmp_path / "runs" / "rule=bp,seed=0" / "log.txt"
    with open(log, "a") as fh:
        fh.write("MARK\n")
    again = dm.run_demo(cfg, tmp_path, jobs=1, progress=False, resume=True)
    assert log.read_text().endswith("MARK\n")  # nothing trained again
    assert again["conditions"][0]["runs"][0]["test_loss"] == first["conditions"][0]["runs"][0]["test_loss"]
    dm.run_demo(cfg, tmp_path, jobs=1, progress=False)  # without resume: starts over, no refusal
    assert "MARK" not in log.read_text()


def test_one_process_at_a_time_trains_a_run(tmp_path):
    """A worker orphaned by a killed study still holds its run: a resumed study waits for it, then
    reads the run as done instead of training it a second time alongside."""
    import threading

    run = load_study(write(tmp_path, TINY)).runs[0]
    folder = tmp_path / "runs" / run["run_id"]
    folder.mkdir(parents=True)
    results = []
    with run_mod.run_lock(folder):  # the orphan
        waiting = threading.Thread(target=lambda: results.append(execute(run, tmp_path)))
        waiting.start()
        time.sleep(0.3)
        assert not results and not (folder / "metrics.jsonl").exists()
        bio_io.write_json(folder / "status.json", {"state": "finished", "epoch": 3, "error": None})
    waiting.join(30)
    assert results[0]["state"] == "finished" and not (folder / "metrics.jsonl").exists()


def test_the_readme_study_is_the_shipped_file():
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Studies"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    shipped = (STUDIES / "rank_sweep.toml").read_text()
    body = "\n".join(line for line in shipped.splitlines() if not line.startswith("#")).strip()
    assert block.strip() == body
    loaded = load_study(STUDIES / "rank_sweep.toml")
    assert len(loaded.runs) == 24 and loaded.runs[-1]["run_id"] == "rule=ldfa,subspace=local,rank=10,seed=2"


# --------------------------------------------------------------------------------------------------
# [record] snapshots: weights and activity, checked against the checkpoint and a forward pass by hand
# --------------------------------------------------------------------------------------------------

def test_weight_and_activity_snapshots_of_a_circuit(tmp_path):
    from bioplastic.experiment.run import execute, load_checkpoint

    text = TINY.replace("seeds = [0, 1]", "seeds = [0]").replace(
        "relative_error = true", "relative_error = true\nweights_every = 1\nactivity_every = 2\nactivity_samples = 7")
    loaded = load_study(write(tmp_path, text))
    run = loaded.runs[0]
    execute(run, tmp_path / "out")
    folder = tmp_path / "out" / "runs" / run["run_id"]
    snaps = sorted(p.name for p in (folder / "snapshots").iterdir())
    assert snaps == ["activity_0000.npz", "activity_0002.npz", "weights_0000.npz", "weights_0001.npz",
                     "weights_0002.npz", "weights_0003.npz"]
    final = np.load(folder / "snapshots" / "weights_0003.npz")
    saved = load_checkpoint(folder / "checkpoint.pt")["state"]["weights"]
    assert set(final.files) == set(saved) and {"W1", "W2", "P2", "Q2"} <= set(final.files)
    for k in saved:
        np.testing.assert_array_equal(final[k], saved[k])
    # the activity at epoch 2: the rates of the 7 probe digits under that epoch's weights, by hand
    w = np.load(folder / "snapshots" / "weights_0002.npz")
    act = np.load(folder / "snapshots" / "activity_0002.npz")
    from bioplastic import data

    ds = data.load_digits()
    x = ds.x_test[:7]
    assert loaded.runs[0]["circuit"]["activation"] == "relu"
    h1 = np.maximum(x @ w["W1"].T + (w["b1"] if "b1" in w.files else 0), 0.0)
    np.testing.assert_allclose(act["h1"], h1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(act["h2"], h1 @ w["W2"].T + (w["b2"] if "b2" in w.files else 0), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_array_equal(act["labels"], ds.labels_test[:7])
    assert not np.allclose(np.load(folder / "snapshots" / "weights_0000.npz")["W1"], w["W1"])


def test_activity_snapshot_of_a_model_names_its_layers(tmp_path):
    from bioplastic.experiment.run import execute

    text = """
name = "m"
seeds = [0]
[task]
name = "digits"
flatten = false
[model]
name = "cnn"
options = {image_size = 8, channels = [3, 4], hidden = 8}
[feedback]
rule = "ldfa"
rank = 2
clip_rank = true
[backend]
name = "torch"
[training]
epochs = 1
[record]
activity_every = 1
activity_samples = 5
"""
    run = load_study(write(tmp_path, text)).runs[0]
    execute(run, tmp_path / "out")
    act = np.load(tmp_path / "out" / "runs" / run["run_id"] / "snapshots" / "activity_0001.npz")
    assert act["features.0"].shape == (5, 3, 8, 8) and act["features.3"].shape == (5, 4, 4, 4)
    assert act["head.1"].shape == (5, 8) and act["head.3"].shape == (5, 10)


# --------------------------------------------------------------------------------------------------
# [training] loss: cross-entropy for models, checked against numbers computed here
# --------------------------------------------------------------------------------------------------

def test_cross_entropy_loss_of_a_model_run(tmp_path):
    import torch

    from bioplastic.experiment.run import ModelRunner, execute, read_metrics
    from bioplastic.experiment.train import evaluate

    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    y = np.eye(3)[[0, 1]]
    expected = -(np.log(np.exp(2.0) / (np.exp(2.0) + np.exp(0.5) + np.exp(-1.0)))
                 + np.log(1.0 / (2.0 + np.exp(3.0))))
    model = torch.nn.Linear(3, 3, dtype=torch.float64)
    runner = ModelRunner(model, torch.optim.SGD(model.parameters(), lr=0.0), "cpu", torch.float64,
                         loss="cross_entropy")
    assert runner.batch_loss(logits, y) == pytest.approx(expected, rel=1e-12)
    assert ModelRunner(model, None, "cpu", torch.float64).batch_loss(logits, y) == pytest.approx(
        0.5 * np.sum((logits - y) ** 2), rel=1e-12)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3, dtype=torch.float64))
        model.bias.zero_()
    loss, acc = evaluate(runner, logits, y, np.array([0, 1]))
    assert loss == pytest.approx(expected / 2, rel=1e-12) and acc == 0.5
    assert runner.train_step(logits, y) == pytest.approx(expected / 2, rel=1e-12)
    with pytest.raises(ValueError, match="valid options: squared, cross_entropy"):
        ModelRunner(model, None, "cpu", torch.float64, loss="hinge")

    text = """
name = "ce"
seeds = [0]
[task]
name = "digits"
[model]
name = "mlp"
options = {hidden = [16], batch_norm = false}
[backend]
name = "torch"
[training]
epochs = 1
loss = "cross_entropy"
[record]
relative_error = true
"""
    run = load_study(write(tmp_path, text)).runs[0]
    execute(run, tmp_path / "out")
    lines = read_metrics(tmp_path / "out" / "runs" / run["run_id"])
    # relative error: test loss over that of all-zero logits, log(10) for one-hot targets
    assert lines[-1]["relative_error"] == pytest.approx(lines[-1]["test_loss"] / np.log(10), rel=1e-9)


def test_cross_entropy_is_refused_for_a_circuit(tmp_path):
    with pytest.raises(StudyError, match="training.loss"):
        load_study(write(tmp_path, TINY.replace("epochs = 3", 'epochs = 3\nloss = "cross_entropy"')))


def test_checkpoints_follow_the_evaluations_unless_given():
    """checkpoint_every not given: one with every metrics line (eval_every); given: as given."""
    from bioplastic.experiment.study import TrainingSection

    assert TrainingSection(eval_every=5).checkpoint_every == 5
    assert TrainingSection().checkpoint_every == 1
    assert TrainingSection(eval_every=5, checkpoint_every=10).checkpoint_every == 10
    assert TrainingSection(eval_every=5, checkpoint_every=0).checkpoint_every == 0
