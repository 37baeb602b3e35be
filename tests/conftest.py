"""Shared test set-up.

Tests use tiny tensors, for which PyTorch's intra-op threads cost far more than they
save (a tiny training step measured 17-57x slower with 2 threads on 2 shared cores), so
every test runs single-threaded; subprocesses get ``OMP_NUM_THREADS=1``.
"""

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fused_cells(monkeypatch) -> list[int]:
    """The ids of the cells whose fast path ran (``run_fast_path``, as the layer calls
    it, returned a result): tests at real sizes check with it that it really was taken."""
    from convlstm.nn import layer

    ran: list[int] = []
    real = layer.run_fast_path

    def counted(cell, *args, **kwargs):
        result = real(cell, *args, **kwargs)
        if result is not None:
            ran.append(id(cell))
        return result

    monkeypatch.setattr(layer, "run_fast_path", counted)
    return ran


@pytest.fixture
def generated_loops(monkeypatch) -> list[str]:
    """The names of the generated gate loops asked for (``fast.gates._compiled``, which
    compiles each at its first call in a process): empty where the hand-written loops
    took every step."""
    from convlstm.nn.fast import gates

    asked: list[str] = []
    real = gates._compiled

    def spy(name, fn):
        asked.append(name)
        return real(name, fn)

    monkeypatch.setattr(gates, "_compiled", spy)
    return asked
