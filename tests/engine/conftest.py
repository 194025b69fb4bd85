"""Engine test fixtures: the torch oracle and the array-module parametrization.

With TRAINYARD_REQUIRE_TORCH=1 (CI sets it) a missing torch is an error, not a skip.
"""
import importlib
import os

import numpy as np
import pytest


def _import_torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        if os.environ.get("TRAINYARD_REQUIRE_TORCH") == "1":
            raise
        return None


_torch = _import_torch()


@pytest.fixture(scope="session")
def torch():
    """PyTorch, the oracle; skips (or fails under TRAINYARD_REQUIRE_TORCH=1) without it."""
    if _torch is None:
        pytest.skip("torch is not installed")
    _torch.set_num_threads(1)
    return _torch


def _cupy_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


HAS_GPU = _cupy_available()

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs a test on 'cpu' and, where a GPU and cupy exist, on 'cuda'."""
    if request.param == "cuda" and not HAS_GPU:
        pytest.skip("no CUDA GPU with cupy")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)
