"""One way to configure a run: --key=value settings of frozen config dataclasses, validated by pydantic."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import pytest
from pydantic import NonNegativeInt, PositiveInt

from bioplastic.experiment.cmdline import help_text, parse_command_line
from bioplastic.experiment.config import ConfigError, load_config, override


@dataclass(frozen=True)
class Condition:
    rule: Literal["bp", "fa", "ldfa"]
    rank: PositiveInt | None = None


@dataclass(frozen=True)
class Config:
    ranks: tuple[PositiveInt, ...] = (1, 2)  # feedback ranks
    names: tuple[str, ...] = ("fixed",)
    lr: float = 0.1                          # learning rate
    epochs: PositiveInt = 3                  # passes over the data,
                                             # every sample once
    seeds: tuple[NonNegativeInt, ...] = (0, 1, 2)
    task: Literal["digits", "teacher"] = "digits"
    device: str | None = None
    plot: bool = False
    conditions: tuple[Condition, ...] = (Condition("bp"),)
    out: str = "results/x"

    def __post_init__(self):
        if self.task == "teacher" and self.plot:
            raise ValueError("plot needs task 'digits'")


@dataclass(frozen=True)
class Options:
    jobs: PositiveInt | None = None  # worker processes


def problems(argv, config=None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        override(config or Config(), argv)
    return err.value.problems


# --------------------------------------------------------------------------------------------------
# override: the syntax
# --------------------------------------------------------------------------------------------------

def test_values_are_parsed_by_the_field_type():
    cfg = override(Config(), ["--ranks=3,4", "--names=fixed,local", "--lr=0.5", "--epochs=7", "--plot",
                              "--out=/tmp/y", "--device=cuda", "--task=digits"])
    assert cfg == Config(ranks=(3, 4), names=("fixed", "local"), lr=0.5, epochs=7, plot=True,
                         out="/tmp/y", device="cuda")
    assert override(Config(), None) == Config() and override(Config(), []) == Config()


def test_key_value_and_key_space_value_are_the_same():
    spaced = override(Config(), ["--epochs", "7", "--ranks", "5", "--plot", "--device", "cpu"])
    joined = override(Config(), ["--epochs=7", "--ranks=5", "--plot=true", "--device=cpu"])
    assert spaced == joined == Config(epochs=7, ranks=(5,), plot=True, device="cpu")
    # a bool alone is true, and takes a following true/false word; dashes are underscores
    assert override(Config(), ["--plot", "false", "--epochs", "2"]) == Config(epochs=2)


def test_lists_are_the_items_themselves():
    # a list of seeds means the seeds, everywhere: --seeds=3 is seed 3, not range(3)
    assert override(Config(), ["--seeds=3"]).seeds == (3,)
    assert override(Config(), ["--seeds=0,1,2"]).seeds == (0, 1, 2)
    assert override(Config(), ["--seeds", " 4 , 5 "]).seeds == (4, 5)
    assert override(Config(), ["--seeds=[7, 8]"]).seeds == (7, 8)  # JSON works too
    assert override(Config(), ['--names=["a","b"]']).names == ("a", "b")
    assert override(Config(), ["--names="]).names == ()
    cfg = override(Config(), ['--conditions=[{"rule": "ldfa", "rank": 2}, {"rule": "fa"}]'])
    assert cfg.conditions == (Condition("ldfa", 2), Condition("fa"))


def test_none_sets_an_optional_field():
    assert override(Config(device="cuda"), ["--device=none"]).device is None
    assert override(Config(), ["--out=none"]).out == "none"  # out is not optional: a folder name


# --------------------------------------------------------------------------------------------------
# override: every mistake at once, with its dotted path, the value and what is allowed
# --------------------------------------------------------------------------------------------------

def test_every_bad_key_is_reported_at_once_with_path_value_and_what_is_allowed():
    found = problems(["--epochs=x", "--seeds=0,y,-1", "--lr=fast", "--task=mnist", "--plot=maybe",
                      '--conditions=[{"rule": "kp", "rank": 0}, {"rank": 2}]', "--ranks=1,2.5"])
    assert found == [
        "ranks.1: must be a positive int, got '2.5'",
        "lr: must be a number, got 'fast'",
        "epochs: must be a positive int, got 'x'",
        "seeds.1: must be an int >= 0, got 'y'",
        "seeds.2: must be an int >= 0, got '-1'",
        "task: must be one of digits, teacher, got 'mnist'",
        "plot: must be true or false, got 'maybe'",
        "conditions.0.rule: must be one of bp, fa, ldfa, got 'kp'",
        "conditions.0.rank: must be a positive int or none, got 0",
        "conditions.1.rule: required",
    ]


def test_unknown_keys_name_the_valid_keys():
    (message,) = problems(["--rank=3"])
    assert message == ("unknown option --rank (did you mean --ranks?); valid options: --ranks, --names, "
                       "--lr, --epochs, --seeds, --task, --device, --plot, --conditions, --out")
    # several unknown keys: each named, the valid ones listed once; known keys still validated
    found = problems(["--rank=3", "--epoch", "4", "--lr=x"])
    assert found[0].startswith("unknown option --rank (did you mean --ranks?); valid options: ")
    assert found[1] == "unknown option --epoch (did you mean --epochs?)"
    assert found[2] == "lr: must be a number, got 'x'"
    # inside a nested config (from JSON)
    assert problems(['--conditions=[{"rule": "bp", "rnk": 1}]']) == [
        "unknown key 'rnk' in conditions.0 (did you mean 'rank'?); valid keys: rule, rank"]


@pytest.mark.parametrize("argv,expected", [
    (["--epochs"], "--epochs needs a value: --epochs=VALUE"),
    (["--epochs", "--lr=1"], "--epochs needs a value: --epochs=VALUE"),
    (["epochs=3"], "unexpected argument 'epochs=3'; settings take the form --key=value"),
    (["--lr=nan"], "lr: must be a finite number, got 'nan'"),
    (["--lr=-inf"], "lr: must be a finite number, got '-inf'"),
    (["--epochs=2.5"], "epochs: must be a positive int, got '2.5'"),
    (["--epochs=0"], "epochs: must be a positive int, got '0'"),
    (["--seeds=[0,"], "seeds: not a JSON list (Expecting value); write a,b,c or [\"a\",\"b\"], got '[0,'"),
    (["--task=teacher", "--plot"], "plot needs task 'digits'"),  # the dataclass's own check
])
def test_bad_settings_name_the_problem(argv, expected):
    assert problems(argv) == [expected]


def test_config_error_is_a_value_error_with_one_line_per_problem():
    with pytest.raises(ValueError) as err:
        override(Config(), ["--epochs=0", "--lr=x"])
    assert str(err.value) == "lr: must be a number, got 'x'\nepochs: must be a positive int, got '0'"


def test_load_config_from_a_mapping_keeps_the_base_and_names_the_source():
    base = Config(epochs=9)
    assert load_config(Config, {"ranks": [4], "conditions": [{"rule": "fa"}]}, base) == Config(
        ranks=(4,), epochs=9, conditions=(Condition("fa"),))
    with pytest.raises(ConfigError) as err:
        load_config(Config, {"epochs": -1, "colour": "red"}, source="run/config.json")
    assert err.value.problems == [
        "unknown key 'colour'; valid keys: ranks, names, lr, epochs, seeds, task, device, plot, "
        "conditions, out",
        "epochs: must be a positive int, got -1 (from run/config.json)"]


# --------------------------------------------------------------------------------------------------
# parse_command_line: the options every command shares
# --------------------------------------------------------------------------------------------------

QUICK = {"epochs": 1, "seeds": (0,), "jobs": 1}


def parse(argv, **kw):
    return parse_command_line(Config(), argv, prog="toy", options=Options(), quick=QUICK, **kw)


def test_quick_config_file_and_explicit_settings_in_that_order(tmp_path):
    cl = parse(["--quick", "-q", "--epochs=5"])
    assert cl.config == Config(epochs=5, seeds=(0,)) and cl.options == Options(jobs=1)
    assert cl.quick and cl.quiet and cl.given == {"epochs"}
    saved = tmp_path / "config.json"  # as experiment.save_run writes it
    saved.write_text(json.dumps({"config": {"ranks": [8], "epochs": 4, "seeds": [5, 6]}, "seed": 0}))
    cl = parse(["--config", str(saved), "--seeds=7", "--jobs=3"])
    assert cl.config == Config(ranks=(8,), epochs=4, seeds=(7,)) and cl.options.jobs == 3
    assert cl.config_file == saved and not cl.quick and not cl.quiet
    assert parse(["--config", str(saved), "--quick"]).config == Config(ranks=(8,), epochs=1, seeds=(0,))


def test_a_mistake_exits_2_with_every_problem_on_stderr(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        parse(["--epochs=0", "--jobs=x", "--colour=red"])
    assert err.value.code == 2
    out = capsys.readouterr()
    assert out.out == "" and "Traceback" not in out.err
    assert out.err.splitlines() == [
        "toy: 3 problems:",
        "  unknown option --colour; valid options: --ranks, --names, --lr, --epochs, --seeds, --task, "
        "--device, --plot, --conditions, --out, --jobs, --config, --quiet, --help, --quick",
        "  epochs: must be a positive int, got '0'",
        "  jobs: must be a positive int or none, got 'x'",
        "(settings: toy --help)"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {"epochs": 0, "colour": 1}}))
    with pytest.raises(SystemExit):
        parse([f"--config={bad}", "--quick=yes"])
    err = capsys.readouterr().err
    assert f"unknown key 'colour' in {bad}" in err
    assert "--quick takes no value" in err
    with pytest.raises(SystemExit):
        parse(["--config", str(tmp_path / "missing.json")])
    assert "cannot read --config" in capsys.readouterr().err


def test_check_failures_exit_2(capsys):
    def check(cfg):
        if cfg.epochs > 10:
            raise ValueError("epochs: at most 10 here")

    with pytest.raises(SystemExit) as err:
        parse(["--epochs=11"], check=check)
    assert err.value.code == 2 and "toy: epochs: at most 10 here" in capsys.readouterr().err


def test_help_lists_every_setting_with_default_allowed_values_and_why(capsys):
    with pytest.raises(SystemExit) as err:
        parse(["-h"], description="A toy command.")
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert out == help_text("toy", Config(), Options(), QUICK, "A toy command.") + "\n"
    lines = out.splitlines()
    assert lines[0] == "usage: toy [--key=value ...] [--quick] [--config FILE] [-q] [-h]"
    row = next(line for line in lines if line.startswith("  --epochs=3 "))
    assert row.split(None, 1)[1] == "a positive int; passes over the data, every sample once"
    assert any(line.startswith("  --seeds=0,1,2 ") and "a list, each item an int >= 0" in line
               for line in lines)
    assert any(line.startswith("  --jobs=none ") for line in lines)
    assert any("--quick" in line and "epochs=1, seeds=0, jobs=1" in line for line in lines)


def test_the_commands_exit_2_without_a_traceback():
    for argv in (["demo", "--epochs=x"], ["bench", "--ranks=0"],
                 ["analysis", "linear_theory", "--steps=-1"]):
        done = subprocess.run([sys.executable, "-m", "bioplastic", *argv], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, (argv, done.stderr)
        assert "Traceback" not in done.stderr and "must be a positive int, got" in done.stderr, argv
