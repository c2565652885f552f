"""Backend ``brian2``: physical time, honest locality, open circuits, export, divergence.

Numpy target, small circuits. Equivalence is measured as in tests/test_brian2.py: the relative
error of each matrix's *update* after one train_step, brian2 vs the float64 reference.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_close

import bioplastic
import circuits

pytest.importorskip("brian2")
pytestmark = pytest.mark.brian2

from test_brian2 import RULES, TOLERANCE, batch, brian2_state, update_errors  # noqa: E402,F401

from bioplastic.backends import brian2 as bb  # noqa: E402

# ------------------------------------------------------------------------------ physical time
#: Rules the default suite checks at two dt; the rest of RULES run with ``-m slow``.
FAST_DT = ("fa", "ldfa-local", "dfa-r-oja")


@pytest.mark.parametrize("name", [n if n in FAST_DT else pytest.param(n, marks=pytest.mark.slow)
                                  for n in RULES])
def test_two_dt_stay_within_tolerance(name):
    """Settling is set in time: the default dt (tau/2) and half of it both match the reference."""
    from brian2 import ms

    circuit = circuits.mlp([6, 8, 7, 4], lr=0.1, feedback_lr=0.1, decay=0.01, seed=1, **RULES[name])
    x, y = batch(6, 4)
    worst = {}
    for dt in (5 * ms, 2.5 * ms):
        errors, _, _, runner = update_errors(circuit, x, y, dt=dt)
        worst[float(dt)] = max(errors.values())
        assert runner.settle == pytest.approx(bb.default_settle(circuit, 0.01))
    assert max(worst.values()) < TOLERANCE, (name, worst)


def test_time_options_take_brian2_units():
    from brian2 import ms, mV

    circuit = circuits.mlp([4, 5, 3], rule="fa")
    runner = bioplastic.build(circuit, backend="brian2", tau=20 * ms, dt=2 * ms, settle=100 * ms)
    assert (runner.dt, runner.steps, runner.options.tau) == (pytest.approx(0.002), 50, pytest.approx(0.02))
    seconds = bioplastic.build(circuit, backend="brian2", dt=0.002, settle=0.1)
    assert seconds.steps == 50
    with pytest.raises(ValueError, match=r"settle must be a time \(e.g. settle=5\*ms\)"):
        bioplastic.build(circuit, backend="brian2", settle=5 * mV)


# ------------------------------------------------------------------------------ speed, exactly
def test_optimised_circuit_gives_identical_weights():
    """f(a) once per step and the input drive once per presentation change no weight."""
    circuit = circuits.mlp([6, 8, 7, 4], rule="ldfa", rank=3, subspace="oja", lr=0.1, decay=0.01, seed=2)
    x, y = batch(6, 4, n=6, seed=3)
    got = {}
    for optimise in (True, False):
        runner = bioplastic.build(circuit, backend="brian2", optimise=optimise, copies=3)
        runner.train_epoch(x, y, batch_size=3)
        got[optimise] = runner.get_weights()
    for key, value in got[True].items():
        assert_close(value, got[False][key], rtol=1e-12, atol=1e-14, what=key)


def test_reused_code_objects_give_the_weights_of_fresh_ones():
    """The optimised runner keeps its code objects from call to call; a sequence of calls that
    changes what the code depends on (a schedule outgrowing its rows, an inference network, a
    user's object added between calls) ends with the weights of the baseline, which regenerates
    every code object at every call."""
    from brian2 import NeuronGroup

    circuit = circuits.mlp([6, 8, 4], rule="ldfa", rank=2, subspace="local", lr=0.1, seed=5)
    x, y = batch(6, 4, n=200, seed=6)
    got, outputs = {}, {}
    for optimise in (True, False):
        runner = bioplastic.build(circuit, backend="brian2", optimise=optimise, copies=3)
        runner.train_step(x[:3], y[:3])
        runner.train_step(x[3:6], y[3:6])
        runner.model().network.add(NeuronGroup(2, "v : 1", name="bystander"))
        runner.train_epoch(x, y, batch_size=3)  # 67 presentations: more rows than the first schedules
        runner.train_step(x[6:9], y[6:9])
        outputs[optimise] = runner.predict(x[:9])
        got[optimise] = runner.get_weights()
    assert_close(outputs[True], outputs[False], rtol=1e-12, atol=1e-14, what="predict")
    for key, value in got[True].items():
        assert_close(value, got[False][key], rtol=1e-12, atol=1e-14, what=key)


def test_code_objects_are_kept_between_calls_and_follow_a_changed_constant():
    """The second call runs the first call's code objects (no regeneration); a value a user's
    object reads from its own namespace, changed between calls, is seen as the baseline sees it."""
    from brian2 import NeuronGroup

    circuit = circuits.mlp([4, 5, 3], rule="fa", seed=2)
    x, y = batch(4, 3, n=2, seed=3)
    ends = {}
    for optimise in (True, False):
        runner = bioplastic.build(circuit, backend="brian2", optimise=optimise, copies=2)
        runner.extend(lambda model: NeuronGroup(1, "dv/dt = k / ms : 1", namespace={"k": 1.0},
                                                clock=model.sim, name="counter"))
        runner.train_step(x, y)
        model = runner.model()
        before = {obj.name: id(obj.codeobj) for obj in model.network.sorted_objects
                  if getattr(obj, "codeobj", None) is not None}
        model.extra["counter"].namespace["k"] = 2.0
        runner.train_step(x, y)
        after = {obj.name: id(obj.codeobj) for obj in model.network.sorted_objects
                 if getattr(obj, "codeobj", None) is not None}
        kept = [name for name in before if after.get(name) == before[name]]
        if optimise:  # every runner but the counter's (its constant changed) kept its code
            assert sorted(set(before) - set(kept)) == ["counter_stateupdater"], set(before) - set(kept)
        else:
            assert not kept
        ends[optimise] = float(model.extra["counter"].v[0])
    assert ends[True] == ends[False] == pytest.approx(2.0 * runner.steps * runner.dt * 1e3 + 2.0 * runner.dt * 1e3)


def test_divergence_names_the_population():
    circuit = circuits.mlp([4, 5, 3], rule="fa", lr=1e200, seed=3)
    runner = bioplastic.build(circuit, backend="brian2", copies=2)
    x, y = batch(4, 3, n=8, seed=4)
    before = runner.get_weights()
    with np.errstate(all="ignore"), pytest.warns(Warning):  # brian2 warns about the values first
        with pytest.raises(bb.DivergenceError, match=r"diverged.*population 'hidden1'"):
            runner.train_epoch(x * 1e200, y, batch_size=2)
    for key, value in runner.get_weights().items():
        assert np.array_equal(value, before[key]), key


# ------------------------------------------------------------------------------ honest locality
def test_constraints_name_every_shortcut():
    read = circuits.mlp([8, 6, 5, 3], rule="ldfa", rank=2, subspace="local").constraints()
    assert all(r["reciprocal"] == "read" and r["symmetric"] for r in read)
    assert any("read Q's weights" in w for w in read[0]["wiring"])
    learned = circuits.mlp([8, 6, 5, 3], rule="ldfa", rank=2, subspace="local",
                           reciprocal="learned").constraints()
    assert all(r["reciprocal"] == "learned" and not r["symmetric"] and not r["wiring"] for r in learned)
    assert "Qt" in learned[0]["reads"]
    oja = circuits.mlp([8, 6, 3], rule="ldfa", rank=2, subspace="oja", reciprocal="learned").constraints()
    assert oja[0]["wiring"] == ["non-local: a P synapse reads the reconstruction P^T z held by its "
                                "presynaptic error neuron (a signal of the presynaptic cell, not of the synapse)"]
    bp = circuits.mlp([8, 6, 3], rule="bp").constraints()
    assert bp[0]["wiring"] == ["weight transport: feedback synapses B copy the forward weights W^T"]
    normative = circuits.mlp([8, 6, 3], rule="ldfa", rank=2, subspace="normative").constraints()
    assert normative[0]["nonlocal"] and normative[0]["wiring"][0].startswith("non-local: ")
    runner = bioplastic.build(circuits.mlp([8, 6, 3], rule="fa"), backend="brian2")
    assert any("share each synapse" in w for w in runner.constraints()[0]["wiring"])
    single = bioplastic.build(circuits.mlp([8, 6, 3], rule="fa"), backend="brian2", copies=1)
    assert not any("share each synapse" in w for w in single.constraints()[0]["wiring"])


@pytest.mark.parametrize("kwargs", [dict(rule="ldfa", rank=3, subspace="local"),
                                    dict(rule="ldfa", rank=3, subspace="oja"),
                                    dict(rule="dfa", rank=2, subspace="local")],
                         ids=["ldfa-local", "ldfa-oja", "dfa-r-local"])
def test_learned_reciprocals_match_their_reference(kwargs):
    """reciprocal='learned': Qt/Pt are weights of their own in every execution, held together."""
    circuit = circuits.mlp([6, 8, 7, 4], lr=0.1, feedback_lr=0.1, decay=0.01, seed=1, reciprocal="learned",
                           **kwargs)
    mirrors = [k for k in circuit.weight_keys() if k.startswith(("Qt", "Pt"))]
    assert mirrors
    errors, loss_b2, loss_ref, _ = update_errors(circuit, *batch(6, 4))
    assert set(mirrors) <= set(errors)
    assert max(errors.values()) < TOLERANCE, errors
    assert_close(loss_b2, loss_ref, rtol=TOLERANCE, what="loss")
    with pytest.raises(bioplastic.backends.UnsupportedCircuitError, match="torch.*reciprocal 'learned'"):
        bioplastic.build(circuit, backend="torch")


def test_learned_reciprocals_converge_to_the_transpose():
    """With decay the learned reciprocals forget their random start: Qt -> Q^T (Kolen-Pollack), and
    the circuit's update then matches the symmetric (read) rule's reference."""
    kw = dict(rule="ldfa", rank=3, subspace="local", lr=0.02, feedback_lr=0.1, decay=0.2, seed=5)
    learned = circuits.mlp([6, 8, 7, 4], reciprocal="learned", **kw)
    x, y = batch(6, 4, n=8, seed=6)
    ref = bioplastic.build(learned, backend="reference")
    start = ref.get_weights()
    steps = 700
    for _ in range(steps):
        ref.train_step(x, y)
    w = ref.get_weights()
    for l in (2, 3):
        # Qt - Q^T shrinks by exactly (1 - feedback_lr decay) per step, while Q stays O(1)
        gap0, gap = (np.linalg.norm(m[f"Qt{l}"] - m[f"Q{l}"].T) for m in (start, w))
        assert gap / gap0 == pytest.approx((1 - 0.1 * 0.2) ** steps, rel=1e-3)
        assert gap < 1e-4 * np.linalg.norm(w[f"Q{l}"]) and np.linalg.norm(w[f"Q{l}"]) > 0.1
    # converged: the learned circuit in Brian2 steps like the symmetric rule's reference
    read = circuits.mlp([6, 8, 7, 4], **kw)
    sym = bioplastic.build(read, backend="reference", weights={k: v for k, v in w.items() if k in read.weight_keys()})
    before = sym.get_weights()
    sym.train_step(x, y)
    runner = bioplastic.build(learned, backend="brian2", weights=w)
    runner.train_step(x, y)
    for key in before:
        d_ref = sym.get_weights()[key] - before[key]
        d_b2 = runner.get_weights()[key] - w[key]
        assert np.linalg.norm(d_b2 - d_ref) < TOLERANCE * np.linalg.norm(d_ref), key


# ------------------------------------------------------------------------------ open circuits
def _noise(model):
    """A user's noise population on the apical compartments of hidden1 (zero coupling, so the
    circuit's numbers are unchanged) and a monitor of it."""
    from brian2 import NeuronGroup, StateMonitor, Synapses

    n = len(model.groups["hidden1"])
    src = NeuronGroup(n, "dx/dt = -x / (5*ms) + 0.5 * xi / sqrt(5*ms) : 1", method="euler",
                      clock=model.sim, name="noise")
    syn = Synapses(src, model.groups["hidden1"], "g : 1\nI_noise_post = g * x_pre : 1 (summed)",
                   clock=model.sim, name="noise_to_hidden1")
    syn.connect(j="i")
    return [src, syn, StateMonitor(src, "x", record=[0, 1], name="noise_monitor")]


def test_user_population_survives_two_calls_and_is_recorded():
    circuit = circuits.mlp([6, 8, 4], rule="ldfa", rank=2, subspace="local", lr=0.1, seed=7)
    x, y = batch(6, 4, n=4, seed=8)
    runner = bioplastic.build(circuit, backend="brian2", inputs={"I_noise": "hidden1.apical"})
    runner.extend(_noise)
    ref = bioplastic.build(circuit, backend="reference")
    for call in range(2):
        runner.train_step(x, y)
        ref.train_step(x, y)
        model = runner.model()
        mon = model.extra["noise_monitor"]
        assert mon.x.shape == (2, runner.steps + 1), call  # this call's steps, recorded afresh
        assert np.std(mon.x) > 0
    for key, value in ref.get_weights().items():  # zero coupling: the circuit is unchanged
        assert_close(runner.get_weights()[key], value, rtol=1e-3, atol=1e-6, what=key)
    # objects added straight to the network survive the next call too
    from brian2 import StateMonitor

    extra = StateMonitor(model.groups["feedback2"], "z", record=True, name="late_monitor")
    model.network.add(extra)
    runner.train_step(x, y)
    assert extra.z.shape == (len(model.groups["feedback2"]), runner.steps + 1)
    with pytest.raises(ValueError, match="no input compartment 'apical'.*valid: soma"):
        bioplastic.build(circuit, backend="brian2", inputs={"I_x": "output.apical"})


def test_export_lists_every_group_and_synapse():
    circuit = circuits.mlp([5, 6, 3], rule="ldfa", rank=2, subspace="oja", seed=9)
    runner = bioplastic.build(circuit, backend="brian2", inputs={"I_noise": "hidden1.apical"}).extend(_noise)
    text = runner.export()
    for name in [*circuit.graph.nodes, *circuit.weight_keys(), "Pt2", "E_return", "noise_to_hidden1"]:
        assert name in text, name
    assert "du/dt = (I_Q2 + I_noise - u) / tau" in text and "tanh(a)" in text
    assert "elig += learn_sched(t) * (-z_post * (eps_pre - rec_pre))" in text
    data = json.loads(runner.export("json"))
    assert {s["name"] for s in data["synapses"]} >= {"W1", "W2", "P2", "Q2", "Pt2"}
    assert data["simulation"]["steps_per_presentation"] == runner.steps
    with pytest.raises(ValueError, match="unknown export format 'yaml'; valid options: markdown, json"):
        runner.export("yaml")
