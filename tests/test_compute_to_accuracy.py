"""analyses/compute_to_accuracy.py: the paper's measure (epochs to 90 % of the final accuracy x
FLOPs per step x steps), the FLOP count of one ldfa layer by hand, and the analysis end to end."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from analyses import compute_to_accuracy as cta
from bioplastic.bench.costmodel import count_ops
from bioplastic.bench.flops import (
    LayerShape,
    layer_flops,
    layer_shapes,
    low_rank_parameters,
    optimizer_flops,
    refactor_flops,
    saveable_fraction,
    scale_rows,
    svd_flops,
)
from bioplastic.torch import convert
from bioplastic.torch.models import CNN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------------
# epochs to 90 % of the final accuracy, on constructed curves (answers by hand)
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("curve, reference, expected", [
    # final 1.0, threshold 0.9: epoch 3 is the first at or above it
    ([0.1, 0.5, 0.85, 0.9, 0.95, 1.0], None, 3),
    # already there before training (a curve that never learned: 0.09 <= 0.1): epoch 0
    ([0.1, 0.1, 0.1], None, 0),
    # one epoch suffices: threshold 0.873
    ([0.1, 0.95, 0.96, 0.97], None, 1),
    # noisy: the first crossing counts (0.91 at epoch 2), not the dip to 0.7 after it
    ([0.1, 0.6, 0.91, 0.7, 0.95, 1.0], None, 2),
    # just below the threshold 0.9 * 0.96 = 0.864 until epoch 4
    ([0.1, 0.8, 0.86, 0.863, 0.864, 0.96], None, 4),
    # missing values are skipped
    ([0.1, None, float("nan"), 0.92, 1.0], None, 3),
    # against another reference (bp's final 0.98, threshold 0.882): never reached by a plateau at 0.85
    ([0.1, 0.8, 0.85, 0.85], 0.98, None),
    # ... reached at epoch 2 by a curve that passes 0.882
    ([0.1, 0.8, 0.89, 0.9], 0.98, 2),
    # no final accuracy (diverged): no answer
    ([0.1, 0.5, None], None, None),
    ([], None, None),
])
def test_epochs_to_fraction(curve, reference, expected):
    assert cta.epochs_to_fraction(curve, 0.9, reference) == expected


def test_epochs_to_fraction_other_fractions():
    curve = [0.0, 0.5, 0.8, 1.0]
    assert cta.epochs_to_fraction(curve, 0.5) == 1
    assert cta.epochs_to_fraction(curve, 1.0) == 3


# --------------------------------------------------------------------------------------------------
# FLOPs of one Linear ldfa layer, against formulas derived by hand
# --------------------------------------------------------------------------------------------------

def hand_flops(N, m, n, r, subspace):
    """One Linear layer m -> n, batch N, input takes a gradient, ldfa rank r.

    forward x W^T: N m n multiply-adds; weight gradient g^T x: N m n; input gradient through the
    bottleneck, z = g P^T (N r n) then z Q^T (N r m); P/Q update: local from the weight gradient,
    Q^T dW^T and dW^T P^T (2 r n m), when that beats the per-row form N r (2 m + n); normative
    (Q^T Q) P, W Q, Q (P P^T), P W: 2 n m r + 2 r^2 (m + n). FLOPs = 2 x multiply-adds.
    """
    fwd = N * m * n
    if subspace == "local":
        fb = 2 * r * n * m if 2 * m * n < N * (2 * m + n) else N * r * (2 * m + n)
    elif subspace == "normative":
        fb = 2 * n * m * r + 2 * r * r * (m + n)
    else:
        fb = 0
    return {"forward": 2 * fwd, "weight_grad": 2 * fwd, "input_grad": 2 * (N * r * n + N * r * m),
            "feedback": 2 * fb}


@pytest.mark.parametrize("subspace", ["fixed", "local", "normative"])
@pytest.mark.parametrize("N", [3, 64])  # local: per-row form at 3 rows, from the weight gradient at 64
def test_one_linear_ldfa_layer_flops_by_hand(subspace, N):
    m, n, r = 12, 7, 3
    expected = hand_flops(N, m, n, r, subspace)
    shape = LayerShape("linear", N, m, n, 1, True, "ldfa", r, subspace)
    assert layer_flops(shape) == expected
    # the same layer as torch runs it: forward hooks see it, the operator counter counts its products
    torch.manual_seed(0)
    layer = convert(nn.Sequential(nn.Linear(m, n)), rule="ldfa", rank=r, subspace=subspace)
    x = torch.randn(N, m, requires_grad=True)
    assert layer_shapes(layer, x) == [shape]

    def step():
        layer.zero_grad()
        layer(x).square().sum().backward()

    assert sum(rec.flops for rec in count_ops(step)) == sum(expected.values())


def test_bp_layer_and_the_bound_by_hand():
    """bp: forward, weight gradient and input gradient cost 2 N m n each; a first layer fed by data
    has no input gradient. The bound = input-gradient share of the bp step."""
    N, a, b, c = 5, 20, 8, 3
    first = LayerShape("linear", N, a, b, 1, False)
    second = LayerShape("linear", N, b, c, 1, True)
    assert sum(layer_flops(first).values()) == 2 * 2 * N * a * b
    assert sum(layer_flops(second).values()) == 3 * 2 * N * b * c
    bound = saveable_fraction([first, second])
    assert bound["saveable"] == 2 * N * b * c
    assert math.isclose(bound["fraction"], (2 * N * b * c) / (4 * N * a * b + 6 * N * b * c))
    # a layer whose input takes a gradient alone: exactly 1/3; ldfa shapes are counted as bp
    assert math.isclose(saveable_fraction([LayerShape("linear", N, b, c, 1, True, "ldfa", 2, "local")])
                        ["fraction"], 1 / 3)
    assert scale_rows([first], 4)[0].rows == 4 * N


def test_svd_optimizer_and_refactor_counts_by_hand():
    assert svd_flops(10, 4) == 6 * 10 * 16 + 20 * 64 == svd_flops(4, 10)
    assert optimizer_flops(100) == 1300
    assert optimizer_flops(100, "sgd") == 200
    assert optimizer_flops(100, "adam", weight_decay=True) == 1500
    with pytest.raises(ValueError, match="valid options: adam, sgd"):
        optimizer_flops(1, "lion")
    m, n, r = 12, 7, 3
    normative = LayerShape("linear", 5, m, n, 1, True, "ldfa", r, "normative")
    local = LayerShape("linear", 5, m, n, 1, True, "ldfa", r, "local")
    data_fed = LayerShape("linear", 5, m, n, 1, False, "ldfa", r, "normative")
    # W (n, m): SVD of the 7 x 12 matrix, and r (m + n) to scale the factors; only rules that read W
    assert refactor_flops([normative, local, data_fed]) == svd_flops(n, m) + r * (m + n)


def test_epoch_plan():
    assert cta.epoch_plan(4000, 128) == [(128, 31), (32, 1)]
    assert cta.epoch_plan(256, 128) == [(128, 2)]
    assert cta.epoch_plan(100, 128) == [(100, 1)]


def test_the_study_file_is_the_default_config():
    """studies/compute_to_accuracy.toml holds exactly the runs of the default Config."""
    from pathlib import Path

    from bioplastic.experiment.study import canonical, load_study, study_from_mapping

    path = Path(__file__).parent.parent / "studies" / "compute_to_accuracy.toml"
    from_file = load_study(path).runs
    from_config = study_from_mapping(cta.study_mapping(cta.Config()), name="compute_to_accuracy").runs
    assert [r["run_id"] for r in from_file] == [r["run_id"] for r in from_config]
    assert [canonical(r) for r in from_file] == [canonical(r) for r in from_config]


# --------------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------------

def _tiny_study(folder):
    """One epoch of a tiny MLP (bp, local ldfa r = 2) on the bundled 8 x 8 digits, in this process."""
    from bioplastic.experiment.launch import run_study
    from bioplastic.experiment.study import study_from_mapping

    mapping = {"name": "tiny", "seeds": [0], "task": {"name": "digits"},
               "model": {"name": "mlp", "options": {"hidden": [16]}},
               "feedback": {"clip_rank": True}, "backend": {"name": "torch"},
               "optimizer": {"name": "adam", "lr": 0.01},
               "training": {"epochs": 2, "batch_size": 256, "checkpoint_every": 0},
               "grid": [{"feedback.rule": ["bp"]},
                        {"feedback.rule": ["ldfa"], "feedback.subspace": ["local", "normative"],
                         "feedback.rank": [2]}]}
    run_study(study_from_mapping(mapping, name="tiny"), folder, executor="inprocess", jobs=1,
              progress=False)
    return folder


def test_from_a_study_folder(tmp_path, capsys):
    """--from DIR: counts, measure, table, figures and results.json of an existing study."""
    study = _tiny_study(tmp_path / "study")
    out = tmp_path / "out"
    cta.main([f"--from={study}", f"--out={out}", "--paper_ranks=8", "--timing_steps=1", "-q"])
    printed = capsys.readouterr().out
    assert "not of that number" in printed and "Upper bound" in printed
    saved = json.loads((out / "results.json").read_text())
    for name in ("accuracy_vs_flops", "flops_to_90"):
        assert (out / f"{name}.png").exists() and (out / f"{name}.svg").exists()
    mlp = saved["models"]["mlp"]
    labels = [c["label"] for c in mlp["conditions"]]
    assert labels == ["bp", "ldfa-local-r2", "ldfa-normative-r2"]
    bp, local, normative = mlp["conditions"]
    # 1347 training digits: 5 steps of 256 and one of 67, each counted at its own batch size
    assert local["plan"] == [dict(local["plan"][0], batch=256, steps=5), dict(local["plan"][1], batch=67, steps=1)]
    assert local["steps_per_epoch"] == 6
    # the epoch's FLOPs are the sum of its steps' counts (products + optimiser)
    assert local["epoch_flops"] == sum(p["steps"] * (p["matmul"] + p["optimizer"]) for p in local["plan"])
    # the analytic and the counted products agree on an MLP; ldfa saves per step, and no more than the bound
    for c in mlp["conditions"]:
        assert c["step"]["matmul"] == c["step"]["counted_matmul"]
    # a step of 256 digits through 64-16-10 by hand: the first layer is fed by data (no input
    # gradient); ldfa's input gradient into layer 1 passes the r = 2 bottleneck; normative's update of
    # P and Q (products of W, P, Q only) is counted once per step
    B, n0, n1, n2, r = 256, 64, 16, 10, 2
    forward = 2 * B * (n0 * n1 + n1 * n2)
    assert bp["step"]["forward"] == bp["step"]["weight_grad"] == forward
    assert bp["step"]["input_grad"] == 2 * B * n1 * n2 and bp["step"]["feedback"] == 0
    assert normative["step"]["input_grad"] == local["step"]["input_grad"] == 2 * B * (n2 * r + r * n1)
    normative_update = 2 * (2 * n2 * n1 * r + 2 * r * r * (n1 + n2))
    assert normative["step"]["feedback"] == normative_update
    assert normative["step"]["matmul"] == 2 * forward + 2 * B * (n2 * r + r * n1) + normative_update
    assert mlp["bound"]["fraction"] == pytest.approx(2 * B * n1 * n2 / (2 * forward + 2 * B * n1 * n2), rel=1e-12)
    # the measure: epochs to 90 % of the own final accuracy x the epoch's FLOPs
    for c in mlp["conditions"]:
        s = c["seeds"][0]
        assert s["epochs_to_fraction"] == cta.epochs_to_fraction(s["test_accuracy"], 0.9)
        assert s["flops_to_fraction"] == s["epochs_to_fraction"] * c["epoch_flops"]
        assert s["cpu_to_fraction"] == s["epochs_to_fraction"] * 6 * c["step_seconds"]["cpu"]
    assert bp["relative_to_bp"]["flops_to_fraction"] == 1.0
    # normative can refactorise: the what-if column is there, and it costs more than without
    assert normative["epoch_flops_with_svd"] > normative["epoch_flops"]
    assert local["epoch_flops_with_svd"] is None
    assert saved["paper_scale"]["bound"]["fraction"] < 1 / 3
    assert np.isfinite(saved["paper_scale"]["ldfa"][0]["saving"])


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
    """``--quick``: the study of the three models (bp, local ldfa r = 2, one epoch) and everything after."""
    results = cta.main(["--quick", f"--out={tmp_path}", "-q"])
    assert set(results["models"]) == {"mlp", "cnn", "vit"}
    for m in results["models"].values():
        assert [c["label"] for c in m["conditions"]] == ["bp", "ldfa-local-r2"]
        assert 0 < m["bound"]["fraction"] <= 1 / 3
    # the ViT's counted products exceed the analytic ones by the attention backward's recomputation
    vit = results["models"]["vit"]["crosscheck"]["bp"]
    assert vit["counted"] > vit["analytic"]
    assert (tmp_path / "table.md").exists() and (tmp_path / "config.json").exists()


@pytest.mark.parametrize("subspace", ["fixed", "local", "normative"])
def test_low_rank_parameters_are_what_the_optimiser_steps(subspace):
    """P and Q of every layer whose rule learns them, the layer fed by data included (its factors
    receive zero gradients, which the optimiser still steps); fixed feedback: none."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    net = convert(CNN(image_size=8, channels=(4, 6), hidden=12, n_classes=5), rule="ldfa", rank=5,
                  subspace=subspace, clip_rank=True)
    net.zero_grad(set_to_none=True)
    net(x).square().sum().backward()
    stepped = sum(p.numel() for n, p in net.named_parameters()
                  if n.rsplit(".", 1)[-1] in ("P", "Q") and p.grad is not None)
    assert stepped == low_rank_parameters(layer_shapes(net, x))
    assert (stepped == 0) == (subspace == "fixed")
