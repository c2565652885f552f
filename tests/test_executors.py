"""The executor seam: one small study grid, run by ``execute``, gives identical numbers (every
metric, a checksum of the final weights) in-process, on the process pool, on a Dask LocalCluster of
2 workers and through submitit's debug executor, with progress drawn here as the futures complete;
submitit jobs in their own processes, requeued with resume=True on the preemption signal; a missing
extra and a bad kind are reported by name."""

from __future__ import annotations

import builtins
import hashlib
import io
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

# 2 rules x 2 seeds, a 64-16-10 MLP on the digits (torch float32, where thread counts show in the
# bits), 2 epochs: one run trains in well under a second
GRID = """
name = "executors"
seeds = [0, 1]
[circuit]
width = 16
[backend]
name = "torch"
[training]
epochs = 2
[[grid]]
"feedback.rule" = ["bp"]
[[grid]]
"feedback.rule" = ["ldfa"]
"feedback.rank" = [4]
"""


def _runs() -> list[dict]:
    from bioplastic.experiment.study import load_study

    return load_study(text=GRID, name="executors").runs


def run_grid(executor: Executor, runs: list[dict], out_dir: Path) -> tuple[dict, str]:
    """Submit every run to ``execute``, draw progress here as the futures complete; (what each run
    left on disk: states, metrics without wall-clock times, a checksum of the final weights), the
    progress text."""
    from bioplastic.experiment.run import execute, load_checkpoint, read_metrics, run_folder

    stream = io.StringIO()
    with Progress(len(runs), desc="grid", stream=stream, inplace=False) as bar:
        futures = {executor.submit(execute, run, str(out_dir)): run["run_id"] for run in runs}
        for future in as_completed(futures):
            result = future.result()
            assert result["state"] == "finished", result
            bar.update(1, f"{result['run_id']} acc {result['metrics']['test_accuracy']:.3f}")
    found = {}
    for run in runs:
        folder = run_folder(out_dir, run["run_id"])
        weights = load_checkpoint(folder / "checkpoint.pt")["state"]["weights"]
        digest = hashlib.sha256()
        for name, w in sorted(weights.items()):
            digest.update(name.encode() + np.ascontiguousarray(w).tobytes())
        metrics = [{k: v for k, v in line.items() if k != "time"} for line in read_metrics(folder)]
        found[run["run_id"]] = {"metrics": metrics, "weights": digest.hexdigest()}
    return found, stream.getvalue()


def _make(kind: str, tmp_path: Path) -> Executor:
    if kind == "submitit":
        return make_executor("submitit", cluster="debug", folder=tmp_path / "submitit" / "%j")
    return make_executor(kind, jobs=None if kind == "inprocess" else 2)


def test_the_same_grid_gives_identical_numbers_on_every_executor(tmp_path, capsys):
    pytest.importorskip("distributed")
    pytest.importorskip("submitit")
    runs = _runs()
    assert len(runs) == 4
    results, seconds = {}, {}
    for kind in KINDS:
        start = time.perf_counter()
        with _make(kind, tmp_path) as executor:
            results[kind], progress = run_grid(executor, runs, tmp_path / kind)
        seconds[kind] = time.perf_counter() - start
        assert progress.count("\n") >= 2 and f"{len(runs)}/{len(runs)}" in progress, progress
    reference = results["inprocess"]
    assert len({r["weights"] for r in reference.values()}) == len(runs)  # the runs do differ
    assert all(len(r["metrics"]) == 3 for r in reference.values())  # epochs 0, 1, 2
    for kind in KINDS[1:]:
        for run_id, expected in reference.items():
            got = results[kind][run_id]
            assert got["weights"] == expected["weights"], f"{kind} {run_id}: other weights"
            assert got["metrics"] == expected["metrics"], f"{kind} {run_id}: other metrics"
    with capsys.disabled():  # the figures the report quotes (pytest -s shows them)
        print(f"\nsame grid ({len(runs)} runs, 2 workers): "
              + ", ".join(f"{kind} {seconds[kind]:.1f} s" for kind in KINDS))


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


def _job_threads() -> tuple:
    import os

    return os.getpid(), os.environ.get("OMP_NUM_THREADS")


def test_submitit_parameters_of_the_readme_are_accepted(tmp_path):
    pytest.importorskip("submitit")
    with make_executor("submitit", cluster="debug", folder=tmp_path / "%j", slurm_partition="cpu",
                       timeout_min=60, mem_gb=4, max_num_timeout=5, jobs=3) as ex:
        assert ex.submit(pow, 3, 2).result(timeout=60) == 9


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_submitit_local_jobs_run_pickled_in_their_own_single_threaded_processes(tmp_path, monkeypatch):
    """The path a Slurm job takes, short of Slurm: the task pickled, run by submitit in another
    process, its result read back from the job folder."""
    pytest.importorskip("submitit")
    import os

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # the jobs import this module

    with make_executor("submitit", cluster="local", folder=tmp_path / "%j", poll_interval=0.2,
                       timeout_min=5) as ex:
        futures = [ex.submit(_job_threads), ex.submit(_boom, 3)]
        pid, threads = futures[0].result(timeout=120)
        assert pid != os.getpid() and threads == "1"
        with pytest.raises(Exception, match="boom 3"):
            futures[1].result(timeout=120)


def _preemptible(marker: str, resume: bool = False) -> str:
    if resume:
        return "resumed"
    import os

    Path(marker).write_text(str(os.getpid()))
    time.sleep(60)
    return "ran to the end without preemption"


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_preempted_submitit_job_is_requeued_and_resumes(tmp_path, monkeypatch):
    """submitit's preemption signal, sent to a running local job: the task is checkpointed,
    requeued with resume=True, and the future gets the resumed run's result."""
    pytest.importorskip("submitit")
    import os

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    marker = tmp_path / "started"
    with make_executor("submitit", cluster="local", folder=tmp_path / "%j", poll_interval=0.2,
                       timeout_min=5) as ex:
        future = ex.submit(_preemptible, str(marker))
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the job did not start"
        time.sleep(0.5)  # let the write of the pid finish
        # the signal Slurm sends a job before preempting it (or at its time limit), as submitit
        # configures it, to the process running the task
        from submitit.local.local import LocalJobEnvironment

        os.kill(int(marker.read_text()), LocalJobEnvironment._usr_sig())
        assert future.result(timeout=60) == "resumed"


# ------------------------------------------------------------------------------------ --executor-option

def test_executor_options_are_read_as_toml_values():
    from bioplastic.experiment.launch import parse_options

    got = parse_options(["mem_gb=4", "timeout_min=90", "slurm_partition=cpu", "retries=2", "x=0.5",
                         "flag=true", 'name="a b"', "slurm_additional_parameters={qos = \"low\"}"])
    assert got == {"mem_gb": 4, "timeout_min": 90, "slurm_partition": "cpu", "retries": 2, "x": 0.5,
                   "flag": True, "name": "a b", "slurm_additional_parameters": {"qos": "low"}}
    for bad in ("mem_gb", "=4", "two words=1"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_options([bad])


def test_run_passes_executor_options_and_names_a_bad_one(tmp_path, capsys):
    """submitit's debug cluster takes Slurm-like parameters from the command line; an executor that
    takes no such option is refused before anything trains, naming it."""
    pytest.importorskip("submitit")
    from bioplastic import cli

    study = tmp_path / "grid.toml"
    study.write_text(GRID.replace('name = "torch"', 'name = "reference"').replace("seeds = [0, 1]", "seeds = [0]"))
    code = cli.main(["run", str(study), "--out", str(tmp_path / "sub"), "--executor", "submitit", "-q",
                     "--executor-option", "cluster=debug", "--executor-option", "timeout_min=5",
                     "--executor-option", "mem_gb=1"])
    assert code == 0
    assert len(list((tmp_path / "sub" / "runs").iterdir())) == 2
    code = cli.main(["run", str(study), "--out", str(tmp_path / "in"), "--executor", "inprocess", "-q",
                     "--executor-option", "mem_gb=1"])
    err = capsys.readouterr().err
    assert code == 2 and "mem_gb" in err and "inprocess" in err
    assert not (tmp_path / "in" / "runs").exists()
    code = cli.main(["run", str(study), "--executor-option", "oops", "-q"])
    assert code == 2 and "KEY=VALUE" in capsys.readouterr().err
