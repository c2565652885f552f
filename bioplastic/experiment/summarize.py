"""Tabulate and plot a study folder: ``bioplastic summarize DIR``.

Reads the study layout (``study.json``; ``runs/<run_id>/config.json``, ``metrics.jsonl`` and
``status.json``), groups the runs into conditions (every resolved setting except the seed and the
run's own bookkeeping) and gives, per condition, across seeds:

* the **final-epoch** value of a metric, mean +- sd (the honest number: nothing was selected);
* the **best-epoch** value, mean +- sd, labelled with the metric the epoch was selected on
  (``best (selected on test_accuracy)``). By default that is the metric itself: picking the best
  epoch on the test set flatters the result, so the table says so rather than doing it silently;
  select on a validation metric with ``--select`` where the runs record one;
* the number of seeds that finished, and of runs that diverged (NaN or inf), failed or have not
  finished; only finished runs enter the means.

The sd is the sample sd across seeds (ddof = 1; 0 for one seed). The table is printed and can be
written as CSV (full precision); a plot draws a metric against a swept key, one line per value of
another key, error bars one sd (matplotlib's object API: the user's backend is left alone).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Keys of a resolved run that are not settings: they never define a condition.
RUN_KEYS = ("run_id", "seed", "study", "import_path")
#: Keys of a metrics line that are not metrics.
NOT_METRICS = ("epoch", "time")


class SummaryError(ValueError):
    """A folder that is not a study, or a metric or key it does not have; the message says which."""


# --------------------------------------------------------------------------------------------------
# reading the folder
# --------------------------------------------------------------------------------------------------

@dataclass
class Run:
    """One run of a study as found on disk."""

    run_id: str
    config: dict
    metrics: list[dict] = field(default_factory=list)
    state: str = "pending"  # running, finished, diverged, failed; pending: no folder yet
    error: str | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The dotted settings of the run, its seed and bookkeeping left out."""
        return {k: v for k, v in flatten(self.config).items() if k.split(".", 1)[0] not in RUN_KEYS}


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"feedback": {"rank": 4}}`` -> ``{"feedback.rank": 4}``; lists become tuples (hashable)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = _hashable(value)
    return out


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_metrics(path: Path) -> list[dict]:
    """The lines of a ``metrics.jsonl``, in order; a last line cut short (a killed writer) is skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:
                break
            raise SummaryError(f"{path}: line {i + 1} is not JSON: {line[:80]!r}") from None
    return out


def _run_entries(study: Any) -> list[tuple[str, dict]]:
    runs = study.get("runs") if isinstance(study, dict) else study
    if not isinstance(runs, list):
        return []
    out = []
    for entry in runs:
        if not isinstance(entry, dict):
            continue
        config = entry.get("config", entry)
        run_id = entry.get("run_id", config.get("run_id") if isinstance(config, dict) else None)
        if run_id is not None and isinstance(config, dict):
            out.append((str(run_id), config))
    return out


def load_runs(folder: str | Path) -> list[Run]:
    """Every run of a study folder: those ``study.json`` lists (in its order), else every
    ``runs/*/`` with a ``config.json``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SummaryError(f"{folder}: no such folder")
    entries = _run_entries(_read_json(folder / "study.json"))
    if not entries:
        for run_dir in sorted((folder / "runs").glob("*/")):
            meta = _read_json(run_dir / "config.json")
            if isinstance(meta, dict):
                config = meta.get("config", meta)
                entries.append((run_dir.name, config if isinstance(config, dict) else {}))
    if not entries:
        raise SummaryError(f"{folder}: not a study folder (no study.json listing runs, no runs/*/config.json)")
    runs = []
    for run_id, config in entries:
        run_dir = folder / "runs" / run_id
        run = Run(run_id, config, read_metrics(run_dir / "metrics.jsonl"))
        status = _read_json(run_dir / "status.json")
        if isinstance(status, dict):
            run.state = str(status.get("state", "running"))
            run.error = status.get("error")
        elif run_dir.is_dir():
            run.state = "running"
        runs.append(run)
    return runs


# --------------------------------------------------------------------------------------------------
# conditions and statistics
# --------------------------------------------------------------------------------------------------

def varying_keys(runs: Sequence[Run]) -> list[str]:
    """The settings whose values differ between runs (the swept keys), in first-seen order."""
    settings = [r.settings for r in runs]
    keys: list[str] = []
    for s in settings:
        keys += [k for k in s if k not in keys]
    missing = object()
    return [k for k in keys if len({repr(s.get(k, missing)) for s in settings}) > 1]


def resolve_key(key: str, keys: Sequence[str], what: str = "key") -> str:
    """A dotted key given in full or by its last parts (``rank`` -> ``feedback.rank``)."""
    if key in keys:
        return key
    matches = [k for k in keys if k.endswith("." + key)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SummaryError(f"{what} {key!r} is ambiguous: {', '.join(matches)}")
    raise SummaryError(f"{what} {key!r} is not a swept key of this study; swept keys: "
                       f"{', '.join(keys) or 'none (every run has the same settings)'}")


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample sd with ddof = 1; 0 for one value); (nan, nan) for none."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def higher_is_better(metric: str) -> bool:
    """Accuracies and the like up, losses and errors down (by the metric's name)."""
    return not any(word in metric for word in ("loss", "error", "angle", "alignment"))


def _value(line: dict, metric: str) -> float | None:
    value = line.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def final_value(run: Run, metric: str) -> float | None:
    """The metric in the run's last metrics line."""
    return _value(run.metrics[-1], metric) if run.metrics else None


def best_epoch(run: Run, select: str, maximize: bool | None = None) -> dict | None:
    """The metrics line of the trained epoch (epoch >= 1 where there is one) best on ``select``."""
    maximize = higher_is_better(select) if maximize is None else maximize
    lines = [m for m in run.metrics if _value(m, select) is not None]
    trained = [m for m in lines if m.get("epoch", 0) >= 1]
    lines = trained or lines
    if not lines:
        return None
    pick = max if maximize else min
    return pick(lines, key=lambda m: _value(m, select))  # the first of equals: the earliest epoch


@dataclass
class Row:
    """One condition of the table."""

    condition: dict[str, Any]
    runs: list[Run]
    seeds: int
    diverged: int
    failed: int
    unfinished: int
    final: tuple[float, float]
    best: tuple[float, float]
    best_epoch: tuple[float, float]


def summarize(runs: Sequence[Run], metric: str = "test_accuracy", select: str | None = None,
              maximize: bool | None = None) -> tuple[list[str], list[Row]]:
    """(swept keys, one row per condition in first-seen order) of a study's runs.

    ``select``: the metric the best epoch is chosen on (default ``metric``); ``maximize``: its
    direction (default from its name: losses and errors are minimised).
    """
    select = metric if select is None else select
    known = {k for r in runs for m in r.metrics for k in m} - set(NOT_METRICS)
    for name in dict.fromkeys((metric, select)):
        if known and name not in known:
            raise SummaryError(f"no metric {name!r} in this study; its metrics: {', '.join(sorted(known))}")
    keys = varying_keys(runs)
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        settings = run.settings
        groups.setdefault(tuple(repr(settings.get(k)) for k in keys), []).append(run)
    rows = []
    for members in groups.values():
        settings = members[0].settings
        done = [r for r in members if r.state == "finished"]
        finals = [v for v in (final_value(r, metric) for r in done) if v is not None]
        picked = [best_epoch(r, select, maximize) for r in done]
        bests = [v for v in (_value(p, metric) for p in picked if p is not None) if v is not None]
        epochs = [float(p.get("epoch", math.nan)) for p in picked if p is not None]
        rows.append(Row(
            condition={k: settings.get(k) for k in keys}, runs=members, seeds=len(done),
            diverged=sum(r.state == "diverged" for r in members),
            failed=sum(r.state == "failed" for r in members),
            unfinished=sum(r.state not in ("finished", "diverged", "failed") for r in members),
            final=mean_sd(finals), best=mean_sd(bests), best_epoch=mean_sd(epochs)))
    return keys, rows


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------

def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value)
    return str(value)


def _pm(pair: tuple[float, float], digits: int = 4) -> str:
    mean, sd = pair
    return "-" if math.isnan(mean) else f"{mean:.{digits}f} +- {sd:.{digits}f}"


def best_label(metric: str, select: str) -> str:
    """The best-epoch column's heading: it always names what the epoch was selected on."""
    if select == metric:
        return f"best {metric} (selected on {select})"
    return f"{metric} at best epoch (selected on {select})"


def format_table(keys: Sequence[str], rows: Sequence[Row], metric: str, select: str) -> str:
    """The table as aligned text, one condition a line."""
    header = [*keys, "seeds", "diverged", f"final {metric}", best_label(metric, select), "best epoch"]
    extra = any(r.failed or r.unfinished for r in rows)
    if extra:
        header[len(keys) + 2:len(keys) + 2] = ["failed", "unfinished"]
    lines = []
    for r in rows:
        cells = [*(_show(r.condition[k]) for k in keys), str(r.seeds), str(r.diverged)]
        if extra:
            cells += [str(r.failed), str(r.unfinished)]
        epoch = "-" if math.isnan(r.best_epoch[0]) else f"{r.best_epoch[0]:.1f}"
        lines.append(cells + [_pm(r.final), _pm(r.best), epoch])
    widths = [max(len(c) for c in column) for column in zip(header, *lines, strict=True)]
    text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *lines]]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def notes(rows: Sequence[Row], metric: str, select: str) -> list[str]:
    """What a reader of the table must know: the sd, and test-set selection where it happened."""
    out = ["mean +- sd across seeds (sample sd, ddof 1); only finished runs enter the means."]
    if select.startswith("test"):
        out.append(f"best-epoch values are selected on {select}, a test-set metric: they overstate what "
                   f"a model chosen without the test set would reach; the final-epoch column selects "
                   f"nothing (record a validation metric and pass --select to select on it).")
    diverged = sum(r.diverged for r in rows)
    if diverged:
        out.append(f"{diverged} run{'s' if diverged > 1 else ''} diverged (NaN or inf) and "
                   f"{'are' if diverged > 1 else 'is'} left out of the means.")
    return out


def write_csv(path: str | Path, keys: Sequence[str], rows: Sequence[Row], metric: str, select: str) -> Path:
    """The table as CSV, full precision; empty cells for no value."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def num(x: float) -> str:
        return "" if math.isnan(x) else repr(float(x))

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*keys, "runs", "seeds", "diverged", "failed", "unfinished", "metric",
                         "final_mean", "final_sd", "best_mean", "best_sd", "best_selected_on",
                         "best_epoch_mean"])
        for r in rows:
            writer.writerow([*("" if r.condition[k] is None else _show(r.condition[k]) for k in keys),
                             len(r.runs), r.seeds, r.diverged, r.failed, r.unfinished, metric,
                             num(r.final[0]), num(r.final[1]), num(r.best[0]), num(r.best[1]), select,
                             num(r.best_epoch[0])])
    return path


def plot(path: str | Path, keys: Sequence[str], rows: Sequence[Row], metric: str, by: str,
         lines: str | None = None, value: str = "final", select: str | None = None) -> Path:
    """``metric`` (final or best-epoch mean, error bars one sd) against swept key ``by``, one line
    per value of ``lines`` (and of any other swept key). Conditions without a value of ``by`` (bp
    has no rank) are drawn as a horizontal line with a band of one sd. PNG, SVG, PDF by suffix."""
    from matplotlib.figure import Figure

    others = [k for k in keys if k != by]
    if lines is not None:
        others = [lines] + [k for k in others if k != lines]
    series: dict[tuple, list[tuple[Any, tuple[float, float]]]] = {}
    for r in rows:
        stat = r.final if value == "final" else r.best
        if not math.isnan(stat[0]):
            series.setdefault(tuple(r.condition[k] for k in others), []).append((r.condition[by], stat))
    if not series:
        raise SummaryError(f"nothing to plot: no finished run has {metric}")
    xs = [x for pts in series.values() for x, _ in pts if x is not None]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    order = sorted(set(xs)) if numeric else list(dict.fromkeys(map(_show, xs)))

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, (label_values, pts) in enumerate(series.items()):
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={_show(v)}"
                          for k, v in zip(others, label_values, strict=True) if v is not None)
        color = f"C{i % 10}"
        flat = [stat for x, stat in pts if x is None]
        pts = sorted(((x, s) for x, s in pts if x is not None),
                     key=lambda p: p[0] if numeric else order.index(_show(p[0])))
        if pts:
            px = [x if numeric else order.index(_show(x)) for x, _ in pts]
            ax.errorbar(px, [s[0] for _, s in pts], yerr=[s[1] for _, s in pts], marker="o", capsize=3,
                        color=color, label=label or None)
        for mean, sd in flat:
            ax.axhline(mean, color=color, linestyle="--", label=None if pts else (label or None))
            if sd:
                ax.axhspan(mean - sd, mean + sd, color=color, alpha=0.15, linewidth=0)
    if numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 16:
        ax.set_xscale("log", base=2)
    if not numeric:
        ax.set_xticks(range(len(order)), order)
    ax.set_xlabel(by)
    ax.set_ylabel(f"final {metric}" if value == "final" else best_label(metric, select or metric))
    ax.set_title(f"mean +- sd over seeds; {'final epoch' if value == 'final' else 'best epoch'}", fontsize=9)
    if any(ax.get_legend_handles_labels()[1]):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path


# --------------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------------

def configure(parser) -> None:
    """The arguments of ``bioplastic summarize``."""
    parser.add_argument("folder", metavar="DIR", help="a study's output folder (bioplastic run --out)")
    parser.add_argument("--metric", default="test_accuracy",
                        help="the metrics.jsonl column to tabulate (default test_accuracy)")
    parser.add_argument("--select", default=None, metavar="METRIC",
                        help="choose each run's best epoch on this metric (default: --metric; the "
                             "table always names it)")
    parser.add_argument("--by", default=None, metavar="KEY",
                        help="the swept key on the plot's x axis (dotted, or its last part: rank)")
    parser.add_argument("--lines", default=None, metavar="KEY", help="one plot line per value of this key")
    parser.add_argument("--value", choices=("final", "best"), default="final",
                        help="what the plot draws (default final)")
    parser.add_argument("--plot", default=None, metavar="PATH", help="write the plot (.png, .svg, .pdf)")
    parser.add_argument("--csv", default=None, metavar="PATH", help="write the table as CSV")


def _count_states(runs: Iterable[Run]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        out[r.state] = out.get(r.state, 0) + 1
    return out


def command(args, stream=None) -> int:
    """Run ``bioplastic summarize`` from parsed arguments; exit status 2 on a user's mistake."""
    stream = sys.stdout if stream is None else stream
    try:
        runs = load_runs(args.folder)
        keys, rows = summarize(runs, args.metric, args.select)
        select = args.select or args.metric
        by = resolve_key(args.by, keys, "--by") if args.by else None
        lines = resolve_key(args.lines, keys, "--lines") if args.lines else None
        if args.plot and by is None:
            numeric = [k for k in keys if all(isinstance(r.condition[k], (int, float, type(None))) for r in rows)]
            if not numeric:
                raise SummaryError("--plot needs --by KEY, a swept key for the x axis; swept keys: "
                                   + (", ".join(keys) or "none"))
            by = numeric[0]
        if by is not None and lines == by:
            raise SummaryError(f"--by and --lines are the same key {by!r}")
    except SummaryError as err:
        print(f"bioplastic summarize: {err}", file=sys.stderr)
        return 2
    states = _count_states(runs)
    print(f"{args.folder}: {len(runs)} runs ({', '.join(f'{n} {s}' for s, n in states.items())}), "
          f"{len(rows)} condition{'s' if len(rows) != 1 else ''}"
          + (f" over {', '.join(keys)}" if keys else ""), file=stream)
    print(format_table(keys, rows, args.metric, select), file=stream)
    for line in notes(rows, args.metric, select):
        print(f"note: {line}", file=stream)
    if args.csv:
        print(f"table: {write_csv(args.csv, keys, rows, args.metric, select)}", file=stream)
    if args.plot:
        try:
            path = plot(args.plot, keys, rows, args.metric, by, lines, args.value, select)
        except SummaryError as err:
            print(f"bioplastic summarize: {err}", file=sys.stderr)
            return 2
        print(f"plot: {path}", file=stream)
    return 0


__all__ = ["NOT_METRICS", "RUN_KEYS", "Row", "Run", "SummaryError", "best_epoch", "best_label",
           "command", "configure", "final_value", "flatten", "format_table", "load_runs", "mean_sd",
           "notes", "plot", "read_metrics", "resolve_key", "summarize", "varying_keys", "write_csv"]
