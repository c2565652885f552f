"""``bioplastic report``: the page built from small synthetic results folders, the claim verdicts for
the numbers put in, self-containment (every image a data: URI of a file that exists), autoescape,
the command's exit status for a user's mistake, and (where Chromium is installed) every image loading
in a real browser."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bioplastic.report import CLAIMS, VERDICTS, build_report, command
from bioplastic.report import claims as C

SCRIPT = "<script>alert('pwned')</script>"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# --------------------------------------------------------------------------------------------------
# A synthetic results root
# --------------------------------------------------------------------------------------------------

def tiny_png(path: Path, colour: str = "C0") -> Path:
    """A small real PNG drawn with matplotlib (no pyplot: no global state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2, 0.8), dpi=40)
    fig.add_subplot().plot([0, 1, 2], [0, 1, 0], color=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_run(folder: Path, config: dict, results: dict | None, seed, timestamp: str,
              command: list[str] | None = None, figures=("figure.png",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"config": config, "seed": seed,
            "versions": {"python": "3.11.0", "bioplastic": "0.1.0", "numpy": "1.26.4", "brian2": None},
            "git_sha": "0123456789abcdef0123456789abcdef01234567+dirty", "timestamp": timestamp,
            "command": command or ["bioplastic", "analysis", folder.name, "-q"], "platform": "Linux-test"}
    (folder / "config.json").write_text(json.dumps(meta))
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    for name in figures:
        tiny_png(folder / name)
    return folder


def stat(mean, sd=0.01, n=3, diverged=0):
    return {"mean": mean, "sd": sd, "n": n, "diverged": diverged}


def accuracy_results(bp=0.92, readout=0.57, local10=0.91, normative10=0.85, fixed10=0.80) -> dict:
    def entry(rank, acc):
        return {"rank": rank, "ranks": [rank, min(rank, 10)], "test_accuracy": stat(acc),
                "test_loss": stat(0.1), "relative_error": stat(0.2)}

    return {"task": "digits", "metric": "test_accuracy", "sizes": [64, 32, 32, 10], "activation": "relu",
            "task_dim": 10, "chance": 0.1, "target_loss_scale": 0.5, "jobs": 1,
            "references": {"bp": {"test_accuracy": stat(bp), "test_loss": stat(0.05), "relative_error": stat(0.1)},
                           "readout": {"test_accuracy": stat(readout), "test_loss": stat(0.3),
                                       "relative_error": stat(0.6)}},
            "ldfa": {"fixed": [entry(1, 0.3), entry(10, fixed10)],
                     "local": [entry(1, 0.6), entry(10, local10)],
                     "normative": [entry(1, 0.62), entry(16, normative10)]},
            "runs": [{"label": "bp", "rule": "bp", "seed": s, "test_accuracy": bp,
                      "curve_accuracy": [0.1 * i for i in range(10)]} for s in range(3)],
            "total_time": 12.5}


def linear_results(final=(0.76, 0.03, 0.93, 0.22), fixed_point=(0.755, 0.031, 0.94, 0.25), ratio=1.52) -> dict:
    curve = [[0.0] * 4, [0.5] * 4, list(final)]
    cond = {"steps": [0, 100, 200], "simulation": curve, "theory": curve, "final_modes": list(final),
            "relative_error_to_teacher": 0.7}
    return {"S": [[1.0, 0.0], [0.0, 1.0]],
            "conditions": {"bp": dict(cond, final_modes=[1.0] * 4, relative_error_to_teacher=1e-6),
                           "fixed": dict(cond, fixed_point_modes=list(fixed_point),
                                         relative_distance_to_fixed_point=0.03,
                                         loss_ratio_to_rank_r_optimum=ratio),
                           "normative": dict(cond, final_modes=[1.0] * 4, relative_error_to_teacher=1e-3)}}


def alignment_results(angle=85.0, best=45.0, subspace=70.0, random_angle=60.0) -> dict:
    def ends(v):
        return {"first": 90.0, "last": v, "last_sd": 1.0}

    def cond(rule, subspace_rule, a, s):
        summary = {"loss": {"mean": [1.0, 0.5, 0.4], "sd": [0, 0, 0]}, "test_accuracy": stat(0.8),
                   "diverged": 0,
                   "ends": {"angle": {"2": ends(a)}, "optimum_angle": {"2": ends(best)},
                            "participation_ratio": {"1": ends(5.0), "2": ends(3.0)},
                            "mean_principal_angle": {"2": ends(s)} if rule == "ldfa" else {}}}
        return {"rule": rule, "subspace": subspace_rule, "runs": [], "summary": summary}

    return {"sizes": [64, 64, 10], "steps": [0, 20, 40], "steps_per_epoch": 42, "ranks": {"2": 3},
            "random_subspace_angle": {"2": random_angle}, "task_dim": 10,
            "conditions": {"fa": cond("fa", None, 80.0, None),
                           "ldfa-fixed": cond("ldfa", "fixed", 89.0, 75.0),
                           "ldfa-local": cond("ldfa", "local", angle, subspace)}}


def rank_task_dim_results(widths=(32, 128), digits_widths=(32, 128)) -> dict:
    """rank_vs_task_dim's format: r* per (task, d, width, rule), median over seeds and per seed."""
    rows = []
    for task, dims, ws in (("teacher", (2, 4, 8), widths), ("digits", (2, 6, 10), digits_widths)):
        for w in ws:
            for rule, base in (("fixed", 4), ("local", 1), ("normative", 1)):
                for i, d in enumerate(dims):
                    r = min(2 ** (i + 1) * base, 32)
                    rows.append({"task": task, "dim": d, "width": w, "rule": rule, "seeds": [0, 1],
                                 "per_seed": [r, r], "median": float(r), "found": 2})
    return {"tasks": ["teacher", "digits"], "rules": ["fixed", "local", "normative"], "grid": [1, 2, 4, 8, 16, 32],
            "factor": 1.5, "dims": {"teacher": [2, 4, 8], "digits": [2, 6, 10]},
            "widths": {"teacher": list(widths), "digits": list(digits_widths)}, "r_star": rows}


def width_results(narrow=0.70, ldfa=0.93, readout=0.80, bp=0.95) -> dict:
    """width_vs_rank's format: conditions with a <metric>_summary each."""
    conds = []
    for w in (32, 256):
        for label, rule, sub, v in (("bp", "bp", None, bp), ("readout", "readout", None, readout - (w == 32) * 0.2),
                                    ("ldfa-local", "ldfa", "local", ldfa)):
            conds.append({"label": label, "rule": rule, "subspace": sub, "rank": 10 if sub else None, "width": w,
                          "test_accuracy_summary": stat(v), "relative_error_summary": stat(0.1)})
    conds.append({"label": "bp-narrow", "rule": "bp", "subspace": None, "rank": None, "width": 10,
                  "test_accuracy_summary": stat(narrow), "relative_error_summary": stat(0.5)})
    return {"task": "digits", "metric": "test_accuracy", "widths": [32, 256], "rank": 10, "narrow_width": 10,
            "conditions": conds}


@pytest.fixture
def results_root(tmp_path) -> Path:
    root = tmp_path / "results"
    write_run(root / "accuracy_vs_rank", {"task": "digits", "epochs": 30, "seeds": [0, 1, 2],
                                          "activation": SCRIPT, "ranks": [1, 10, 16]},
              accuracy_results(), [0, 1, 2], "2026-01-02T10:00:00+00:00",
              figures=("accuracy_vs_rank.png", "extra/zoom.png"))
    # an older run of the same analysis (named so by its command) with numbers that would fail
    write_run(root / "accuracy_vs_rank_old", {"task": "digits", "epochs": 30, "seeds": [0]},
              accuracy_results(local10=0.5, normative10=0.5), [0], "2025-06-01T10:00:00+00:00",
              command=["bioplastic", "analysis", "accuracy_vs_rank", "--out=results/accuracy_vs_rank_old"],
              figures=("old.png",))
    write_run(root / "linear_theory", {"n_in": 10, "n_hidden": 16, "rank": 2, "steps": 40000, "seed": 0},
              linear_results(), 0, "2026-01-02T11:00:00+00:00", figures=("mode_strengths.png",))
    write_run(root / "alignment", {"sizes": [64, 64, 10], "rank": 3, "epochs": 40, "seeds": [0, 1]},
              alignment_results(), [0, 1], "2026-01-02T12:00:00+00:00",
              figures=("alignment_angle.png", "subspace_angle.png"))
    write_run(root / "rank_vs_task_dim", {"teacher_epochs": 10, "digit_epochs": 30, "seeds": [0, 1],
                                          "factor": 1.5, "teacher_in": 192, "teacher_out": 32},
              rank_task_dim_results(), [0, 1], "2026-01-02T13:00:00+00:00")
    # an analysis the report has no claim for, whose folder also holds a file that is not a PNG
    custom = write_run(root / "my_analysis", {"note": "x"}, {"value": 3.25, "rows": [{"a": 1, "b": 2.5}]},
                       7, "2026-01-02T14:00:00+00:00")
    (custom / "broken.png").write_bytes(b"not a png at all")
    # a study (bioplastic run): one entry, its run folders counted, not shown as analyses
    study = root / "my_study"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({
        "name": "my_study", "seeds": [0, 1], "swept": ["rank"], "created": "2026-01-01T09:00:00+00:00",
        "runs": [{"run_id": "rank=1-seed=0", "config": {}}, {"run_id": "rank=1-seed=1", "config": {}}]}))
    for run_id, state in (("rank=1-seed=0", "finished"), ("rank=1-seed=1", "running")):
        write_run(study / "runs" / run_id, {"rank": 1}, None, 0, "2026-01-01T09:00:00+00:00",
                  figures=("curve.png",))
        (study / "runs" / run_id / "status.json").write_text(json.dumps({"state": state, "epoch": 1}))
    # a run that never finished: config.json only
    write_run(root / "unfinished", {"epochs": 3}, None, 1, "2026-01-02T15:00:00+00:00", figures=())
    return root


# --------------------------------------------------------------------------------------------------
# Parsing the page
# --------------------------------------------------------------------------------------------------

class Page(HTMLParser):
    """Records what the tests check, and that every opened element is closed in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors = [], []
        self.sections, self.claims, self.images, self.ids = {}, {}, [], []
        self.tags: dict[str, int] = {}
        self.doctype = False
        self._claim = None
        self.text_by_claim: dict[str, list[str]] = {}

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "section" and "data-analysis" in a:
            self.sections[a["data-analysis"]] = a["id"]
        if tag == "tr" and "data-claim" in a:
            self.claims[a["data-claim"]] = a["data-verdict"]
            self._claim = a["data-claim"]
            self.text_by_claim[self._claim] = []
        if tag == "img":
            self.images.append(a)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            if tag in self.stack:
                while self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()
        if tag == "tr":
            self._claim = None

    def handle_data(self, data):
        if self._claim is not None:
            self.text_by_claim[self._claim].append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------

def test_page_structure_claims_and_images(results_root, tmp_path):
    out = tmp_path / "site" / "report.html"
    report, html = build_report(results_root, out)
    assert out.read_text(encoding="utf-8") == html
    page = parse(html)

    # valid-ish HTML: doctype, one html/head/body/title, every element closed in order, unique ids
    assert page.doctype
    assert not page.errors, page.errors
    assert not page.stack, f"unclosed: {page.stack}"
    for tag in ("html", "head", "body", "title", "main"):
        assert page.tags.get(tag) == 1, tag
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    assert "claims" in page.ids

    # one section per analysis found, the unfinished run included; the claims' own first
    assert set(page.sections) == {"accuracy_vs_rank", "linear_theory", "alignment", "rank_vs_task_dim",
                                  "my_analysis", "unfinished", "study my_study"}
    assert [s.name for s in report.sections][:4] == ["accuracy_vs_rank", "rank_vs_task_dim",
                                                     "linear_theory", "alignment"]

    # every claim has a line, with the verdict the numbers put in call for
    assert page.claims == {"rank_d": "supported", "scales_with_d": "supported", "spurious": "supported",
                           "alignment": "not supported", "not_narrow": "not run", "cnn_vit": "not run",
                           "compute": "not run", "receptive_fields": "not run"}
    assert len(page.claims) == len(CLAIMS)
    assert all(v in VERDICTS for v in page.claims.values())
    rank_d = " ".join(page.text_by_claim["rank_d"])
    # the numbers, the threshold and the scale are in the line; a proxy is never called "reproduced"
    assert "bp 92.0%" in rank_d and "local at r = 10: 91.0%" in rank_d and "2 points" in rank_d
    assert "normative" in rank_d and "does not" in rank_d  # normative at r = 16: 85%, below the margin
    assert "8x8 digits" in rank_d and "proxy" in rank_d and "30 epochs" in rank_d and "3 seeds" in rank_d
    assert "reproduc" not in html.split('id="claims"')[1].split("</section>")[0].lower().replace(
        "not a reproduction", "")
    assert "run `bioplastic analysis width_vs_rank`" in " ".join(page.text_by_claim["not_narrow"])

    # the latest accuracy_vs_rank run is shown, the older one only listed
    assert report.sections[0].run.relpath == "accuracy_vs_rank"
    assert [o.relpath for o in report.sections[0].older] == ["accuracy_vs_rank_old"]
    assert "accuracy_vs_rank_old" in html and "old.png" not in html

    # every image is inlined as a data: URI of a PNG that exists in the inputs, byte for byte, and
    # every PNG of the latest runs is shown
    sources = set()
    for img in page.images:
        src, source = img["src"], img["data-source"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        path = results_root / source
        assert path.is_file(), source
        assert base64.b64decode(src.split(",", 1)[1]) == path.read_bytes()
        sources.add(source)
    expected = {p.relative_to(results_root).as_posix() for p in results_root.rglob("*.png")
                if p.read_bytes().startswith(b"\x89PNG") and "_old" not in str(p) and "my_study" not in str(p)}
    assert sources == expected
    assert "accuracy_vs_rank/extra/zoom.png" in sources
    assert "not a PNG file" in html  # broken.png reported, not inlined

    # self-contained: no external stylesheet, script, font or image
    assert page.tags.get("script") is None and page.tags.get("link") is None
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//|file:)""", html)
    assert "url(" not in html and "@import" not in html

    # autoescape: a config value holding a script tag is shown as text
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html

    # config, versions, commit and time of the run are in its section
    section = html.split('id="analysis-accuracy_vs_rank"')[1].split("</section>")[0]
    for text in ("0123456789abcdef0123456789abcdef01234567+dirty", "2026-01-02 10:00:00 UTC", "numpy",
                 "1.26.4", "[0, 1, 2]", "accuracy_vs_rank.png"):
        assert text in section, text
    # its numbers as tables: the pivot and the generic ones (series left out)
    assert "r = 10" in section and "0.91 ± 0.01" in section and "curve_accuracy" in section
    assert "no results.json" in html.split('id="analysis-unfinished"')[1]
    study_section = html.split('id="analysis-study-my_study"')[1].split("</section>")[0]
    assert "2 (1 finished, 1 running)" in study_section and "bioplastic summarize" in study_section


def test_claim_thresholds():
    cfg = {"epochs": 30, "seeds": [0, 1, 2]}
    # claim 1: the margin is 2 points of accuracy, below it or not
    assert C.rank_d_matches_bp(accuracy_results(local10=0.901, normative10=0.5), cfg)[0] == "supported"
    assert C.rank_d_matches_bp(accuracy_results(local10=0.899, normative10=0.5), cfg)[0] == "not supported"
    # a task the readout alone solves cannot tell rules apart; a 2-epoch run is a smoke test
    assert C.rank_d_matches_bp(accuracy_results(readout=0.91), cfg)[0] == "inconclusive"
    verdict, sentence = C.rank_d_matches_bp(accuracy_results(), {"epochs": 2, "seeds": [0]})
    assert verdict == "inconclusive" and "smoke test" in sentence
    # no adaptive rule at r >= d
    res = accuracy_results()
    res["ldfa"] = {"local": [e for e in res["ldfa"]["local"] if e["rank"] < 10]}
    assert C.rank_d_matches_bp(res, cfg)[0] == "inconclusive"

    # claim 2: r* growing with d and equal (to one grid step) across widths, at every task
    cfg2 = {"teacher_epochs": 10, "digit_epochs": 30, "seeds": [0, 1]}
    assert C.rank_scales_with_d(rank_task_dim_results(), cfg2)[0] == "supported"
    res = rank_task_dim_results()
    for row in res["r_star"]:  # local at the wider width needs 4x the rank: two grid steps
        if row["rule"] == "local" and row["width"] == 128 and row["task"] == "teacher":
            row["median"] = min(row["median"] * 4, 32)
    verdict, sentence = C.rank_scales_with_d(res, cfg2)
    assert verdict == "inconclusive" and "grid steps apart" in sentence and "it; not teacher local" in sentence
    for row in res["r_star"]:  # r* the same at every d: it does not follow d
        if row["rule"] != "fixed":
            row["median"] = 2.0
    assert C.rank_scales_with_d(res, cfg2)[0] == "not supported"
    res = rank_task_dim_results(digits_widths=(32,))  # one digits width: that task is left out
    verdict, sentence = C.rank_scales_with_d(res, cfg2)
    assert verdict == "supported" and "digit class subsets left out" in sentence
    assert C.rank_scales_with_d(rank_task_dim_results(), dict(cfg2, teacher_epochs=3))[0] == "inconclusive"
    nested = {"grid": [1, 2, 4, 8, 16], "widths": [64, 256],
              "r_star": {"local": {"2": {"64": 2, "256": 8}, "8": {"64": 8, "256": 8}}}}
    assert "widths 2.0 grid steps apart" in C.rank_scales_with_d(nested, {"epochs": 20})[1]

    # claim 3: near the spurious point and worse than the optimum; or at the optimum
    assert C.fixed_feedback_spurious(linear_results(), {"rank": 2})[0] == "supported"
    at_optimum = linear_results(final=(1.0, 1.0, 0.0, 0.0), ratio=1.0)
    assert C.fixed_feedback_spurious(at_optimum, {"rank": 2})[0] == "not supported"

    # claim 4: aligned within 15 deg of the best rank-r angle, or subspace within half of random
    assert C.learned_feedback_aligns(alignment_results(angle=55.0), {"epochs": 40})[0] == "supported"
    assert C.learned_feedback_aligns(alignment_results(subspace=20.0), {"epochs": 40})[0] == "supported"
    assert C.learned_feedback_aligns(alignment_results(), {"epochs": 40})[0] == "not supported"

    # claim 5: the widest ldfa beats bp at width r and the readout alone at that width
    cfg5 = {"epochs": 30, "seeds": [0, 1, 2]}
    verdict, sentence = C.low_rank_not_narrow(width_results(), cfg5)
    assert verdict == "supported" and "93.0%" in sentence and "70.0%" in sentence and "256" in sentence
    assert C.low_rank_not_narrow(width_results(ldfa=0.71), cfg5)[0] == "not supported"
    verdict, sentence = C.low_rank_not_narrow(width_results(readout=0.925), cfg5)
    assert verdict == "inconclusive" and "random features" in sentence

    # every claim: None is "not run"; numbers in an unknown format are "inconclusive", no exception
    for claim in CLAIMS:
        assert claim.judge(None)[0] == "not run"
        verdict, sentence = C.judge(claim, {"something": "else"}, {})
        assert verdict == "inconclusive" and claim.analysis in sentence
        assert C.judge(claim, {"status": "running"}, {}, status="running")[0] == "inconclusive"


def test_command_exit_status(results_root, tmp_path, capsys):
    out = tmp_path / "out" / "page.html"
    assert command(["--results", str(results_root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and f"report: {out}" in printed and "[supported]" in printed

    # a user's mistake: exit 2, a clear message on stderr, no traceback
    missing = tmp_path / "no_such_results"
    assert command(["--results", str(missing), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()
    assert command(["--results", str(results_root), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert command(["--no-such-option"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert command(["--help"]) == 0

    # an empty results folder: every claim "not run", still a page
    empty = tmp_path / "empty"
    empty.mkdir()
    assert command(["--results", str(empty), "--out", str(tmp_path / "e.html"), "-q"]) == 0
    assert set(parse((tmp_path / "e.html").read_text()).claims.values()) == {"not run"}


#: Claim analyses whose --quick mode trains CNNs or ViTs (30-60 s each): checked by the slow test.
SLOW_QUICK = ("cnn_vit", "compute_to_accuracy", "receptive_fields")


@pytest.mark.parametrize("which", ["fast", pytest.param("slow", marks=pytest.mark.slow)])
def test_report_of_real_quick_runs(tmp_path, which):
    """The claims read what the analyses actually write (a format change shows up here): every
    claim's analysis present in analyses/, run with --quick (the CNN/ViT ones in the slow set)."""
    from bioplastic import cli

    root = tmp_path / "results"
    names = [c.analysis for c in CLAIMS if c.analysis in cli.available_analyses()
             and (c.analysis in SLOW_QUICK) == (which == "slow")]
    assert which == "slow" or ("linear_theory" in names and "accuracy_vs_rank" in names)
    for name in names:
        assert cli.main(["analysis", name, "--quick", "-q", f"--out={root / name}"]) == 0
    report, html = build_report(root)
    lines = {c.analysis: c for c in report.claims}
    for name in names:
        assert lines[name].verdict != "not run"
        assert "does not hold the numbers" not in lines[name].sentence, lines[name].sentence
    # quick runs are a few epochs: smoke tests, never "supported"
    for name in set(names) - {"linear_theory"}:
        assert lines[name].verdict == "inconclusive", (name, lines[name].sentence)
    assert {s.name for s in report.sections} == set(names)
    assert all(s.run.figures for s in report.sections) and all(s.summary for s in report.sections)


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(BROWSER is None, reason="no chromium or chromium-browser on PATH")
def test_every_image_loads_in_headless_chromium(results_root, tmp_path):
    _, html = build_report(results_root)
    n_images = html.count("<img ")
    assert n_images >= 5
    # the page copied elsewhere and its results deleted: it must not need them
    shutil.rmtree(results_root)
    probe = ("<script>window.addEventListener('load', function () {"
             "var n = 0; for (var i = 0; i < document.images.length; i++) {"
             "var im = document.images[i]; var ok = im.complete && im.naturalWidth > 0;"
             "im.setAttribute('data-loaded', ok ? 'yes' : 'no'); if (ok) n++; }"
             "document.body.setAttribute('data-images-loaded', n + '/' + document.images.length);"
             "});</script></body>")
    page = tmp_path / "copied" / "report.html"
    page.parent.mkdir()
    page.write_text(html.replace("</body>", probe), encoding="utf-8")
    args = [BROWSER, "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
            page.as_uri()]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to start as root with its sandbox
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    dom = done.stdout
    assert f'data-images-loaded="{n_images}/{n_images}"' in dom, (done.returncode, done.stderr[-2000:])
    assert 'data-loaded="no"' not in dom
