"""Receptive-field shape: the indices of bioplastic.metrics on filters with known answers, activation
maximisation against filters computed by hand, and the receptive_fields analysis end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import load_analysis, train_by_hand

from bioplastic import metrics

N = 33  # odd: the centre is a pixel


def grid(n: int = N):
    y, x = np.indices((n, n)) - (n - 1) / 2
    return y, x


def gaussian(sd: float, n: int = N) -> np.ndarray:
    """Unit-volume isotropic Gaussian centred on the array."""
    y, x = grid(n)
    g = np.exp(-(x ** 2 + y ** 2) / (2 * sd ** 2))
    return g / g.sum()


def dog(sd_c: float = 2.0, sd_s: float = 4.0, surround: float = 1.0, n: int = N) -> np.ndarray:
    """Difference of Gaussians: centre minus ``surround`` x surround (1: balanced, zero sum)."""
    return gaussian(sd_c, n) - surround * gaussian(sd_s, n)


def gabor(theta: float = 0.0, wavelength: float = 6.0, sd: float = 4.0, phase: float = 0.0,
          n: int = N) -> np.ndarray:
    y, x = grid(n)
    u = x * np.cos(theta) + y * np.sin(theta)
    return np.exp(-(x ** 2 + y ** 2) / (2 * sd ** 2)) * np.cos(2 * np.pi * u / wavelength + phase)


# --------------------------------------------------------------------------------------------------
# Indices on constructed filters
# --------------------------------------------------------------------------------------------------

def test_difference_of_gaussians_is_centre_surround_and_unoriented():
    f = dog()
    assert metrics.centre_surround_index(f) > 0.9
    assert metrics.surround_antagonism(f) == pytest.approx(1.0, abs=0.01)
    assert metrics.radial_fraction(f) > 0.9
    assert metrics.orientation_index(f) < 0.02


def test_gaussian_blob_has_no_surround():
    assert metrics.centre_surround_index(gaussian(3.0)) == 0.0
    assert metrics.orientation_index(gaussian(3.0)) < 0.02


def test_weaker_surround_scores_lower_but_above_a_blob():
    strong, weak = (metrics.centre_surround_index(dog(surround=s)) for s in (1.0, 0.5))
    assert 0.0 < weak < strong


@pytest.mark.parametrize("phase", [0.0, np.pi / 2])
def test_gabor_is_oriented_not_centre_surround(phase):
    f = gabor(phase=phase)
    assert metrics.orientation_index(f) > 0.85
    assert metrics.centre_surround_index(f) < 0.3


def test_rotated_gabor_keeps_its_orientation_index():
    values = [metrics.orientation_index(gabor(theta=t)) for t in np.linspace(0, np.pi, 7)]
    assert max(values) - min(values) < 0.03
    assert min(values) > 0.85


def test_noise_scores_low_on_both():
    rng = np.random.default_rng(1)
    for _ in range(5):
        f = rng.standard_normal((N, N))
        assert metrics.centre_surround_index(f) < 0.1
        assert metrics.orientation_index(f) < 0.15
        # noise confined to a 17 x 17 reach inside zeros, like a retina unit's maximiser
        g = np.pad(rng.standard_normal((17, 17)), 8)
        assert metrics.centre_surround_index(g) < 0.1
        assert metrics.orientation_index(g) < 0.15


@pytest.mark.parametrize("field", [dog(), gabor(0.4), dog(surround=0.6), gabor(1.0, phase=1.0)],
                         ids=["dog", "gabor", "weak-dog", "odd-gabor"])
def test_indices_are_free_of_amplitude_and_sign(field):
    for scale in (-1.0, 1e-6, 37.0):
        assert metrics.centre_surround_index(scale * field) == pytest.approx(
            metrics.centre_surround_index(field), abs=1e-9)
        assert metrics.orientation_index(scale * field) == pytest.approx(
            metrics.orientation_index(field), abs=1e-9)


def test_indices_are_nearly_free_of_spatial_scale():
    small, large = dog(1.5, 3.0, n=41), dog(3.0, 6.0, n=41)
    assert metrics.centre_surround_index(small) == pytest.approx(metrics.centre_surround_index(large), abs=0.05)
    g_small, g_large = gabor(0.3, 5.0, 3.0, n=41), gabor(0.3, 10.0, 6.0, n=41)
    assert metrics.orientation_index(g_small) == pytest.approx(metrics.orientation_index(g_large), abs=0.03)


def test_off_centre_field_is_found_where_it_is():
    f = np.roll(np.roll(dog(n=41), 5, axis=0), -4, axis=1)  # still inside the array
    assert metrics.rf_centre(f) == pytest.approx((25.0, 16.0), abs=1e-6)
    assert metrics.centre_surround_index(f) > 0.9


def test_radial_profile_of_a_known_field():
    f = np.zeros((5, 5))
    f[2, 2] = 4.0
    f[1, 2] = f[3, 2] = f[2, 1] = f[2, 3] = -1.0
    rings, means, counts = metrics.radial_profile(f, centre=(2.0, 2.0))
    assert rings.tolist() == [0, 1, 2]  # distances 0; 1, 1.41; 2, 2.24, 2.83
    assert counts.tolist() == [1, 8, 16]
    assert means[:2] == pytest.approx([4.0, -0.5])
    # centre weight 4 against a surround of -4: balanced
    assert metrics.surround_antagonism(f, centre=(2.0, 2.0)) == pytest.approx(1.0)


def test_blank_and_malformed_fields():
    assert np.isnan(metrics.centre_surround_index(np.zeros((9, 9))))
    assert np.isnan(metrics.orientation_index(np.zeros((9, 9))))
    with pytest.raises(ValueError, match="2-D"):
        metrics.orientation_index(np.zeros(9))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.centre_surround_index(np.full((5, 5), np.nan))


def test_metrics_do_not_import_torch():
    code = "import sys, bioplastic.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------
# Activation maximisation
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_mod(one_torch_thread):
    import torch

    return torch


def test_maximiser_of_a_linear_channel_is_its_filter(torch_mod):
    from torch import nn

    from bioplastic.torch.receptive import activation_maximisers

    torch = torch_mod
    torch.manual_seed(3)
    conv = nn.Conv2d(1, 3, 9, padding=4)
    images, acts = activation_maximisers(conv, image_size=24, steps=3, lr=0.5)
    w = conv.weight.detach().numpy()[:, 0]
    assert images.shape == (3, 1, 24, 24)
    for c in range(3):
        window = images[c, 0, 8:17, 8:17]  # the 9 x 9 pixels unit (12, 12) sees
        np.testing.assert_allclose(window, 3 * 0.5 * w[c], rtol=1e-5, atol=1e-6)
        rest = images[c, 0].copy()
        rest[8:17, 8:17] = 0
        assert not rest.any()
        # the activation reached: w . x + b with x = 1.5 w
        assert acts[c] == pytest.approx(1.5 * float((w[c] ** 2).sum()) + float(conv.bias.detach()[c]), rel=1e-5)


def test_maximiser_of_two_linear_convs_is_their_composed_filter(torch_mod):
    """The 17 x 17 effective filter of conv(conv(x)), summed by hand, against the ascent."""
    from torch import nn

    from bioplastic.torch.receptive import activation_maximisers

    torch = torch_mod
    torch.manual_seed(4)
    stage = nn.Sequential(nn.Conv2d(1, 4, 9, padding=4), nn.Conv2d(4, 2, 9, padding=4))
    images, _ = activation_maximisers(stage, image_size=32, steps=1, lr=1.0)
    w1 = stage[0].weight.detach().numpy()[:, 0]  # (4, 9, 9)
    w2 = stage[1].weight.detach().numpy()  # (2, 4, 9, 9)
    for c in range(2):
        k = np.zeros((17, 17))
        for j in range(4):
            for v0 in range(9):
                for v1 in range(9):
                    k[v0:v0 + 9, v1:v1 + 9] += w2[c, j, v0, v1] * w1[j]
        np.testing.assert_allclose(images[c, 0, 8:25, 8:25], k, rtol=1e-4, atol=1e-6)
        assert np.abs(images[c, 0]).sum() == pytest.approx(np.abs(k).sum(), rel=1e-4)


def test_maximisation_restores_mode_and_leaves_no_gradients(torch_mod):
    from torch import nn

    from bioplastic.torch.receptive import activation_maximisers

    stage = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
    stage.train()
    activation_maximisers(stage, channels=[1], image_size=8)
    assert stage.training
    assert all(p.grad is None for p in stage.parameters())


def test_maximisation_refuses_feedback_layers_and_bad_arguments(torch_mod):
    from torch import nn

    from bioplastic.torch import convert
    from bioplastic.torch.receptive import activation_maximisers

    stage = convert(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)),
                    "ldfa", rank=1, subspace="fixed")
    with pytest.raises(ValueError, match="feedback layers"):
        activation_maximisers(stage, image_size=8)
    plain = nn.Conv2d(1, 2, 3, padding=1)
    with pytest.raises(ValueError, match="channels 0..1"):
        activation_maximisers(plain, channels=[2], image_size=8)
    with pytest.raises(ValueError, match="steps"):
        activation_maximisers(plain, image_size=8, steps=0)


# --------------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------------

def analysis_module():
    """analyses/receptive_fields.py, loaded by path as the CLI does."""
    return load_analysis("receptive_fields")


def check_results(results: dict, ranks: list[int], seeds: list[int]):
    """Every plotted number is in the results: indices and accuracy per condition and seed, with
    summaries that agree with them, and the grids' images."""
    labels = ["bp"] + [f"r{r}" for r in ranks]
    for key in ("centre_surround", "orientation"):  # the dotted line: the untrained retina
        assert results["at_init"]["seeds"] == seeds
        assert results["at_init"][f"{key}_summary"]["mean"] == pytest.approx(np.mean(results["at_init"][key]))
    assert [e["label"] for e in results["conditions"]] == labels
    for e in results["conditions"]:
        assert e["seeds"] == seeds
        for key in ("centre_surround", "orientation", "test_accuracy"):
            vals = e[key]
            assert len(vals) == len(seeds)
            assert e[f"{key}_summary"]["mean"] == pytest.approx(np.mean(vals))
            if key != "test_accuracy":
                assert all(0.0 <= v <= 1.0 for v in vals)
                per_channel = e[f"{key}_per_channel"]
                assert len(per_channel[0]) == results["channels"]
                assert vals[0] == pytest.approx(np.mean([v for v in per_channel[0] if v is not None]))
        grid_ = results["grids"][e["label"]]
        images = np.asarray(grid_["images"])
        assert images.shape == (results["channels"], 17, 17)  # the retina's reach: two 9 x 9 convs
        assert sorted(grid_["channels"]) == list(range(results["channels"]))
        assert np.all(np.diff(grid_["activation"]) <= 1e-9)  # sorted by activation, as the authors


def test_tiny_run_end_to_end(tmp_path, torch_mod):
    rf = analysis_module()
    cfg = rf.Config(ranks=(2,), seeds=(0,), classes=2, n_train=4, n_test=2, epochs=1, channels=8,
                    hidden=8, vvs_depth=1, jobs=1, out=str(tmp_path))
    results = rf.run(cfg, progress=False)
    fields = results.pop("fields")
    assert set(fields) == {"bp_seed0", "r2_seed0"}
    check_results(results, [2], [0])
    # the indices in the results are those of the saved raw fields
    first = fields["r2_seed0"][0]
    assert results["conditions"][1]["centre_surround_per_channel"][0][0] == pytest.approx(
        metrics.centre_surround_index(first))
    paths = rf.plot(results, cfg)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == sorted(
        f"receptive_fields_{k}.{e}" for k in ("grid", "indices") for e in ("png", "svg"))


def test_ldfa_sits_on_the_first_vvs_layer_only(torch_mod):
    from torch import nn

    from bioplastic.torch.convert import FEEDBACK_TYPES

    rf = analysis_module()
    cfg = rf.Config(channels=8, hidden=8, vvs_depth=2)
    model = rf.build(cfg, 4, seed=0)
    feedback = [n for n, m in model.named_modules() if isinstance(m, FEEDBACK_TYPES)]
    assert feedback == ["vvs.0"]
    assert model.vvs[0].rank == 4 and model.vvs[0].rule == "ldfa"
    assert model.retina[2].out_channels == 32  # the authors' 32 retina output channels
    # bp: vvs.0 on the exact-backprop rule (native autograd), every other layer plain
    bp = rf.build(cfg, None, 0)
    assert [(n, m.rule) for n, m in bp.named_modules() if isinstance(m, FEEDBACK_TYPES)] == [("vvs.0", "bp")]
    assert all(type(m) is nn.Conv2d for m in model.retina if isinstance(m, nn.Conv2d))


# --------------------------------------------------------------------------------------------------
# The training is a study: the shipped file, the old protocol, resuming
# --------------------------------------------------------------------------------------------------

def test_shipped_study_file_is_the_default_analysis():
    """studies/receptive_fields.toml holds the same runs as the analysis's default config."""
    import tomllib

    from bioplastic import cli
    from bioplastic.experiment.study import load_study, study_from_mapping

    rf = analysis_module()
    shipped = load_study(cli.analyses_dir().parent / "studies" / "receptive_fields.toml", check=False)
    mine = study_from_mapping(rf.study(rf.Config()), check=False)
    strip = ("study", "import_path")
    assert ([{k: v for k, v in r.items() if k not in strip} for r in shipped.runs]
            == [{k: v for k, v in r.items() if k not in strip} for r in mine.runs])
    assert len(shipped.runs) == 6 * 3
    assert tomllib.loads(shipped.text)["name"] == "receptive_fields"


TINY = dict(ranks=(2,), seeds=(0,), classes=2, n_train=4, n_test=2, epochs=2, channels=8, hidden=8,
            vvs_depth=1, jobs=1)


def hand_trained(torch, cfg, rank):
    """The analysis's protocol written out, as its own loop trained before the study: Adam over
    model.parameters() with coupled L2 decay, ExponentialLR stepped per epoch, cross-entropy on the
    labels, ldfa on vvs.0 alone; the batch order of numpy's generator of the seed (the study's)."""
    from torch import nn

    from bioplastic import data
    from bioplastic.torch import convert
    from bioplastic.torch.models import RetinaVVS

    seed = cfg.seeds[0]
    ds = data.load_patches(d=cfg.classes, size=cfg.image_size, n_train=cfg.n_train, n_test=cfg.n_test,
                           seed=cfg.data_seed)
    torch.manual_seed(seed)
    model = RetinaVVS(image_size=cfg.image_size, in_channels=1, bottleneck=cfg.bottleneck,
                      vvs_depth=cfg.vvs_depth, channels=cfg.channels, hidden=cfg.hidden, n_classes=cfg.classes)
    if rank is not None:
        others = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n != "vvs.0"]
        model = convert(model, "ldfa", rank={"vvs.0": rank}, subspace=cfg.subspace, exclude=others,
                        seed=seed, clip_rank=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    return train_by_hand(model, ds, opt, sched, cfg.epochs, cfg.batch_size, seed)


def test_study_trains_the_analysis_protocol_bit_for_bit(tmp_path, torch_mod):
    """Each run's final weights (the snapshot the maximisation reads) equal those of the protocol
    written out by hand, for bp and ldfa: the study format expresses it exactly."""
    rf = analysis_module()
    cfg = rf.Config(**TINY, out=str(tmp_path))
    loaded, folder, results, _ = rf.train(cfg, progress=False)
    assert {r["state"] for r in results.values()} == {"finished"}
    for label, rank in (("bp", None), ("r2", 2)):
        run = rf.find_run(loaded.runs, label, 0)
        model, epoch = rf.model_of(run, folder)
        assert epoch == cfg.epochs
        trained, hand = model.state_dict(), hand_trained(torch_mod, cfg, rank).state_dict()
        assert set(trained) == set(hand)
        for key in hand:
            np.testing.assert_array_equal(trained[key].numpy(), hand[key].numpy(), err_msg=f"{label} {key}")
        untrained, zero = rf.model_of(run, folder, epoch=0)
        assert zero == 0
        assert all(torch_mod.equal(v, rf.build(cfg, rank, 0).state_dict()[k])
                   for k, v in untrained.state_dict().items())


def test_resume_keeps_finished_runs(tmp_path, torch_mod):
    rf = analysis_module()
    cfg = rf.Config(**{**TINY, "epochs": 1}, bp=False, out=str(tmp_path))
    first = rf.run(cfg, progress=False)
    metrics = sorted((tmp_path / "study" / "runs").glob("*/metrics.jsonl"))
    stamps = [p.stat().st_mtime_ns for p in metrics]
    again = rf.run(rf.Config(**{**TINY, "epochs": 1}, bp=False, out=str(tmp_path), resume=True), progress=False)
    assert [p.stat().st_mtime_ns for p in metrics] == stamps  # not trained again
    for key in ("centre_surround", "orientation", "test_accuracy"):
        assert again["conditions"][0][key] == first["conditions"][0][key]
    np.testing.assert_array_equal(again["fields"]["r2_seed0"], first["fields"]["r2_seed0"])


def test_config_mistakes_name_the_problem():
    rf = analysis_module()
    with pytest.raises(ValueError, match="nothing to run"):
        rf.check(rf.Config(ranks=(), bp=False))
    with pytest.raises(ValueError, match="2..16"):
        rf.check(rf.Config(classes=20))


@pytest.mark.slow
def test_quick_mode_through_the_command_line(tmp_path):
    from bioplastic import cli

    out = tmp_path / "rf"
    assert cli.main(["analysis", "receptive_fields", "--quick", f"--out={out}"]) == 0
    results = json.loads((out / "results.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["epochs"] == 1 and config["seed"] == [0]
    check_results(results, [1, 32], [0])
    assert (out / "fields.npz").exists()
    for name in ("receptive_fields_grid", "receptive_fields_indices"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{name}.svg").exists()


def test_diverged_runs_count_as_diverged_and_still_plot(tmp_path, torch_mod):
    """A learning rate of 1e6 overflows the loss in epoch 2: no accuracy, no index, a figure."""
    rf = analysis_module()
    cfg = rf.Config(**{**TINY, "lr": 1e6}, out=str(tmp_path))
    results = rf.run(cfg, progress=False)
    results.pop("fields")
    assert [r["state"] for r in results["runs"]] == ["diverged", "diverged"]
    assert [r["weights_epoch"] for r in results["runs"]] == [0, 0]  # the last snapshot before it
    for e in results["conditions"]:
        for key in ("centre_surround", "orientation", "test_accuracy"):
            assert e[f"{key}_summary"] == {"mean": None, "sd": None, "n": 0, "diverged": 1}
    assert len(rf.plot(results, cfg)) == 4
