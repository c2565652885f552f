"""The torch backend against the float64 reference: same circuit, same seed, same numbers.

The reference (numpy, :mod:`bioplastic.rules`) is the specification; the torch runner is an
independent execution (autograd through feedback layers + ``torch.optim.SGD``). Tolerances: float64
runs agree to 1e-10 relative to each weight's scale (observed ~1e-15; the slack covers BLAS summation
order on other machines); float32 to 1e-4 (a few steps of float32 rounding, eps ~ 1.2e-7, on O(1)
weights).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bioplastic
import circuits
from bioplastic.backends.torch_runner import TorchRunner
from bioplastic.torch import functional

#: (rule, subspace, activation, decay): every rule, every activation, decay in several.
CASES = [
    ("bp", None, "tanh", 0.0),
    ("fa", None, "relu", 0.0),
    ("dfa", None, "sigmoid", 0.01),
    ("kp", None, "tanh", 0.05),
    ("ldfa", "fixed", "linear", 0.0),
    ("ldfa", "normative", "tanh", 0.01),
    ("ldfa", "local", "relu", 0.0),
    ("ldfa", "oja", "tanh", 0.02),
]
IDS = [r if s is None else f"{r}-{s}" for r, s, _, _ in CASES]


def make_circuit(rule, subspace, activation="tanh", decay=0.0, sizes=(7, 12, 9, 3), seed=0):
    kw = dict(rank=3, subspace=subspace) if rule == "ldfa" else {}
    return circuits.mlp(list(sizes), rule=rule, activation=activation, decay=decay, lr=0.1,
                        feedback_lr=0.07, seed=seed, **kw)


def batches(n_in, d, n=4, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, n_in)), rng.normal(size=(n, d))) for _ in range(steps)]


def rel_err(a: dict, b: dict) -> dict:
    """Max abs difference of each weight, relative to the reference weight's scale."""
    return {k: np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-300) for k in a}


def plastic_keys(circuit) -> list[str]:
    """Weights a step must move: W, b, and feedback that learns."""
    learnt = {"kp", "normative", "local", "oja"}
    return [k for k in circuit.weight_keys()
            if k[0] in "Wb" or circuit.projection(k).rule in learnt]


def run_both(circuit, data, dtype):
    ref = bioplastic.build(circuit)
    tor = bioplastic.build(circuit, backend="torch", dtype=dtype, weights=ref.get_weights())
    start = ref.get_weights()
    losses = [(ref.train_step(x, y), tor.train_step(x, y)) for x, y in data]
    return start, ref, tor, np.array(losses)


@pytest.mark.parametrize("rule, subspace, activation, decay", CASES, ids=IDS)
def test_float64_matches_reference(rule, subspace, activation, decay):
    circuit = make_circuit(rule, subspace, activation, decay)
    start, ref, tor, losses = run_both(circuit, batches(7, 3), "float64")
    np.testing.assert_allclose(losses[:, 1], losses[:, 0], rtol=1e-12)
    errors = rel_err(ref.get_weights(), tor.get_weights())
    assert max(errors.values()) < 1e-10, errors
    # the comparison is not vacuous: everything plastic moved, everything fixed stayed
    end = ref.get_weights()
    for key in circuit.weight_keys():
        moved = np.abs(end[key] - start[key]).max()
        assert (moved > 1e-4) if key in plastic_keys(circuit) else (moved == 0.0), (key, moved)


@pytest.mark.parametrize("rule, subspace, activation, decay", CASES, ids=IDS)
def test_float32_matches_reference(rule, subspace, activation, decay):
    circuit = make_circuit(rule, subspace, activation, decay)
    _, ref, tor, losses = run_both(circuit, batches(7, 3), "float32")
    np.testing.assert_allclose(losses[:, 1], losses[:, 0], rtol=1e-5)
    errors = rel_err(ref.get_weights(), tor.get_weights())
    assert max(errors.values()) < 1e-4, errors
    assert {a.dtype for a in tor.get_weights().values()} == {np.dtype(np.float64)}


@pytest.mark.parametrize("rule, subspace", [("ldfa", "normative"), ("dfa", None), ("kp", None)])
def test_wide_deep_float64_matches_reference(rule, subspace):
    # 4 weight layers, 1024 units wide; 2 steps on 8 samples keep it ~1 s
    circuit = make_circuit(rule, subspace, "tanh", decay=0.01, sizes=(20, 1024, 1024, 1024, 5), seed=4)
    for _, _, attrs in circuit.graph.edges(data=True):
        if attrs["init"] == "svd":
            # the rule does not care where P, Q start, and three 1024-wide SVDs cost ~10 s here
            attrs["init"] = "normal"
    _, ref, tor, losses = run_both(circuit, batches(20, 5, n=8, steps=2, seed=5), "float64")
    np.testing.assert_allclose(losses[:, 1], losses[:, 0], rtol=1e-12)
    errors = rel_err(ref.get_weights(), tor.get_weights())
    assert max(errors.values()) < 1e-10, errors


def test_starts_from_reference_weights_and_predicts_like_it():
    circuit = make_circuit("ldfa", "oja", "tanh")
    ref = bioplastic.build(circuit)
    tor = bioplastic.build(circuit, backend="torch", dtype="float64")
    want = bioplastic.initial_weights(circuit)
    got = tor.get_weights()
    assert list(got) == circuit.weight_keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    x = np.random.default_rng(0).normal(size=(6, 7))
    np.testing.assert_allclose(tor.predict(x), ref.predict(x), rtol=1e-13, atol=1e-15)
    assert tor.predict(x).dtype == np.float64


def test_torch_tensor_batches_equal_numpy_batches():
    circuit = make_circuit("ldfa", "local")
    (x, y), = batches(7, 3, steps=1)
    a = bioplastic.build(circuit, backend="torch", dtype="float64")
    b = bioplastic.build(circuit, backend="torch", dtype="float64")
    assert a.train_step(x, y) == b.train_step(torch.tensor(x), torch.tensor(y))
    wa, wb = a.get_weights(), b.get_weights()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_weights_option_and_set_weights_round_trip():
    circuit = make_circuit("kp", None)
    rng = np.random.default_rng(2)
    new = {k: rng.normal(size=v.shape) for k, v in bioplastic.initial_weights(circuit).items()}
    tor = bioplastic.build(circuit, backend="torch", dtype="float64", weights=new)
    assert all(np.array_equal(tor.get_weights()[k], new[k]) for k in new)
    tor.set_weights({"B2": np.zeros((12, 9))})
    assert not tor.get_weights()["B2"].any() and np.array_equal(tor.get_weights()["W2"], new["W2"])
    # get_weights hands out copies
    tor.get_weights()["W1"][:] = 7.0
    assert np.array_equal(tor.get_weights()["W1"], new["W1"])


def test_first_layer_computes_no_input_gradient(monkeypatch):
    """Only layers 2..L send an error down (L - 1 = 3 bottleneck expansions per step, not 4)."""
    calls = []
    original = functional.expand
    monkeypatch.setattr(functional, "expand", lambda z, Q: calls.append(Q.shape) or original(z, Q))
    circuit = make_circuit("ldfa", "local", sizes=(7, 12, 9, 6, 3))
    tor = bioplastic.build(circuit, backend="torch", dtype="float64")
    tor.train_step(*batches(7, 3, steps=1)[0])
    assert calls == [(6, 3), (9, 3), (12, 3)]


@pytest.mark.parametrize("bad, match", [
    (dict(x=np.zeros((4, 6))), r"x must have shape \(batch, 7\)"),
    (dict(y=np.zeros((4, 2))), r"y must have shape \(batch, 3\)"),
    (dict(y=np.zeros((5, 3))), "x has 4 samples but y has 5"),
    (dict(x=np.full((4, 7), np.nan)), "x contains NaN"),
    (dict(x=torch.full((4, 7), float("nan"))), "x contains NaN"),
    (dict(x=torch.zeros(4, 6)), r"x must have shape \(batch, 7\)"),
    (dict(x=np.zeros((0, 7)), y=np.zeros((0, 3))), "empty batch"),
])
def test_bad_batches_raise(bad, match):
    tor = bioplastic.build(make_circuit("fa", None), backend="torch")
    args = dict(x=np.zeros((4, 7)), y=np.zeros((4, 3)), **{})
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        tor.train_step(args["x"], args["y"])


def test_bad_weights_and_options_raise():
    circuit = make_circuit("ldfa", "local")
    tor = bioplastic.build(circuit, backend="torch")
    with pytest.raises(KeyError, match="valid keys: W1, W2, W3"):
        tor.set_weights({"B2": np.zeros((12, 9))})
    with pytest.raises(ValueError, match=r"'P2' must have shape \(3, 9\)"):
        tor.set_weights({"P2": np.zeros((9, 3))})
    with pytest.raises(ValueError, match="'W1' contains NaN"):
        tor.set_weights({"W1": np.full((12, 7), np.nan)})
    with pytest.raises(ValueError, match="valid options: float32, float64"):
        bioplastic.build(circuit, backend="torch", dtype="float16")
    with pytest.raises(ValueError, match="unknown device 'gpu7'.*valid options here: cpu"):
        bioplastic.build(circuit, backend="torch", device="gpu7")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_raises():
    with pytest.raises(ValueError, match="CUDA is not available.*valid options here: cpu"):
        bioplastic.build(make_circuit("bp", None), backend="torch", device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rule, subspace, activation, decay", CASES, ids=IDS)
def test_cuda_matches_reference(rule, subspace, activation, decay):
    circuit = make_circuit(rule, subspace, activation, decay, sizes=(20, 512, 256, 5))
    data = batches(20, 5, n=16, steps=3)
    ref = bioplastic.build(circuit)
    runs = {dt: bioplastic.build(circuit, backend="torch", dtype=dt, device="cuda")
            for dt in ("float64", "float32")}
    for x, y in data:
        ref.train_step(x, y)
        for run in runs.values():
            run.train_step(torch.tensor(x, device="cuda"), y)
    assert runs["float64"].model.layers[0].weight.device.type == "cuda"
    # float64 on GPU: cuBLAS may reorder sums, so 1e-10 as on CPU; float32: TF32 is off by default
    assert max(rel_err(ref.get_weights(), runs["float64"].get_weights()).values()) < 1e-10
    assert max(rel_err(ref.get_weights(), runs["float32"].get_weights()).values()) < 1e-4


def test_runner_repr_and_type():
    tor = bioplastic.build(make_circuit("dfa", None), backend="torch", dtype="float64")
    assert isinstance(tor, TorchRunner) and tor.backend == "torch"
    assert "dtype='float64', device='cpu'" in repr(tor)
