"""Shared fixtures: every test starts from fixed seeds."""

import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
# the checkout's root, so that the analyses import as the package ``analyses`` (as the CLI does)
sys.path.insert(0, str(Path(__file__).parent.parent))


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: two OpenMP threads on a busy 2-core machine mostly spin (a 0.2 ms convolution
    took ~50 ms), so modules of small-model tests opt into one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
