"""Results on disk: seeds, package versions, git commit, atomic JSON files, results folders.

A run is described by a frozen config dataclass and saved with :func:`save_run`: ``config.json``
(the full config, seeds, library versions, git commit, time) and ``results.json``. Both are written
atomically (temporary file, then :func:`os.replace`), so a run that stops halfway keeps the last
complete file it wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import random
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Distributions whose versions every config.json records.
VERSIONED = ("bioplastic", "numpy", "torch", "brian2", "scipy", "scikit-learn", "networkx",
             "matplotlib")


def seed_everything(seed: int, torch: bool | None = None) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and CUDA).

    Library code draws from explicit generators (``np.random.default_rng(seed)``); this covers
    third-party code that reads the global ones.

    Parameters
    ----------
    seed : int
    torch : bool, optional
        Seed torch too. Default: only if torch is already imported, because importing it costs
        seconds and a run that never imports torch draws nothing from its generator.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch is None:
        torch = "torch" in sys.modules
    if torch:
        import torch as _torch

        _torch.manual_seed(seed)


def versions() -> dict[str, str | None]:
    """Python and :data:`VERSIONED` package versions (None when not installed); imports nothing."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha(path: str | os.PathLike | None = None) -> str | None:
    """Commit of the git checkout holding ``path`` (default: this package), ``+dirty`` if modified.

    None when git or the checkout is missing (an installed wheel has none).
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, numpy scalars and arrays, paths and tuples as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None  # JSON has no NaN or infinity; null is what standard parsers accept
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON atomically: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    # a unique name in the same folder (os.replace is atomic only within one file system); opened
    # normally rather than with mkstemp, whose 0600 mode would make results unreadable to others
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def results_dir(name: str, root: str | os.PathLike = "results") -> Path:
    """The folder ``root/name`` for one experiment's outputs, created if missing."""
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"experiment name must be a relative folder name inside {root!r}; got {name!r}")
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_run(directory: str | os.PathLike, config: Any, results: Any | None = None,
             seed: int | Sequence[int] | None = None) -> Path:
    """Write ``config.json`` (config, seed, versions, git commit, time, command) and ``results.json``.

    Parameters
    ----------
    directory : path
        Created if missing.
    config : dataclass or mapping
        Everything needed to rerun.
    results : JSON-able, optional
        Numbers of the run; ``results.json`` is left alone when None.
    seed : int or sequence of int, optional
        The seed(s) the run used.

    Returns
    -------
    Path
        ``directory``.
    """
    directory = Path(directory)
    meta = {"config": config, "seed": seed, "versions": versions(), "git_sha": git_sha(),
            "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": sys.argv, "platform": platform.platform()}
    write_json(directory / "config.json", meta)
    if results is not None:
        write_json(directory / "results.json", results)
    return directory


@contextlib.contextmanager
def single_threaded(torch: bool = False):
    """Limit numpy's BLAS (and torch's CPU pool, if ``torch``) to one thread inside the block.

    The matrices of small MLPs are a few hundred wide: threads cost more than they save. On 2 busy
    cores the digits demo measured 7x slower with a 2-thread BLAS, and torch 3x slower with its
    default pool. Without threadpoolctl the BLAS limit is skipped.
    """
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        if torch:
            import torch as _torch

            before = _torch.get_num_threads()
            _torch.set_num_threads(1)
            stack.callback(_torch.set_num_threads, before)
        yield
