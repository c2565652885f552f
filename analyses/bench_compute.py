"""Compute saved by low-dimensional feedback: training-step time of ldfa against backprop.

For the paper's MLP (widths 512 and 2048), the VGG-style CNN and the small ViT, times one training
step (forward, backward, SGD step) of bp and of ldfa at r = 1, 4, 10, 32 in one process, round by
round, and sets the measured ratio next to the analytic ratio of matrix-multiply FLOPs; for the MLPs
also against a hand-written LDFA MLP (one bare autograd Function), which measures what the
conversion machinery adds. A profile of one bp and one ldfa step splits the time into matrix
products and the rest. Everything is :mod:`bioplastic.bench.step_time`; this script is its config and output.

Run: ``bioplastic analysis bench_compute [--models=mlp2048 --rounds=30 ...]`` (or
``bioplastic bench``, the same settings; ``--quick`` for a small check, ``--help`` for every setting). Writes ``results/bench/{config.json, results.json, bench.png}``.
"""

from __future__ import annotations

import sys

from bioplastic.bench import step_time as bench
from bioplastic.bench.step_time import QUICK
from bioplastic.bench.step_time import BenchConfig as Config


def main(argv=None) -> dict:
    return bench.command(argv, prog="bioplastic analysis bench_compute")


__all__ = ["QUICK", "Config", "main"]


if __name__ == "__main__":
    main(sys.argv[1:])
