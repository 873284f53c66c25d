"""Shared test set-up."""
import contextlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """Test tensors are tiny: an OpenMP pool costs more than it saves (far more on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def load_benchmark():
    """A context manager importing benchmarks/NAME.py as module NAME, registered in sys.modules while it is used
    (dataclasses resolve string annotations through it)."""

    @contextlib.contextmanager
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
            yield module
        finally:
            sys.modules.pop(name, None)

    return load
