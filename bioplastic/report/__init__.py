"""``bioplastic report``: one self-contained HTML page of the latest results of each analysis.

The page gathers, for the latest results folder of every analysis under a results root (see
:mod:`bioplastic.report.collect`), its figures (inlined as base64 PNG, so the page survives being
copied off a cluster), its numbers as tables, its config (seed, versions, git commit) and when it ran,
and a "Claims" section with one line per claim of the paper (:mod:`bioplastic.report.claims`):
supported, not supported, inconclusive or not run, with the numbers and the scale it was tested at.
Rendered with Jinja2 (autoescape on); no external CSS, JavaScript or images.

Usage::

    bioplastic report [--results DIR] [--out PATH]

or from Python: ``build_report("results", "results/report.html")``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .claims import CLAIMS, VERDICTS, Claim
from .collect import ReportError, Run, find_runs, latest_runs
from .render import Report, build_report, collect, render

DESCRIPTION = ("Write one self-contained HTML page (figures inlined) of the latest results folder of each "
               "analysis under --results, with a line per claim of the paper saying whether this run "
               "supports it, with its numbers and the scale it was tested at.")


def make_parser(prog: str = "bioplastic report") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="results root holding one folder per analysis (default: results)")
    parser.add_argument("--out", default="results/report.html", metavar="PATH",
                        help="the HTML file to write (default: results/report.html)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the output path")
    return parser


def command(argv: Sequence[str] | None = None, prog: str = "bioplastic report") -> int:
    """Run ``bioplastic report`` with ``argv``; returns the exit status (2: a user's mistake,
    reported on stderr without a traceback)."""
    parser = make_parser(prog)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:  # --help (0) or a bad argument (2, argparse printed why)
        return stop.code if isinstance(stop.code, int) else 2
    from pathlib import Path

    out = Path(args.out)
    if out.is_dir():
        print(f"{prog}: --out {args.out!r} is a folder; name the HTML file to write "
              f"(e.g. {out / 'report.html'})", file=sys.stderr)
        return 2
    try:
        report, _ = build_report(args.results, out)
    except ReportError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the output path cannot be written
        print(f"{prog}: cannot write {args.out!r}: {err.strerror or err}", file=sys.stderr)
        return 2
    if not args.quiet:
        if not report.sections:
            print(f"{prog}: no results folders under {args.results!r} (a folder with config.json or "
                  "results.json); every claim is 'not run'", file=sys.stderr)
        names = ", ".join(s.name for s in report.sections) or "none"
        print(f"analyses: {names}")
        print("claims:")
        for c in report.claims:
            print(f"  {c.number}. [{c.verdict}] {c.statement}\n     {c.sentence}")
    print(f"report: {out}")
    return 0


__all__ = ["CLAIMS", "VERDICTS", "Claim", "Report", "ReportError", "Run", "build_report", "collect",
           "command", "find_runs", "latest_runs", "render"]
