r"""Compute benchmark: training-step time of LDFA against backprop, measured and counted.

A training step is forward, backward and optimiser step (plain SGD) on one batch. Backprop's
backward costs two matrix products per layer (the weight gradient :math:`g^\top x` and the input
gradient :math:`g W`); LDFA replaces the second by two thin products through the rank-r bottleneck,
:math:`(g P^\top) Q^\top`, and adds the thin products of its subspace rule. The analytic count of
matrix-multiply FLOPs (2 per multiply-add) of a step is therefore, per layer with forward cost F,

.. math::

    \text{bp: } F + F + F\,[\text{input needs a gradient}], \qquad
    \text{ldfa: } F + F + c_r,

with :math:`c_r` linear in r (:func:`bioplastic.bench.flops.layer_flops`); the first layer computes no input gradient in
either, so a 4-layer MLP 3072-2048-2048-2048-10 has ldfa/bp -> 0.78 as r -> 0, and deep networks
approach 2/3. Attention products (q k^T, A v: backward twice forward) count in both; norms,
activations and the optimiser count in neither, which is why measured ratios sit above the
analytic ones where those are a visible share of the time.

Next to it stands the counted cost model of :mod:`bioplastic.bench.costmodel`: every operator one step
actually executes (its products, whose FLOPs must equal the analytic count, and every other
operator's bytes), priced on a roofline whose constants are measured in the same run.

The measured ratio comes from one process: every variant (bp, ldfa at each r, and for the MLPs a
hand-written LDFA MLP without the conversion machinery) takes one step per round, round after round,
so that drifts in machine load hit all of them alike; the ratio is the median over rounds of the
per-round time ratio, next to the ratio of median step times. On a shared CPU, ``clock="cpu"``
(process CPU time) with ``threads=1`` is far less disturbed by other processes than wall time.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveInt

from .costmodel import Machine, calibrate, count_ops, predict_seconds, summarize_ops
from .flops import LayerShape, layer_flops, layer_shapes, step_flops
from .report import format_table, plot

#: Benchmarked models: name -> (bioplastic.torch.models name, its keyword arguments, input shape
#: without the batch). The MLPs are the paper's 4-layer MLP at two widths; all have 10 classes.
BENCH_MODELS: dict[str, tuple[str, dict, tuple[int, ...]]] = {
    "mlp512": ("mlp", dict(in_features=3072, hidden=(512, 512, 512), out_features=10), (3, 32, 32)),
    "mlp2048": ("mlp", dict(in_features=3072, hidden=(2048, 2048, 2048), out_features=10),
                (3, 32, 32)),
    "vgg": ("vgg", dict(in_channels=3, n_classes=10), (3, 32, 32)),
    "vit": ("vit", dict(dim=192, depth=6, heads=3, mlp_ratio=2.0, n_classes=10), (3, 32, 32)),
}


@dataclass(frozen=True)
class BenchConfig:
    """What ``bioplastic bench`` measures (every field settable as ``--key=value``)."""

    models: tuple[str, ...] = ("mlp512", "mlp2048", "vgg", "vit")  # names in BENCH_MODELS
    ranks: tuple[PositiveInt, ...] = (1, 4, 10, 32)  # ldfa ranks r (fused qkv maps get 3r)
    batch: PositiveInt = 256           # MLP batch
    conv_batch: PositiveInt = 64       # VGG and ViT batch (CPU time stays minutes)
    subspace: str = "local"            # ldfa subspace rule of every layer
    rounds: PositiveInt = 15           # timed rounds (one step of every variant per round)
    warmup: NonNegativeInt = 3         # untimed rounds first (allocator, oneDNN kernels)
    device: str = "cpu"                # "cpu", "cuda" or "cuda:N"
    clock: Literal["wall", "cpu"] = "wall"  # or process CPU time: robust on a busy machine
    threads: NonNegativeInt = 0        # torch CPU threads; 0 keeps torch's default
    plain_baseline: bool = True        # also time a hand-written LDFA MLP (machinery overhead)
    profile: bool = True               # torch.profiler breakdown of one bp and one ldfa step
    seed: int = 0
    out: str = "results/bench"


#: ``--quick`` settings: one model, two ranks, a few rounds, no profile.
QUICK = {"models": ("mlp512",), "ranks": (1, 10), "rounds": 3, "warmup": 1, "profile": False}


def check(cfg: BenchConfig) -> None:
    """Raise a clear ValueError on a config the benchmark cannot run (before any work)."""
    import torch

    unknown = [m for m in cfg.models if m not in BENCH_MODELS]
    if unknown or not cfg.models:
        raise ValueError(f"unknown bench models {unknown}; valid options: {', '.join(BENCH_MODELS)}")
    bad = [r for r in cfg.ranks if isinstance(r, bool) or not isinstance(r, int) or r < 1]
    if bad or not cfg.ranks:
        raise ValueError(f"ranks must be positive ints; got {list(cfg.ranks)}")
    for key, low in (("batch", 1), ("conv_batch", 1), ("rounds", 1), ("warmup", 0), ("threads", 0)):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key} must be an int >= {low}; got {value!r}")
    if cfg.clock not in CLOCKS:
        raise ValueError(f"unknown clock {cfg.clock!r}; valid options: {', '.join(CLOCKS)}")
    if not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        raise ValueError(f"unknown device {cfg.device!r}; valid options: cpu, cuda, cuda:N")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False; use "
                         "--device=cpu")


# ----------------------------------------------------------------------------------------------
# A hand-written LDFA MLP: the "plain custom autograd function" baseline of the machinery
# ----------------------------------------------------------------------------------------------

def _plain_mlp(widths: Sequence[int], rank: int, generator, device, dtype):
    """An MLP [Linear, BatchNorm1d, ReLU]... with LDFA (local rule) in one bare autograd Function.

    No layer classes, no conversion: parameters in lists, one Function; the time the conversion
    machinery may add is measured against this.
    """
    import torch
    from torch import nn

    from ..torch.functional import local_grads, local_grads_from_weight_grad, weight_grad_is_cheaper

    class LowRankLinear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b, p, q):
            ctx.save_for_backward(x, p, q)
            return torch.addmm(b, x, w.T)

        @staticmethod
        def backward(ctx, g):
            x, p, q = ctx.saved_tensors
            grad_w = g.T @ x
            if not ctx.needs_input_grad[0]:  # data input: no feedback, as in FeedbackLinear
                # (which returns zero P, Q gradients for DistributedDataParallel: 2 fills and
                # their SGD updates more than here)
                return None, grad_w, g.sum(0), None, None
            z = g @ p.T
            # the same products as FeedbackLinear's local rule
            grad_p, grad_q = (local_grads_from_weight_grad(p, q, grad_w)
                              if weight_grad_is_cheaper(*x.shape, g.shape[1])
                              else local_grads(p, q, None, x, g, z))
            return z @ q.T, grad_w, g.sum(0), grad_p, grad_q

    class PlainMLP(nn.Module):
        def __init__(self):
            super().__init__()
            pairs = list(zip(widths[:-1], widths[1:]))
            kw = dict(device=device, dtype=dtype)
            self.w = nn.ParameterList(nn.Parameter(torch.randn(o, i, generator=generator).to(**kw)
                                                   / i ** 0.5) for i, o in pairs)
            self.b = nn.ParameterList(nn.Parameter(torch.zeros(o, **kw)) for _, o in pairs)
            self.p = nn.ParameterList(nn.Parameter(torch.randn(min(rank, i, o), o, generator=generator)
                                                   .to(**kw) / o ** 0.5) for i, o in pairs)
            self.q = nn.ParameterList(nn.Parameter(torch.randn(i, min(rank, i, o), generator=generator)
                                                   .to(**kw) / rank ** 0.5) for i, o in pairs)
            self.bn = nn.ModuleList(nn.BatchNorm1d(o, **kw) for _, o in pairs[:-1])

        def forward(self, x):
            h = x.flatten(1)
            for i in range(len(self.w)):
                h = LowRankLinear.apply(h, self.w[i], self.b[i], self.p[i], self.q[i])
                if i < len(self.bn):
                    h = torch.relu(self.bn[i](h))
            return h

    return PlainMLP()


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------

def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_step(model, x, y, lr: float = 1e-3, momentum: float = 0.0) -> Callable[[], None]:
    """One training step: zero_grad, forward, cross-entropy, backward, SGD step (plain by default)."""
    import torch

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


#: Clocks a benchmark can read: wall time, or the CPU time of this process (all its threads),
#: which a busy shared machine disturbs far less (on CPU only; a GPU step needs wall time).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_interleaved(steps: dict[str, Callable[[], None]], rounds: int, warmup: int,
                     device: str = "cpu", clock: str = "wall") -> dict[str, list[float]]:
    """Seconds per step of each variant, one step of every variant per round (order rotated)."""
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; valid options: {', '.join(CLOCKS)}")
    if clock == "cpu" and device.startswith("cuda"):
        raise ValueError("clock 'cpu' measures host CPU time; time a cuda device with clock 'wall'")
    now = CLOCKS[clock]
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(warmup + rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            _sync(device)
            t0 = now()
            steps[name]()
            _sync(device)
            if i >= warmup:
                times[name].append(now() - t0)
    return times


def summarize_times(times: dict[str, list[float]], baseline: str) -> dict[str, dict[str, float]]:
    """Median step time per variant and its ratio to ``baseline`` (ratio of medians, and the median
    of per-round ratios, which cancels load drifts common to a round)."""
    base = times[baseline]
    out = {}
    for name, t in times.items():
        out[name] = {"median_s": statistics.median(t), "times_s": t,
                     "ratio_of_medians": statistics.median(t) / statistics.median(base),
                     "ratio": statistics.median(a / b for a, b in zip(t, base))}
    return out


#: Operators (name prefixes) whose self time counts as matrix products in the profile breakdown.
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
              "aten::convolution_backward", "aten::_scaled_dot_product", "aten::_flash_attention",
              "aten::_efficient_attention", "aten::cudnn_convolution", "aten::mkldnn_matmul")


def profile_step(step: Callable[[], None], device: str = "cpu", repeats: int = 3) -> dict[str, Any]:
    """Self time per step by operator (mean of ``repeats`` steps after the caller's warm-up), and
    the share of matrix products (:data:`MATMUL_OPS`)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda")
                                           else [])
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            step()
        _sync(device)
    rows = []
    for e in prof.key_averages():
        t = e.self_device_time_total if device.startswith("cuda") else e.self_cpu_time_total
        rows.append((e.key, t / 1e6 / repeats))
    rows.sort(key=lambda r: -r[1])
    total = sum(t for _, t in rows)
    matmul = sum(t for k, t in rows if k.startswith(MATMUL_OPS))
    return {"total_s": total, "matmul_share": matmul / total if total else math.nan,
            "top": [{"op": k, "self_s": t} for k, t in rows[:12]]}


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------

def bench_model(name: str, cfg: BenchConfig, machine: Machine | None = None) -> dict[str, Any]:
    """bp and ldfa at every rank of ``cfg`` on one model: measured times, ratios, FLOPs, profile,
    and the counted cost model priced on ``machine`` (calibrated here when None)."""
    import torch

    from ..torch.convert import convert
    from ..torch.models import make_model

    kind, options, in_shape = BENCH_MODELS[name]
    batch = cfg.batch if kind == "mlp" else cfg.conv_batch
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn((batch, *in_shape), generator=gen).to(cfg.device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(cfg.device)
    torch.manual_seed(cfg.seed)
    base = make_model(kind, **options).to(cfg.device)
    models = {"bp": base}
    for r in cfg.ranks:
        models[f"ldfa_r{r}"] = convert(base, rule="ldfa", rank=r, subspace=cfg.subspace,
                                       clip_rank=True, seed=cfg.seed)
    if cfg.plain_baseline and kind == "mlp":
        widths = [options["in_features"], *options["hidden"], options["out_features"]]
        for r in cfg.ranks:
            models[f"plain_r{r}"] = _plain_mlp(widths, r, gen, cfg.device, torch.float32)
    for m in models.values():
        m.train()
    # the hand-written MLP has no layer modules to hook: it runs the same products as ldfa_r
    flops = {v: step_flops(layer_shapes(models[v.replace("plain", "ldfa")], x)) for v in models}
    machine = machine or calibrate(cfg.device, clock=CLOCKS[cfg.clock])
    steps = {v: make_step(m, x, y) for v, m in models.items()}
    times = time_interleaved(steps, cfg.rounds, cfg.warmup, cfg.device, cfg.clock)
    measured = summarize_times(times, "bp")
    out: dict[str, Any] = {"batch": batch, "variants": {}}
    for v in models:
        flop_ratio = flops[v]["total"] / flops["bp"]["total"]
        out["variants"][v] = {**measured[v], "flops": flops[v], "flop_ratio": flop_ratio,
                              "gap": measured[v]["ratio"] / flop_ratio - 1}
    # the counted cost model: what each step executes, priced on this machine's roofline
    counted = {v: count_ops(steps[v]) for v in models}
    priced = {v: predict_seconds(counted[v], machine) for v in models}
    bp_flops = sum(rec.flops for rec in counted["bp"])
    for v, d in out["variants"].items():
        d["counted"] = {"matmul_flops": sum(rec.flops for rec in counted[v]),
                        "other_bytes": sum(rec.bytes for rec in counted[v] if not rec.flops),
                        "ops": len(counted[v]), "predicted_s": priced[v]}
        d["counted_flop_ratio"] = d["counted"]["matmul_flops"] / bp_flops
        d["cost_ratio"] = priced[v]["total"] / priced["bp"]["total"]
        d["gap_cost"] = d["ratio"] / d["cost_ratio"] - 1
    out["bp_ops"] = dict(list(summarize_ops(counted["bp"]).items())[:12])
    for r in cfg.ranks:
        if f"plain_r{r}" in models:  # conversion machinery overhead against the bare Function
            out["variants"][f"ldfa_r{r}"]["overhead_vs_plain"] = statistics.median(
                a / b for a, b in zip(times[f"ldfa_r{r}"], times[f"plain_r{r}"])) - 1
    if cfg.profile:
        probe = f"ldfa_r{10 if 10 in cfg.ranks else cfg.ranks[0]}"
        out["profile"] = {v: profile_step(steps[v], cfg.device) for v in ("bp", probe)}
        # the FLOP ratio applied to bp's matrix-product time only, the rest of its step unchanged
        share = out["profile"]["bp"]["matmul_share"]
        for v, d in out["variants"].items():
            d["profile_prediction"] = 1 - share * (1 - d["flop_ratio"])
    return out


def run(cfg: BenchConfig, progress: bool = False) -> dict[str, Any]:
    """Benchmark every model of ``cfg``; returns a JSON-able dict (no files written).

    ``progress``: show a :class:`~bioplastic.experiment.progress.Progress` bar (stderr), a step
    per model.
    """
    import torch

    from ..experiment.progress import Progress

    check(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device_name = (torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda")
                   else f"cpu ({torch.get_num_threads()} threads)")
    machine = calibrate(cfg.device, clock=CLOCKS[cfg.clock])
    results: dict[str, Any] = {"device": device_name, "machine": asdict(machine), "models": {}}
    with Progress(len(cfg.models), desc="bench", enabled=progress) as bar:
        bar.write(f"bench {', '.join(cfg.models)} on {device_name}")
        for name in cfg.models:
            results["models"][name] = bench_model(name, cfg, machine)
            bar.update(1, name)
    return results


def main(cfg: BenchConfig, quiet: bool = False) -> dict[str, Any]:
    """Run, write ``results.json`` + ``config.json`` + ``bench.png`` under ``cfg.out``, print a table."""
    from ..experiment import save_run

    results = run(cfg, progress=not quiet)
    save_run(cfg.out, asdict(cfg), results, seed=cfg.seed)
    figure = plot(results, cfg)
    if not quiet:
        print(format_table(results, cfg))
        print(f"results: {Path(cfg.out) / 'results.json'}; figure: {figure}")
    return results


def command(argv: Sequence[str] | None, prog: str = "bioplastic bench") -> dict[str, Any]:
    """``bioplastic bench [--key=value ...] [--quick] [--config FILE] [-q]``: read, run, report.

    A mistake in the settings prints every problem to stderr and exits with status 2.
    """
    from ..experiment.cmdline import parse_command_line

    cl = parse_command_line(BenchConfig(), argv, prog=prog, quick=QUICK, check=check,
                            description="Training-step time of LDFA against backprop: measured "
                                        "ratio, analytic FLOP ratio and counted cost model.")
    return main(cl.config, quiet=cl.quiet)


__all__ = ["BENCH_MODELS", "BenchConfig", "CLOCKS", "LayerShape", "MATMUL_OPS", "QUICK", "bench_model",
           "check", "command", "format_table", "layer_flops", "layer_shapes", "main", "make_step",
           "plot", "profile_step", "run", "step_flops", "summarize_times", "time_interleaved"]
