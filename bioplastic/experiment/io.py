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


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the OS allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, flushed and (with
    ``fsync``) synced to disk, then :func:`os.replace`. A process killed at any moment leaves either
    the old file or the new one, never a mix; a failure removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name in the same folder (os.replace is atomic only within one file system); opened
    # normally rather than with mkstemp, whose 0600 mode would make results unreadable to others
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_folder(path.parent)
    return path


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strict JSON (no NaN: non-finite floats become null), via :func:`to_jsonable`."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any, fsync: bool = False) -> Path:
    """Write ``obj`` as JSON atomically (:func:`write_bytes`; ``fsync`` also syncs it to disk)."""
    return write_bytes(path, (json_text(obj) + "\n").encode(), fsync=fsync)


def append_jsonl(path: str | os.PathLike, obj: Any, fsync: bool = True) -> None:
    """Append ``obj`` as one line of JSON to ``path``: one ``write`` of the whole line to a file opened
    for appending, then (``fsync``) synced to disk before returning. :func:`read_jsonl` ignores a last
    line left incomplete by a crash of the machine mid-write.
    """
    line = (json_text(obj, indent=None) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(fd, line)
        while written < len(line):  # a short write (a signal, a full disk): finish the line
            written += os.write(fd, line[written:])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike) -> list:
    """The objects of a JSON-lines file, in order; an empty list if it is missing.

    A last line without its newline (a write cut short) is left out; an unreadable line elsewhere
    raises ValueError naming the file and the line.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    complete = data.split(b"\n")[:-1]  # after the final newline: nothing, or a partial line
    out = []
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err.msg})") from None
    return out


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
