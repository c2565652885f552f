r"""Counted cost of a training step: every operator's FLOPs and bytes, priced on a roofline.

The analytic count of :mod:`bioplastic.bench.step_time` sees only the matrix products of the weight layers
and prices every FLOP alike. A step runs more than that: norms, activations, softmax, copies,
the loss and the optimiser, which bp and ldfa share, and thin products through the rank-r
bottleneck, which move about as many bytes as they do FLOPs. This module counts what one step
actually executes and prices it:

* :func:`count_ops` runs the step under a ``TorchDispatchMode`` that records every ATen operator
  (forward, autograd backward including custom Functions, optimiser), each with its
  matrix-multiply FLOPs :math:`F` (2 per multiply-add: products, convolutions, attention) and
  the bytes :math:`M` it reads and writes (:func:`op_bytes`; views move none);
* :func:`calibrate` measures three machine constants in the running process: the
  matrix-product rate :math:`R` (FLOP/s), the streaming bandwidth :math:`W` (bytes/s) and the
  dispatch time of one operator :math:`c` (s);
* :func:`predict_seconds` prices the step as

.. math::

    T = \sum_{\mathrm{ops}} \Big[\max\big(F_{op} / R,\; M_{op} / W\big) + c\Big] ,

so a product runs at the matmul rate unless it is thin enough to be limited by its bytes, and
every other operator costs its memory traffic. The model ignores cache reuse between operators,
passes an operator makes over its data beyond one read and one write, and Python and autograd
bookkeeping between operators; ratios of two steps on the same machine cancel much of that.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: Operators that move no data: allocation without writing, and a view the schema does not mark.
_FREE = ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "_unsafe_view")
#: In-place operators that overwrite their target without reading it.
_WRITE_ONLY = ("copy_", "fill_", "zero_", "normal_", "uniform_", "bernoulli_", "random_",
               "exponential_")


@dataclass(frozen=True)
class OpRecord:
    """One executed operator: ATen name, matrix-multiply FLOPs, bytes read + written."""

    name: str
    flops: int
    bytes: int


@dataclass(frozen=True)
class Machine:
    """Roofline constants of one device, measured by :func:`calibrate`.

    ``flops_per_s``: matrix-product rate (FLOP/s); ``bytes_per_s``: streaming bandwidth of an
    elementwise operator (bytes/s, read + write); ``op_s``: time of one small operator (s).
    """

    flops_per_s: float
    bytes_per_s: float
    op_s: float


def _tensors(tree) -> list:
    import torch
    from torch.utils._pytree import tree_leaves

    return [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]


def _nbytes(tensors: Iterable) -> int:
    """Bytes spanned: an expanded (stride-0) dimension is stored, and read, once."""
    total = 0
    for t in tensors:
        if t.numel():
            span = 1 + sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride()))
            total += min(span, t.numel()) * t.element_size()
    return total


def _attention_flops(name: str, args) -> int | None:
    """Products of the fused CPU attention kernels (not in torch's FLOP registry).

    Forward: q k^T and A v, 2 x 2 b h t s d FLOPs. Backward recomputes q k^T from the saved
    log-sum-exp and forms dV, dA, dQ, dK: 5 products. A causal mask is priced as the full
    products (as torch's own formulas do); a value width other than the query's never reaches
    these kernels on CPU.
    """
    if not name.startswith("_scaled_dot_product_flash_attention_for_cpu"):
        return None
    backward = name.endswith("_backward")
    q, k = (args[1], args[2]) if backward else (args[0], args[1])
    *lead, t, d = q.shape
    s = k.shape[-2]
    per_product = 2 * t * s * d
    for n in lead:
        per_product *= n
    return (5 if backward else 2) * per_product


def op_flops(func, args, kwargs, out) -> int:
    """Matrix-multiply FLOPs of one ATen call (0 for every operator that is not a product)."""
    from torch.utils.flop_counter import flop_registry

    packet = func._overloadpacket
    name = packet.__name__
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out))
    counted = _attention_flops(name, args)
    return 0 if counted is None else counted


def op_bytes(func, args, kwargs, out) -> int:
    """Bytes an ATen call reads and writes.

    Reads: its tensor arguments, except ``out=`` targets and the target of an overwriting operator
    (``copy_``, ``fill_``, ...). Writes: the arguments its schema marks as written (in-place and
    ``out=`` targets, also lists of them as in ``_foreach_add_``) and its results that are new
    tensors. Views and pure allocations move nothing; expanded dimensions count once.
    """
    name = func._overloadpacket.__name__
    if func.is_view or name in _FREE:
        return 0
    passed = [*zip(func._schema.arguments, args),
              *((a, kwargs[a.name]) for a in func._schema.arguments if a.name in kwargs)]
    reads, writes = [], []
    for arg, value in passed:
        written = arg.alias_info is not None and arg.alias_info.is_write
        tensors = _tensors(value)
        if written:
            writes += tensors
        if not (written and (arg.is_out or name in _WRITE_ONLY)):
            reads += tensors
    targets = {t.data_ptr() for t in writes}
    writes += [t for t in _tensors(out) if t.data_ptr() not in targets]
    return _nbytes(reads) + _nbytes(writes)


def _counter_mode():
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpCounter(TorchDispatchMode):
        """Records an :class:`OpRecord` for every ATen operator run while it is active."""

        def __init__(self):
            super().__init__()
            self.records: list[OpRecord] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            self.records.append(OpRecord(func._overloadpacket.__name__,
                                         op_flops(func, args, kwargs, out),
                                         op_bytes(func, args, kwargs, out)))
            return out

    return OpCounter


def count_ops(fn: Callable[[], Any]) -> list[OpRecord]:
    """Run ``fn()`` once and return the operators it executed, in order.

    Every ATen call below autograd is seen: the forward, the backward of built-in and custom
    autograd Functions, optimiser updates. (Checked on CPU, where the engine runs the backward on
    the calling thread; not yet checked on a GPU.)
    """
    counter = _counter_mode()()
    with counter:
        fn()
    return counter.records


def summarize_ops(records: Iterable[OpRecord]) -> dict[str, dict[str, int]]:
    """Totals per operator name: ``calls``, ``flops``, ``bytes``, largest bytes first."""
    out: dict[str, dict[str, int]] = {}
    for rec in records:
        row = out.setdefault(rec.name, {"calls": 0, "flops": 0, "bytes": 0})
        row["calls"] += 1
        row["flops"] += rec.flops
        row["bytes"] += rec.bytes
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"]))


def op_seconds(rec: OpRecord, machine: Machine) -> float:
    """Roofline time of one operator: max(F / R, M / W) + c."""
    return max(rec.flops / machine.flops_per_s, rec.bytes / machine.bytes_per_s) + machine.op_s


def predict_seconds(records: Iterable[OpRecord], machine: Machine) -> dict[str, float]:
    """Predicted step time and its parts (seconds).

    Returns ``total``; ``matmul`` (operators with FLOPs), ``memory`` (the others' bytes) and
    ``dispatch`` (c per operator), which sum to ``total``.
    """
    matmul = memory = dispatch = 0.0
    for rec in records:
        t = op_seconds(rec, machine)
        dispatch += machine.op_s
        if rec.flops:
            matmul += t - machine.op_s
        else:
            memory += t - machine.op_s
    return {"total": matmul + memory + dispatch, "matmul": matmul, "memory": memory,
            "dispatch": dispatch}


def calibrate(device: str = "cpu", dtype=None, clock: Callable[[], float] = time.perf_counter,
              gemm: int = 1024, stream_mib: int = 16, repeats: int = 9) -> Machine:
    """Measure the roofline constants of ``device`` in this process (medians of ``repeats``).

    Parameters
    ----------
    device : str
        ``"cpu"`` or a cuda device.
    dtype : torch.dtype, optional
        Element type of the kernels (default float32). Autocast does not apply to the ``out=``
        kernels timed here: steps that run in reduced precision pass it explicitly.
    clock : callable
        Seconds (``time.perf_counter`` or ``time.process_time``; use wall time on a GPU).
    gemm : int
        Side of the square product that sets R.
    stream_mib : int
        Size (MiB) of each operand of the out-of-place add that sets W (three operands move).
    repeats : int
        Timed repetitions of each kernel after one untimed call.
    """
    import torch

    dtype = dtype or torch.float32
    cuda = str(device).startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)

    def seconds(fn, inner: int = 1) -> float:
        fn()
        times = []
        for _ in range(repeats):
            sync()
            t0 = clock()
            for _ in range(inner):
                fn()
            sync()
            times.append((clock() - t0) / inner)
        return statistics.median(times)

    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(gemm, gemm, generator=gen).to(device, dtype) for _ in range(2))
    c = torch.empty_like(a)
    rate = 2 * gemm ** 3 / seconds(lambda: torch.mm(a, b, out=c))
    n = stream_mib * 2 ** 20 // torch.empty(0, dtype=dtype).element_size()
    x, y, z = (torch.ones(n, device=device, dtype=dtype) for _ in range(3))
    bandwidth = 3 * x.numel() * x.element_size() / seconds(lambda: torch.add(x, y, out=z))
    s1, s2, s3 = (torch.ones(1, device=device, dtype=dtype) for _ in range(3))
    op = seconds(lambda: torch.add(s1, s2, out=s3), inner=200)
    return Machine(rate, bandwidth, op)


__all__ = ["Machine", "OpRecord", "calibrate", "count_ops", "op_bytes", "op_flops", "op_seconds",
           "predict_seconds", "summarize_ops"]
