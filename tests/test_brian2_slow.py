"""Backend ``brian2`` on the compiled devices (Cython, C++ standalone) and learning on the digits.

Slow: the first Cython run of a model compiles for minutes on a fresh machine (cached afterwards in
build/brian2_cache), a standalone program for tens of seconds. Run with ``pytest -m slow``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import bioplastic
import circuits

pytest.importorskip("brian2")
pytestmark = [pytest.mark.slow, pytest.mark.brian2]

from test_brian2 import TOLERANCE, batch, brian2_state, update_errors  # noqa: E402,F401


@pytest.mark.parametrize("device, target", [("runtime", "cython"), ("cpp_standalone", "numpy")])
def test_compiled_devices_match_reference(device, target):
    circuit = circuits.mlp([6, 8, 7, 4], rule="ldfa", rank=3, subspace="local", lr=0.1, decay=0.01, seed=1)
    x, y = batch(6, 4)
    errors, loss_b2, loss_ref, runner = update_errors(circuit, x, y, device=device, target=target)
    assert max(errors.values()) < TOLERANCE, errors
    assert_close(loss_b2, loss_ref, rtol=TOLERANCE, what="loss")
    # the same circuit on the numpy target: the devices differ only in floating-point order
    numpy_runner = bioplastic.build(circuit, backend="brian2")
    numpy_runner.train_step(x, y)
    for key, value in runner.get_weights().items():
        assert_close(value, numpy_runner.get_weights()[key], rtol=1e-9, atol=1e-12, what=f"{device} {key}")


def test_standalone_reuses_programs_and_epochs():
    """A shorter call runs on an already compiled, longer program; results stay exact."""
    circuit = circuits.mlp([6, 8, 4], rule="ldfa", rank=2, subspace="oja", lr=0.1, seed=2)
    x, y = batch(6, 4, n=12, seed=3)
    runner = bioplastic.build(circuit, backend="brian2", device="cpp_standalone", copies=3)
    ref = bioplastic.build(circuit, backend="reference")
    losses = runner.train_epoch(x, y, batch_size=6)  # 4 presentations: compiles
    assert "compile_s" in runner.timing
    want = [ref.train_step(x[:6], y[:6]), ref.train_step(x[6:], y[6:])]
    assert_close(losses, want, rtol=TOLERANCE, what="per-batch losses")
    pred = runner.predict(x[:5])  # 2 presentations on the 4-presentation program
    assert "compile_s" not in runner.timing
    # outputs are O(1); the weights already differ by the two steps' settle error (~1e-5)
    assert_close(pred, ref.predict(x[:5]), rtol=1e-4, atol=1e-4, what="readout")
    for key, value in ref.get_weights().items():
        assert_close(runner.get_weights()[key], value, rtol=1e-3, atol=1e-6, what=key)


def test_digits_learning_within_three_points():
    """Issue 3: the 64-100-10 ldfa (r = 4) circuit on the digits, five epochs, vs the reference."""
    from bioplastic.data import load_digits

    ds = load_digits()
    circuit = circuits.mlp([64, 100, 10], rule="ldfa", rank=4, subspace="local", lr=0.05, seed=0)
    runner = bioplastic.build(circuit, backend="brian2", device="cpp_standalone")
    ref = bioplastic.build(circuit, backend="reference")
    for epoch in range(5):
        order = np.random.default_rng(epoch).permutation(len(ds.x_train))
        runner.train_epoch(ds.x_train[order], ds.y_train[order], batch_size=32)
        for start in range(0, len(order), 32):
            idx = order[start:start + 32]
            ref.train_step(ds.x_train[idx], ds.y_train[idx])
    acc = {name: np.mean(r.predict(ds.x_test).argmax(1) == ds.labels_test) for name, r in
           (("brian2", runner), ("reference", ref))}
    assert acc["reference"] > 0.8, acc
    assert abs(acc["brian2"] - acc["reference"]) <= 0.03, acc


@pytest.mark.parametrize("kwargs", [dict(rule="ldfa", rank=3, subspace="normative"),
                                    dict(rule="ldfa", rank=3, subspace="oja", reciprocal="learned")],
                         ids=["normative", "oja-learned"])
def test_standalone_builds_mismatch_and_learned_reciprocals(kwargs):
    """The normative rule's mismatch circuit and learned reciprocals compile to C++ and match."""
    circuit = circuits.mlp([6, 8, 7, 4], lr=0.1, feedback_lr=0.1, decay=0.01, seed=1, **kwargs)
    errors, loss_b2, loss_ref, _ = update_errors(circuit, *batch(6, 4), device="cpp_standalone")
    assert max(errors.values()) < TOLERANCE, errors


def test_user_objects_enter_standalone_programs():
    from test_brian2_circuits import _noise

    circuit = circuits.mlp([6, 8, 4], rule="ldfa", rank=2, subspace="local", lr=0.1, seed=7)
    runner = bioplastic.build(circuit, backend="brian2", device="cpp_standalone",
                              inputs={"I_noise": "hidden1.apical"}).extend(_noise)
    x, y = batch(6, 4, n=4, seed=8)
    for _ in range(2):
        runner.train_step(x, y)
        assert runner.model().extra["noise_monitor"].x.shape == (2, runner.steps + 1)


def test_benchmark_quick_records_every_row(tmp_path):
    """``bench_brian2 --quick``: the optimised numpy circuit stays equivalence-grade (update error
    < 1e-3 against the reference), every row and the spiking row are recorded, the goals are
    judged against the optimised rows only, and results land on disk."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analyses"))
    import bench_brian2

    out = bench_brian2.main(["--quick", f"--out={tmp_path}", "-q"])
    assert out["equivalence_error"] < 1e-3
    assert {(r["mode"], r["optimise"]) for r in out["rows"]} == {
        (m, o) for m in ("train_step", "train_epoch") for o in (True, False)}
    assert all(r["samples_per_s"] > 0 for r in out["rows"])
    goal = out["goals"][0]
    best = max(r["samples_per_s"] for r in out["rows"] if r["optimise"] and r["mode"] == "train_step")
    assert goal["best"] == best and goal["met"] == (best >= 600.0)
    spiking = out["spiking"][0]
    assert spiking["copies"] == 64 and spiking["sim_s_per_wall_s"] > 0
    assert spiking["sim_s_per_wall_s"] * 64 / 0.15 == pytest.approx(spiking["samples_per_s"], rel=1e-9)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["equivalence_error"] == out["equivalence_error"] and saved["spiking"][0]["copies"] == 64
