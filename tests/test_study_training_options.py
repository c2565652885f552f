"""Training options of the study format for [model] runs (bioplastic.experiment.study, .run):

* ``[schedule] exponential``: the factor of epoch k is gamma ** (k - 1), the learning rates of
  torch's ExponentialLR stepped once per epoch;
* ``[optimizer] rmsprop`` (alpha, momentum) and ``decay_biases``: a study run's weights equal those
  of a hand-written loop with torch.optim.RMSprop over model.parameters() (coupled L2 decay on every
  parameter) and that schedule, bit for bit; rmsprop's first step equals its formula;
* ``[model] only``: the modules converted, every other one left on exact backprop;
* every mistake names its key and what is allowed.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import train_by_hand

from bioplastic.experiment.run import execute, lr_factor, read_metrics, run_folder
from bioplastic.experiment.study import ScheduleSection, StudyError, study_from_mapping


@pytest.fixture(scope="module")
def torch_mod(one_torch_thread):
    import torch

    return torch


# --------------------------------------------------------------------------------------------------
# [schedule] exponential
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gamma", [0.975, 0.5, 1.3])
def test_exponential_factor_is_gamma_to_the_epochs_before(gamma):
    schedule = ScheduleSection(name="exponential", gamma=gamma)
    for k in range(1, 12):
        assert lr_factor(schedule, k, 11) == pytest.approx(gamma ** (k - 1), rel=1e-15)


def test_exponential_factor_with_warmup_multiplies_the_ramp():
    schedule = ScheduleSection(name="exponential", gamma=0.8, warmup=3)
    expected = [1 / 4, 0.8 * 2 / 4, 0.8 ** 2 * 3 / 4, 0.8 ** 3, 0.8 ** 4]
    assert [lr_factor(schedule, k, 5) for k in range(1, 6)] == pytest.approx(expected, rel=1e-15)


def test_exponential_factor_follows_torch_exponential_lr(torch_mod):
    """The rates of each epoch against ExponentialLR stepped after every epoch (the usual loop)."""
    torch = torch_mod
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    schedule = ScheduleSection(name="exponential", gamma=0.9)
    for k in range(1, 30):
        # ExponentialLR multiplies the rate once per epoch; the study computes gamma ** (k - 1)
        assert 0.3 * lr_factor(schedule, k, 29) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-13)
        opt.step()  # the epoch's steps (no gradient: nothing moves), then the scheduler's
        sched.step()


def test_unknown_schedule_is_refused_with_the_options():
    with pytest.raises(ValueError, match="valid options: constant, step, exponential, cosine"):
        lr_factor(SimpleNamespace(name="linear", warmup=0), 1, 3)


# --------------------------------------------------------------------------------------------------
# [optimizer] rmsprop, decay, decay_biases against torch.optim on a tiny model
# --------------------------------------------------------------------------------------------------

LR, DECAY, ALPHA, MOMENTUM, GAMMA, BATCH, EPOCHS, SEED = 0.003, 0.01, 0.9, 0.5, 0.7, 64, 3, 5


def tiny_mapping(**optimizer) -> dict:
    """A 64-16-10 MLP with batch norm (1-D weights besides the biases) on the bundled digits."""
    return {"name": "tiny", "seeds": [SEED], "task": {"name": "digits"},
            "model": {"name": "mlp", "options": {"hidden": [16]}}, "backend": {"name": "torch"},
            "optimizer": {"name": "rmsprop", "lr": LR, "decay": DECAY, "decay_biases": True,
                          "alpha": ALPHA, "momentum": MOMENTUM, **optimizer},
            "schedule": {"name": "exponential", "gamma": GAMMA},
            "training": {"epochs": EPOCHS, "batch_size": BATCH, "loss": "cross_entropy",
                         "checkpoint_every": 0},
            "record": {"weights_every": EPOCHS}}


def hand_trained(torch, ds):
    """The same training written out: RMSprop over model.parameters(), ExponentialLR, the batch order
    of numpy's generator of the seed, cross-entropy on the labels."""

    from bioplastic.torch.models import MLP

    torch.manual_seed(SEED)
    model = MLP(in_features=64, hidden=[16], out_features=10)
    opt = torch.optim.RMSprop(model.parameters(), lr=LR, alpha=ALPHA, weight_decay=DECAY, momentum=MOMENTUM)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=GAMMA)
    return train_by_hand(model, ds, opt, sched, EPOCHS, BATCH, SEED)


def test_rmsprop_with_decay_on_every_parameter_equals_torch_rmsprop(tmp_path, torch_mod):
    torch = torch_mod
    from bioplastic.experiment.run import load_task
    from bioplastic.experiment.study import RunConfig

    run = study_from_mapping(tiny_mapping()).runs[0]
    assert execute(run, tmp_path)["state"] == "finished"
    with np.load(run_folder(tmp_path, run["run_id"]) / "snapshots" / f"weights_{EPOCHS:04d}.npz") as f:
        trained = {k: f[k] for k in f.files}
    model = hand_trained(torch, load_task(RunConfig.model_validate(run).task))
    state = model.state_dict()
    assert set(trained) == set(state)
    moved = 0
    for key, value in state.items():
        # the same operations in the same order: equal to the last bit
        np.testing.assert_array_equal(trained[key], value.numpy(), err_msg=key)
        moved += key.endswith("bias") and not np.allclose(value.numpy(), 0.0)
    assert moved  # the biases learnt (and were decayed along)
    assert len(read_metrics(run_folder(tmp_path, run["run_id"]))) == EPOCHS + 1


def test_decay_biases_changes_only_the_one_dimensional_parameters(tmp_path, torch_mod):
    """Without decay_biases the same run ends elsewhere: the decay reached the biases."""
    with_decay, without = (study_from_mapping(tiny_mapping(decay_biases=flag), name=f"t{flag}").runs[0]
                           for flag in (True, False))
    for run, sub in ((with_decay, "a"), (without, "b")):
        assert execute(run, tmp_path / sub)["state"] == "finished"
    a, b = (np.load(run_folder(tmp_path / sub, r["run_id"]) / "snapshots" / f"weights_{EPOCHS:04d}.npz")
            for sub, r in (("a", with_decay), ("b", without)))
    assert any(not np.array_equal(a[k], b[k]) for k in a.files if a[k].ndim == 1)


def test_rmsprop_first_step_is_its_formula(torch_mod):
    """One step from rest: v = (1 - alpha) g^2, w <- w - lr g / (sqrt(v) + eps), g with decay w."""
    torch = torch_mod
    import torch.nn.functional as F

    from bioplastic.experiment.run import Job, load_task
    from bioplastic.experiment.study import RunConfig

    config = RunConfig.model_validate(study_from_mapping(tiny_mapping(momentum=0.0)).runs[0])
    ds = load_task(config.task)
    job = Job(config, ds)
    before = {k: v.detach().clone() for k, v in job.model.named_parameters()}
    x, y = ds.x_train[:BATCH], ds.y_train[:BATCH]
    # the gradient of the batch, taken on a copy in train mode as the step takes it
    import copy

    twin = copy.deepcopy(job.model).train()
    F.cross_entropy(twin(torch.as_tensor(x, dtype=torch.float32)), torch.as_tensor(y, dtype=torch.float32)).backward()
    job.runner.train_step(x, y)
    for name, p in job.model.named_parameters():
        w0 = before[name].double().numpy()
        g = dict(twin.named_parameters())[name].grad.double().numpy() + DECAY * w0
        expected = w0 - LR * g / (np.sqrt((1 - ALPHA) * g ** 2) + 1e-8)
        np.testing.assert_allclose(p.detach().double().numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=name)


# --------------------------------------------------------------------------------------------------
# [model] only
# --------------------------------------------------------------------------------------------------

def retina_mapping(**model) -> dict:
    return {"task": {"name": "patches", "d": 2, "size": 16, "n_train": 2, "n_test": 1},
            "model": {"name": "retina_vvs", "options": {"channels": 4, "bottleneck": 4, "vvs_depth": 2,
                                                          "hidden": 4}, **model},
            "feedback": {"rule": "ldfa", "rank": 2, "subspace": "fixed"}, "backend": {"name": "torch"},
            "training": {"epochs": 0}}


def converted(mapping: dict) -> list[str]:
    from bioplastic.experiment.run import Job, load_task
    from bioplastic.experiment.study import RunConfig
    from bioplastic.torch.convert import FEEDBACK_TYPES

    config = RunConfig.model_validate(study_from_mapping(mapping).runs[0])
    model = Job(config, load_task(config.task)).model
    return [n for n, m in model.named_modules() if isinstance(m, FEEDBACK_TYPES)]


def test_only_converts_the_named_modules(torch_mod):
    every = ["retina.0", "retina.2", "vvs.0", "vvs.2", "head.1", "head.3"]
    assert converted(retina_mapping()) == every
    assert converted(retina_mapping(only=["vvs.0"])) == ["vvs.0"]
    assert converted(retina_mapping(only=["head.3", "vvs.2"])) == ["vvs.2", "head.3"]
    assert converted(retina_mapping(only=[])) == []
    # exclude is the complement
    assert converted(retina_mapping(exclude=[n for n in every if n != "vvs.0"])) == ["vvs.0"]


# --------------------------------------------------------------------------------------------------
# Mistakes name the key and the options
# --------------------------------------------------------------------------------------------------

def problems(mapping: dict) -> str:
    with pytest.raises(StudyError) as err:
        study_from_mapping(mapping)
    return str(err.value)


def test_unknown_names_list_the_options():
    text = problems({"schedule": {"name": "exp"}})
    assert "schedule.name" in text and "'exponential'" in text and "'cosine'" in text
    text = problems({"model": {"name": "mlp"}, "backend": {"name": "torch"}, "optimizer": {"name": "lbfgs"}})
    assert "optimizer.name" in text and "'rmsprop'" in text and "'adam'" in text


def test_rmsprop_options_belong_to_rmsprop_and_models(torch_mod):
    text = problems({"model": {"name": "mlp"}, "backend": {"name": "torch"},
                     "optimizer": {"name": "adam", "alpha": 0.9}})
    assert "optimizer.alpha" in text and "rmsprop" in text and "'adam'" in text
    assert "optimizer.alpha" in problems({"optimizer": {"name": "rmsprop", "alpha": 1.0}})
    text = problems({"optimizer": {"name": "rmsprop"}})  # a circuit
    assert "optimizer.name" in text and "[model]" in text
    text = problems({"optimizer": {"decay": 0.1, "decay_biases": True}})  # a circuit
    assert "optimizer.decay_biases" in text and "[model]" in text


def test_only_mistakes_name_the_modules(torch_mod):
    text = problems(retina_mapping(only=["vvs.1"]))
    assert "model.only" in text and "'vvs.1'" in text and "vvs.0, vvs.2" in text
    text = problems(retina_mapping(only=["vvs.0"], exclude=["head.3"]))
    assert "model" in text and "not both" in text
    assert "model.only" in problems(retina_mapping(only="vvs.0"))  # a list, not a string


def test_gamma_must_be_positive():
    text = problems({"schedule": {"name": "exponential", "gamma": 0.0}})
    assert "schedule.gamma" in text and "greater than 0" in text
