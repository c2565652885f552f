"""The ``bioplastic`` command: help, demo end to end, analysis dispatch, info, the command registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from analyses.demo import DEMO_CONDITIONS
from bioplastic import cli


def test_python_m_bioplastic_help():
    done = subprocess.run([sys.executable, "-m", "bioplastic", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("demo", "analysis", "info", "bench"):
        assert name in done.stdout
    assert "usage: bioplastic" in done.stdout


def test_no_command_prints_help_and_version(capsys):
    assert cli.main([]) == 0
    assert "usage: bioplastic" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        cli.main(["--version"])
    assert err.value.code == 0 and "bioplastic 0.1.0" in capsys.readouterr().out


#: A small CNN for the command's end-to-end checks: the plumbing and the claims, in seconds.
TINY_CNN = ["--channels=4,8", "--hidden=16"]


def _verdicts(accuracy: dict, margin: float, d: int = 10) -> list:
    """The demo's four verdicts recomputed here from final accuracies (analyses/demo.py, claims)."""
    adaptive = ("normative", "local", "oja")
    bp = accuracy["bp"]
    near = [s for s in adaptive if bp - accuracy[f"ldfa-{s}-r{d}"] <= margin]
    best_r1 = max(accuracy[f"ldfa-{s}-r1"] for s in adaptive)
    random_start = ["fa", "kp"] + [f"ldfa-{s}-r{k}" for s in ("fixed", "oja") for k in (1, d)]
    return [bool(near), best_r1 - accuracy["ldfa-fixed-r1"] > margin,
            any(bp - accuracy[f"ldfa-{s}-r1"] > margin for s in near),
            any(bp - accuracy[x] <= margin for x in random_start)]


def test_demo_quick_end_to_end_and_rerun_from_config(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", *TINY_CNN, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    for name in ("config.json", "results.json", "table.md", "claims.md", "study.toml",
                 *(f"{fig}.{fmt}" for fig in ("test_accuracy", "train_loss", "accuracy_by_rule")
                   for fmt in ("png", "svg"))):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    meta = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert meta["config"]["epochs"] == 2 and meta["config"]["seeds"] == [0]
    assert meta["config"]["task"] == "digits" and meta["config"]["channels"] == [4, 8]
    assert results["status"] == "complete"
    assert [c["label"] for c in results["conditions"]] == [c.label for c in DEMO_CONDITIONS]
    final = {}
    for cond in results["conditions"]:
        (run,) = cond["runs"]
        assert len(run["test_accuracy"]) == 3 and len(run["train_loss"]) == 3  # epochs 0, 1, 2
        # the curves are the run's own metrics file, the summary its last accuracy
        lines = [json.loads(x) for x in (out / "runs" / run["run_id"] / "metrics.jsonl").read_text().splitlines()]
        assert [x["test_accuracy"] for x in lines] == run["test_accuracy"]
        assert cond["summary"]["accuracy_mean"] == run["test_accuracy"][-1]
        final[cond["label"]] = run["test_accuracy"][-1]
    # every bar of the figure is a number of the table
    for sub, bars in results["bars"]["bars"].items():
        for rank, bar in bars.items():
            assert bar["mean"] == final[f"ldfa-{sub}-r{rank}"]
    assert {k: v["mean"] for k, v in results["bars"]["references"].items()} == {
        k: final[k] for k in ("bp", "fa", "kp")}
    # the verdicts follow from the numbers, and each sentence states them and the scale
    claims = results["claims"]
    assert [c["supported"] for c in claims] == _verdicts(final, meta["config"]["margin"])
    for c in claims:
        assert c["sentence"] in captured.out and c["sentence"] in (out / "claims.md").read_text()
        assert "8x8 digits" in c["sentence"] and "2 epochs, 1 seed" in c["sentence"]
        for label, value in c["numbers"].items():
            assert value == final[label] and f"{100 * value:.1f} %" in c["sentence"], (c["claim"], label)
    assert "dfa is left out" in captured.out
    # the table printed on stdout, one row per condition; progress went to stderr
    table = [line for line in captured.out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(DEMO_CONDITIONS) and table[0].startswith("| rule")
    assert (out / "table.md").read_text().splitlines()[0] == table[0]
    assert "demo [" in captured.err and "| rule" not in captured.err

    # config.json holds everything needed: a rerun from it gives the same numbers
    again = tmp_path / "again"
    assert cli.main(["demo", "--config", str(out / "config.json"), "--out", str(again), "-q"]) == 0
    rerun = json.loads((again / "results.json").read_text())
    assert [c["runs"][0]["test_accuracy"] for c in rerun["conditions"]] == \
           [c["runs"][0]["test_accuracy"] for c in results["conditions"]]
    assert capsys.readouterr().err == ""


def test_demo_bad_options(tmp_path, capsys):
    import torch

    if not torch.cuda.is_available():
        assert cli.main(["demo", "--device", "cuda", "--out", str(tmp_path / "cuda"), "-q"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
        assert not (tmp_path / "cuda").exists()
    assert cli.main(["demo", "--epochs", "0"]) == 2
    assert "epochs: must be a positive int, got '0'" in capsys.readouterr().err
    assert cli.main(["demo", "--task", "cifar10"]) == 2
    assert "task: must be one of mnist5000, digits, got 'cifar10'" in capsys.readouterr().err
    assert cli.main(["demo", "--backend", "reference"]) == 2  # the demo's model runs on torch
    assert "unknown" in capsys.readouterr().err
    assert cli.main(["demo", "--config", str(tmp_path / "missing.json")]) == 2
    assert "cannot read --config" in capsys.readouterr().err
    # every mistake at once; nothing written
    assert cli.main(["demo", "--epochs=x", "--seeds=0,y", "--jobs=0", "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    for problem in ("epochs: must be a positive int, got 'x'", "seeds.1: must be an int >= 0, got 'y'",
                    "jobs: must be a positive int or none, got '0'"):
        assert problem in err
    assert not (tmp_path / "no").exists()


def test_demo_seeds_are_the_seeds_themselves(tmp_path, monkeypatch):
    demo = cli.load_analysis("demo")
    seen = {}

    def fake_run_demo(cfg, out, jobs=None, progress=True):
        seen.update(cfg=cfg, out=out, jobs=jobs, progress=progress)
        return {"table": [], "total_time": 0.0}

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    monkeypatch.setattr(demo, "format_table", lambda rows: "| table |")
    assert cli.main(["demo", "--seeds=3", "--epochs", "4", "--out", str(tmp_path), "-q"]) == 0
    assert seen["cfg"].seeds == (3,) and seen["cfg"].epochs == 4 and not seen["progress"]
    assert cli.main(["demo", "--seeds", "0,5,7", "--jobs=2", "--out", str(tmp_path)]) == 0
    assert seen["cfg"].seeds == (0, 5, 7) and seen["jobs"] == 2 and seen["progress"]
    assert cli.main(["demo", "--quick", "--seeds=2", "--out", str(tmp_path)]) == 0
    assert seen["cfg"].seeds == (2,) and seen["cfg"].epochs == 2 and seen["jobs"] == 1
    assert seen["cfg"].task == "digits"


def test_demo_help_lists_settings(capsys):
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bioplastic demo [--key=value ...] [--quick] [--config FILE]")
    for option in ("--task=mnist5000", "--epochs=5", "--seeds=0", "--lr=0.001", "--margin=0.02",
                   "--out=results/demo", "--jobs=none", "--brian2=false", "--quick", "-q, --quiet"):
        assert f"  {option}" in out, option


@pytest.fixture
def analyses(tmp_path, monkeypatch):
    folder = tmp_path / "analyses"
    folder.mkdir()
    (folder / "_echo_prefix.py").write_text("PREFIX = 'got'\n")
    # a dataclass under postponed annotations needs its module in sys.modules while it is defined
    (folder / "echo.py").write_text(
        "from __future__ import annotations\nimport json, sys\nfrom dataclasses import dataclass\n"
        "from _echo_prefix import PREFIX\n\n@dataclass(frozen=True)\nclass Config:\n    rank: int = 1\n\n"
        "def main(argv):\n    print(PREFIX, json.dumps(argv))\n    return 0\n")
    (folder / "fails.py").write_text("def main(argv):\n    return 3\n")
    (folder / "results.py").write_text("def main(argv):\n    return {'accuracy': 0.5}\n")
    (folder / "nomain.py").write_text("X = 1\n")
    monkeypatch.setattr(cli, "analyses_dir", lambda: folder)
    return folder


def test_analysis_runs_main_with_options(analyses, capsys):
    assert cli.main(["analysis", "echo", "--rank=3", "--out=x"]) == 0
    assert capsys.readouterr().out.strip() == 'got ["--rank=3", "--out=x"]'
    assert cli.main(["analysis", "fails"]) == 3
    assert cli.main(["analysis", "results"]) == 0  # a returned dict of results is success
    assert str(analyses) not in sys.path  # the folder is only importable while the script runs


def test_analysis_unknown_name_lists_options(analyses, capsys):
    assert cli.main(["analysis", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown analysis 'nope'" in err and "valid options: echo, fails, nomain, results" in err
    assert "_echo_prefix" not in err
    assert cli.main(["analysis"]) == 0
    assert "available analyses: echo, fails, nomain, results" in capsys.readouterr().out
    assert cli.main(["analysis", "nomain"]) == 2
    assert "defines no main(argv)" in capsys.readouterr().err


def test_analysis_folder_of_the_checkout():
    # the real folder sits next to the package, so the command finds it from any working directory
    assert cli.analyses_dir().name == "analyses"
    assert (cli.analyses_dir().parent / "bioplastic" / "cli.py").is_file()


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "reference     available" in out
    for name in ("reference", "torch", "brian2"):
        assert f"  {name}" in out


def test_register_command_adds_a_subcommand(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))
    cli.register_command("toy", "a toy command",
                         lambda p: p.add_argument("--n", type=int, default=1),
                         lambda args: print("toy", args.n) or 0)
    assert cli.main(["toy", "--n", "4"]) == 0
    assert capsys.readouterr().out == "toy 4\n"
    with pytest.raises(ValueError, match="already registered"):
        cli.register_command("demo", "again", lambda p: None, lambda a: 0)


@pytest.mark.brian2
def test_demo_brian2_quick_compares_circuit_and_reference(tmp_path, capsys):
    out = tmp_path / "b2"
    assert cli.main(["demo", "--brian2", "--quick", "--out", str(out)]) == 0
    final = json.loads((out / "results.json").read_text())["final"]
    # one epoch on the digits: the circuit learns (chance is 0.1) and tracks the abstract rule
    assert final["acc_brian2"] > 0.2
    assert abs(final["acc_brian2"] - final["acc_reference"]) < 0.03
    for name in ("config.json", "circuit.png", "activity.png"):
        assert (out / name).stat().st_size > 0
    assert "accuracy brian2" in capsys.readouterr().err
