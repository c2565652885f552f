"""``bioplastic summarize`` on a synthetic study folder whose numbers the test knows: the printed and
CSV means and sds equal numbers computed here, diverged runs are counted and left out, the best
epoch says what it was selected on, and the plot is written without touching the user's backend."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from bioplastic.cli import main
from bioplastic.experiment.summarize import (
    best_label,
    load_runs,
    mean_sd,
    read_metrics,
    summarize,
)

CONDITIONS = [("bp", None), ("ldfa", 2), ("ldfa", 8), ("fa", None)]
SEEDS = (0, 1, 2)
EPOCHS = 4
DIVERGED = ("ldfa", 8, 1)  # this run diverges in epoch 2: metrics of epochs 0 and 1 only


def _config(rule, rank, seed) -> dict:
    run_id = f"rule={rule},rank={rank},seed={seed}"
    return {"task": {"name": "digits", "test_fraction": 0.25}, "circuit": {"width": 32, "hidden": None},
            "feedback": {"rule": rule, "rank": rank, "subspace": "local"},
            "training": {"epochs": EPOCHS, "batch_size": 32}, "seed": seed, "run_id": run_id,
            "study": "synthetic", "import_path": []}


def make_study(root: Path) -> dict:
    """A study folder in the contract's layout; returns the metrics of every run by condition."""
    rng = np.random.default_rng(1)
    known: dict = {}
    runs = []
    for rule, rank in CONDITIONS:
        for seed in SEEDS:
            config = _config(rule, rank, seed)
            folder = root / "runs" / config["run_id"]
            folder.mkdir(parents=True)
            diverged = (rule, rank, seed) == DIVERGED
            last = 1 if diverged else EPOCHS
            acc = rng.uniform(0.1, 0.99, size=last + 1)
            val = rng.uniform(0.1, 0.99, size=last + 1)
            lines = [{"epoch": e, "train_loss": float(1 - acc[e]), "test_loss": float(1.2 - acc[e]),
                      "test_accuracy": float(acc[e]), "val_accuracy": float(val[e]), "time": 0.1 * e}
                     for e in range(last + 1)]
            text = "".join(json.dumps(line) + "\n" for line in lines)
            if (rule, rank, seed) == ("fa", None, 2):
                text += '{"epoch": 5, "test_acc'  # a writer killed mid-line: skipped
            (folder / "metrics.jsonl").write_text(text)
            state = {"state": "diverged", "epoch": 2, "error": "loss nan"} if diverged else \
                {"state": "finished", "epoch": EPOCHS, "error": None}
            (folder / "status.json").write_text(json.dumps(state))
            (folder / "config.json").write_text(json.dumps({"config": config, "seed": seed}))
            runs.append({"run_id": config["run_id"], "config": config})
            known.setdefault((rule, rank), []).append((state["state"], lines))
    (root / "study.json").write_text(json.dumps({"name": "synthetic", "runs": runs}))
    return known


def expected(known: dict, metric: str = "test_accuracy", select: str | None = None) -> dict:
    """(final mean, sd, best mean, sd, seeds, diverged) per condition, computed here with numpy."""
    select = select or metric
    out = {}
    for condition, runs in known.items():
        finished = [lines for state, lines in runs if state == "finished"]
        finals = np.array([lines[-1][metric] for lines in finished])
        bests = []
        for lines in finished:
            trained = lines[1:]
            pick = max(trained, key=lambda m: m[select]) if "loss" not in select else \
                min(trained, key=lambda m: m[select])
            bests.append(pick[metric])
        bests = np.array(bests)
        out[condition] = (finals.mean(), finals.std(ddof=1), bests.mean(), bests.std(ddof=1),
                          len(finished), sum(state == "diverged" for state, _ in runs))
    return out


@pytest.fixture
def study(tmp_path):
    return tmp_path / "study", make_study(tmp_path / "study")


def test_printed_and_csv_means_and_sds_are_the_numbers_computed_here(study, tmp_path, capsys):
    folder, known = study
    want = expected(known)
    before = matplotlib.rcParams._get_backend_or_none()
    plot_png, table = tmp_path / "out" / "acc_vs_rank.png", tmp_path / "out" / "table.csv"
    status = main(["summarize", str(folder), "--csv", str(table), "--plot", str(plot_png),
                   "--by", "rank", "--lines", "rule"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert matplotlib.rcParams._get_backend_or_none() == before
    assert plot_png.stat().st_size > 1000 and plot_png.read_bytes()[:4] == b"\x89PNG"

    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("feedback.rule"))
    assert "best test_accuracy (selected on test_accuracy)" in header and "final test_accuracy" in header
    assert "12 runs (11 finished, 1 diverged), 4 conditions over feedback.rule, feedback.rank" in out
    assert any("selected on test_accuracy, a test-set metric" in line for line in lines)
    assert "1 run diverged" in out
    for (rule, rank), (fm, fs, bm, bs, seeds, diverged) in want.items():
        row = next(line for line in lines if line.split()[:2] == [rule, "-" if rank is None else str(rank)])
        assert f"{fm:.4f} +- {fs:.4f}" in row and f"{bm:.4f} +- {bs:.4f}" in row, row
        assert row.split()[2:4] == [str(seeds), str(diverged)], row

    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(CONDITIONS)
    for row in rows:
        rank = None if row["feedback.rank"] == "" else int(row["feedback.rank"])
        fm, fs, bm, bs, seeds, diverged = want[(row["feedback.rule"], rank)]
        got = [float(row[k]) for k in ("final_mean", "final_sd", "best_mean", "best_sd")]
        np.testing.assert_allclose(got, [fm, fs, bm, bs], rtol=1e-12, atol=0)
        assert (int(row["seeds"]), int(row["diverged"]), int(row["runs"])) == (seeds, diverged, len(SEEDS))
        assert row["best_selected_on"] == "test_accuracy" and row["metric"] == "test_accuracy"


def test_selecting_the_best_epoch_on_another_metric_is_named_and_used(study):
    folder, known = study
    keys, rows = summarize(load_runs(folder), "test_accuracy", select="val_accuracy")
    want = expected(known, select="val_accuracy")
    assert keys == ["feedback.rule", "feedback.rank"]
    for r in rows:
        fm, fs, bm, bs, _, _ = want[(r.condition["feedback.rule"], r.condition["feedback.rank"])]
        np.testing.assert_allclose([*r.final, *r.best], [fm, fs, bm, bs], rtol=1e-12)
    assert best_label("test_accuracy", "val_accuracy") == "test_accuracy at best epoch (selected on val_accuracy)"


def test_losses_select_their_minimum_and_svg_plots_with_a_baseline(study, tmp_path, capsys):
    folder, known = study
    want = expected(known, metric="test_loss")
    svg = tmp_path / "loss.svg"
    assert main(["summarize", str(folder), "--metric", "test_loss", "--plot", str(svg), "--by",
                 "feedback.rank", "--value", "best"]) == 0
    out = capsys.readouterr().out
    assert "best test_loss (selected on test_loss)" in out
    row = next(line for line in out.splitlines() if line.split()[:2] == ["ldfa", "2"])
    fm, fs, bm, bs, _, _ = want[("ldfa", 2)]
    assert f"{bm:.4f} +- {bs:.4f}" in row
    assert svg.read_text().lstrip().startswith("<?xml")


def test_mistakes_are_named_with_status_2(study, tmp_path, capsys):
    folder, _ = study
    assert main(["summarize", str(folder), "--metric", "accuracy"]) == 2
    assert "no metric 'accuracy' in this study; its metrics: test_accuracy" in capsys.readouterr().err.replace(
        "test_loss, ", "").replace("train_loss, ", "")
    assert main(["summarize", str(folder), "--plot", str(tmp_path / "p.png"), "--by", "width"]) == 2
    assert "--by 'width' is not a swept key of this study; swept keys: feedback.rule, feedback.rank" in \
        capsys.readouterr().err
    assert main(["summarize", str(tmp_path)]) == 2
    assert "not a study folder" in capsys.readouterr().err


def test_reading_the_layout(study):
    folder, _ = study
    runs = load_runs(folder)
    assert len(runs) == len(CONDITIONS) * len(SEEDS)
    cut = next(r for r in runs if r.run_id == "rule=fa,rank=None,seed=2")
    assert [m["epoch"] for m in cut.metrics] == list(range(EPOCHS + 1))  # the cut line is skipped
    assert read_metrics(folder / "missing.jsonl") == []
    assert mean_sd([2.0]) == (2.0, 0.0) and all(np.isnan(mean_sd([])))
    # without study.json the runs are found by their config.json
    (folder / "study.json").unlink()
    again = load_runs(folder)
    assert sorted(r.run_id for r in again) == sorted(r.run_id for r in runs)
    assert summarize(again)[0] == ["feedback.rule", "feedback.rank"]
