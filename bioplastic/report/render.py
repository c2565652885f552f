"""Render the report: one self-contained HTML page (Jinja2, autoescaped, figures as data: URIs)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .claims import CLAIMS, judge
from .collect import Run, Table, find_runs, fmt_value, latest_runs, result_tables
from .summaries import summary_tables

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: Analyses listed first, in this order (the claims' own, then the demo); the rest alphabetically.
ORDER = ("accuracy_vs_rank", "rank_vs_task_dim", "linear_theory", "alignment", "width_vs_rank", "cnn_vit",
         "compute_to_accuracy", "receptive_fields", "demo")


@dataclass
class Section:
    """One analysis in the page."""

    name: str
    anchor: str
    run: Run
    older: list[Run]
    summary: list[Table]
    tables: list[Table]
    left_out: list[str]
    info: list[tuple[str, str]]          # run facts: folder, time, seed, commit, command, ...
    config: list[tuple[str, str]]        # the config, key by key
    versions: list[tuple[str, str]]


@dataclass
class ClaimLine:
    number: int
    key: str
    statement: str
    analysis: str
    verdict: str
    sentence: str
    anchor: str | None                   # the analysis's section, when it ran
    run_path: str | None


@dataclass
class Report:
    root: str
    generated: str
    version: str
    sections: list[Section] = field(default_factory=list)
    claims: list[ClaimLine] = field(default_factory=list)


def anchor_of(name: str) -> str:
    return "analysis-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "unnamed")


def _section(name: str, run: Run, older: list[Run]) -> Section:
    meta = run.meta
    info = [("folder", run.relpath), ("ran", run.when_text), ("status", run.status)]
    if "seed" in meta:
        info.append(("seed", fmt_value(meta["seed"])))
    info.append(("git commit", str(meta.get("git_sha") or "not recorded")))
    if run.command_text:
        info.append(("command", run.command_text))
    if meta.get("platform"):
        info.append(("platform", str(meta["platform"])))
    if run.study is not None:
        states = ", ".join(f"{n} {state}" for state, n in sorted(run.study_states.items())) or "none yet"
        info.append(("study runs", f"{run.study.get('runs', 0)} ({states}); tabulate them with "
                                   f"bioplastic summarize {run.path}"))
    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    tables, left_out = result_tables(run.results) if run.results is not None else ([], [])
    return Section(
        name=name, anchor=anchor_of(name), run=run, older=older,
        summary=summary_tables(name, run.results, run.config), tables=tables, left_out=left_out,
        info=info, config=[(str(k), fmt_value(v)) for k, v in (run.config or run.study or {}).items()],
        versions=[(str(k), "not installed" if v is None else str(v)) for k, v in versions.items()])


def collect(root: str | os.PathLike) -> Report:
    """Everything the page shows, from the results folder ``root`` (raises ReportError if missing)."""
    from .. import __version__

    groups = latest_runs(find_runs(root))
    names = [n for n in ORDER if n in groups] + sorted(n for n in groups if n not in ORDER)
    report = Report(root=str(root), version=__version__,
                    generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    report.sections = [_section(n, *groups[n]) for n in names]
    for i, claim in enumerate(CLAIMS, 1):
        run = groups.get(claim.analysis, (None,))[0]
        verdict, sentence = judge(claim, None if run is None else run.results,
                                  None if run is None else run.config,
                                  "complete" if run is None else run.status)
        if run is not None and run.results is None:
            verdict, sentence = "not run", (f"{claim.analysis} has a folder ({run.relpath}) but no "
                                            "results.json: the run did not finish")
        report.claims.append(ClaimLine(i, claim.key, claim.statement, claim.analysis, verdict, sentence,
                                       None if run is None else anchor_of(claim.analysis),
                                       None if run is None else run.relpath))
    return report


def environment():
    """The Jinja2 environment: templates of this package, autoescape on, undefined names an error."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["css"] = lambda v: re.sub(r"[^a-z0-9]+", "-", str(v).lower()).strip("-")
    return env


def render(report: Report) -> str:
    """The HTML page of ``report``."""
    return environment().get_template("report.html.j2").render(report=report)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def build_report(root: str | os.PathLike = "results", out: str | os.PathLike | None = None) -> tuple[Report, str]:
    """Collect ``root``, render the page and, if ``out`` is given, write it there; returns both."""
    report = collect(root)
    html = render(report)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, html)
    return report, html
