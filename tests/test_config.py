"""--key=value overrides of frozen config dataclasses."""

from dataclasses import dataclass

import pytest

from bioplastic.experiment.config import override


@dataclass(frozen=True)
class Config:
    ranks: tuple = (1, 2)
    names: tuple = ("fixed",)
    lr: float = 0.1
    epochs: int = 3
    plot: bool = False
    out: str = "results/x"


def test_values_are_parsed_by_the_field_type():
    cfg = override(Config(), ["--ranks=3,4", "--names=fixed,local", "--lr=0.5", "--epochs=7", "--plot",
                              "--out=/tmp/y"])
    assert cfg == Config(ranks=(3, 4), names=("fixed", "local"), lr=0.5, epochs=7, plot=True, out="/tmp/y")
    assert override(Config(), ['--names=["a","b"]', "--plot=false"]).names == ("a", "b")
    assert override(Config(), None) == Config()


@pytest.mark.parametrize("argv,match", [
    (["--rank=3"], "unknown option --rank; valid keys: ranks, names, lr, epochs, plot, out"),
    (["--epochs=2.5"], "--epochs takes a int"),
    (["--lr=fast"], "--lr takes a float"),
    (["--plot=maybe"], "--plot takes true or false"),
    (["--epochs"], "--epochs needs a value"),
    (["epochs=3"], "expected --key=value"),
])
def test_bad_overrides_name_the_problem(argv, match):
    with pytest.raises(ValueError, match=match):
        override(Config(), argv)


def test_list_elements_take_the_default_element_type():
    assert override(Config(), ["--ranks=1,2,8"]).ranks == (1, 2, 8)
    with pytest.raises(ValueError, match="--ranks takes a int"):
        override(Config(), ["--ranks=1,2x"])
    with pytest.raises(ValueError, match="finite"):
        override(Config(), ["--lr=nan"])
