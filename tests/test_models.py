"""The paper's models: architecture as specified, conversion keeps the forward, converted models learn."""

import math

import pytest
import torch
from torch import nn

from bioplastic.torch import convert
from bioplastic.torch.conv import FeedbackConv2d
from bioplastic.torch.linear import FeedbackLinear
from bioplastic.torch.models import MLP, VGG, VGG_PLAN, FusedQKV, RetinaVVS, ViT, make_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n=96, classes=4, side=16, channels=3, seed=0):
    """Images whose class is the quadrant holding a bright Gaussian blob, plus pixel noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    q = side // 4
    centres = torch.tensor([[q, q], [q, 3 * q], [3 * q, q], [3 * q, 3 * q]])[labels]
    jitter = torch.randint(-1, 2, (n, 2), generator=gen)
    cy, cx = (centres + jitter).T
    blob = torch.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 4.0)
    images = blob[:, None].expand(-1, channels, -1, -1) + 0.3 * torch.randn(
        n, channels, side, side, generator=gen)
    return images, labels


def train(model, x, y, steps, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_mlp_is_the_papers():
    model = MLP(3072, (512, 512, 512), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (3072, 512), (512, 512), (512, 512), (512, 10)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 3
    expected = 3072 * 512 + 2 * 512 * 512 + 512 * 10 + 3 * 512 + 10 + 3 * 2 * 512  # W, b, BN
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vgg_is_the_papers_and_scales():
    model = VGG()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [c for c in VGG_PLAN if c != "M"]
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert [(m.in_features, m.out_features) for m in model.head if isinstance(m, nn.Linear)] == [
        (512, 256), (256, 10)]
    small = VGG(width=1 / 8, n_classes=4)
    assert [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)] == [
        8, 8, 16, 16, 32, 32, 64, 64]
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_vit_and_retina_shapes():
    vit = ViT(dim=32, depth=2, heads=4)
    assert vit.patch_embed.kernel_size == (4, 4) and vit.pos_embed.shape == (1, 8 * 8 + 1, 32)
    assert isinstance(vit.blocks[0].attn.qkv, FusedQKV)
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert ViT(dim=32, depth=1, heads=4, attention="torch")(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    retina = RetinaVVS(bottleneck=2, hidden=64)
    convs = [m for m in retina.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in convs] == [
        (1, 32, (9, 9)), (32, 2, (9, 9)), (2, 32, (9, 9)), (32, 32, (9, 9)), (32, 32, (9, 9))]
    assert retina(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_cnn_shapes():
    cnn = make_model("cnn")
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(1, 16, (5, 5)), (16, 32, (5, 5))]
    assert [(m.in_features, m.out_features) for m in cnn.head if isinstance(m, nn.Linear)] == [
        (32 * 7 * 7, 128), (128, 10)]
    assert sum(p.numel() for p in cnn.parameters()) == (16 * 25 + 16) + (32 * 16 * 25 + 32) + (
        1568 * 128 + 128) + (128 * 10 + 10)
    assert cnn(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="divisible by 4"):
        make_model("cnn", image_size=30)


def test_bad_model_options():
    with pytest.raises(ValueError, match="valid options: mlp, cnn, vgg, vit, retina_vvs"):
        make_model("resnet")
    with pytest.raises(ValueError, match="patch=5 must divide image_size=32"):
        ViT(patch=5)
    with pytest.raises(ValueError, match="heads=3 must divide dim=32"):
        ViT(dim=32, heads=3)
    with pytest.raises(ValueError, match="valid options: fused, torch"):
        ViT(attention="flash")
    with pytest.raises(ValueError, match="width"):
        VGG(width=0)


@pytest.mark.parametrize("name, options, shape", [
    ("mlp", dict(in_features=48, hidden=(32, 32), out_features=4), (6, 3, 4, 4)),
    ("cnn", dict(image_size=16, channels=(4, 6), hidden=8, n_classes=4), (6, 1, 16, 16)),
    ("vgg", dict(width=1 / 8, n_classes=4), (6, 3, 16, 16)),
    ("vit", dict(image_size=16, dim=16, depth=2, heads=2, n_classes=4), (6, 3, 16, 16)),
    ("retina_vvs", dict(image_size=16, bottleneck=2, channels=4, hidden=8, n_classes=4),
     (6, 1, 16, 16)),
])
def test_eval_forward_unchanged_by_conversion(name, options, shape):
    torch.manual_seed(0)
    model = make_model(name, **options)
    train(model, torch.randn(shape), torch.arange(6) % 4, 2, 1e-2)  # move BN running stats
    model.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
        converted = convert(model, rule="ldfa", rank=2, subspace="local").eval()
        assert torch.equal(converted(x), expected)
    n_layers = sum(type(m) in (nn.Linear, nn.Conv2d, FusedQKV) for m in model.modules())
    assert sum(isinstance(m, (FeedbackLinear, FeedbackConv2d)) for m in converted.modules()) == n_layers


@pytest.mark.parametrize("name, options", [
    ("vgg", dict(width=1 / 8, n_classes=4)),
    ("vit", dict(image_size=16, dim=32, depth=2, heads=2, n_classes=4)),
])
def test_converted_models_learn_a_small_image_task(name, options):
    """30 Adam steps of ldfa (r = 2, local) on 96 blob images: the loss falls well below chance."""
    x, y = blobs()
    torch.manual_seed(0)
    model = convert(make_model(name, **options), rule="ldfa", rank=2, subspace="local", seed=0)
    losses = train(model, x, y, 30, 3e-3)
    chance = torch.log(torch.tensor(4.0)).item()
    assert losses[0] > 0.8 * chance
    assert min(losses[-5:]) < 0.5 * losses[0], losses
    with torch.no_grad():
        accuracy = (model.eval()(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.6


def test_convert_refuses_unsupported_layers_by_name():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv1d(2, 2, 3), nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(TypeError, match=r"1 \(Conv1d\).*supported types: Linear, Conv2d, "
                                        r"MultiheadAttention.*unsupported='bp'"):
        convert(model, rule="fa")
    out = convert(model, rule="fa", unsupported="bp")
    assert isinstance(out[0], FeedbackConv2d) and type(out[1]) is nn.Conv1d
    with pytest.raises(ValueError, match=r"rank 99 for layer 'features\.0' is out of range: at most "
                                         r"8 .*clip_rank"):
        convert(VGG(width=1 / 8), rule="ldfa", rank=99)


# ----------------------------------------------------------------------------- compute accounting
def test_flop_count_of_the_4_layer_mlp():
    """The 3072-2048-2048-2048-10 MLP at batch 256: counted layer by layer, checked by hand.

    bp: 3 products per layer but no input gradient for the first; fixed ldfa: 2 per layer plus
    g P^T and z Q^T for layers 2-4; ratio about 0.78 (the issue's reference point).
    """
    from bioplastic.bench.step_time import layer_shapes, step_flops

    sizes, n, r = [3072, 2048, 2048, 2048, 10], 256, 1
    torch.manual_seed(0)
    model = MLP(sizes[0], sizes[1:-1], sizes[-1])
    x = torch.randn(n, 3, 32, 32)
    products = [n * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    bp = step_flops(layer_shapes(model, x))
    assert bp["total"] == 2 * (3 * sum(products) - products[0])
    ldfa = step_flops(layer_shapes(convert(model, rule="ldfa", rank=r, subspace="fixed"), x))
    thin = sum(n * r * (a + b) for a, b in zip(sizes[1:-1], sizes[2:]))
    assert ldfa["total"] == 2 * (2 * sum(products) + thin)
    assert abs(ldfa["total"] / bp["total"] - 0.779) < 0.002


def test_flop_count_sees_attention_and_fused_ranks():
    from bioplastic.bench.step_time import layer_flops, layer_shapes, step_flops

    torch.manual_seed(0)
    n, dim, tokens = 2, 16, 5  # 8x8 image, patch 4: 4 patches + class token
    x = torch.randn(n, 3, 8, 8)
    # a plain nn.MultiheadAttention applies its projections without calling them: still counted
    plain = [step_flops(layer_shapes(ViT(image_size=8, patch=4, dim=dim, depth=1, heads=2,
                                         attention=a), x)) for a in ("fused", "torch")]
    assert plain[0] == plain[1]
    for attention in ("fused", "torch"):
        vit = ViT(image_size=8, patch=4, dim=dim, depth=1, heads=2, n_classes=3, attention=attention)
        shapes = layer_shapes(convert(vit, rule="ldfa", rank=2), torch.randn(n, 3, 8, 8))
        kinds = [(s.kind, s.rows, s.fan_in, s.out, s.rank, s.input_grad) for s in shapes]
        assert kinds == [
            ("conv", n * 4, 3 * 16, dim, 2, False),              # patch embedding, input is data
            ("linear", n * tokens, dim, 3 * dim, 6, True),       # fused qkv: rank 3r
            ("linear", n * tokens, dim, dim, 2, True),           # output projection
            ("attention", n * tokens, tokens, dim, None, True),  # q k^T and A v (hook fires last)
            ("linear", n * tokens, dim, 2 * dim, 2, True),       # MLP
            ("linear", n * tokens, 2 * dim, dim, 2, True),
            ("linear", n, dim, 3, 2, True)]                      # head on the class token
        att = layer_flops(shapes[3])
        assert att["forward"] == 2 * 2 * n * tokens * tokens * dim
        assert att["input_grad"] == 2 * att["forward"]


def test_interleaved_timing_bookkeeping():
    from bioplastic.bench.step_time import summarize_times, time_interleaved

    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("bp", "a", "b")}
    times = time_interleaved(steps, rounds=4, warmup=2)
    assert {k: len(v) for k, v in times.items()} == {"bp": 4, "a": 4, "b": 4}
    assert calls[:3] == ["bp", "a", "b"] and calls[3:6] == ["a", "b", "bp"]  # order rotates
    summary = summarize_times({"bp": [1.0, 2.0, 3.0], "a": [2.0, 2.0, 6.0]}, "bp")
    assert summary["a"]["ratio"] == 2.0  # median of per-round ratios 2, 1, 2
    assert summary["a"]["ratio_of_medians"] == 1.0 and summary["a"]["median_s"] == 2.0


@pytest.mark.slow
def test_bench_command_quick(tmp_path):
    import json

    from bioplastic.cli import main

    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    variants = results["models"]["mlp512"]["variants"]
    assert set(variants) == {"bp", "ldfa_r1", "ldfa_r10", "plain_r1", "plain_r10"}
    assert 0.5 < variants["ldfa_r10"]["flop_ratio"] < 1 and (tmp_path / "bench.png").exists()
    for v in variants.values():  # what the steps executed is what the analytic count says
        assert v["counted"]["matmul_flops"] == v["flops"]["total"]
        assert math.isfinite(v["cost_ratio"]) and v["cost_ratio"] > 0
