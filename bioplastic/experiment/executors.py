"""One seam for running independent tasks: :func:`make_executor` returns a ``concurrent.futures.Executor``.

A study's runs are pure functions of their resolved configs, so where they run is a choice of
executor, not of code. Every executor here has the standard interface (``submit(fn, *args,
**kwargs) -> Future``, ``map``, ``shutdown``, context manager), so a caller submits every run and
draws its progress as the futures complete (:func:`concurrent.futures.as_completed`), whatever the
kind:

=============  ==================================================================================
kind           runs each task
=============  ==================================================================================
``inprocess``  here, synchronously, inside ``submit`` (for debugging: breakpoints and tracebacks
               work as in a plain call); the future is resolved when ``submit`` returns
``process``    in a local process pool (the default): one worker per core, each single-threaded,
               started with ``spawn`` (never ``fork`` once torch or a BLAS has threads)
``dask``       on Dask distributed workers (``distributed.Client(scheduler).get_executor()``): a
               running scheduler (``scheduler="tcp://HOST:PORT"``, or a dask-jobqueue cluster
               object), else a ``LocalCluster`` of ``jobs`` single-threaded worker processes that
               this executor starts and closes
``submitit``   as Slurm jobs through ``submitit.AutoExecutor`` (submissions made together go out as
               one job array); each task is checkpointable, so a preempted or timed-out job is
               requeued and calls the task again with ``resume=True``. ``cluster="debug"`` runs
               the jobs in this process (tests), ``cluster="local"`` in local subprocesses
=============  ==================================================================================

Dask and submitit are the optional extra ``bioplastic[cluster]``; without them those two kinds raise
:class:`MissingExtraError`, which says what to install. No scheduling happens here: queues, retries
and placement are the engines' own.

Every task runs single-threaded (OpenMP, MKL and OpenBLAS variables set to 1 before a worker loads
torch, BLAS limited with threadpoolctl, ``torch.set_num_threads(1)``): the workers already fill the
cores, small networks gain nothing from threads, and the same thread count everywhere keeps the
numbers of a run identical on every executor.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from .io import single_threaded

#: The executor kinds :func:`make_executor` builds, in the order the command line lists them.
KINDS = ("inprocess", "process", "dask", "submitit")

#: Environment variables that set the thread count of the BLAS and OpenMP libraries a worker loads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: What to install for the dask and submitit executors.
CLUSTER_INSTALL = 'pip install "bioplastic[cluster]"'


class MissingExtraError(ImportError):
    """An executor needs a package of the optional extra ``bioplastic[cluster]`` that is missing."""


def _require(module: str, kind: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"the {kind!r} executor needs the package {module.split('.')[0]!r}, which is not installed "
            f"({err}); install the optional extra: {CLUSTER_INSTALL}") from err


def default_jobs() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    with contextlib.suppress(AttributeError, OSError):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


def _check_jobs(jobs: int | None) -> int:
    if jobs is None:
        return default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int (or None: one per core); got {jobs!r}")
    return jobs


# --------------------------------------------------------------------------------------------------
# single-threaded workers
# --------------------------------------------------------------------------------------------------

def single_thread_worker() -> None:
    """Make this (dedicated worker) process single-threaded, for good.

    The variables are read by OpenMP, MKL and OpenBLAS when they load, so a worker that imports
    torch or a BLAS afterwards starts with one thread; what is already loaded is limited now.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _init_process_worker(initializer: Callable | None, initargs: tuple) -> None:
    single_thread_worker()
    if initializer is not None:
        initializer(*initargs)


def _torch_installed() -> bool:
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def _here_single_threaded():
    """Single-threaded inside the block, in this (shared) process; torch too, imported if need be,
    since a run that imports torch itself would otherwise get one thread per core and other bits."""
    return single_threaded(torch=_torch_installed())


def _call_in_worker(fn: Callable, *args, **kwargs) -> Any:
    """A task in a worker of an engine that owns its workers (Dask): single-threaded, then ``fn``."""
    single_thread_worker()
    return fn(*args, **kwargs)


# --------------------------------------------------------------------------------------------------
# inprocess
# --------------------------------------------------------------------------------------------------

class InProcessExecutor(Executor):
    """Runs each task here, inside :meth:`submit`, single-threaded; returns a resolved future.

    An exception of the task is held by its future (``future.result()`` raises it), as with every
    other executor. Meant for debugging: step into a run with a debugger, read a plain traceback.
    """

    def __init__(self):
        self._shutdown = False

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot submit to an executor after shutdown")
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            with _here_single_threaded():
                result = fn(*args, **kwargs)
        except BaseException as err:
            if not isinstance(err, Exception):  # Ctrl-C and exit stop the caller, as in a plain call
                raise
            future.set_exception(err)
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


# --------------------------------------------------------------------------------------------------
# process
# --------------------------------------------------------------------------------------------------

def process_pool(jobs: int | None = None, *, context: str = "spawn", initializer: Callable | None = None,
                 initargs: tuple = (), max_tasks_per_child: int | None = None) -> ProcessPoolExecutor:
    """The code base's one local process pool: ``jobs`` single-threaded workers (default: one per core).

    ``context`` is ``"spawn"`` (default) or ``"forkserver"``; never ``"fork"``: forking a process
    that holds torch's or a BLAS's threads can deadlock the child. ``spawn`` is the default because
    each pool's workers then start from this process's state at the time (``sys.path``, environment),
    while the single forkserver of a process keeps the state of the moment it first started, so a
    folder put on ``sys.path`` later (as ``bioplastic analysis`` does) would be missing in its workers.

    ``initializer(*initargs)`` runs in each worker after it is made single-threaded.
    """
    import multiprocessing

    if context not in ("spawn", "forkserver"):
        raise ValueError(f"context must be 'spawn' or 'forkserver' (never 'fork' once torch may be loaded); "
                         f"got {context!r}")
    options = {} if max_tasks_per_child is None else {"max_tasks_per_child": max_tasks_per_child}
    return ProcessPoolExecutor(_check_jobs(jobs), mp_context=multiprocessing.get_context(context),
                               initializer=_init_process_worker, initargs=(initializer, tuple(initargs)),
                               **options)


# --------------------------------------------------------------------------------------------------
# dask
# --------------------------------------------------------------------------------------------------

class DaskExecutor(Executor):
    """Tasks on Dask distributed workers, through ``client.get_executor()``.

    Parameters
    ----------
    jobs : int, optional
        Without ``scheduler``: the worker processes of the ``LocalCluster`` started here (default one
        per core), each with one thread. Ignored with a scheduler: its workers are what it has.
    scheduler : str or dask cluster, optional
        ``"tcp://HOST:PORT"`` of a running scheduler (``dask scheduler`` and ``dask worker ...
        --nthreads 1`` on the machines), or a cluster object such as dask-jobqueue's
        ``SLURMCluster``; not closed by :meth:`shutdown` (it is not ours).
    retries : int
        Times Dask reruns a task whose worker died (the run resumes from its checkpoint).
    **cluster_options
        Passed to ``LocalCluster`` (e.g. ``memory_limit``).
    """

    def __init__(self, jobs: int | None = None, scheduler: Any = None, *, retries: int = 0,
                 **cluster_options):
        distributed = _require("distributed", "dask")
        self._cluster = None
        if scheduler is None:
            options = dict(n_workers=_check_jobs(jobs), threads_per_worker=1, processes=True,
                           dashboard_address=None)
            options.update(cluster_options)
            self._cluster = distributed.LocalCluster(**options)
            scheduler = self._cluster
        elif cluster_options:
            raise TypeError(f"options {sorted(cluster_options)} configure a LocalCluster; with a "
                            "scheduler, configure its workers where they are started")
        try:
            self._client = distributed.Client(scheduler)
        except BaseException:
            if self._cluster is not None:
                self._cluster.close()
            raise
        self._executor = self._client.get_executor(pure=False, retries=retries)
        self._closed = False

    @property
    def client(self):
        """The ``distributed.Client`` (dashboard link, worker list, ``client.run``)."""
        return self._client

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        return self._executor.submit(_call_in_worker, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._executor.shutdown(wait=wait and not cancel_futures)
        finally:
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()


# --------------------------------------------------------------------------------------------------
# submitit
# --------------------------------------------------------------------------------------------------

def _accepts_resume(fn: Callable) -> bool:
    with contextlib.suppress(TypeError, ValueError):
        parameters = inspect.signature(fn).parameters
        return "resume" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return False


class SubmititTask:
    """``fn(*args, **kwargs)`` as a checkpointable submitit job.

    On preemption or timeout submitit calls :meth:`checkpoint` (its ``Checkpointable`` protocol: a
    ``checkpoint`` method returning a ``DelayedSubmission``) and requeues what it returns: the same
    task, with ``resume=True`` when ``fn`` takes a ``resume`` argument, so that the run continues from
    its last checkpoint instead of starting over.

    ``dedicated``: the job has a process of its own (Slurm, local subprocesses), made single-threaded
    for good; else (debug jobs, in the caller's process) single-threaded for the call only.
    """

    def __init__(self, fn: Callable, args: tuple = (), kwargs: dict | None = None, *,
                 dedicated: bool = True):
        self.fn, self.args, self.kwargs = fn, tuple(args), dict(kwargs or {})
        self.dedicated = dedicated

    def __call__(self) -> Any:
        if not self.dedicated:
            with _here_single_threaded():
                return self.fn(*self.args, **self.kwargs)
        single_thread_worker()
        return self.fn(*self.args, **self.kwargs)

    def checkpoint(self, *args, **kwargs):
        """The task to requeue after a preemption: this one, resuming if ``fn`` can."""
        from submitit.helpers import DelayedSubmission

        kwargs = dict(self.kwargs, resume=True) if _accepts_resume(self.fn) else self.kwargs
        return DelayedSubmission(SubmititTask(self.fn, self.args, kwargs, dedicated=self.dedicated))


class SubmititExecutor(Executor):
    """submitit jobs behind the ``concurrent.futures`` interface.

    ``submit`` returns a future at once; a background thread sends the tasks submitted within
    ``batch_window`` seconds of each other as one job array (``executor.batch()``), then polls the
    jobs and resolves each future with its job's result (or exception).

    Parameters
    ----------
    folder : path
        submitit's folder for pickles and logs (on Slurm: on a file system the nodes share; ``%j`` is
        the job id). Default ``submitit/%j`` under the current folder.
    cluster : str, optional
        ``None``: Slurm if ``sbatch`` is found, else local subprocesses; ``"slurm"``, ``"local"``,
        ``"debug"`` (every job in this process, in the watcher thread, one after the other: for
        tests and debugging).
    jobs : int, optional
        At most this many array tasks at once (``slurm_array_parallelism``).
    poll_interval : float, optional
        Seconds between polls of the jobs (default 0 for debug jobs, else 2 s; submitit itself
        asks Slurm at most about once a minute and reads result files in between).
    batch_window : float
        Seconds without a new submission after which the pending ones are sent.
    max_num_timeout : int
        Requeues of a job after it hit its time limit (preemptions requeue without limit).
    **parameters
        submitit's ``update_parameters``: ``timeout_min``, ``slurm_partition``, ``mem_gb``,
        ``cpus_per_task`` (default 1), ``slurm_additional_parameters``, ...
    """

    def __init__(self, folder: str | os.PathLike | None = None, cluster: str | None = None,
                 jobs: int | None = None, *, poll_interval: float | None = None,
                 batch_window: float = 0.2, max_num_timeout: int = 3, **parameters):
        submitit = _require("submitit", "submitit")
        folder = Path("submitit") / "%j" if folder is None else Path(folder)
        self._executor = submitit.AutoExecutor(folder=folder, cluster=cluster,
                                               slurm_max_num_timeout=max_num_timeout)
        self.cluster = self._executor.cluster
        parameters.setdefault("cpus_per_task", 1)
        if jobs is not None:
            parameters.setdefault("slurm_array_parallelism", _check_jobs(jobs))
        self._executor.update_parameters(**parameters)
        self._debug = self.cluster == "debug"
        self.poll_interval = (0.0 if self._debug else 2.0) if poll_interval is None else poll_interval
        self.batch_window = batch_window
        self._lock = threading.Condition()
        self._pending: list[tuple[Future, SubmititTask]] = []
        self._running: list[tuple[Future, Any]] = []
        self._last_submit = 0.0
        self._shutdown = False
        self._thread: threading.Thread | None = None
        self.jobs: list = []  # every submitit job sent, in order (job ids, log paths)

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        future: Future = Future()
        task = SubmititTask(fn, args, kwargs, dedicated=not self._debug)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to an executor after shutdown")
            self._pending.append((future, task))
            self._last_submit = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="submitit-watcher", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        return future

    def _send(self, batch: list[tuple[Future, SubmititTask]]) -> None:
        batch = [(f, t) for f, t in batch if f.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            if len(batch) == 1:
                jobs = [self._executor.submit(batch[0][1])]
            else:
                with self._executor.batch():
                    jobs = [self._executor.submit(task) for _, task in batch]
        except Exception as err:  # sbatch refused: every future of the batch says why
            for future, _ in batch:
                future.set_exception(err)
            return
        self.jobs.extend(jobs)
        self._running.extend((future, job) for (future, _), job in zip(batch, jobs, strict=True))

    def _resolve(self, future: Future, job) -> None:
        try:
            result = job.result()
        except Exception as err:
            future.set_exception(err)
        else:
            future.set_result(result)

    @staticmethod
    def _run_debug(future: Future, job) -> None:
        # the debug job's own runner (job.done(), job.result()) opens a post-mortem debugger on an
        # exception and leaves its log files open: run its submission directly, here
        if getattr(job, "cancelled", False):
            future.set_exception(CancelledError(f"submitit debug job {job.job_id} was cancelled"))
            return
        try:
            result = job.submission().result()
        except Exception as err:
            err.add_note(f"in submitit debug job {job.job_id}")
            future.set_exception(err)
        else:
            future.set_result(result)

    def _watch(self) -> None:
        while True:
            with self._lock:
                while True:
                    waited = time.monotonic() - self._last_submit
                    if self._pending and (self._shutdown or waited >= self.batch_window):
                        batch, self._pending = self._pending, []
                        break
                    if self._running:
                        batch = []
                        break
                    if self._shutdown and not self._pending:
                        return
                    self._lock.wait(self.batch_window - waited if self._pending else None)
            if batch:
                self._send(batch)
            still = []
            for future, job in self._running:
                if self._debug:
                    self._run_debug(future, job)
                    continue
                try:
                    done = job.done()
                except Exception as err:  # the watcher could not read the job's state: say so
                    future.set_exception(err)
                    continue
                if done:
                    self._resolve(future, job)
                else:
                    still.append((future, job))
            self._running = still
            if self._running and self.poll_interval:
                time.sleep(self.poll_interval)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for future, _ in self._pending:
                    future.cancel()
                self._pending = []
                for future, job in self._running:
                    with contextlib.suppress(Exception):
                        job.cancel(check=False)
            self._lock.notify_all()
            thread = self._thread
        if wait and thread is not None:
            thread.join()


# --------------------------------------------------------------------------------------------------
# the seam
# --------------------------------------------------------------------------------------------------

def make_executor(kind: str = "process", jobs: int | None = None, scheduler: Any = None,
                  **options) -> Executor:
    """A ``concurrent.futures.Executor`` of the given kind (see the module docstring).

    Parameters
    ----------
    kind : {"inprocess", "process", "dask", "submitit"}
    jobs : int, optional
        Tasks at once: pool workers, LocalCluster workers, Slurm array parallelism (default: one per
        core; submitit: no limit). Ignored by ``inprocess``.
    scheduler : str or cluster, optional
        Dask only: ``"tcp://HOST:PORT"`` or a dask cluster object (dask-jobqueue's ``SLURMCluster``).
    **options
        ``process``: ``context``, ``initializer``, ``initargs``, ``max_tasks_per_child``;
        ``dask``: ``retries`` and LocalCluster options; ``submitit``: ``folder``, ``cluster``,
        ``poll_interval``, ``batch_window``, ``max_num_timeout`` and submitit parameters
        (``timeout_min``, ``mem_gb``, ``slurm_*``).

    Raises
    ------
    ValueError
        An unknown kind, or a scheduler for a kind other than dask.
    MissingExtraError
        dask or submitit is not installed (``pip install "bioplastic[cluster]"``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown executor {kind!r}; valid options: {', '.join(KINDS)}")
    if scheduler is not None and kind != "dask":
        raise ValueError(f"a scheduler address is for the dask executor, not {kind!r}")
    if kind == "inprocess":
        if options:
            raise TypeError(f"the inprocess executor takes no options; got {sorted(options)}")
        return InProcessExecutor()
    if kind == "process":
        return process_pool(jobs, **options)
    if kind == "dask":
        return DaskExecutor(jobs, scheduler, **options)
    return SubmititExecutor(jobs=jobs, **options)


__all__ = ["CLUSTER_INSTALL", "KINDS", "THREAD_VARIABLES", "DaskExecutor", "InProcessExecutor",
           "MissingExtraError", "SubmititExecutor", "SubmititTask", "default_jobs", "make_executor",
           "process_pool", "single_thread_worker"]
