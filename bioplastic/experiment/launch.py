"""Running a whole study: every run submitted to one executor, one progress display, resume.

:func:`run_study` writes ``OUT/study.toml`` (the study file as written) and ``OUT/study.json`` (the
study's name, seeds, swept keys and every resolved run: ``{"run_id", "config"}``), submits
:func:`bioplastic.experiment.run.execute` for each run that is not done to an executor
(:func:`bioplastic.experiment.executors.make_executor`: in this process, a local process pool,
Dask, submitit), and draws one progress display (runs done, rate, time left) in this process as
the futures complete. A run that diverges or fails is reported and the study goes on.

Resuming (``resume=True``) reads the finished and diverged runs from their folders without running
them, and continues the others from their checkpoints; the study file may have gained runs since
(a longer grid), but a run id whose settings changed is refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .io import write_bytes, write_json
from .progress import Progress
from .run import DONE, execute, load_task, preload, read_status, run_folder, task_key
from .study import LoadedStudy, StudyError, canonical


@dataclass
class StudyOutcome:
    """What :func:`run_study` did.

    Attributes
    ----------
    out : Path
    results : dict
        run_id -> what ``execute`` returned (``state``, ``epoch``, ``metrics``, ``error``).
    skipped : int
        Runs already done (finished or diverged) before this call.
    seconds : float
    """

    out: Path
    results: dict = field(default_factory=dict)
    skipped: int = 0
    seconds: float = 0.0

    def count(self, state: str) -> int:
        return sum(1 for r in self.results.values() if r["state"] == state)

    @property
    def ok(self) -> bool:
        """No run failed."""
        return self.count("failed") == 0 and len(self.results) > 0


def study_record(loaded: LoadedStudy) -> dict:
    """What OUT/study.json holds."""
    study = loaded.study
    return {"name": loaded.name, "description": study.description if study else None,
            "study_file": str(loaded.path) if loaded.path else None,
            "seeds": list(study.seeds) if study else [], "swept": loaded.swept,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "runs": [{"run_id": r["run_id"], "config": r} for r in loaded.runs]}


def prepare_folder(loaded: LoadedStudy, out: Path, resume: bool, overwrite: bool = False) -> None:
    """Refuse to overwrite a study (without ``resume`` or ``overwrite``) or to resume a changed one;
    write study.toml and study.json."""
    saved = out / "study.json"
    if saved.exists() and not overwrite:
        if not resume:
            raise StudyError([f"{out} holds a study already (study.json): add --resume to continue it, "
                              "or choose another --out"])
        try:
            before = {r["run_id"]: r["config"] for r in json.loads(saved.read_text())["runs"]}
        except (ValueError, KeyError, TypeError) as err:
            raise StudyError([f"{saved} cannot be read ({err}); choose another --out"]) from None
        changed = [r["run_id"] for r in loaded.runs
                   if r["run_id"] in before and canonical(before[r["run_id"]]) != canonical(r)]
        if changed:
            raise StudyError([f"the settings of {len(changed)} run(s) changed since {out} was started "
                              f"(first: {changed[0]}); resume with the same study file, or choose another --out"])
        kept = [{"run_id": k, "config": v} for k, v in before.items()
                if k not in {r["run_id"] for r in loaded.runs}]
    else:
        kept = []
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "study.toml", loaded.text.encode())
    record = study_record(loaded)
    record["runs"] += kept  # runs of an earlier version of the study stay listed with their folders
    write_json(saved, record, fsync=True)


def _describe(result: Mapping[str, Any]) -> str:
    state, metrics = result["state"], result.get("metrics") or {}
    if state == "finished":
        acc = metrics.get("test_accuracy")
        text = f"test accuracy {100 * acc:5.1f} %" if isinstance(acc, (int, float)) else "finished"
        loss = metrics.get("test_loss")
        return text + (f", test loss {loss:.4g}" if isinstance(loss, (int, float)) else "")
    if state == "diverged":
        return f"diverged in epoch {result['epoch']}"
    return f"FAILED after epoch {result['epoch']}: {result.get('error')}"


#: Tasks small enough to load here and hand to every pool worker (a few MB at most).
SMALL_TASKS = ("digits", "teacher_student")


def small_datasets(runs) -> dict:
    """Task key -> Dataset of the small tasks of ``runs``, loaded here."""
    from .study import RunConfig

    out = {}
    for run in runs:
        task = RunConfig.model_validate(run).task
        if task.name in SMALL_TASKS and task_key(task) not in out:
            out[task_key(task)] = load_task(task)
    return out


def run_study(loaded: LoadedStudy, out: str | Path, *, resume: bool = False, executor: str = "process",
              jobs: int | None = None, scheduler: str | None = None, progress: bool = True,
              stream: TextIO | None = None, executor_options: Mapping[str, Any] | None = None,
              overwrite: bool = False, on_result: Callable[[dict, dict], None] | None = None,
              header: str | None = None) -> StudyOutcome:
    """Run every run of a checked study (module docstring).

    Parameters
    ----------
    loaded : LoadedStudy
        From :func:`bioplastic.experiment.study.load_study`.
    out : path
        The study's folder.
    resume : bool
        Continue the study already in ``out`` (without it, a folder holding a study is refused).
    executor : str
        ``inprocess``, ``process`` (default), ``dask``, ``submitit``.
    jobs : int, optional
        Runs at once (default: one per core, at most one per run).
    scheduler : str, optional
        Dask scheduler address (``tcp://HOST:PORT``).
    progress : bool
        Draw the progress display and a line per run on ``stream`` (default stderr).
    executor_options : mapping, optional
        Further options of :func:`~bioplastic.experiment.executors.make_executor`.
    overwrite : bool
        Start every run again, even in a folder that holds this or another study (``bioplastic
        demo`` rewrites its folder); the folders of runs not in this study are left alone.
    on_result : callable, optional
        ``on_result(run, result)`` here, as each run is done (those done before a resume first).
    header : str, optional
        A line to show first instead of the study's own.

    Raises
    ------
    StudyError
        ``out`` holds another study, or a changed one.
    """
    from .executors import default_jobs, make_executor

    t0 = time.perf_counter()
    out = Path(out)
    resume = resume and not overwrite
    prepare_folder(loaded, out, resume, overwrite)
    outcome = StudyOutcome(out)
    pending = []
    for run in loaded.runs:
        status = read_status(run_folder(out, run["run_id"])) if resume else None
        if status is not None and status["state"] in DONE:
            outcome.results[run["run_id"]] = execute(run, str(out), resume=True)  # reads, trains nothing
            outcome.skipped += 1
            if on_result is not None:
                on_result(run, outcome.results[run["run_id"]])
        else:
            pending.append(run)
    total = len(loaded.runs)
    # counts the runs of this call (a resumed study's finished runs would make the rate a lie)
    bar = Progress(len(pending), desc=loaded.name, stream=stream, enabled=progress)
    kind = executor
    n_jobs = jobs if jobs is not None else max(1, min(default_jobs(), len(pending) or 1))
    where = "in this process" if kind == "inprocess" else (
        f"{n_jobs} process{'es' if n_jobs > 1 else ''}" if kind == "process" else kind)
    bar.write(header or (f"study {loaded.name}: {total} run{'s' if total != 1 else ''}"
                         + (f" ({outcome.skipped} done before, {len(pending)} to run)" if resume else "")
                         + f", {where}; results in {out}/"))
    if not pending:
        bar.close()
        outcome.seconds = time.perf_counter() - t0
        return outcome

    options = dict(executor_options or {})
    if kind == "submitit":
        options.setdefault("folder", str(out / "submitit" / "%j"))
    if kind == "process" and "initializer" not in options:
        small = small_datasets(pending)
        if small:  # handed to each worker once, instead of loaded by each
            options.update(initializer=preload, initargs=(small,))
    pool = make_executor(kind, jobs=n_jobs if kind != "submitit" or jobs is not None else None,
                         scheduler=scheduler, **options)
    futures: dict[Future, dict] = {}
    handled: set[Future] = set()

    def finish(future: Future) -> None:
        run = futures[future]
        handled.add(future)
        try:
            result = future.result()
        except Exception as err:  # execute failed before it could write its status (or its worker died)
            result = {"run_id": run["run_id"], "state": "failed", "epoch": 0, "metrics": None,
                      "error": f"{type(err).__name__}: {err}"}
        outcome.results[run["run_id"]] = result
        bar.update(1, run["run_id"])
        bar.write(f"  {run['run_id']}: {_describe(result)}")
        if on_result is not None:
            on_result(run, result)

    try:
        with bar:
            for run in pending:
                future = pool.submit(execute, run, str(out), resume)
                futures[future] = run
                if future.done():  # the in-process executor runs it inside submit
                    finish(future)
            for future in as_completed(list(futures)):
                if future not in handled:
                    finish(future)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    # the study's order, not the order of completion
    order = {r["run_id"]: i for i, r in enumerate(loaded.runs)}
    outcome.results = dict(sorted(outcome.results.items(), key=lambda kv: order[kv[0]]))
    outcome.seconds = time.perf_counter() - t0
    return outcome


def summary_line(outcome: StudyOutcome) -> str:
    """``12 runs: 11 finished, 1 diverged, 0 failed in 34.2 s``."""
    n = len(outcome.results)
    parts = [f"{outcome.count(s)} {s}" for s in ("finished", "diverged", "failed")]
    before = f" ({outcome.skipped} of them before)" if outcome.skipped else ""
    return f"{n} run{'s' if n != 1 else ''}{before}: {', '.join(parts)} in {outcome.seconds:.1f} s"


# --------------------------------------------------------------------------------------------------
# bioplastic run
# --------------------------------------------------------------------------------------------------

def parse_options(items) -> dict[str, Any]:
    """``["mem_gb=4", "slurm_partition=gpu"]`` -> ``{"mem_gb": 4, "slurm_partition": "gpu"}``: each
    value read as a TOML value (int, float, boolean, quoted string, array), else kept as text."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"expected KEY=VALUE with KEY a name, got {item!r}")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def configure(parser) -> None:
    """The arguments of ``bioplastic run``."""
    from .executors import KINDS

    parser.add_argument("study", metavar="STUDY.toml", nargs="?", help="the study file")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default results/NAME, NAME the study's name or file name)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the study in --out: skip finished runs, continue interrupted ones "
                             "from their checkpoints")
    parser.add_argument("--executor", choices=KINDS, default="process",
                        help="where runs execute: in this process, a local process pool (default), "
                             "Dask, or Slurm through submitit")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="runs at once (default: one per core)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                        help="a running Dask scheduler (with --executor dask)")
    parser.add_argument("--executor-option", action="append", default=[], metavar="KEY=VALUE",
                        dest="executor_options",
                        help="an option of the executor, repeatable; VALUE read as a TOML value "
                             "(int, float, true/false) else as text. submitit: timeout_min, mem_gb, "
                             "cpus_per_task, slurm_partition, slurm_account, ... ; dask: LocalCluster "
                             "options, retries; process: context (spawn, forkserver)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("--check", action="store_true",
                        help="check the study file and list its runs; train nothing")
    parser.add_argument("--schema", action="store_true",
                        help="print the JSON Schema of study files and exit")


def command(args, stream=None) -> int:
    """Run ``bioplastic run`` from parsed arguments: 0 when every run finished or diverged, 1 when
    one failed, 2 on a mistake in the study file or the arguments (every problem listed)."""
    import sys

    from .study import json_schema, load_study

    stream = sys.stdout if stream is None else stream
    if args.schema:
        print(json.dumps(json_schema(), indent=2), file=stream)
        return 0
    if args.study is None:
        print("bioplastic run: name a study file (bioplastic run STUDY.toml; --schema for its format)",
              file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 1:
        print(f"bioplastic run: --jobs must be a positive int, got {args.jobs}", file=sys.stderr)
        return 2
    if args.scheduler is not None and args.executor != "dask":
        print("bioplastic run: --scheduler is for --executor dask", file=sys.stderr)
        return 2
    try:
        executor_options = parse_options(getattr(args, "executor_options", []))
    except ValueError as err:
        print(f"bioplastic run: --executor-option: {err}", file=sys.stderr)
        return 2
    try:
        loaded = load_study(args.study)
    except StudyError as err:
        print(err.message(), file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("results") / loaded.name
    if args.check:
        print(f"{args.study}: {len(loaded.runs)} runs"
              + (f" over {', '.join(loaded.swept)}" if loaded.swept else "")
              + f" x seeds {', '.join(map(str, loaded.study.seeds))}", file=stream)
        for run in loaded.runs:
            print(f"  {run['run_id']}", file=stream)
        return 0
    try:
        outcome = run_study(loaded, out, resume=args.resume, executor=args.executor, jobs=args.jobs,
                            scheduler=args.scheduler, progress=not args.quiet,
                            executor_options=executor_options)
    except StudyError as err:
        print(err.message(), file=sys.stderr)
        return 2
    except TypeError as err:  # an option the executor does not take
        if not executor_options:
            raise
        print(f"bioplastic run: --executor-option for --executor {args.executor}: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # an executor of the optional extra that is not installed
        print(f"bioplastic run: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an unreachable scheduler, a full disk: say so; what was written stays
        print(f"bioplastic run: {err}\n(continue with: bioplastic run {args.study} --out {out} --resume)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; continue with: bioplastic run {args.study} --out {out} --resume", file=sys.stderr)
        return 130
    print(summary_line(outcome) + f". Results: {out}/ (table: bioplastic summarize {out})", file=stream)
    failed = [k for k, r in outcome.results.items() if r["state"] == "failed"]
    for run_id in failed:
        print(f"  failed: {run_id}: {outcome.results[run_id].get('error')} (log: "
              f"{run_folder(out, run_id) / 'log.txt'})", file=sys.stderr)
    return 1 if failed else 0


__all__ = ["StudyOutcome", "command", "configure", "prepare_folder", "run_study", "study_record",
           "summary_line"]
