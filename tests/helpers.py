"""Helpers the tests share: one tolerance check for every numeric comparison, loading an analysis
by path, interrupting a run mid-study, and the torch training protocol written out by hand."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np


def assert_close(actual, expected, *, rtol: float = 1e-10, atol: float = 1e-12, what: str = ""):
    """Elementwise |actual - expected| <= atol + rtol * |expected|, with a readable failure."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    worst = np.argmax(err - bound) if err.size else 0
    assert np.all(err <= bound), (
        f"{what}: max abs error {err.max():.3e} (at flat index {worst}: {actual.flat[worst]!r} vs "
        f"{expected.flat[worst]!r}); tolerance atol={atol}, rtol={rtol}")


def load_analysis(name: str):
    """The module of analyses/NAME.py, loaded by path as ``bioplastic analysis`` does (under a
    private name, registered so that dataclasses can look their module up)."""
    from bioplastic import cli

    spec = importlib.util.spec_from_file_location(f"test_analysis_{name}", cli.analyses_dir() / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def interrupt_at_epoch(monkeypatch, epoch: int):
    """Make the run module raise KeyboardInterrupt when it is about to write the metrics line of
    ``epoch`` (a kill mid-study); returns the real writer, to put back with ``monkeypatch.setattr``."""
    from bioplastic.experiment import run as run_mod

    real = run_mod.append_jsonl

    def killed(target, line, **kw):
        if line["epoch"] == epoch:
            raise KeyboardInterrupt
        return real(target, line, **kw)

    monkeypatch.setattr(run_mod, "append_jsonl", killed)
    return real


def train_by_hand(model, ds, opt, sched, epochs: int, batch_size: int, seed: int):
    """A torch model trained as a [model] study does, written out: each epoch a permutation of the
    training set from numpy's generator of ``seed``, cross-entropy on the labels per batch, the
    optimiser's step, then the schedule's step."""
    import torch
    import torch.nn.functional as F

    order = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        perm = order.permutation(len(ds.x_train))
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            x = torch.as_tensor(ds.x_train[idx], dtype=torch.float32)
            F.cross_entropy(model(x), torch.as_tensor(ds.labels_train[idx])).backward()
            opt.step()
        sched.step()
    return model
