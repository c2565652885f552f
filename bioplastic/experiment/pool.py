"""Independent runs (conditions x seeds) in worker processes, or in this process: :func:`run_tasks`.

With one job the tasks run here, one after the other, with numpy's BLAS (and torch's CPU pool, if
asked) limited to one thread. With more, the code base's one process pool
(:func:`bioplastic.experiment.executors.process_pool`: ``spawn`` context, single-threaded workers)
runs them. Either way the results come back in task order, so they do not depend on the number of
jobs. For other executors (Dask, submitit), see :mod:`bioplastic.experiment.executors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .executors import THREAD_VARIABLES, process_pool
from .io import single_threaded

_SHARED: tuple = ()


def _init_worker(shared: tuple) -> None:
    """Runs in every worker (after it is made single-threaded): the arguments shared by every task."""
    global _SHARED
    _SHARED = shared


def _call(fn: Callable, index: int, task: tuple) -> tuple[int, Any]:
    return index, fn(*_SHARED, *task)


def run_tasks(fn: Callable, tasks: Sequence[tuple], jobs: int = 1, *, shared: tuple = (),
              on_done: Callable[[int, Any], None] | None = None,
              on_progress: Callable[..., None] | None = None, torch: bool = False) -> list:
    """``fn(*shared, *task)`` for every task; the results in task order.

    Parameters
    ----------
    fn : callable
        With more than one job, a module-level function of an importable module (a worker imports
        it by name), and its arguments and result must pickle.
    tasks : sequence of tuple
        The arguments that differ between runs.
    jobs : int
        1: in this process; more: that many worker processes (at most one per task).
    shared : tuple
        Leading arguments common to every task (a config, a data set), sent to each worker once.
    on_done : callable, optional
        ``on_done(index, result)`` in this process as each task finishes (in completion order).
    on_progress : callable, optional
        In this process only (one job): ``fn`` is called with ``progress=callback`` and each
        ``callback(*args)`` arrives as ``on_progress(index, *args)``. Workers cannot call back.
    torch : bool
        In this process: also limit torch's CPU pool to one thread.

    Returns
    -------
    list
        ``fn``'s results, in the order of ``tasks``.

    Notes
    -----
    On an error (or Ctrl-C) the tasks not yet started are cancelled and the error is raised; the
    results already handed to ``on_done`` stay with the caller.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int; got {jobs!r}")
    results: list = [None] * len(tasks)

    def done(index: int, result: Any) -> None:
        results[index] = result
        if on_done is not None:
            on_done(index, result)

    if jobs == 1 or len(tasks) <= 1:
        with single_threaded(torch=torch):
            for index, task in enumerate(tasks):
                extra = {}
                if on_progress is not None:
                    extra["progress"] = lambda *args, index=index: on_progress(index, *args)
                done(index, fn(*shared, *task, **extra))
        return results

    from concurrent.futures import as_completed

    with process_pool(min(jobs, len(tasks)), initializer=_init_worker, initargs=(tuple(shared),)) as pool:
        futures = [pool.submit(_call, fn, index, tuple(task)) for index, task in enumerate(tasks)]
        try:
            for future in as_completed(futures):
                done(*future.result())
        except BaseException:
            # without this, leaving the pool would first run every queued task
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results


__all__ = ["THREAD_VARIABLES", "run_tasks"]
