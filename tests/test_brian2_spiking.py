"""Spiking (LIF) circuits on backend brian2: the LIF unit, ON/OFF signed coding, statistical
equivalence of the mean weight change with the abstract rule, learning the digits.

The LIF unit is held to its analytic specification (:mod:`bioplastic.neurons.lif`); a spiking
circuit is held to the rule *statistically*: its mean update over many presentations against the
rule evaluated at the circuit's own mean rates, error and surrogate
(:func:`bioplastic.backends.brian2._spiking.reference_update`). Small circuits on Brian2's numpy
target; the sweeps over presentation time and the digits run are ``slow``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import bioplastic
import circuits
from bioplastic.circuit import CircuitError
from bioplastic.neurons import lif

pytest.importorskip("brian2")
pytestmark = pytest.mark.brian2

from test_brian2 import brian2_state  # noqa: E402,F401  (restores Brian2's global state around each test)

from bioplastic.backends import UnsupportedCircuitError  # noqa: E402
from bioplastic.backends.brian2 import _spiking  # noqa: E402


def spiking_mlp(sizes=(6, 10, 3), **kwargs):
    kwargs = {"rule": "ldfa", "rank": 2, "subspace": "local", "lr": 1e-3, "seed": 3, **kwargs}
    return circuits.mlp(list(sizes), neuron="lif", **kwargs)


def relative_errors(runner, circuit, x, y, lr):
    """One train_step; relative distance of each matrix's mean update to the rule at the circuit's means."""
    start = runner.get_weights()
    runner.train_step(x, y)
    end = runner.get_weights()
    want = _spiking.reference_update(runner.circuit, start, x, runner.means)
    return {k: float(np.linalg.norm(-(end[k] - start[k]) / lr - g) / np.linalg.norm(g)) for k, g in want.items()}


# ------------------------------------------------------------------------------------ the LIF unit
def test_lif_is_a_registered_neuron_model():
    assert "lif" in bioplastic.neurons.NEURON_MODELS
    c = spiking_mlp()
    assert {n for _, n in c.graph.nodes(data="neuron")} == {"lif"}
    assert bioplastic.Circuit.from_json(c.to_json()) == c
    assert "lif" in bioplastic.backends.capabilities("brian2")["neurons"]
    with pytest.raises(CircuitError, match="dale=True.*neuron='lif'"):
        circuits.mlp([4, 5, 3], rule="fa", dale=True)
    with pytest.raises(ValueError, match="v_rest < v_th"):
        lif.LIFParams(v_th=-70.0)
    with pytest.raises(ValueError, match="tau_m must be > 0"):
        lif.LIFParams(tau_m=0.0)


def test_surrogate_is_a_triangle_at_threshold():
    p = lif.LIFParams(gamma_psi=0.7, w_psi=10.0)
    v = np.linspace(p.v_th - 2 * p.w_psi, p.v_th + 2 * p.w_psi, 401)
    psi = lif.surrogate(v, p)
    assert psi.max() == pytest.approx(p.gamma_psi) and v[np.argmax(psi)] == pytest.approx(p.v_th)
    assert np.all(psi >= 0) and np.all(psi[np.abs(v - p.v_th) >= p.w_psi] == 0)
    np.testing.assert_allclose(psi, psi[::-1], atol=1e-12)  # symmetric about v_th
    inside = np.abs(v - p.v_th) < p.w_psi
    np.testing.assert_allclose(psi[inside], p.gamma_psi * (1 - np.abs(v[inside] - p.v_th) / p.w_psi))


def test_membrane_and_rate_match_the_analytic_solution():
    """Subthreshold drives follow v(t) = v_inf + (v_rest - v_inf) exp(-t/tau_m) exactly; suprathreshold
    ones fire at the analytic f-I curve (spike counts within one of the analytic count)."""
    p = lif.LIFParams()
    drives = np.array([-0.6, -0.1, 0.2, 0.5, 1.0, 2.0])
    dt, duration = 0.1, 200.0
    out = _spiking.simulate_lif(drives, duration=duration, params=p, dt=dt)
    sub = drives <= 0
    want = lif.membrane(out["t"][None, :], drives[sub, None], params=p)
    np.testing.assert_allclose(out["v"][sub], want, atol=1e-6)  # exact integration, mV
    np.testing.assert_allclose(out["psi"], lif.surrogate(out["v"], p), atol=1e-12)
    assert np.all(out["rate"][sub] == 0)
    # analytic count: first spike after the charge time from rest, then one per ISI (with t_ref)
    v_inf = lif.steady_potential(drives[~sub], p)
    charge = p.tau_m * np.log((v_inf - p.v_rest) / (v_inf - p.v_th))
    isi = 1e3 / lif.rate(drives[~sub], p)
    count = 1 + np.floor((duration - charge) / isi)
    assert np.all(np.abs(out["rate"][~sub] * duration * 1e-3 - count) <= 1), (out["rate"][~sub], count)
    # the rate trace reads the rate in units of rate_max (second half, after the first spikes)
    fast = drives >= 0.5
    np.testing.assert_allclose(out["trace"][fast], lif.rate(drives[fast], p) / p.rate_max, rtol=0.1)


# ------------------------------------------------------------------------------------ circuits
def test_build_dispatches_and_refuses_by_name():
    c = spiking_mlp()
    runner = bioplastic.build(c, backend="brian2")
    assert isinstance(runner, _spiking.SpikingRunner)
    assert sorted(runner.get_weights()) == sorted(c.weight_keys())
    with pytest.raises(UnsupportedCircuitError, match="'oja'.*supported for spiking circuits.*local"):
        bioplastic.build(spiking_mlp(subspace="oja"), backend="brian2")
    with pytest.raises(UnsupportedCircuitError, match="weight transport"):
        bioplastic.build(circuits.mlp([6, 10, 3], rule="bp", neuron="lif"), backend="brian2")
    with pytest.raises(TypeError, match="unknown option.*valid options: .*window"):
        bioplastic.build(c, backend="brian2", tau=0.01)
    with pytest.raises(ValueError, match="multiple of dt"):
        bioplastic.build(c, backend="brian2", settle=10.1)
    with pytest.raises(ValueError, match="x must be >= 0"):
        runner.train_step(-np.ones((2, 6)), np.zeros((2, 3)))
    from brian2 import ms

    assert bioplastic.build(c, backend="brian2", window=0.2 * 1000 * ms).options.window == pytest.approx(200.0)


def test_constraints_report_on_off_halves_and_dale():
    rows = spiking_mlp(dale=True).constraints()
    assert rows[0]["neuron"] == "lif" and rows[0]["dale"] is True
    assert rows[0]["signed_populations"] == ["error", "feedback2"]
    assert any("ON and OFF" in s for s in rows[0]["symmetric"])
    assert any("Dale" in s for s in rows[0]["symmetric"])
    assert spiking_mlp().constraints()[0]["dale"] is False
    assert "neuron" not in circuits.mlp([6, 10, 3], rule="ldfa", rank=2).constraints()[0]


def test_one_step_matches_the_rule_at_the_circuits_means_and_keeps_dales_signs():
    """128 presentations of 4 samples: the mean update of every matrix is within 25% of the rule's
    (the floor is set by covariances of traces, measured by the slow sweep below). Signed (centred)
    input through ON/OFF halves; under Dale's law a weight that would change sign stops at zero."""
    c = spiking_mlp(dale=True)
    rng = np.random.default_rng(1)
    x = np.tile(2 * rng.random((4, 6)) - 1, (32, 1))
    y = np.tile(0.8 * rng.random((4, 3)), (32, 1))
    runner = bioplastic.build(c, backend="brian2", window=100.0, signed_input=True)
    errors = relative_errors(runner, c, x, y, lr=1e-3)
    assert sorted(errors) == sorted(c.weight_keys())
    assert max(errors.values()) < 0.25, errors
    # the ON/OFF halves carry e and z with non-negative rates whose difference is the signed signal
    m = runner.means
    assert min(m["error_on.r"].min(), m["error_off.r"].min(), m["feedback2_on.r"].min()) >= 0
    np.testing.assert_allclose((m["input_on.r"] - m["input_off.r"]).mean(0), x.mean(0), atol=0.1)
    e = m["error_on.r"] - m["error_off.r"]
    np.testing.assert_allclose(e.mean(0), (m["output.r"] - y).mean(0), rtol=0.1, atol=0.05)
    assert runner.timing["presentations"] == 1 and runner.timing["sim_s"] == pytest.approx(0.15)
    # forward weights a hair from zero (with their presynaptic signs): the step would flip about half
    assert sorted(runner.signs) == ["P2", "Q2", "W1", "W2"]
    runner.set_weights({k: 1e-8 * runner.signs[k][None, :] * np.ones(c.weight_shape(k)) for k in ("W1", "W2")})
    runner.train_step(x, y)
    w = runner.get_weights()
    for k, signs in runner.signs.items():
        assert np.all(w[k] * signs[None, :] >= 0), k
    for k in ("W1", "W2"):
        assert np.any(w[k] == 0) and np.any(np.abs(w[k]) > 1e-6), k  # some stopped at 0, some grew


@pytest.mark.parametrize("kwargs", [dict(rule="ldfa", rank=2, subspace="local"), dict(rule="fa"),
                                    dict(rule="dfa", rank=2, subspace="local"), dict(rule="kp")])
def test_a_deeper_circuit_relays_hidden_errors_and_matches_the_rule(kwargs):
    """6-10-8-3: layer-topology rules send hidden2's error psi(v) u to hidden1 through an ON/OFF
    relay whose rate difference is that error's window mean (kp's B learns from the relay's and the
    hidden layer's rates); dfa reads the output error at every depth (no relay). 128 presentations at a 100 ms window: the mean update of every matrix within
    40 % of the rule at the circuit's means (worst, W1: 0.11-0.21 measured, two noisy stages reach
    it; kp's B 0.02-0.06: the rule's B moves with W's update, the circuit's reads the relay), their
    mean within 20 % (0.05-0.08 measured; the slow sweep shows it shrinking with the window)."""
    c = circuits.mlp([6, 10, 8, 3], neuron="lif", lr=1e-3, seed=3, **kwargs)
    layered = kwargs["rule"] != "dfa"
    assert lif.relays(c) == ({"hidden2": "hidden2_error"} if layered else {})
    rng = np.random.default_rng(1)
    x = np.tile(rng.random((4, 6)), (32, 1))
    y = np.tile(0.8 * rng.random((4, 3)), (32, 1))
    runner = bioplastic.build(c, backend="brian2", window=100.0)
    errors = relative_errors(runner, c, x, y, lr=1e-3)
    fixed = ("B2", "B3") if kwargs["rule"] == "fa" else ()  # kp's B learns (mirrored), fa's not
    assert sorted(errors) == sorted(k for k in c.weight_keys() if k not in fixed), errors
    assert max(errors.values()) < 0.4 and np.mean(list(errors.values())) < 0.2, errors
    m = runner.means
    if layered:
        relayed = m["hidden2_error_on.r"] - m["hidden2_error_off.r"]
        np.testing.assert_allclose(relayed.mean(0), m["hidden2.delta"].mean(0), atol=0.05)
        assert np.abs(m["hidden2.delta"]).max() > 0.05  # an error worth relaying
        rows = c.constraints()
        assert "hidden2_error" in rows[0]["signed_populations"]
        assert any("relay hidden2_error" in s for s in rows[0]["symmetric"])
    else:
        assert not any(k.startswith("hidden2_error") for k in m)


@pytest.mark.parametrize("kwargs, fixed", [(dict(rule="fa"), ("B2",)),
                                           (dict(rule="ldfa", rank=2, subspace="fixed"), ("P2", "Q2")),
                                           (dict(rule="dfa", rank=2, subspace="q_only"), ("P2",))])
def test_other_rules_run_with_their_fixed_feedback_fixed(kwargs, fixed):
    c = circuits.mlp([5, 7, 3], neuron="lif", lr=0.1, feedback_lr=0.1, seed=4, **kwargs)
    runner = bioplastic.build(c, backend="brian2", settle=10.0, window=10.0)
    start = runner.get_weights()
    rng = np.random.default_rng(3)
    runner.train_step(rng.random((4, 5)), rng.random((4, 3)))
    end = runner.get_weights()
    for k in start:
        assert np.array_equal(start[k], end[k]) == (k in fixed), k


@pytest.mark.slow
def test_equivalence_error_shrinks_with_presentation_time():
    """The distance between the mean update and the rule shrinks as the window grows (spike-count
    noise ~ 1/sqrt(window)), down to a floor set by covariances of pre and post traces."""
    c = spiking_mlp()
    rng = np.random.default_rng(1)
    x = np.tile(rng.random((4, 6)), (16, 1))
    y = np.tile(0.8 * rng.random((4, 3)), (16, 1))
    worst = {}
    for window in (10.0, 40.0, 160.0):
        runner = bioplastic.build(c, backend="brian2", window=window, seed=5)
        errors = relative_errors(runner, c, x, y, lr=1e-3)
        worst[window] = float(np.mean(list(errors.values())))
    assert worst[10.0] > worst[40.0] > worst[160.0] or worst[10.0] > 1.5 * worst[160.0], worst
    assert worst[160.0] < 0.12, worst


@pytest.mark.slow
def test_deeper_equivalence_error_shrinks_with_presentation_time():
    """6-10-8-3 ldfa (hidden2's error relayed): the mean distance to the rule shrinks from a 20 ms
    to a 320 ms window (measured 0.22 -> 0.08)."""
    c = circuits.mlp([6, 10, 8, 3], rule="ldfa", rank=2, subspace="local", neuron="lif", lr=1e-3, seed=3)
    rng = np.random.default_rng(1)
    x = np.tile(rng.random((4, 6)), (32, 1))
    y = np.tile(0.8 * rng.random((4, 3)), (32, 1))
    mean = {}
    for window in (20.0, 320.0):
        runner = bioplastic.build(c, backend="brian2", window=window, seed=5)
        mean[window] = float(np.mean(list(relative_errors(runner, c, x, y, lr=1e-3).values())))
    assert mean[320.0] < 0.6 * mean[20.0] and mean[320.0] < 0.12, mean


@pytest.mark.slow
def test_spiking_ldfa_learns_the_digits():
    """64-100-10, r = 4 bottleneck neurons (ON/OFF: 8), local subspace rule, centred digits on
    regular ON/OFF input spike trains, each epoch's last partial batch dropped (as
    analyses/spiking_digits.py): well above chance (10%) on held-out digits after two epochs;
    accuracy and wall time printed."""
    from bioplastic.data import load_digits

    ds = load_digits()
    mean = ds.x_train.mean(axis=0)
    c = circuits.mlp([64, 100, 10], rule="ldfa", rank=4, subspace="local", neuron="lif", lr=0.2,
                     feedback_lr=0.02, seed=0)
    runner = bioplastic.build(c, backend="brian2", signed_input=True, input_coding="regular",
                              input_rate=200.0)
    start = time.perf_counter()
    for epoch in range(2):
        order = np.random.default_rng(epoch).permutation(len(ds.x_train))[:len(ds.x_train) // 64 * 64]
        runner.train_epoch(ds.x_train[order] - mean, ds.y_train[order], batch_size=64)
    accuracy = float(np.mean(runner.predict(ds.x_test - mean).argmax(1) == ds.labels_test))
    print(f"spiking ldfa r=4 digits: accuracy {accuracy:.3f} in {time.perf_counter() - start:.0f} s")
    assert accuracy > 0.6


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_rate_backends_refuse_a_spiking_circuit(backend):
    """A LIF circuit has no rate equation: the rate backends refuse it by name, never run it as rates."""
    c = circuits.mlp([6, 8, 3], rule="ldfa", rank=2, subspace="local", neuron="lif")
    with pytest.raises(UnsupportedCircuitError, match="neuron model 'lif'; supported neurons: rate"):
        bioplastic.build(c, backend=backend)


# ------------------------------------------------------------------------------------ open circuits
def _interneurons(model):
    """Poisson interneurons onto hidden1's apical compartments with zero weight (the circuit's
    numbers are unchanged) and a monitor of their spikes."""
    from brian2 import Hz, PoissonGroup, SpikeMonitor, Synapses

    n = len(model.groups["hidden1"])
    inh = PoissonGroup(n, 200 * Hz, clock=model.sim, name="interneurons")
    syn = Synapses(inh, model.groups["hidden1"], "k : 1", on_pre="u_post -= k", clock=model.sim,
                   name="interneurons_to_hidden1")
    syn.connect(j="i")
    return [inh, syn, SpikeMonitor(inh, name="interneuron_spikes")]


def test_user_population_survives_two_spiking_calls_and_is_recorded():
    c = spiking_mlp()
    rng = np.random.default_rng(2)
    x, y = rng.random((4, 6)), 0.8 * rng.random((4, 3))
    plain = bioplastic.build(c, backend="brian2", settle=10.0, window=20.0, seed=1)
    runner = bioplastic.build(c, backend="brian2", settle=10.0, window=20.0, seed=1).extend(_interneurons)
    for call in range(2):
        runner.train_step(x, y)
        plain.train_step(x, y)
        spikes = runner.model().extra["interneuron_spikes"]
        # this call's 30 ms of 4 copies x 10 neurons at 200 Hz: 240 spikes expected, recorded afresh
        assert 150 < spikes.num_spikes < 340, (call, spikes.num_spikes)
        assert float(spikes.t[:].max()) < 0.031
    assert runner.model().extra["interneurons_to_hidden1"].N == 4 * 10
    text = runner.export()
    for name in ["hidden1", "error", "feedback2", "W1", "Q2", "Qt2", "interneurons_to_hidden1",
                 "dv/dt", "20 ms learning window"]:
        assert name in text, name
    for key, value in plain.get_weights().items():  # the added spikes draw random numbers, so the
        # circuit's Poisson trains differ, but zero-weight interneurons leave the update's scale
        assert np.linalg.norm(runner.get_weights()[key] - value) < 0.5 * np.linalg.norm(value) + 1e-9, key


def test_spiking_divergence_names_the_population_and_keeps_the_weights():
    """lr 1e200: the first step leaves weights of ~1e199 (finite), the second drives the membranes
    past any float (P2 overflows); the error names what went non-finite, and the weights stay those the
    first step left."""
    c = spiking_mlp(lr=1e200)
    runner = bioplastic.build(c, backend="brian2", settle=10.0, window=10.0)
    rng = np.random.default_rng(3)
    x, y = rng.random((4, 6)), 0.8 * rng.random((4, 3))
    with np.errstate(all="ignore"), pytest.warns(Warning):  # Brian2 warns about the large values first
        runner.train_step(x, y)
        before = runner.get_weights()
        with pytest.raises(_spiking.DivergenceError, match=r"spiking circuit diverged.*weight store 'P2'"):
            runner.train_step(x, y)
    for key, value in runner.get_weights().items():
        np.testing.assert_array_equal(value, before[key])
