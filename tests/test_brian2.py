"""Backend ``brian2`` (numpy target, small circuits): equivalence with the reference, settling,
schedules, validation, recording.

Equivalence is measured on the *update* of every matrix, ||dM_brian2 - dM_ref|| / ||dM_ref||, which
is far stricter than comparing the matrices themselves (the update is a small part of M).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_close

import bioplastic
import circuits
from bioplastic import rules
from bioplastic.circuit.keys import kind_of

pytest.importorskip("brian2")
pytestmark = pytest.mark.brian2

from bioplastic.backends import brian2 as bb  # noqa: E402

#: The bound the Brian2 backend documents for its default settle time (README, Backends).
TOLERANCE = 1e-3

#: Every rule this backend builds, as circuits.mlp keyword arguments.
RULES = {
    "fa": dict(rule="fa"),
    "dfa": dict(rule="dfa"),
    "kp": dict(rule="kp"),
    "bp": dict(rule="bp"),
    "ldfa-fixed": dict(rule="ldfa", rank=3, subspace="fixed"),
    "ldfa-local": dict(rule="ldfa", rank=3, subspace="local"),
    "ldfa-oja": dict(rule="ldfa", rank=3, subspace="oja"),
    "ldfa-q_only": dict(rule="ldfa", rank=3, subspace="q_only"),
    # non-local: the mismatch W^T - QP summed by a circuit of weight stores
    "ldfa-normative": dict(rule="ldfa", rank=3, subspace="normative"),
    # reciprocal synapses with weights of their own (no symmetric wiring)
    "ldfa-local-learned": dict(rule="ldfa", rank=3, subspace="local", reciprocal="learned"),
    "dfa-r-oja-learned": dict(rule="dfa", rank=2, subspace="oja", reciprocal="learned"),
    # low-rank direct feedback: one bottleneck from the error to every hidden layer
    "dfa-r-fixed": dict(rule="dfa", rank=2, subspace="fixed"),
    "dfa-r-local": dict(rule="dfa", rank=2, subspace="local"),
    "dfa-r-oja": dict(rule="dfa", rank=2, subspace="oja"),
    "dfa-r-q_only": dict(rule="dfa", rank=2, subspace="q_only"),
}
#: Weight kinds that must not move, by RULES entry.
FIXED_KINDS = {"fa": "B", "dfa": "B", "ldfa-fixed": "PQ", "ldfa-q_only": "P", "dfa-r-fixed": "PQ",
               "dfa-r-q_only": "P"}


@pytest.fixture(autouse=True)
def brian2_state():
    """Brian2 keeps global state (device, preferences, magic network); restore it around each test."""
    from brian2 import prefs, start_scope
    from brian2.devices.device import reset_device

    saved = {k: prefs[k] for k in ("codegen.target", "logging.file_log", "logging.save_script")}
    prefs.logging.file_log = False
    prefs.logging.save_script = False
    start_scope()
    yield
    reset_device("runtime")
    for k, v in saved.items():
        prefs[k] = v


def batch(n_in, d, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.normal(size=(n, d))


def update_errors(circuit, x, y, **options):
    """Relative error of each matrix's update after one train_step, brian2 vs reference."""
    ref = bioplastic.build(circuit, backend="reference")
    start = ref.get_weights()
    loss_ref = ref.train_step(x, y)
    runner = bioplastic.build(circuit, backend="brian2", **options)
    loss_b2 = runner.train_step(x, y)
    want, got = ref.get_weights(), runner.get_weights()
    errors = {}
    for key in want:
        d_ref, d_b2 = want[key] - start[key], got[key] - start[key]
        if np.linalg.norm(d_ref) == 0:  # fixed feedback: must not move at all
            assert np.array_equal(got[key], start[key]), f"{key} is fixed but moved"
            continue
        errors[key] = np.linalg.norm(d_b2 - d_ref) / np.linalg.norm(d_ref)
    return errors, loss_b2, loss_ref, runner


@pytest.mark.parametrize("name", list(RULES))
def test_one_step_matches_reference(name):
    circuit = circuits.mlp([6, 8, 7, 4], lr=0.1, feedback_lr=0.1, decay=0.01, seed=1, **RULES[name])
    errors, loss_b2, loss_ref, runner = update_errors(circuit, *batch(6, 4))
    fixed = FIXED_KINDS.get(name, "")
    assert sorted(errors) == sorted(k for k in circuit.weight_keys() if kind_of(k) not in fixed)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOLERANCE, (f"{name}: {worst} update off by {errors[worst]:.2e} "
                                       f"at settle {runner.settle} s")
    assert_close(loss_b2, loss_ref, rtol=TOLERANCE, what="loss before the step")


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "linear"])
def test_activations_match_reference(activation):
    circuit = circuits.mlp([5, 9, 3], rule="ldfa", rank=2, subspace="local", activation=activation,
                           lr=0.1, seed=2)
    errors, *_ = update_errors(circuit, *batch(5, 3, seed=3))
    assert max(errors.values()) < TOLERANCE, errors


def test_settle_sweep_shrinks_error():
    """The distance to the abstract rule falls steadily as the presentation lengthens."""
    circuit = circuits.mlp([6, 8, 4], rule="ldfa", rank=2, subspace="local", lr=0.1, seed=4)
    x, y = batch(6, 4, seed=5)
    default = bb.default_steps(circuit)
    assert default == 4 * 5 + 20  # depth 5: hidden, output, error, bottleneck, apical
    steps = [6, 12, 24, default]
    worst = [max(update_errors(circuit, x, y, settle=s * 0.005)[0].values()) for s in steps]
    assert all(a > 2 * b for a, b in zip(worst, worst[1:])), worst
    assert worst[0] > 1e-2 > TOLERANCE > worst[-1], worst


def test_fewer_copies_than_batch_and_epochs():
    """copies < batch: a batch spans presentations (one copy idle); an epoch is one run."""
    circuit = circuits.mlp([6, 8, 7, 4], rule="ldfa", rank=3, subspace="local", lr=0.1, decay=0.01, seed=6)
    x, y = batch(6, 4, n=7, seed=7)
    ref = bioplastic.build(circuit, backend="reference")
    start = ref.get_weights()
    want_losses = [ref.train_step(x[:3], y[:3]), ref.train_step(x[3:6], y[3:6]), ref.train_step(x[6:], y[6:])]
    runner = bioplastic.build(circuit, backend="brian2", copies=2)
    losses = runner.train_epoch(x, y, batch_size=3)
    assert runner.timing["presentations"] == 2 + 2 + 1 and runner.timing["samples"] == 7
    assert_close(losses, want_losses, rtol=TOLERANCE, what="per-batch losses")
    got, want = runner.get_weights(), ref.get_weights()
    for key in want:
        delta = np.linalg.norm((got[key] - start[key]) - (want[key] - start[key]))
        assert delta < TOLERANCE * np.linalg.norm(want[key] - start[key]), key


def test_predict_matches_forward_pass():
    circuit = circuits.mlp([6, 8, 7, 4], rule="fa", seed=8)
    x, _ = batch(6, 4, n=9, seed=9)
    ref = bioplastic.build(circuit, backend="reference")
    runner = bioplastic.build(circuit, backend="brian2", copies=4)
    assert_close(runner.predict(x), ref.predict(x), rtol=1e-4, atol=1e-6, what="readout")
    assert runner.timing["presentations"] == 3  # 9 samples over 4 copies


def test_weights_roundtrip_and_validation():
    circuit = circuits.mlp([4, 5, 3], rule="ldfa", rank=2, seed=10)
    runner = bioplastic.build(circuit, backend="brian2")
    w = {k: v + 0.5 for k, v in runner.get_weights().items()}
    runner.set_weights(w)
    for key, value in runner.get_weights().items():
        assert np.array_equal(value, w[key])
    with pytest.raises(KeyError, match="valid keys"):
        runner.set_weights({"W9": np.zeros((3, 5))})
    with pytest.raises(ValueError, match=r"shape \(5, 4\)"):
        runner.set_weights({"W1": np.zeros((4, 5))})
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        runner.train_step(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        runner.train_epoch(np.zeros((2, 4)), np.zeros((2, 3)), batch_size=0)


def test_low_rank_direct_feedback_reads_every_hidden_layer():
    """dfa with a rank: one bottleneck, one Qt read-out per hidden layer into its v compartment."""
    from bioplastic.backends.brian2 import _network

    circuit = circuits.mlp([6, 8, 7, 5, 4], rule="dfa", rank=2, subspace="local")
    recs = _network.reciprocal_readouts(circuit)
    assert [(r.name, r.source, r.pre, r.post, r.compartment) for r in recs] == [
        ("Qt1", "Q1", "hidden1", "feedback", "v"), ("Qt2", "Q2", "hidden2", "feedback", "v"),
        ("Qt3", "Q3", "hidden3", "feedback", "v")]
    oja = _network.reciprocal_readouts(circuits.mlp([6, 8, 4], rule="dfa", rank=2, subspace="oja"))
    assert [(r.name, r.pre, r.post, r.compartment) for r in oja] == [("Pt2", "feedback", "error", "rec")]
    assert _network.reciprocal_readouts(circuits.mlp([6, 8, 4], rule="dfa", rank=2, subspace="q_only")) == []


def test_capabilities_derive_from_the_units():
    caps = bb.capabilities()
    assert set(caps) == {"topologies", "forms", "subspaces", "activations", "neurons"}
    assert caps["subspaces"] == tuple(n for n, s in rules.SUBSPACES.items()
                                      if not s.learns or s.brian2 is not None)
    assert "normative" in caps["subspaces"] and "q_only" in caps["subspaces"]
    assert "oja_centred" not in caps["subspaces"]  # batch statistics: no Brian2 form
    assert caps["topologies"] == ("layer", "direct") and caps["forms"] == ("transport", "dense", "low_rank")
    assert caps["activations"] == tuple(bioplastic.neurons.ACTIVATIONS)
    assert not hasattr(bb, "SUPPORTED_RULES")


def test_eligibility_is_read_from_the_units():
    from bioplastic.backends.brian2 import _network

    assert _network.eligibility_code("sgd", "W1", "rate") == "delta_post * rate_pre"
    assert _network.eligibility_code("kp", "B2", "eps") == rules.KolenPollack.brian2_eligibility.format(err="eps")
    assert _network.eligibility_code("local", "P2", "delta") == "delta_pre * v_post"
    assert _network.eligibility_code("oja", "Q2", "z") == rules.SUBSPACES["oja"].brian2["Q"]
    assert _network.eligibility_code("q_only", "P2", "delta") is None  # q_only's P does not learn
    assert _network.eligibility_code("q_only", "Q2", "z") == "z_pre * rate_post"
    for label in ("fixed", "transport"):
        assert _network.eligibility_code(label, "B2", "delta") is None
    with pytest.raises(ValueError, match="unknown plasticity 'hebb'; valid options: sgd, transport, fixed"):
        _network.eligibility_code("hebb", "B2", "delta")
    with pytest.raises(ValueError, match="role 'input' sends no feedback signal; roles that do: hidden"):
        _network.feedback_signal("input")
    with pytest.raises(ValueError, match="role 'glia'; valid roles: input"):
        _network.population_equations("glia", "tanh", [], [], False, {})


# --------------------------------------------------------------- units registered from outside
class _MixedSubspace(rules.SubspaceRule):
    """A synapse-local subspace rule no built-in has: P reads both extra compartments,
    dP = -<v delta^T - z (P^T z)^T>, and Q a nonlinear product, dQ = -<h^2 z^T>."""

    name = "test_mixed"
    summary = "test: P from v and the reconstruction, Q from h^2 z"
    brian2 = {"P": "{err}_pre * v_post - z_post * rec_pre", "Q": "z_pre * rate_post**2",
              "compartments": ("v", "rec")}

    def gradients(self, P, Q, W, h, delta):
        n, z = h.shape[0], delta @ P.T
        return ((h @ Q).T @ delta - z.T @ (z @ P)) / n, (h ** 2).T @ z / n


class _SignTransport(rules.Rule):
    """Sign-symmetric feedback B = sign(W)^T, transported per synapse as sign(w)."""

    name = "test_sign"
    form = "transport"
    brian2_transport = "sign(w)"

    def transport(self, W):
        return np.sign(W).T


class _OpaqueTransport(rules.Rule):
    """A transport B = g(W) that is not elementwise: no synapse can compute it."""

    name = "test_opaque"
    form = "transport"

    def transport(self, W):
        return np.linalg.pinv(W)


class _OpaquePlastic(rules.Rule):
    """Plastic dense feedback with no synapse-local form."""

    name = "test_opaque_kp"
    form = "dense"
    plastic = True

    def dense_gradient(self, B, W, grad_w, h_prev, delta):
        return B - W.T


class _NoFormSubspace(rules.SubspaceRule):
    name = "test_noform"

    def gradients(self, P, Q, W, h, delta):
        return None, h.T @ (delta @ P.T) / h.shape[0]


class _UndeclaredCompartment(rules.SubspaceRule):
    name = "test_undeclared"
    brian2 = {"P": "{err}_pre * v_post", "Q": "z_pre * rate_post", "compartments": ()}

    def gradients(self, P, Q, W, h, delta):
        return rules.SUBSPACES["local"].gradients(P, Q, W, h, delta)


@pytest.fixture
def registered():
    """Register the test units above; unregister them after the test."""
    added = []
    for unit in (_MixedSubspace, _NoFormSubspace, _UndeclaredCompartment):
        rules.register_subspace(unit)
        added.append(unit.name)
    for cls in (_SignTransport, _OpaqueTransport, _OpaquePlastic):
        rules.register_rule(cls)
        added.append(cls.name)
    yield
    for name in added:
        rules.unregister(name)


@pytest.mark.parametrize("kwargs", [dict(rule="ldfa", rank=3), dict(rule="dfa", rank=2)], ids=["ldfa", "dfa-r"])
def test_registered_subspace_rule_trains_as_declared(registered, kwargs):
    """The backend consumes a subspace rule's brian2 declaration: a rule it has never seen matches
    the reference's numpy gradients."""
    assert "test_mixed" in bb.capabilities()["subspaces"]
    circuit = circuits.mlp([6, 8, 7, 4], subspace="test_mixed", lr=0.1, feedback_lr=0.1, decay=0.01,
                           seed=1, **kwargs)
    errors, loss_b2, loss_ref, runner = update_errors(circuit, *batch(6, 4))
    assert sorted(errors) == sorted(circuit.weight_keys())  # P and Q learn
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOLERANCE, (worst, errors[worst])
    assert_close(loss_b2, loss_ref, rtol=TOLERANCE, what="loss before the step")
    # both compartments were built from the declaration
    names = {r.name for r in bb._network.reciprocal_readouts(circuit)}
    assert names == ({"Qt2", "Qt3", "Pt2", "Pt3"} if kwargs["rule"] == "ldfa" else {"Qt1", "Qt2", "Pt3"})


def test_registered_transport_rule_reads_its_expression(registered):
    circuit = circuits.mlp([6, 8, 7, 4], rule="test_sign", lr=0.1, seed=1)
    errors, *_ = update_errors(circuit, *batch(6, 4))
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("kwargs, why", [
    (dict(rule="ldfa", rank=2, subspace="oja_centred"), "'ldfa' with subspace 'oja_centred'.*no Brian2 form"),
    (dict(rule="test_opaque"), "'test_opaque'.*brian2_transport is None"),
    (dict(rule="test_opaque_kp"), "'test_opaque_kp'.*plastic feedback.*brian2_eligibility is None"),
    (dict(rule="ldfa", rank=2, subspace="test_noform"), "'test_noform'.*declares no Brian2 form"),
    (dict(rule="dfa", rank=2, subspace="test_noform"), "'dfa' with subspace 'test_noform'.*no Brian2 form"),
    (dict(rule="ldfa", rank=2, subspace="test_undeclared"), "'test_undeclared' reads v_post.*'v'"),
], ids=["oja_centred", "transport", "dense", "ldfa-noform", "dfa-noform", "compartment"])
def test_unsupported_units_name_backend_rule_and_options(registered, kwargs, why):
    circuit = circuits.mlp([4, 5, 3], **kwargs)
    supported = ("supported: rules bp, fa, dfa, kp, ldfa, test_sign; low-rank subspace rules fixed, normative, "
                 "local, oja, q_only, test_mixed")
    reason = bb.unsupported(circuit)
    assert reason is not None and reason.startswith("backend 'brian2' does not build rule")
    assert supported in reason, reason
    with pytest.raises(bioplastic.backends.UnsupportedCircuitError, match=f"'brian2'.*{why}"):
        bioplastic.build(circuit, backend="brian2")
    with pytest.raises(bb.UnsupportedCircuitError, match=why):
        bb.check_supported(circuit)
    assert not bioplastic.backends.supports(circuit, "brian2")
    assert bioplastic.backends.supports(circuit, "reference")


def test_unsupported_rule_and_neuron_name_backend_rule_and_options():
    centred = circuits.mlp([4, 5, 3], rule="ldfa", rank=2, subspace="oja_centred")
    with pytest.raises(bb.UnsupportedCircuitError, match="brian2.*'ldfa'.*'oja_centred'.*supported: .*fa"):
        bioplastic.build(centred, backend="brian2")
    spiking = circuits.mlp([4, 5, 3], rule="fa")
    spiking.graph.nodes["hidden1"]["neuron"] = "lif"  # bypasses Circuit.validate on purpose
    with pytest.raises(bb.UnsupportedCircuitError,
                       match="brian2.*'lif'.*'fa'.*supported neuron models: rate"):
        bb.build(spiking)


@pytest.mark.parametrize("options, message", [
    (dict(device="gpu"), "unknown device 'gpu'.*runtime, cpp_standalone"),
    (dict(target="c"), "unknown target 'c'.*numpy, cython"),
    (dict(settle=0.0123), r"multiple of dt \(0.005"),
    (dict(tau=-1.0), "tau must be a positive"),
    (dict(copies=0), "copies must be a positive int"),
    (dict(record=("spikes",)), "unknown record item 'spikes'.*rates"),
    (dict(record=("hidden7.rate",)), "no population or weight 'hidden7'"),
])
def test_bad_options_raise(options, message):
    circuit = circuits.mlp([4, 5, 3], rule="fa")
    with pytest.raises(ValueError, match=message):
        bioplastic.build(circuit, backend="brian2", **options)


def test_unknown_option_names_valid_ones():
    with pytest.raises(TypeError, match="unknown option.*'setle'.*settle"):
        bioplastic.build(circuits.mlp([4, 5, 3], rule="fa"), backend="brian2", setle=0.1)


def test_chain_depth_counts_compartments():
    """Depths by hand: input 0, hidden l, output L, error L+1, then one per feedback compartment."""
    depth = {("fa", 2): 4, ("fa", 3): 6, ("dfa", 3): 5, ("ldfa", 2): 5, ("ldfa", 3): 8, ("bp", 3): 6,
             ("kp", 3): 6, ("dfa-r", 2): 5, ("dfa-r", 3): 6, ("dfa-r", 4): 7}
    for (rule, n_layers), want in depth.items():
        sizes = [4] + [5] * (n_layers - 1) + [3]
        kw = dict(rank=2) if rule in ("ldfa", "dfa-r") else {}
        circuit = circuits.mlp(sizes, rule=rule.split("-")[0], **kw)
        assert bb.chain_depth(circuit) == want, (rule, n_layers)
        assert bb.default_steps(circuit) == 4 * want + 20
    # Oja adds the reconstruction compartment behind the bottleneck (on the error population);
    # low-rank direct feedback: error L+1, the one bottleneck L+2, rec and every apical L+3
    assert bb.chain_depth(circuits.mlp([4, 5, 3], rule="ldfa", rank=2, subspace="oja")) == 5
    assert bb.chain_depth(circuits.mlp([4, 5, 5, 3], rule="dfa", rank=2, subspace="oja")) == 6
    assert bb.chain_depth(circuits.mlp([4, 5, 5, 3], rule="ldfa", rank=2, subspace="q_only")) == 8


def test_make_schedule_layout():
    s = bb.make_schedule(7, copies=2, batch_size=3, learn=True)
    assert s.slots.tolist() == [[0, 1], [2, -1], [3, 4], [5, -1], [6, -1]]
    assert_close(s.consolidate, [0, 1 / 3, 0, 1 / 3, 1.0], what="1/batch at each batch's last presentation")


def test_record_and_pictures(tmp_path):
    from bioplastic.backends.brian2.plotting import plot_activity, plot_circuit

    circuit = circuits.mlp([5, 6, 3], rule="ldfa", rank=2, subspace="local", seed=11)
    runner = bioplastic.build(circuit, backend="brian2", copies=2,
                              record=("rates", "errors", "bottleneck", "weights"), record_copies=(1,))
    x, y = batch(5, 3, n=4, seed=12)
    runner.train_epoch(x, y, batch_size=2)  # two presentations of two copies
    rec = runner.recording()
    steps = 2 * runner.steps + 1
    assert rec["feedback2.z"]["z"].shape == (steps, 1, 2)  # the bottleneck is r = 2 wide
    assert rec["hidden1.rate"]["rate"].shape == (steps, 1, 6)
    # the settled rate of copy 1 in the first presentation is the forward pass of sample 1
    w0 = bioplastic.build(circuit, backend="reference").get_weights()
    h1 = np.tanh(w0["W1"] @ x[1] + w0["b1"])
    assert_close(rec["hidden1.rate"]["rate"][runner.steps - 1, 0], h1, rtol=1e-4, atol=1e-6,
                 what="settled rate")
    # weights are sampled after each consolidation; the last sample is what get_weights returns
    assert_close(rec["W1.w"]["w"][-1], runner.get_weights()["W1"], what="recorded weights")
    assert plot_activity(runner, tmp_path / "activity.png") is not None
    plot_circuit(runner, tmp_path / "circuit.png")
    assert (tmp_path / "activity.png").stat().st_size > 0 and (tmp_path / "circuit.png").stat().st_size > 0
    assert runner.timing["settle_s"] == runner.settle and runner.timing["s_per_sample"] > 0


def test_learning_fast_variant():
    """A few epochs on a digits subset: brian2 lands within 3 points of the reference."""
    from bioplastic.data import load_digits

    ds = load_digits()
    x, y = ds.x_train[:240], ds.y_train[:240]
    circuit = circuits.mlp([64, 16, 10], rule="ldfa", rank=4, subspace="local", lr=0.2, seed=13)
    ref = bioplastic.build(circuit, backend="reference")
    runner = bioplastic.build(circuit, backend="brian2")
    for epoch in range(3):
        order = np.random.default_rng(epoch).permutation(len(x))
        runner.train_epoch(x[order], y[order], batch_size=10)
        for start in range(0, len(x), 10):
            idx = order[start:start + 10]
            ref.train_step(x[idx], y[idx])
    acc_b2 = np.mean(runner.predict(ds.x_test).argmax(1) == ds.labels_test)
    acc_ref = np.mean(ref.predict(ds.x_test).argmax(1) == ds.labels_test)
    assert acc_ref > 0.5  # it learnt something, so the comparison means something
    assert abs(acc_b2 - acc_ref) <= 0.03, (acc_b2, acc_ref)


def test_import_bioplastic_does_not_import_brian2():
    code = ("import sys, bioplastic, circuits; "
            "bioplastic.build(circuits.mlp([3, 2], rule='fa'), backend='reference'); "
            "assert 'brian2' not in sys.modules, 'brian2 was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
