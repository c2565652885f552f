r"""Data-parallel training of converted models (``DistributedDataParallel`` under ``torchrun``).

A converted model is an ordinary ``nn.Module`` whose feedback factors receive ordinary ``.grad``
tensors, so DDP averages them across processes like any gradient. For that average to equal the
gradient of one process on the whole (global) batch, each rule's gradient must be a mean of
per-sample terms over the local batch (with equal shards). With :math:`g = \delta / N` from a
batch-mean loss:

* weights, biases, and ldfa-``local``'s :math:`(xQ)^\top g`, :math:`x^\top (g P^\top)`: sums of
  per-sample products of ``g``: means over the batch;
* ``oja``: linear in :math:`C = N g^\top g = \langle \delta\delta^\top\rangle`, again a batch mean;
* ``normative``: independent of the data, the same on every process;
* ``fixed``, ``fa``: nothing to average; ``kp``: B.grad is W's.

So every rule trains identically under DDP and in one process, up to floating-point summation
order; :func:`compare` and ``tests/test_ddp.py`` check this to 1e-10 in float64. (Batch norm is the
exception of any DDP run, feedback or not: each process normalises by its own batch statistics;
use ``nn.SyncBatchNorm`` on GPUs or models without it, as here.)

Run the check with two CPU processes::

    torchrun --standalone --nproc_per_node=2 -m bioplastic.torch.distributed --out=ddp.npz

Each process trains on its contiguous shard of every global batch; rank 0 writes the final
parameters of each checked rule to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: Feedback variants trained by the check: (rule, subspace).
VARIANTS = (("ldfa", "local"), ("ldfa", "oja"), ("ldfa", "normative"), ("kp", None))


@dataclass(frozen=True)
class CheckConfig:
    """The DDP-vs-single-process check: a small CNN on synthetic images, plain SGD."""

    steps: int = 4          # SGD steps
    batch: int = 8          # global batch (split evenly over the processes)
    rank: int = 2           # ldfa feedback rank
    lr: float = 0.05
    seed: int = 0


def check_model(rule: str, subspace: str | None, cfg: CheckConfig) -> nn.Module:
    """conv(3->6, stride 2) - ReLU - conv(6->8) - ReLU - mean pool - linear(8->4), converted, float64."""
    from .convert import convert
    from .linear import takes_rank

    torch.manual_seed(cfg.seed)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4)).double()
    kw = dict(rank=cfg.rank, subspace=subspace) if takes_rank(rule) else {}
    return convert(model, rule=rule, seed=cfg.seed, **kw)


def global_batches(cfg: CheckConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``cfg.steps`` seeded batches: images (batch, 3, 8, 8) float64 and labels (batch,) in 0..3."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    return [(torch.randn(cfg.batch, 3, 8, 8, generator=gen, dtype=torch.float64),
             torch.randint(0, 4, (cfg.batch,), generator=gen)) for _ in range(cfg.steps)]


def train(model: nn.Module, batches, lr: float, shard: tuple[int, int] = (0, 1)) -> nn.Module:
    """Plain SGD with a batch-mean cross-entropy, each step on shard ``(index, count)`` of the batch."""
    index, count = shard
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    for x, y in batches:
        if len(x) % count:
            raise ValueError(f"global batch {len(x)} does not split evenly over {count} processes")
        part = slice(index * len(x) // count, (index + 1) * len(x) // count)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[part]), y[part]).backward()
        opt.step()
    return model


def parameters(model: nn.Module) -> dict[str, np.ndarray]:
    """Every parameter as a float64 array, by name (a DDP wrapper's ``module.`` prefix dropped)."""
    return {n.removeprefix("module."): p.detach().cpu().numpy().copy()
            for n, p in model.named_parameters()}


def single_process(cfg: CheckConfig) -> dict[str, dict[str, np.ndarray]]:
    """Parameters after training each of :data:`VARIANTS` in this process on the global batches."""
    batches = global_batches(cfg)
    return {_key(rule, sub): parameters(train(check_model(rule, sub, cfg), batches, cfg.lr))
            for rule, sub in VARIANTS}


def distributed(cfg: CheckConfig) -> dict[str, dict[str, np.ndarray]]:
    """Inside a ``torchrun`` process: train each variant under DDP (gloo) on this rank's shards."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        batches = global_batches(cfg)
        out = {}
        for rule, sub in VARIANTS:
            model = DistributedDataParallel(check_model(rule, sub, cfg))
            out[_key(rule, sub)] = parameters(train(model, batches, cfg.lr, (rank, world)))
        dist.barrier()  # no rank tears the group down while another still communicates
        return out
    finally:
        dist.destroy_process_group()


def compare(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """Largest absolute parameter difference per variant."""
    return {k: max(float(np.max(np.abs(a[k][n] - b[k][n]))) for n in a[k]) for k in a}


def _key(rule: str, subspace: str | None) -> str:
    return rule if subspace is None else f"{rule}-{subspace}"


def save(path: str, params: dict[str, dict[str, np.ndarray]]) -> None:
    """Write ``{variant: {name: array}}`` to one ``.npz`` (keys ``variant/name``)."""
    np.savez(path, **{f"{k}/{n}": v for k, d in params.items() for n, v in d.items()})


def load(path: str) -> dict[str, dict[str, np.ndarray]]:
    """Inverse of :func:`save`."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            variant, name = key.split("/", 1)
            out.setdefault(variant, {})[name] = data[key]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun ... -m bioplastic.torch.distributed [--out=FILE] [--key=value ...]``.

    Trains every variant under DDP; rank 0 writes the parameters to ``--out`` (if given) and prints
    the largest difference from single-process training on the same global batches.
    """
    from ..experiment.config import override

    parser = argparse.ArgumentParser(prog="bioplastic.torch.distributed", description=main.__doc__)
    parser.add_argument("--out", default=None, help="npz file for rank 0's final parameters")
    args, rest = parser.parse_known_args(argv)
    cfg = override(CheckConfig(), rest)
    if "RANK" not in os.environ:
        print("run under torchrun, e.g. torchrun --standalone --nproc_per_node=2 -m "
              "bioplastic.torch.distributed", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    params = distributed(cfg)
    if int(os.environ["RANK"]) == 0:
        if args.out:
            save(args.out, params)
        for variant, diff in compare(params, single_process(cfg)).items():
            print(f"{variant}: max |DDP - single process| = {diff:.2e}")
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    # Leave without the interpreter's teardown: a thread gloo leaves joinable can abort the process
    # there ("terminate called without an active exception", SIGABRT) after all work is done,
    # which torchrun reports as a failed run (seen once in CI with torch 2.13 on CPU).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
