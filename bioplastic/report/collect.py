"""Find the results folders under a results root and read them: config, numbers, figures, tables.

Every analysis saves its outputs with :func:`bioplastic.experiment.save_run` into one folder
(default ``results/NAME``): ``config.json`` (``config``, ``seed``, ``versions``, ``git_sha``,
``timestamp``, ``command``, ``platform``), ``results.json`` (its numbers) and PNG figures. A folder
under the root holding a ``config.json`` or a ``results.json`` is a *run*. Its analysis is the NAME
of ``bioplastic analysis NAME`` in its recorded command when there is one, else the first folder
below the root (``results/NAME/...``). Of several runs of one analysis the latest (by the recorded
time, else the files' modification time) is reported and the others are listed.

A study folder (``bioplastic run``: ``study.json``, ``runs/<run_id>/``) is one entry of its own,
``study PATH``, with its runs counted by state; its run folders are not searched (``bioplastic
summarize`` tabulates them).

Nothing here imports numpy or matplotlib: a report of a cluster's results needs only the files.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
import shlex
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Folders never searched (version control, caches, checkpoints of studies).
SKIP_DIRS = {".git", "__pycache__", ".ipynb_checkpoints", "checkpoints", "brian_cache"}
#: How deep below the root runs are looked for.
MAX_DEPTH = 5
#: A list of scalars up to this long is shown in a table cell; longer ones are series (figures).
SHORT_LIST = 4
#: Rows of one table shown before the rest is cut (with a note).
MAX_ROWS = 200
#: Columns of one table; wider structures are split into smaller tables.
MAX_COLUMNS = 16
#: Generic tables of one results.json.
MAX_TABLES = 60

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ReportError(Exception):
    """A user's mistake (missing folder, unreadable output path): reported without a traceback."""


# --------------------------------------------------------------------------------------------------
# Runs on disk
# --------------------------------------------------------------------------------------------------

@dataclass
class Figure:
    """One PNG figure of a run, read into memory for inlining."""

    name: str            # path relative to the run folder
    source: str          # path relative to the results root
    data: bytes
    width: int | None = None
    height: int | None = None

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.data).decode("ascii")


@dataclass
class Run:
    """One results folder."""

    analysis: str
    path: Path                    # the folder
    relpath: str                  # relative to the results root, '/'-separated
    meta: dict = field(default_factory=dict)     # config.json as saved (config, seed, versions, ...)
    results: Any = None           # results.json, None when missing or unreadable
    problems: list[str] = field(default_factory=list)
    when: _dt.datetime | None = None
    when_source: str = ""         # "recorded" (config.json's timestamp) or "file time"
    figures: list[Figure] = field(default_factory=list)
    skipped_images: list[str] = field(default_factory=list)
    study: dict | None = None     # study.json (less its list of runs) when the folder is a study
    study_states: dict[str, int] = field(default_factory=dict)  # run state -> count

    @property
    def config(self) -> dict:
        cfg = self.meta.get("config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def status(self) -> str:
        """``complete``, ``no results``, or the ``status`` a run recorded (``running``, ``failed``)."""
        if self.results is None:
            return "study" if self.study is not None else "no results"
        if isinstance(self.results, dict) and isinstance(self.results.get("status"), str):
            return self.results["status"]
        return "complete"

    @property
    def when_text(self) -> str:
        if self.when is None:
            return "unknown"
        text = self.when.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return text if self.when_source == "recorded" else f"{text} (file time; no timestamp recorded)"

    @property
    def command_text(self) -> str:
        cmd = self.meta.get("command")
        if isinstance(cmd, list) and all(isinstance(c, str) for c in cmd):
            return shlex.join(cmd)
        return "" if cmd is None else str(cmd)


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        problems.append(f"{path.name} could not be read ({type(err).__name__}: {err})")
        return None


def _parse_time(text: Any) -> _dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.UTC)


def analysis_of(relpath: str, meta: dict) -> str:
    """The analysis a run belongs to: ``bioplastic analysis NAME`` in its command, else the first
    folder below the root."""
    cmd = meta.get("command") if isinstance(meta, dict) else None
    if isinstance(cmd, list):
        args = [str(c) for c in cmd]
        for i, arg in enumerate(args[:-1]):
            if arg == "analysis" and Path(args[0]).name in ("bioplastic", "__main__.py") \
                    and not args[i + 1].startswith("-"):
                return args[i + 1]
    return relpath.split("/", 1)[0]


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk; None if ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width > 0 and height > 0 else None


def _figures(folder: Path, root: Path, nested_runs: set[Path]) -> tuple[list[Figure], list[str]]:
    """PNG figures in ``folder`` and in its subfolders that are not runs of their own."""
    figures, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        study = "study.json" in filenames  # a study's runs/ hold its runs' own files
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                             and here / d not in nested_runs and not (study and d == "runs"))
        for name in sorted(filenames):
            if not name.lower().endswith(".png") or name.startswith("."):
                continue
            path = here / name
            try:
                data = path.read_bytes()
            except OSError as err:
                skipped.append(f"{path.relative_to(folder).as_posix()} (unreadable: {err.strerror})")
                continue
            size = png_size(data)
            if size is None:
                skipped.append(f"{path.relative_to(folder).as_posix()} (not a PNG file)")
                continue
            figures.append(Figure(path.relative_to(folder).as_posix(), path.relative_to(root).as_posix(),
                                  data, *size))
    figures.sort(key=lambda f: (f.name.count("/"), f.name))
    return figures, skipped


def _study(folder: Path, problems: list[str]) -> tuple[dict, dict[str, int]] | None:
    """(study.json less its runs, run state -> count from runs/*/status.json), or None."""
    if not (folder / "study.json").exists():
        return None
    record = _read_json(folder / "study.json", problems)
    record = record if isinstance(record, dict) else {}
    states: dict[str, int] = {}
    listed = record.get("runs") if isinstance(record.get("runs"), list) else []
    ids = [r.get("run_id") for r in listed if isinstance(r, dict)]
    folders = sorted(p.name for p in (folder / "runs").glob("*") if p.is_dir()) if (folder / "runs").is_dir() else []
    for run_id in dict.fromkeys([i for i in ids if isinstance(i, str)] + folders):
        status = _read_json(folder / "runs" / run_id / "status.json", [])
        state = status.get("state") if isinstance(status, dict) else None
        state = state if isinstance(state, str) else "not started"
        states[state] = states.get(state, 0) + 1
    info = {k: v for k, v in record.items() if k != "runs"}
    info["runs"] = sum(states.values())
    return info, states


def find_runs(root: str | os.PathLike) -> list[Run]:
    """Every run under ``root`` (see the module docstring), figures read in, unsorted by analysis.

    Raises
    ------
    ReportError
        ``root`` is missing or not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise ReportError(f"results folder {str(root)!r} does not exist; run an analysis first "
                          "(bioplastic analysis NAME, bioplastic demo) or name the folder with --results DIR")
    if not root.is_dir():
        raise ReportError(f"--results {str(root)!r} is a file, not a folder of results")
    folders = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        if "study.json" in filenames:
            # a study (bioplastic run): its runs/<run_id>/ folders are its parts, not analyses
            dirnames[:] = [d for d in dirnames if d != "runs"]
        if here != root and {"config.json", "results.json"} <= set(filenames):
            # an analysis's output: the studies it trained through (OUT/study, OUT/MODEL-TASK) are its
            # parts, shown in its section, not analyses of their own
            dirnames[:] = [d for d in dirnames if not (here / d / "study.json").exists()]
        if depth >= MAX_DEPTH:
            dirnames[:] = []
        if here != root and {"config.json", "results.json", "study.json"} & set(filenames):
            folders.append(here)
    nested = set(folders)
    runs = []
    for folder in folders:
        problems: list[str] = []
        relpath = folder.relative_to(root).as_posix()
        study = _study(folder, problems)
        meta = _read_json(folder / "config.json", problems)
        if meta is not None and not isinstance(meta, dict):
            problems.append("config.json is not a JSON object")
            meta = None
        if meta is None and not (folder / "config.json").exists() and study is None:
            problems.append("no config.json (seed, versions and commit unknown)")
        results = _read_json(folder / "results.json", problems)
        if results is None and not (folder / "results.json").exists() and study is None:
            problems.append("no results.json (the run may not have finished)")
        only_study = study is not None and not meta and results is None
        name = f"study {relpath}" if only_study else analysis_of(relpath, meta or {})
        run = Run(name, folder, relpath, meta or {}, results, problems)
        if study is not None:
            run.study, run.study_states = study
        run.when = _parse_time(run.meta.get("timestamp") or (run.study or {}).get("created"))
        run.when_source = "recorded"
        if run.when is None:
            stamps = [p.stat().st_mtime for p in (folder / "config.json", folder / "results.json",
                                                  folder / "study.json") if p.exists()]
            if stamps:
                run.when = _dt.datetime.fromtimestamp(max(stamps), _dt.UTC)
                run.when_source = "file time"
        run.figures, run.skipped_images = _figures(folder, root, nested - {folder})
        runs.append(run)
    return runs


def latest_runs(runs: list[Run]) -> dict[str, tuple[Run, list[Run]]]:
    """Analysis name -> (latest run, the older runs, newest first)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.analysis, []).append(run)
    out = {}
    oldest = _dt.datetime.min.replace(tzinfo=_dt.UTC)
    for name, group in groups.items():
        # a run with numbers beats one without; then the latest; then the path, for a stable order
        group.sort(key=lambda r: (r.results is not None, r.when or oldest, r.relpath), reverse=True)
        out[name] = (group[0], group[1:])
    return out


# --------------------------------------------------------------------------------------------------
# Tables from results.json
# --------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """A table of preformatted cells (the template escapes them)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""

    @property
    def long(self) -> bool:
        return len(self.rows) > 25


def is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def is_stat(v: Any) -> bool:
    """A summary like ``{"mean": m, "sd": s, "n": 3, "diverged": 0}``: shown as ``m ± s``."""
    return (isinstance(v, dict) and "mean" in v and all(is_scalar(x) for x in v.values())
            and (v["mean"] is None or isinstance(v["mean"], (int, float))))


def is_curve(v: Any) -> bool:
    """Series: a long list, or a mapping of lists of one length (``{"mean": [...], "sd": [...]}``),
    or a mapping whose values are all such curves."""
    if isinstance(v, list):
        return (len(v) > SHORT_LIST and all(is_scalar(x) for x in v)) or \
            (bool(v) and all(isinstance(x, list) for x in v))
    if not isinstance(v, dict) or not v:
        return False
    if all(isinstance(x, list) and len(x) >= 2 and (all(is_scalar(y) for y in x) or
                                                     all(isinstance(y, list) for y in x))
           for x in v.values()):
        return len({len(x) for x in v.values()}) == 1
    return all(isinstance(x, dict) and x and is_curve(x) for x in v.values())


def is_cell(v: Any) -> bool:
    return (is_scalar(v) or is_stat(v) or
            (isinstance(v, list) and len(v) <= SHORT_LIST and all(is_scalar(x) for x in v)))


def fmt_number(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    return str(v)


def fmt_cell(v: Any) -> str:
    """One cell: numbers to 4 significant digits, a stat as ``mean ± sd``, a short list inline."""
    if is_stat(v):
        if v["mean"] is None:
            text = "diverged" if v.get("diverged") else "–"
        else:
            sd = v.get("sd")
            # the spread to 2 significant digits: more would be noise
            text = fmt_number(v["mean"]) + (f" ± {sd:.2g}" if isinstance(sd, (int, float))
                                            and not isinstance(sd, bool) and math.isfinite(sd) else "")
        if isinstance(v.get("diverged"), int) and v["diverged"] and v["mean"] is not None:
            text += f" ({v['diverged']} diverged)"
        return text
    if isinstance(v, list):
        return "[" + ", ".join(fmt_number(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, separators=(", ", ": "), default=str)
    return fmt_number(v)


def fmt_value(v: Any) -> str:
    """A config value: scalars as cells, anything else as compact JSON."""
    if is_cell(v) and not isinstance(v, dict):
        return fmt_cell(v)
    return json.dumps(v, separators=(", ", ": "), default=str)


def _flatten(obj: dict, prefix: str = "", depth: int = 3) -> tuple[dict, list]:
    """(cells, rest): leaves of ``obj`` that fit a cell keyed by dotted path, up to ``depth`` levels
    of nesting; ``rest`` is (path, value) of what does not."""
    cells, rest = {}, []
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if is_cell(v):
            cells[key] = v
            continue
        if isinstance(v, dict) and depth > 1 and v and not is_curve(v):
            sub_cells, sub_rest = _flatten(v, key + ".", depth - 1)
            # flattened only if all of it fits (series aside): a deeper structure is walked whole
            if sub_cells and all(is_curve(x) for _, x in sub_rest):
                cells.update(sub_cells)
                rest.extend(sub_rest)
                continue
        rest.append((key, v))
    return cells, rest


def result_tables(results: Any, title: str = "results.json") -> tuple[list[Table], list[str]]:
    """Tables of every number in ``results`` that is tabular, and the paths of what was left out
    (series, drawn in the figures, and nesting too deep to tabulate).

    * the scalars of a mapping: one key/value table;
    * a list of records (mappings): one row per record, columns their scalar (and ``mean ± sd``)
      fields, nested mappings flattened to dotted columns;
    * a mapping of mappings: one row per key, when their flattened fields fit in a table.
    """
    tables: list[Table] = []
    left_out: list[str] = []
    dropped = [0]

    def add(table: Table) -> None:
        if len(tables) < MAX_TABLES:
            if len(table.rows) > MAX_ROWS:
                table.note = (table.note + " " if table.note else "") + \
                    f"first {MAX_ROWS} of {len(table.rows)} rows shown"
                table.rows = table.rows[:MAX_ROWS]
            tables.append(table)
        else:
            dropped[0] += 1

    def rows_table(path: str, items: list[tuple[str, dict]], first: str) -> list:
        flat = [(label, *_flatten(v)) for label, v in items]
        columns: list[str] = []
        for _, cells, _ in flat:
            columns += [c for c in cells if c not in columns]
        if not columns:
            return [(f"{path}.{label}" if path else label, v) for label, v in items]
        rest = []
        for i in range(0, len(columns), MAX_COLUMNS):
            cols = columns[i:i + MAX_COLUMNS]
            part = f" (columns {i + 1}-{i + len(cols)} of {len(columns)})" if len(columns) > MAX_COLUMNS else ""
            add(Table(f"{path or title}{part}", [first] + cols,
                      [[label] + [fmt_cell(cells[c]) if c in cells else "" for c in cols]
                       for label, cells, _ in flat]))
        series = sorted({k for _, _, r in flat for k, v in r if is_curve(v)}, key=str)
        if series:
            left_out.append(f"{path}[*].{{{', '.join(series)}}}" if path else ", ".join(series))
        for label, _, r in flat:
            rest += [(f"{path}.{label}.{k}" if path else f"{label}.{k}", v)
                     for k, v in r if not is_curve(v)]
        return rest

    def walk(obj: Any, path: str, depth: int) -> None:
        if depth > 8 or is_curve(obj):
            left_out.append(path or title)
            return
        if isinstance(obj, dict):
            if path and any(obj.values()) and all(isinstance(x, dict) and not is_stat(x) and not is_curve(x)
                                                  for x in obj.values()):
                # a mapping of mappings: one row per (non-empty) key
                for p, rest in rows_table(path, [(str(a), b) for a, b in obj.items() if b],
                                          path.rsplit(".", 1)[-1]):
                    walk(rest, p, depth + 1)
                return
            cells = {k: v for k, v in obj.items() if is_cell(v)}
            if cells:
                add(Table(path or title, ["key", "value"], [[str(k), fmt_cell(v)] for k, v in cells.items()]))
            for k, v in obj.items():
                if k not in cells:
                    walk(v, f"{path}.{k}" if path else str(k), depth + 1)
        elif isinstance(obj, list):
            if obj and all(isinstance(x, dict) for x in obj):
                label = next((c for c in ("label", "name", "condition", "rule") if
                              all(is_scalar(x.get(c)) and x.get(c) is not None for x in obj)), None)
                items = [(str(x[label]) if label else str(i), {k: v for k, v in x.items() if k != label})
                         for i, x in enumerate(obj)]
                for p, rest in rows_table(path, items, label or "#"):
                    walk(rest, p, depth + 1)
            elif obj:
                left_out.append(path)  # a series (drawn in the figures) or a nested array
        elif is_cell(obj):
            add(Table(path or title, ["value"], [[fmt_cell(obj)]]))

    walk(results, "", 0)
    if dropped[0]:
        left_out.append(f"{dropped[0]} more table{'s' if dropped[0] > 1 else ''} past the first {MAX_TABLES}")
    return tables, left_out
