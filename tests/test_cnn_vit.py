"""analyses/cnn_vit.py and what it needs: periodic SVD refactorisation of FeedbackLinear (and through
convert and a study's [feedback] refactor_every), the shipped study files, and the analysis end to end."""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bioplastic.torch import convert
from bioplastic.torch.linear import FeedbackLinear, refactorable
from bioplastic.torch.models import ViT

ROOT = Path(__file__).resolve().parents[1]
DT = torch.float64


def _analysis():
    folder = str(ROOT / "analyses")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("cnn_vit")


def truncated_svd_factors(w: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, Q) of the rank-r truncated SVD of W^T (numpy): W^T = U S V^T, Q = U_r S_r^1/2,
    P = S_r^1/2 V_r^T; also QP, the best rank-r approximation of W^T."""
    u, s, vt = np.linalg.svd(w.T, full_matrices=False)
    root = np.sqrt(s[:r])
    return root[:, None] * vt[:r], u[:, :r] * root


def _aligned(p, q, p_ref, q_ref):
    """P, Q equal to the reference factors up to the sign of each singular pair."""
    signs = np.sign(np.sum(q * q_ref, axis=0))
    return np.allclose(q * signs, q_ref, atol=1e-10) and np.allclose(p * signs[:, None], p_ref, atol=1e-10)


# --------------------------------------------------------------------------------------------------
# FeedbackLinear: periodic refactorisation
# --------------------------------------------------------------------------------------------------

def test_linear_periodic_refactorisation_resets_to_numpy_truncated_svd_at_the_right_step():
    torch.manual_seed(0)
    r, every = 2, 3
    layer = FeedbackLinear(7, 5, rule="ldfa", rank=r, subspace="normative", refactor_every=every,
                           generator=torch.Generator().manual_seed(1), dtype=DT)
    with torch.no_grad():  # normative starts at the SVD: start elsewhere, so that only a reset matches
        layer.P.add_(torch.randn_like(layer.P))
        layer.Q.add_(torch.randn_like(layer.Q))
    opt = torch.optim.SGD(layer.parameters(), lr=0.2)
    x = torch.randn(16, 7, dtype=DT, requires_grad=True)
    target = torch.randn(16, 5, dtype=DT)
    for step in range(8):
        w = layer.weight.detach().numpy().copy()  # the W this step's forward sees
        opt.zero_grad()
        loss = ((layer(x) - target) ** 2).sum()
        p, q = layer.P.detach().numpy(), layer.Q.detach().numpy()
        p_ref, q_ref = truncated_svd_factors(w, r)
        due = step > 0 and step % every == 0  # after 3 and 6 backward passes
        assert _aligned(p, q, p_ref, q_ref) == due, f"step {step}"
        if due:
            assert np.allclose(q @ p, q_ref @ p_ref, atol=1e-10)
        loss.backward()
        opt.step()
        with torch.no_grad():  # move W off the normative rule's path, so that only an SVD resets QP
            layer.weight.add_(0.3 * torch.randn_like(layer.weight))
    assert layer._backward_calls == 8 and layer._refactored_at == 6


def test_linear_refactorisation_skips_evaluation_and_no_grad_and_counts_a_step_once():
    layer = FeedbackLinear(6, 6, rule="ldfa", rank=2, subspace="normative", refactor_every=1, dtype=DT)
    x = torch.randn(4, 6, dtype=DT)
    with torch.no_grad():
        layer.weight.add_(1.0)
        layer(x)
    layer.eval()
    layer(x).sum().backward()
    assert layer._backward_calls == 0  # evaluation neither refactorises nor counts
    layer.train()
    q0 = layer.Q.detach().clone()
    # three forwards of one step (a fused map applied to query, key and value): one step
    (layer.apply_rows(x, slice(0, 2)).sum() + layer.apply_rows(x, slice(2, 4)).sum()
     + layer(x).sum()).backward()
    assert layer._backward_calls == 1
    assert torch.equal(layer.Q.detach(), q0)  # nothing was due before the first step
    layer(x).sum().backward()  # due: refactorised before this forward
    assert layer._refactored_at == 1


def test_linear_refactor_every_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="normative"):
        FeedbackLinear(4, 3, rule="ldfa", rank=2, subspace="local", refactor_every=2)
    with pytest.raises(ValueError, match="normative"):
        FeedbackLinear(4, 3, rule="fa", refactor_every=2)
    with pytest.raises(ValueError, match="positive int"):
        FeedbackLinear(4, 3, rule="ldfa", rank=2, subspace="normative", refactor_every=0)
    assert refactorable() == ["normative"]


def test_convert_sets_refactor_every_on_every_low_rank_layer():
    vit = ViT(image_size=8, patch=4, in_channels=1, n_classes=3, dim=8, depth=1, heads=2)
    model = convert(vit, rank=2, subspace="normative", refactor_every=5, clip_rank=True,
                    exclude=["patch_embed"])
    layers = {n: m.refactor_every for n, m in model.named_modules() if hasattr(m, "refactor_every")}
    assert layers and set(layers.values()) == {5}
    assert {"blocks.0.attn.qkv", "blocks.0.fc1", "head"} <= set(layers)
    with pytest.raises(ValueError, match="refactor_every"):
        convert(vit, rule="fa", refactor_every=5)


# --------------------------------------------------------------------------------------------------
# The study key and the shipped study files
# --------------------------------------------------------------------------------------------------

def test_study_refactor_every_reaches_the_model_and_is_refused_for_circuits():
    from bioplastic.experiment.run import Job, load_task
    from bioplastic.experiment.study import RunConfig, StudyError, study_from_mapping

    base = {"task": {"name": "patches", "d": 2, "n_train": 8, "n_test": 4}, "backend": {"name": "torch"},
            "model": {"name": "cnn", "options": {"channels": [2, 2], "hidden": 4}},
            "optimizer": {"name": "adam", "lr": 1e-3}, "training": {"epochs": 1},
            "feedback": {"rule": "ldfa", "rank": 2, "subspace": "normative", "refactor_every": 7,
                         "clip_rank": True}}
    loaded = study_from_mapping(base, name="t")
    config = RunConfig.model_validate(loaded.runs[0])
    job = Job(config, load_task(config.task))
    every = {m.refactor_every for m in job.model.modules() if hasattr(m, "refactor_every")}
    assert every == {7}
    circuit = {"task": {"name": "digits"}, "circuit": {"width": 8},
               "feedback": {"rule": "ldfa", "rank": 2, "subspace": "normative", "refactor_every": 7}}
    with pytest.raises(StudyError, match="refactor_every"):
        study_from_mapping(circuit, name="t")


@pytest.mark.parametrize("model", ["cnn", "vit"])
@pytest.mark.parametrize("task", ["mnist5000", "patches"])
def test_shipped_study_files_are_the_default_analysis(model, task):
    """studies/cnn_vit_MODEL_TASK.toml holds the same runs as the analysis's default config."""
    from bioplastic.experiment.study import load_study, study_from_mapping

    cv = _analysis()
    shipped = load_study(ROOT / "studies" / f"cnn_vit_{model}_{task}.toml", check=False)
    mine = study_from_mapping(cv.study(cv.Config(), model, task), check=False)
    strip = ("study", "import_path")
    assert ([{k: v for k, v in r.items() if k not in strip} for r in shipped.runs]
            == [{k: v for k, v in r.items() if k not in strip} for r in mine.runs])
    assert tomllib.loads(shipped.text)["name"] == f"cnn_vit-{model}-{task}"


def test_grid_ranks_and_refactorisation_period():
    cv = _analysis()
    cfg = cv.Config()
    assert cv.ranks_for(cfg, 10) == [1, 2, 4, 10, 20]
    assert cv.ranks_for(cfg, 4) == [1, 2, 4, 8]  # d = 4 duplicates r = 4
    assert cv.refactor_every(cfg, "mnist5000") == 31  # ceil(4000 / 64) // 2, the authors' len // 2
    assert cv.refactor_every(cfg, "patches") == 12    # ceil(1600 / 64) // 2
    runs = cv.study(cfg, "cnn", "mnist5000")
    normative = [g for g in runs["grid"] if "feedback.refactor_every" in g]
    assert normative == [{"feedback.rule": ["ldfa"], "feedback.subspace": ["normative"],
                          "feedback.rank": [1, 2, 4, 10, 20], "feedback.refactor_every": [31]}]


def test_missing_cifar10_files_are_reported_cleanly(tmp_path, capsys):
    cv = _analysis()
    status = cv.main(["--task=cifar10", f"--data_root={tmp_path}", f"--out={tmp_path / 'out'}"])
    assert status == 2
    err = capsys.readouterr().err
    assert "cifar" in err.lower() and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------------

def _check_results(out: Path, cfg) -> dict:
    results = json.loads((out / "results.json").read_text())
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["seeds"] == list(cfg.seeds) and "versions" in saved
    assert (out / "cnn_vit.png").stat().st_size > 0 and (out / "cnn_vit.svg").stat().st_size > 0
    # every plotted number is in results.json, and equals what the panels hold
    points = {(p["panel"], p["series"], p["rank"]): p["mean"] for p in results["plotted"]}
    for panel in results["panels"]:
        where = f"{panel['model']}-{panel['task']}"
        for ref, s in panel["references"].items():
            assert points[(where, ref, None)] == s["test_accuracy"]["mean"]
        for sub, entries in panel["ldfa"].items():
            assert [e["rank"] for e in entries] == panel["ranks"]
            for e in entries:
                assert points[(where, sub, e["rank"])] == e["test_accuracy"]["mean"]
                run = [r for r in panel["runs"] if r["subspace"] == sub and r["rank"] == e["rank"]]
                assert [r["test_accuracy"] for r in run] == e["test_accuracy_per_seed"]
        assert not panel["failed"]
        assert all(0.0 <= v <= 1.0 for v in points.values() if v is not None)
    return results


def test_tiny_setting_end_to_end(tmp_path):
    cv = _analysis()
    out = tmp_path / "tiny"
    results = cv.main(["--task=patches", "--model=cnn,vit", "--patches_d=2", "--patches_n_train=16",
                       "--patches_n_test=8", "--epochs=1", "--ranks=1", "--task_dim_multiples=1",
                       "--subspaces=normative,local", "--cnn_channels=2,2", "--cnn_hidden=4",
                       "--vit_dim=4", "--vit_heads=1", "--vit_depth=1", "--jobs=1", "-q", f"--out={out}"])
    cfg = replace(cv.Config(), seeds=(0,))
    assert [p["ranks"] for p in results["panels"]] == [[1, 2], [1, 2]]
    assert [p["refactor_every"] for p in results["panels"]] == [1, 1]
    _check_results(out, cfg)
    assert (out / "cnn-patches" / "study.toml").exists()


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
    cv = _analysis()
    out = tmp_path / "quick"
    results = cv.main(["--quick", "-q", f"--out={out}"])
    _check_results(out, cv.Config())
    (panel,) = results["panels"]
    assert panel["ranks"] == [1, 2, 4] and set(panel["ldfa"]) == set(cv.SUBSPACES)
