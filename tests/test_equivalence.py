"""One rule x backend table: every registered rule on every backend.

For each registered rule (each subspace rule for low-rank forms; dfa full and low rank) and each
backend: when the backend declares support (``bioplastic.backends.supports``), one batch-mean step
must match the specification; when it does not, ``build`` must raise naming the backend, the rule
and what it supports. Tolerances:

* reference == the loop-by-neuron oracle of tests/test_rules.py (no matrix algebra) to 1e-11;
* torch float64 == reference to 1e-10 relative to each weight's scale (observed ~1e-15);
* brian2 == reference to 1e-3 on each matrix's *update* after its default settle time (the bound the
  Brian2 tests document).

The table is built from the registry when this module is imported, so a rule registered by the
package shows up here without an edit.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from helpers import assert_close
from test_rules import _loop_step

import bioplastic
import circuits
from bioplastic import rules
from bioplastic.backends import BACKENDS, UnsupportedCircuitError, is_available, supports

SIZES = [5, 7, 6, 3]
LR, FLR, DECAY = 0.2, 0.15, 0.01


def cases() -> list[tuple[str, str | None]]:
    """(rule, subspace or None) for every registered rule and form."""
    out = []
    for name, cls in rules.RULES.items():
        if cls.rank in ("none", "optional"):
            out.append((name, None))
        if cls.rank in ("required", "optional"):
            for sub, unit in rules.SUBSPACES.items():
                if cls.topology == "direct" and unit.reads_forward_weight:
                    continue  # the rule itself refuses it (tested in test_registry.py)
                out.append((name, sub))
    return out


CASES = cases()
IDS = [f"{r}-{s}" if s else r for r, s in CASES]


def circuit_for(rule, subspace, activation="tanh"):
    return circuits.mlp(SIZES, rule=rule, rank=2 if subspace else None, subspace=subspace or "local",
                        activation=activation, lr=LR, feedback_lr=FLR, decay=DECAY, seed=3)


def batch(seed=0, n=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, SIZES[0])), rng.normal(size=(n, SIZES[-1]))


def test_table_covers_the_new_rules():
    assert ("ldfa", "q_only") in CASES and ("dfa", "local") in CASES and ("dfa", None) in CASES
    assert ("dfa", "normative") not in CASES


@pytest.mark.parametrize("rule, subspace", CASES, ids=IDS)
def test_reference_equals_loop_oracle(rule, subspace):
    circuit = circuit_for(rule, subspace)
    runner = bioplastic.build(circuit)
    rng = np.random.default_rng(5)
    w0 = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in runner.get_weights().items()}
    runner.set_weights(w0)
    x, y = batch()
    runner.train_step(x, y)
    expected = _loop_step(w0, x, y, rule, subspace, "tanh", LR, FLR, DECAY)
    got = runner.get_weights()
    for k in got:
        assert_close(got[k], expected[k], rtol=1e-11, atol=1e-13, what=f"{rule}/{subspace} {k}")


def _relative_update_errors(circuit, runner, x, y):
    ref = bioplastic.build(circuit)
    start = ref.get_weights()
    ref.train_step(x, y)
    runner.train_step(x, y)
    want, got = ref.get_weights(), runner.get_weights()
    errors = {}
    for k in want:
        d_ref, d_got = want[k] - start[k], got[k] - start[k]
        if np.linalg.norm(d_ref) == 0:
            assert np.array_equal(got[k], start[k]), f"{k} is fixed but moved"
        else:
            errors[k] = float(np.linalg.norm(d_got - d_ref) / np.linalg.norm(d_ref))
    return want, got, errors


@pytest.mark.parametrize("rule, subspace", CASES, ids=IDS)
def test_torch_float64_equals_reference(rule, subspace):
    pytest.importorskip("torch")
    circuit = circuit_for(rule, subspace)
    reason = bioplastic.backends.unsupported(circuit, "torch")
    if reason is not None:
        with pytest.raises(UnsupportedCircuitError, match=f"'torch'.*{rule}"):
            bioplastic.build(circuit, backend="torch")
        return
    runner = bioplastic.build(circuit, backend="torch", dtype="float64")
    x, y = batch()
    want, got, _ = _relative_update_errors(circuit, runner, x, y)
    for k in want:
        scale = max(np.abs(want[k]).max(), 1e-300)
        assert np.abs(got[k] - want[k]).max() / scale < 1e-10, (rule, subspace, k)


@pytest.mark.brian2
@pytest.mark.parametrize("rule, subspace", CASES, ids=IDS)
def test_brian2_equals_reference_after_settling(rule, subspace):
    if importlib.util.find_spec("brian2") is None:
        pytest.skip("brian2 not installed")
    from brian2 import start_scope

    start_scope()
    circuit = circuit_for(rule, subspace)
    if not supports(circuit, "brian2"):
        with pytest.raises(UnsupportedCircuitError, match=f"'brian2'.*{rule}.*supported"):
            bioplastic.build(circuit, backend="brian2")
        return
    runner = bioplastic.build(circuit, backend="brian2")
    _, _, errors = _relative_update_errors(circuit, runner, *batch())
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-3, (rule, subspace, worst, errors[worst])


def test_every_backend_reports_capabilities():
    for backend in BACKENDS:
        if not is_available(backend):
            continue
        caps = bioplastic.backends.capabilities(backend)
        assert set(caps) == {"topologies", "forms", "subspaces", "activations", "neurons"}
        assert set(caps["subspaces"]) <= set(rules.SUBSPACES)
    # the reference is the specification: it builds everything registered
    assert all(supports(circuit_for(r, s), "reference") for r, s in CASES)
