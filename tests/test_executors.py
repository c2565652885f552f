"""The executor seam: one small grid gives identical numbers in-process, on the process pool, on a
Dask LocalCluster of 2 workers and through submitit's debug executor; progress is drawn here as the
futures complete; a missing extra and a bad kind are reported by name."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import time
from concurrent.futures import Executor, Future, as_completed
from pathlib import Path

import numpy as np
import pytest

from bioplastic.experiment import executors
from bioplastic.experiment.executors import (
    KINDS,
    MissingExtraError,
    SubmititTask,
    make_executor,
)
from bioplastic.experiment.progress import Progress

# 2 rules x 2 seeds, a 64-16-10 MLP on the digits, 2 epochs: one run trains in well under a second
GRID = [{"run_id": f"{rule}-s{seed}", "rule": rule, "seed": seed, "sizes": [64, 16, 10], "epochs": 2,
         "lr": 0.05, "batch_size": 32} for rule in ("bp", "ldfa") for seed in (0, 1)]


def train_run(run: dict, out_dir: str, resume: bool = True) -> dict:
    """Stand-in for the study's ``execute``: trains one resolved config, a pure function of it.

    Returns the run's last metrics and a checksum of its final weights (bytes of every float32
    array), so that equality between executors is exact, not within a tolerance.
    """
    import bioplastic
    import circuits
    from bioplastic.data import load_digits
    from bioplastic.experiment import train

    options = {"rank": 4, "subspace": "local"} if run["rule"] == "ldfa" else {}
    circuit = circuits.mlp(run["sizes"], rule=run["rule"], lr=run["lr"], seed=run["seed"],
                           activation="relu", **options)
    runner = bioplastic.build(circuit, backend="torch")
    history = train(runner, load_digits(), epochs=run["epochs"], batch_size=run["batch_size"],
                    seed=run["seed"])
    digest = hashlib.sha256()
    for name, w in sorted(runner.get_weights().items()):
        digest.update(name.encode() + np.ascontiguousarray(w).tobytes())
    folder = Path(out_dir) / "runs" / run["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"epoch": run["epochs"], "train_loss": history.train_loss[-1],
               "test_loss": history.test_loss[-1], "test_accuracy": history.test_accuracy[-1]}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return {"run_id": run["run_id"], "state": "finished", "epoch": run["epochs"], "metrics": metrics,
            "train_loss": list(history.train_loss), "test_loss": list(history.test_loss),
            "weights": digest.hexdigest()}


def run_grid(executor: Executor, out_dir: Path) -> tuple[dict, str]:
    """Submit the grid, draw progress as the futures complete; results by run_id, progress text."""
    stream = io.StringIO()
    results = {}
    with Progress(len(GRID), desc="grid", stream=stream, inplace=False) as bar:
        futures = {executor.submit(train_run, run, str(out_dir)): run["run_id"] for run in GRID}
        for future in as_completed(futures):
            result = future.result()
            results[futures[future]] = result
            bar.update(1, f"{result['run_id']} acc {result['metrics']['test_accuracy']:.3f}")
    return results, stream.getvalue()


def _make(kind: str, tmp_path: Path) -> Executor:
    if kind == "submitit":
        return make_executor("submitit", cluster="debug", folder=tmp_path / "submitit" / "%j")
    return make_executor(kind, jobs=None if kind == "inprocess" else 2)


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # submitit's debug jobs leave log files open
def test_the_same_grid_gives_identical_numbers_on_every_executor(tmp_path, capsys):
    pytest.importorskip("distributed")
    pytest.importorskip("submitit")
    results, seconds = {}, {}
    for kind in KINDS:
        start = time.perf_counter()
        with _make(kind, tmp_path) as executor:
            results[kind], progress = run_grid(executor, tmp_path / kind)
        seconds[kind] = time.perf_counter() - start
        assert progress.count("\n") >= 2 and f"{len(GRID)}/{len(GRID)}" in progress, progress
        assert sorted(p.name for p in (tmp_path / kind / "runs").iterdir()) == sorted(r["run_id"] for r in GRID)
    reference = results["inprocess"]
    assert set(reference) == {run["run_id"] for run in GRID}
    assert len({r["weights"] for r in reference.values()}) == len(GRID)  # the runs do differ
    for kind in KINDS[1:]:
        for run_id, expected in reference.items():
            got = results[kind][run_id]
            assert got["weights"] == expected["weights"], f"{kind} {run_id}: other weights"
            assert got["train_loss"] == expected["train_loss"], f"{kind} {run_id}: other losses"
            assert got["test_loss"] == expected["test_loss"], f"{kind} {run_id}: other losses"
            assert got["metrics"] == expected["metrics"], f"{kind} {run_id}"
    with capsys.disabled():  # the figures the report quotes (pytest -s shows them)
        print("\nsame grid (" + f"{len(GRID)} runs" + "): " + ", ".join(
            f"{kind} {seconds[kind]:.1f} s" for kind in KINDS))


# ------------------------------------------------------------------------------------ inprocess

def _boom(x):
    raise ArithmeticError(f"boom {x}")


def test_inprocess_runs_at_submit_and_holds_errors_in_the_future():
    calls = []
    with make_executor("inprocess") as executor:
        future = executor.submit(calls.append, 3)
        assert calls == [3] and future.done() and future.result() is None
        bad = executor.submit(_boom, 1)
        assert bad.done()
        with pytest.raises(ArithmeticError, match="boom 1"):
            bad.result()
        assert list(executor.map(abs, [-1, -2])) == [1, 2]
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(abs, 1)


def _threads() -> tuple:
    import os

    import torch

    return os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()


def test_process_pool_is_single_threaded_and_never_forks():
    with pytest.raises(ValueError, match="never 'fork'"):
        make_executor("process", jobs=1, context="fork")
    with make_executor("process", jobs=1) as pool:
        assert pool.submit(_threads).result() == ("1", 1)
        assert pool._mp_context.get_start_method() == "spawn"
        with pytest.raises(ArithmeticError, match="boom 2"):
            pool.submit(_boom, 2).result()


# ------------------------------------------------------------------------------------ errors

def test_unknown_kind_and_misplaced_options_are_named():
    with pytest.raises(ValueError, match="valid options: inprocess, process, dask, submitit"):
        make_executor("slurm")
    with pytest.raises(ValueError, match="scheduler address is for the dask executor"):
        make_executor("process", scheduler="tcp://localhost:8786")
    with pytest.raises(TypeError, match="takes no options"):
        make_executor("inprocess", context="spawn")
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        make_executor("process", jobs=0)


@pytest.mark.parametrize("kind, module", [("dask", "distributed"), ("submitit", "submitit")])
def test_a_missing_extra_says_what_to_install(kind, module, monkeypatch):
    real_import = builtins.__import__

    def no_extra(name, *args, **kwargs):
        if name.split(".")[0] == module:
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extra)
    monkeypatch.setattr(executors.importlib, "import_module", lambda name: no_extra(name))
    with pytest.raises(MissingExtraError, match=r'pip install "bioplastic\[cluster\]"') as info:
        make_executor(kind)
    assert isinstance(info.value, ImportError) and module in str(info.value)


# ------------------------------------------------------------------------------------ submitit

def _resumable(run, out_dir, resume=False):
    return resume


def test_a_preempted_submitit_task_is_requeued_resuming():
    pytest.importorskip("submitit")
    from submitit.helpers import DelayedSubmission

    task = SubmititTask(_resumable, ({"run_id": "a"}, "out"), {"resume": False})
    assert task() is False
    again = task.checkpoint()
    assert isinstance(again, DelayedSubmission)
    assert again.function.kwargs == {"resume": True} and again.function.args == task.args
    assert again.result() is True
    plain = SubmititTask(abs, (-2,)).checkpoint()  # no resume argument: requeued as it was
    assert plain.function.kwargs == {} and plain.result() == 2


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_submitit_futures_carry_results_errors_and_a_job_array(tmp_path):
    pytest.importorskip("submitit")
    with make_executor("submitit", cluster="debug", folder=tmp_path / "%j", batch_window=0.05) as ex:
        futures = [ex.submit(pow, 2, k) for k in range(5)] + [ex.submit(_boom, 7)]
        assert all(isinstance(f, Future) for f in futures)
        done = [f for f in as_completed(futures, timeout=60)]
        assert len(done) == 6
        assert [f.result() for f in futures[:5]] == [1, 2, 4, 8, 16]
        with pytest.raises(ArithmeticError, match="boom 7"):
            futures[-1].result()
        assert len(ex.jobs) == 6


def test_the_cluster_extra_is_installed_with_the_test_extra():
    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert set(extras["cluster"]) <= set(extras["test"])  # CI installs .[test] and runs every executor
