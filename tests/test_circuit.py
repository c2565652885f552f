"""Circuits as data: graph content, validation, constraints, JSON, drawing, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest

import bioplastic
import circuits
from bioplastic import CircuitError


def test_ldfa_graph_has_a_bottleneck_population_per_hidden_layer():
    c = circuits.mlp([64, 100, 50, 10], rule="ldfa", rank=[4, 3], subspace="local")
    g = c.graph
    assert isinstance(g, nx.DiGraph)
    assert g.nodes["feedback2"] == dict(size=4, role="feedback", activation="linear", neuron="rate",
                                        bias=False)
    assert g.nodes["feedback3"]["size"] == 3
    # P2 compresses layer 2's error into 4 neurons, Q2 expands it into layer 1
    assert g.edges["hidden2", "feedback2"]["name"] == "P2"
    assert g.edges["feedback2", "hidden1"]["name"] == "Q2"
    assert g.edges["error", "feedback3"]["name"] == "P3"
    assert c.shape("P2") == (4, 50) and c.shape("Q2") == (100, 4)
    assert c.ranks == {2: 4, 3: 3}
    assert c.sizes == [64, 100, 50, 10] and c.n_layers == 3
    roles = nx.get_node_attributes(g, "role")
    assert sorted(roles.values()).count("feedback") == 2
    # plain networkx: every path from the error to hidden1 passes through a bottleneck
    for path in nx.all_simple_paths(g, "error", "hidden1"):
        assert any(g.nodes[n]["role"] == "feedback" for n in path)


@pytest.mark.parametrize("rule,keys", [
    ("bp", []), ("fa", ["B2", "B3"]), ("kp", ["B2", "B3"]), ("dfa", ["B1", "B2"]),
    ("ldfa", ["P2", "Q2", "P3", "Q3"])])
def test_weight_keys_per_rule(rule, keys):
    c = circuits.mlp([5, 4, 3, 2], rule=rule, rank=2 if rule == "ldfa" else None)
    assert c.weight_keys() == ["W1", "W2", "W3", "b1", "b2", "b3"] + keys
    w = bioplastic.initial_weights(c)
    for k in keys:
        assert w[k].shape == c.shape(k)


def test_svd_initialisation_gives_the_best_rank_r_feedback():
    c = circuits.mlp([6, 8, 5], rule="ldfa", rank=2, subspace="normative")
    w = bioplastic.initial_weights(c)
    u, s, vt = np.linalg.svd(w["W2"].T)
    best = (u[:, :2] * s[:2]) @ vt[:2]
    np.testing.assert_allclose(w["Q2"] @ w["P2"], best, atol=1e-12)


def test_same_seed_same_weights_different_seed_different():
    a = bioplastic.initial_weights(circuits.mlp([5, 4, 2], rule="fa", seed=1))
    b = bioplastic.initial_weights(circuits.mlp([5, 4, 2], rule="fa", seed=1))
    c = bioplastic.initial_weights(circuits.mlp([5, 4, 2], rule="fa", seed=2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W1"], c["W1"])


def test_constraints_report_error_dimension_transport_and_locality():
    bp = circuits.mlp([8, 6, 5, 3], rule="bp").constraints()
    assert [row["weight_transport"] for row in bp] == [True, True]
    assert [row["error_dim"] for row in bp] == [5, 3]
    ldfa = circuits.mlp([8, 6, 5, 3], rule="ldfa", rank=[2, 1], subspace="normative").constraints()
    assert [(r["error_dim"], r["feedback_neurons"], r["nonlocal"], r["weight_transport"]) for r in ldfa] \
        == [(2, 2, True, False), (1, 1, True, False)]
    local = circuits.mlp([8, 6, 5, 3], rule="ldfa", rank=2, subspace="local").constraints()
    assert not any(r["nonlocal"] for r in local)
    dfa = circuits.mlp([8, 6, 5, 3], rule="dfa").constraints()
    assert [(r["source"], r["error_dim"]) for r in dfa] == [("error", 3), ("error", 3)]


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "kp", "ldfa"])
def test_json_round_trip(rule, tmp_path):
    c = circuits.mlp([7, 6, 4, 3], rule=rule, rank=2 if rule == "ldfa" else None, subspace="oja",
                     lr=0.01, decay=1e-4, seed=5)
    again = bioplastic.Circuit.from_json(c.to_json())
    assert again == c and again.params == c.params
    c.to_json(tmp_path / "c.json")
    from_file = bioplastic.Circuit.from_json(tmp_path / "c.json")
    assert from_file == c
    assert bioplastic.initial_weights(from_file)["W1"].tolist() == bioplastic.initial_weights(c)["W1"].tolist()
    json.loads((tmp_path / "c.json").read_text())


def test_draw_writes_a_figure(tmp_path):
    c = circuits.mlp([64, 100, 10], rule="ldfa", rank=4)
    ax = c.draw(path=tmp_path / "circuit.png")
    assert (tmp_path / "circuit.png").stat().st_size > 5000
    assert "ldfa" in ax.get_title()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    (dict(rule="hebbian"), "unknown rule 'hebbian'; valid options: bp, fa, dfa, kp, ldfa"),
    (dict(rule="ldfa", rank=2, subspace="pca"), "valid options: fixed, normative, local, oja"),
    (dict(rule="ldfa", rank=0), r"rank 0 .* must be an int in 1\.\.8"),
    (dict(rule="ldfa", rank=9), r"rank 9 .* must be an int in 1\.\.8"),
    (dict(rule="ldfa", rank=[2]), "rank has 1 entries; this network has 2 feedback pathways"),
    (dict(rule="ldfa", rank=2.5), "must be an int"),
    (dict(rule="ldfa"), "rule 'ldfa' needs rank"),
    (dict(rule="fa", rank=3), "rank is an ldfa setting"),
    (dict(rule="fa", activation="swish"), "unknown activation 'swish'; valid options: tanh"),
    (dict(rule="fa", neuron="izhikevich"), "unknown neuron model 'izhikevich'; valid options: rate, lif"),
    (dict(rule="fa", lr=-1.0), "lr must be a finite number >= 0"),
    (dict(rule="fa", lr=float("nan")), "lr must be a finite number"),
])
def test_bad_builder_arguments(kwargs, match):
    with pytest.raises(CircuitError, match=match):
        circuits.mlp([10, 8, 9, 8], **kwargs)


def test_bad_sizes():
    with pytest.raises(CircuitError, match="at least two positive ints"):
        circuits.mlp([10])
    with pytest.raises(CircuitError, match="at least two positive ints"):
        circuits.mlp([10, 0, 3], rule="fa")


def _tampered(edit):
    c = circuits.mlp([6, 5, 4, 3], rule="ldfa", rank=2)
    edit(c.graph)
    return c


@pytest.mark.parametrize("edit,match", [
    (lambda g: g.nodes["hidden1"].update(size=0), "population 'hidden1' has size 0"),
    (lambda g: g.nodes["hidden1"].update(role="soma"), "unknown role of population 'hidden1'"),
    (lambda g: g.edges["hidden1", "hidden2"].update(name="W7"), "expected 'W2'"),
    (lambda g: g.edges["hidden2", "feedback2"].update(rule="hebb"), "plasticity of projection 'P2'"),
    (lambda g: g.remove_edge("feedback3", "hidden2"), "needs projection 'Q3'"),
    (lambda g: g.nodes["feedback2"].update(size=9), r"feedback rank of layer 2 is 9; it must lie in 1\.\.4"),
    (lambda g: g.edges["hidden2", "feedback2"].update(rule="oja"), "has plasticity 'oja'; rule 'ldfa' allows local"),
    (lambda g: g.graph.update(rule="backprop"), "unknown rule 'backprop'"),
    (lambda g: g.add_edge("hidden1", "output", name="W9", role="forward", rule="sgd", init="normal", layer=9),
     "forward pathway must be a simple chain"),
])
def test_validation_names_what_is_wrong(edit, match):
    c = _tampered(edit)
    with pytest.raises(CircuitError, match=match):
        c.validate()
    with pytest.raises(CircuitError):
        bioplastic.build(c)


def test_runner_rejects_bad_batches_and_weights():
    run = bioplastic.build(circuits.mlp([4, 3, 2], rule="fa"))
    x, y = np.zeros((5, 4)), np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\).*got \(5, 3\)"):
        run.train_step(np.zeros((5, 3)), y)
    with pytest.raises(ValueError, match=r"y must have shape \(batch, 2\)"):
        run.train_step(x, np.zeros(5))
    with pytest.raises(ValueError, match="x has 5 samples but y has 4"):
        run.train_step(x, np.zeros((4, 2)))
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        run.train_step(bad, y)
    with pytest.raises(ValueError, match="x contains NaN"):
        run.predict(bad)
    with pytest.raises(KeyError, match="unknown weight 'P2'.*valid keys: W1, W2, b1, b2, B2"):
        run.set_weights({"P2": np.zeros((1, 2))})
    with pytest.raises(ValueError, match=r"weight 'W1' must have shape \(3, 4\)"):
        run.set_weights({"W1": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="unknown backend 'jax'; valid options: reference, torch, brian2"):
        bioplastic.build(run.circuit, backend="jax")
    with pytest.raises(TypeError, match="needs a bioplastic.Circuit"):
        bioplastic.build({"sizes": [4, 3]})


def test_importing_bioplastic_imports_neither_brian2_nor_torch():
    code = "import sys, bioplastic, circuits; print('brian2' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_json_form_and_runner_are_independent_of_later_edits():
    c = circuits.mlp([4, 3, 2], rule="fa", lr=0.1)
    data = c.to_dict()
    data["graph"]["lr"] = 99.0
    assert c.params.lr == 0.1
    run = bioplastic.build(c, backend="reference")
    c.graph.graph["lr"] = 0.0  # editing the circuit after build does not reach the runner
    w0 = run.get_weights()["W2"]
    run.train_step(np.ones((2, 4)), np.zeros((2, 2)))
    assert np.abs(run.get_weights()["W2"] - w0).max() > 0


@pytest.mark.parametrize("edit,match", [
    (lambda g: g.nodes["output"].update(activation="tanh"), "the readout is linear"),
    (lambda g: g.nodes["target"].update(size=7), "target population 'target' has size 7, output has 3"),
    (lambda g: g.graph.update(lr=-5.0), "lr must be a finite number >= 0; got -5.0"),
    (lambda g: g.graph.update(feedback_lr="abc"), "feedback_lr must be a finite number"),
    (lambda g: g.graph.update(seed=1.5), "seed must be an int >= 0"),
    (lambda g: g.edges["hidden1", "hidden2"].update(init="svd"), "init 'svd'"),
    (lambda g: g.edges["feedback2", "hidden1"].update(init="orthonormal"), "cannot have orthonormal rows"),
])
def test_validation_of_params_readout_and_inits(edit, match):
    c = circuits.mlp([6, 5, 4, 3], rule="ldfa", rank=2, subspace="fixed")
    edit(c.graph)
    with pytest.raises(CircuitError, match=match):
        c.validate()


def test_numpy_integers_are_accepted_and_bad_numbers_refused():
    c = circuits.mlp([np.int64(6), np.int32(5), 3], rule="ldfa", rank=np.int64(2), seed=np.int64(4))
    assert c.sizes == [6, 5, 3] and c.ranks == {2: 2} and c.params.seed == 4
    with pytest.raises(CircuitError, match="lr must be a finite number"):
        circuits.mlp([6, 5, 3], rule="fa", lr=float("inf"))
    with pytest.raises(CircuitError, match="seed must be an int >= 0"):
        circuits.mlp([6, 5, 3], rule="fa", seed=1.5)
