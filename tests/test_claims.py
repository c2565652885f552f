"""The claim analyses (rank_vs_task_dim, width_vs_rank, qp_ablation, direct_low_rank) end to end.

Each runs its ``--quick`` mode through its ``main``; the test then checks that the PNG and SVG
figures exist, that ``results.json`` holds exactly the numbers ``run`` returned, that the numbers
drawn in the figure (read back from the matplotlib artists before the figure is saved) are the
JSON's, and that the summaries follow from the per-run records. A small teacher setting checks
the central claim as it was measured.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from helpers import load_analysis

from bioplastic import cli
from bioplastic.experiment import to_jsonable

NAMES = ("rank_vs_task_dim", "width_vs_rank", "qp_ablation", "direct_low_rank")


load = load_analysis  # analyses/NAME.py, loaded by path as the CLI does


@pytest.fixture
def drawn(monkeypatch):
    """Records every figure the analyses save: per axes (by title, else index), each labelled line's
    (x, y) and each error bar's (x, y, yerr half-widths)."""
    figures: list[list[dict]] = []
    claims_module = sys.modules.get("_claims") or load("rank_vs_task_dim")._claims
    original = claims_module.save_figure

    def record(fig, stem):
        axes = []
        for ax in fig.axes:
            lines = {line.get_label(): (np.asarray(line.get_xdata(), float),
                                        np.asarray(line.get_ydata(), float))
                     for line in ax.get_lines() if not line.get_label().startswith("_")}
            bars = {}
            for container in ax.containers:
                data_line = container.lines[0]
                bars[container.get_label()] = (np.asarray(data_line.get_xdata(), float),
                                               np.asarray(data_line.get_ydata(), float))
            axes.append({"title": ax.get_title(), "lines": lines, "bars": bars,
                         "visible": ax.get_visible()})
        figures.append(axes)
        return original(fig, stem)

    monkeypatch.setattr(claims_module, "save_figure", record)
    return figures


def run_quick(name: str, out, *options: str) -> tuple[dict, dict]:
    """(results returned by main, results.json) of ``NAME --quick --out=OUT``; files checked."""
    module = load(name)
    results = module.main(["--quick", f"--out={out}", "-q", *options])
    for suffix in ("png", "svg"):
        path = out / f"{name}.{suffix}"
        assert path.exists() and path.stat().st_size > 1000, path
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / f"{name}.svg").read_bytes()[:2000]
    saved = json.loads((out / "results.json").read_text())
    # the JSON is the returned results, number for number
    assert saved == json.loads(json.dumps(to_jsonable(results)))
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["out"] == str(out) and config["seed"] == config["config"]["seeds"]
    return results, saved


def test_the_analyses_are_listed():
    assert set(NAMES) <= set(cli.available_analyses())
    assert "_claims" not in cli.available_analyses()


# --------------------------------------------------------------------------------------------------
# rank_vs_task_dim
# --------------------------------------------------------------------------------------------------

def recompute_r_star(saved: dict) -> dict:
    """r* per (task, d, width, rule, seed) from the saved runs: the smallest rank whose relative
    error is within ``factor`` of bp's (same task, d, width and seed)."""
    bp = {(r["task"], r["dim"], r["width"], r["seed"]): r["relative_error"]
          for r in saved["runs"] if r["rule"] == "bp"}
    out = {}
    for r in saved["runs"]:
        if r["rule"] != "ldfa":
            continue
        key = (r["task"], r["dim"], r["width"], r["subspace"], r["seed"])
        ref = bp[key[:3] + (key[4],)]
        ok = r["relative_error"] is not None and r["relative_error"] <= saved["factor"] * ref
        out.setdefault(key, None)
        if ok and (out[key] is None or r["rank"] < out[key]):
            out[key] = r["rank"]
    return out


def test_rank_vs_task_dim_quick(tmp_path, drawn):
    res, saved = run_quick("rank_vs_task_dim", tmp_path)
    assert saved["grid"] == [1, 4, 16] and saved["rules"] == ["fixed", "local"]
    assert saved["dims"] == {"teacher": [2, 8], "digits": [2, 10]}
    # one entry per (task, d, width, rule), each with one r* per seed
    assert len(saved["r_star"]) == (2 * 2 + 2 * 1) * 2
    r_star = recompute_r_star(saved)
    for e in saved["r_star"]:
        per_seed = [r_star[(e["task"], e["dim"], e["width"], e["rule"], s)] for s in e["seeds"]]
        assert e["per_seed"] == per_seed, e
        finite = [np.inf if v is None else v for v in per_seed]
        assert e["median"] == (None if np.isinf(np.median(finite)) else np.median(finite))
        # ascending search: nothing above r* was trained
        ratios = e["ratio_to_bp"][0]
        if per_seed[0] is not None:
            assert max(int(k) for k in ratios) == per_seed[0]
            assert ratios[str(per_seed[0])] <= saved["factor"]
        assert all(v is None or v > saved["factor"] for k, v in ratios.items()
                   if per_seed[0] is None or int(k) < per_seed[0])
    # bp's relative error: test loss over the loss of predicting 0
    for e in saved["bp"]:
        assert e["summary"]["mean"] == pytest.approx(np.mean(e["relative_error"]))
    # the figure: one panel per (task, width), the median r* of each rule drawn at each d
    (axes,) = drawn
    above = 2 * saved["grid"][-1]
    shown = [a for a in axes if a["visible"]]
    assert len(shown) == 2 + 1
    for ax in shown:
        task, width = ax["title"].split(", hidden width ")
        for rule in saved["rules"]:
            x, y = ax["lines"][f"ldfa {rule}"]
            entries = sorted((e for e in saved["r_star"] if e["task"] == task
                              and e["width"] == int(width) and e["rule"] == rule),
                             key=lambda e: e["dim"])
            np.testing.assert_allclose(y, [above if e["median"] is None else e["median"]
                                           for e in entries])
            # markers are shifted by at most 10 % sideways so that rules do not hide each other
            np.testing.assert_allclose(x, [e["dim"] for e in entries], rtol=0.1)
    assert res["n_runs"] == len(saved["runs"])


@pytest.mark.slow
def test_rank_vs_task_dim_claim_on_a_small_teacher(tmp_path):
    """r* of the adaptive rules grows with d and stays within one grid step across two widths 4x
    apart, on a linear teacher (192 inputs, 32 outputs, d in {2, 8}), widths 32 and 128, one seed.

    Measured (10 epochs): local and normative r* = 8 at d = 2 at both widths; at d = 8, 16 at width
    32 and 32 at width 128 (r = d itself reaches only 3-9x bp's error there: the adaptive rules need
    about 2d-4d in this training time). The test asserts that pattern with a tolerance of one grid
    step.
    """
    module = load("rank_vs_task_dim")
    res = module.main(["-q", f"--out={tmp_path}", "--tasks=teacher", "--rules=local,normative",
                       "--task_dims=2,8", "--widths=32,128", "--seeds=0", "--jobs=1"])
    grid = res["grid"]
    for c in res["claims"]:
        assert all(c["grows_with_d"].values()), c
        assert c["max_width_gap_steps"] <= 1, c
    for e in res["r_star"]:  # r* between d and 4d, as measured
        assert e["median"] is not None and e["dim"] <= e["median"] <= 4 * e["dim"], e
        assert e["median"] in grid


def test_rank_vs_task_dim_rejects_bad_options():
    module = load("rank_vs_task_dim")
    with pytest.raises(ValueError, match="unknown rules"):
        module.check(module.Config(rules=("svd",)))
    with pytest.raises(ValueError, match="task_dims must be <="):
        module.check(module.Config(task_dims=(2, 64)))
    with pytest.raises(ValueError, match="digit_classes must lie in 2..10"):
        module.check(module.Config(digit_classes=(1, 4)))


def test_median_rank_counts_not_found_above_the_grid():
    module = load("rank_vs_task_dim")
    assert module.median_rank([2, 4, None]) == 4
    assert module.median_rank([2, None, None]) is None
    assert module.median_rank([2, 8]) == 5
    assert module.grid_index(None, [1, 2, 4]) == 3 and module.grid_index(4, [1, 2, 4]) == 2


# --------------------------------------------------------------------------------------------------
# width_vs_rank
# --------------------------------------------------------------------------------------------------

def test_width_vs_rank_quick(tmp_path, drawn):
    res, saved = run_quick("width_vs_rank", tmp_path)
    labels = [(c["label"], c["width"]) for c in saved["conditions"]]
    assert labels == [("bp", 32), ("readout", 32), ("ldfa-local", 32), ("bp", 64), ("readout", 64),
                      ("ldfa-local", 64), ("bp-narrow", 10)]
    runs = {(r["label"], r["width"], r["seed"]): r for r in saved["runs"]}
    assert runs[("ldfa-local", 64, 0)]["ranks"] == [10, 10]  # r = 10 on both pathways
    assert runs[("bp-narrow", 10, 0)]["sizes"] == [64, 10, 10, 10]
    for c in saved["conditions"]:
        values = [runs[(c["label"], c["width"], s)]["test_accuracy"] for s in c["seeds"]]
        assert c["test_accuracy"] == values
        assert c["test_accuracy_summary"]["mean"] == pytest.approx(np.mean(values))
    # the figure: accuracy and relative error against width, bp at width 10 as a horizontal line
    (axes,) = drawn
    for ax, metric in zip(axes, ("test_accuracy", "relative_error")):
        for label, name in (("bp", "bp"), ("ldfa local, r = 10", "ldfa-local"),
                            ("readout only (r = 0)", "readout")):
            x, y = ax["bars"][label]
            mine = [c for c in saved["conditions"] if c["label"] == name]
            np.testing.assert_allclose(x, [c["width"] for c in mine])
            np.testing.assert_allclose(y, [c[f"{metric}_summary"]["mean"] for c in mine])
        _, y = ax["lines"]["bp at width 10"]
        narrow = next(c for c in saved["conditions"] if c["label"] == "bp-narrow")
        np.testing.assert_allclose(y, narrow[f"{metric}_summary"]["mean"])
    assert res["metric"] == "test_accuracy"


# --------------------------------------------------------------------------------------------------
# qp_ablation and direct_low_rank: metric against rank
# --------------------------------------------------------------------------------------------------

def check_against_rank(saved: dict, axes: list[dict], line_labels: dict) -> None:
    """Every line of the figure is the JSON's mean per rank, every reference its mean."""
    for ax, metric in zip(axes, ("test_accuracy", "relative_error")):
        for key, label in line_labels.items():
            x, y = ax["bars"][label]
            entries = saved["lines"][key]
            np.testing.assert_allclose(x, saved["ranks"])
            np.testing.assert_allclose(y, [e[f"{metric}_summary"]["mean"] for e in entries])
            for e in entries:
                runs = [r[metric] for r in saved["runs"] if r["label"] == e["label"]]
                assert e[metric] == runs
        for ref in saved["references"]:
            label = {"dfa": "dfa (full rank, d = 10)"}.get(ref["label"], ref["label"])
            _, y = ax["lines"][label]
            np.testing.assert_allclose(y, ref[f"{metric}_summary"]["mean"])


def test_qp_ablation_quick(tmp_path, drawn):
    _, saved = run_quick("qp_ablation", tmp_path)
    assert saved["ranks"] == [1, 4] and list(saved["lines"]) == ["local", "q_only", "fixed"]
    assert [r["label"] for r in saved["references"]] == ["bp", "fa"]
    module = load("qp_ablation")
    check_against_rank(saved, drawn[0], {k: module.LINE_LABELS[k] for k in saved["lines"]})
    # every condition starts from the same forward weights (same seed): at r = 1 the three rules
    # differ only in their feedback, so their runs exist for the same seed and sizes
    assert {tuple(r["sizes"]) for r in saved["runs"]} == {(64, 32, 32, 10)}


def test_direct_low_rank_quick(tmp_path, drawn):
    _, saved = run_quick("direct_low_rank", tmp_path)
    assert saved["ranks"] == [1, 10]
    assert list(saved["lines"]) == ["dfa-local", "dfa-fixed", "ldfa-local"]
    runs = {r["label"]: r for r in saved["runs"]}
    # low-rank direct feedback: one bottleneck of r neurons (an int), ldfa: one rank per pathway
    assert runs["dfa-local-r10"]["ranks"] == 10 and runs["ldfa-local-r10"]["ranks"] == [10, 10]
    assert runs["dfa"]["ranks"] is None  # full-rank direct feedback
    module = load("direct_low_rank")
    check_against_rank(saved, drawn[0], {k: module.LINES[k][2] for k in saved["lines"]})


def test_direct_low_rank_rejects_ranks_above_the_output_size():
    module = load("direct_low_rank")
    with pytest.raises(ValueError, match="ranks must be <= 10"):
        module.check(module.Config(ranks=(1, 12)))


# --------------------------------------------------------------------------------------------------
# One mechanism: the analyses train through studies, and ship the study of their default settings
# --------------------------------------------------------------------------------------------------

SHIPPED = {"qp_ablation": ("qp_ablation", ()), "width_vs_rank": ("width_vs_rank", ()),
           "direct_low_rank": ("direct_low_rank", ()),
           "rank_vs_task_dim_teacher": ("rank_vs_task_dim", ("teacher",)),
           "rank_vs_task_dim_digits": ("rank_vs_task_dim", ("digits",))}


@pytest.mark.parametrize("stem", list(SHIPPED))
def test_shipped_study_is_the_analysis_default(stem):
    """studies/STEM.toml resolves to exactly the runs the analysis's default settings train."""
    from bioplastic.experiment.study import load_study, study_from_mapping

    name, args = SHIPPED[stem]
    module = load(name)
    shipped = load_study(cli.analyses_dir().parent / "studies" / f"{stem}.toml", check=False)
    generated = study_from_mapping(module.study(module.Config(), *args), check=False)
    assert [r["run_id"] for r in shipped.runs] == [r["run_id"] for r in generated.runs]
    # the same runs; import_path is each study's own folder (where it looks for user modules)
    assert [{**r, "import_path": None} for r in shipped.runs] == [{**r, "import_path": None}
                                                                  for r in generated.runs]


def test_quick_runs_are_study_runs_and_resume(tmp_path):
    """qp_ablation --quick keeps one run folder per (condition, seed) under OUT/study; the per-run
    records are those folders' last metrics; --resume trains nothing again and gives the same."""
    from bioplastic.experiment.run import read_metrics, read_status

    first, saved = run_quick("qp_ablation", tmp_path)
    folders = sorted((tmp_path / "study" / "runs").iterdir())
    assert len(folders) == len(saved["runs"])
    for rec in saved["runs"]:
        folder = tmp_path / "study" / "runs" / rec["run_id"]
        assert read_status(folder)["state"] == "finished"
        assert rec["test_accuracy"] == read_metrics(folder)[-1]["test_accuracy"]
    stamps = {f.name: (f / "metrics.jsonl").stat().st_mtime_ns for f in folders}
    again, _ = run_quick("qp_ablation", tmp_path, "--resume=true")
    assert [r["test_accuracy"] for r in again["runs"]] == [r["test_accuracy"] for r in first["runs"]]
    assert {f.name: (f / "metrics.jsonl").stat().st_mtime_ns for f in folders} == stamps


def test_digit_subsets_keep_ten_outputs():
    from bioplastic import data
    from bioplastic.experiment.run import load_task
    from bioplastic.experiment.study import DigitsTask

    full = data.load_digits()
    sub = load_task(DigitsTask(classes=3))
    assert sub.y_train.shape[1] == 10 and set(sub.labels_train) == {0, 1, 2}
    keep = full.labels_test < 3
    np.testing.assert_array_equal(sub.x_test, full.x_test[keep])
    assert sub.x_train.shape[0] == int(np.sum(full.labels_train < 3))
    with pytest.raises(ValueError, match=r"1\.\.10"):
        full.subset(11)
