"""A converted model under DistributedDataParallel (2 CPU processes, gloo, torchrun) trains exactly as
one process on the same global batches."""

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_close

from bioplastic.torch import distributed as ddp


@pytest.fixture(scope="module")
def ddp_params(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "params.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "bioplastic.torch.distributed", f"--out={out}"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ddp.load(str(out))


def test_ddp_matches_single_process_training(ddp_params):
    cfg = ddp.CheckConfig()
    single = ddp.single_process(cfg)
    assert set(ddp_params) == {"ldfa-local", "ldfa-oja", "ldfa-normative", "kp"}
    for variant, params in single.items():
        assert set(ddp_params[variant]) == set(params)
        for name, value in params.items():
            # float64; only the order of the cross-process sum differs
            assert_close(ddp_params[variant][name], value, rtol=1e-10, atol=1e-13,
                         what=f"{variant} {name}")


def test_the_check_can_fail():
    """Training on one shard only (what a process would do without DDP) ends elsewhere, and the
    feedback factors move: the comparison above is not vacuous."""
    cfg = ddp.CheckConfig()
    batches = ddp.global_batches(cfg)
    start = ddp.parameters(ddp.check_model("ldfa", "local", cfg))
    full = ddp.parameters(ddp.train(ddp.check_model("ldfa", "local", cfg), batches, cfg.lr))
    half = ddp.parameters(ddp.train(ddp.check_model("ldfa", "local", cfg), batches, cfg.lr, (0, 2)))
    assert max(np.abs(full[n] - half[n]).max() for n in full) > 1e-3
    assert np.abs(full["2.P"] - start["2.P"]).max() > 1e-4  # the feedback learnt (layer 0 reads data: none)
