"""convlstm.runtime: the malloc settings the command-line tool applies."""

import sys

import pytest
import torch

from convlstm.nn import backend
from convlstm.runtime import configure_malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_configure_malloc_applies_and_tensors_still_work(monkeypatch):
    monkeypatch.delenv("CONVLSTM_MALLOC", raising=False)
    monkeypatch.setattr(backend, "fresh_gate_bytes", backend.fresh_gate_bytes)  # restored
    assert configure_malloc() is True
    # malloc now reuses freed blocks of any size: inference takes fresh gate tensors
    assert backend.fresh_gate_bytes == sys.maxsize
    big = torch.ones(50 << 20, dtype=torch.uint8)  # above glibc's 32 MiB mmap threshold
    assert int(big.sum()) == 50 << 20


def test_configure_malloc_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("CONVLSTM_MALLOC", "0")
    monkeypatch.setattr(backend, "fresh_gate_bytes", 32 << 20)
    assert configure_malloc() is False
    assert backend.fresh_gate_bytes == 32 << 20


def test_the_command_writes_convlstm_warnings_on_one_line():
    """``ConvLSTMWarning``s on one line; any other warning, also one raised from this
    package's code (a tracer's, say), as Python writes it."""
    import convlstm
    from convlstm.runtime import _one_line

    def default(message, category, filename, lineno, line=None):
        return f"{filename}:{lineno}: {category.__name__}: {message}\n  {line}\n"

    format_warning = _one_line(default)
    ours = "/site-packages/convlstm/training/run.py"
    slow = format_warning("slow", convlstm.ConvLSTMWarning, ours, 426, "x = y()")
    assert slow == "convlstm: warning: slow\n"
    prefixed = format_warning("convlstm: the loop", convlstm.ConvLSTMWarning, ours, 1, "x")
    assert prefixed == "convlstm: warning: the loop\n"
    for category in (UserWarning, RuntimeWarning, torch.jit.TracerWarning):
        other = format_warning("note", category, ours, 7, "x")
        assert other == f"{ours}:7: {category.__name__}: note\n  x\n"
