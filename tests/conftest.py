"""Shared test set-up."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """Test tensors are tiny: an OpenMP pool costs more than it saves (far more on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
