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


def test_the_command_writes_convlstm_warnings_on_one_line(monkeypatch):
    import warnings
    from pathlib import Path

    import convlstm
    from convlstm import runtime

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after
    runtime.quiet_libraries()
    ours = str(Path(convlstm.__file__).parent / "training" / "run.py")
    assert warnings.formatwarning("slow", UserWarning, ours, 426, "x = y()") == (
        "convlstm: warning: slow\n"
    )
    prefixed = warnings.formatwarning("convlstm: the loop", RuntimeWarning, ours, 1, "x")
    assert prefixed == "convlstm: warning: the loop\n"
    other = warnings.formatwarning("note", UserWarning, "/site-packages/lightning/a.py", 7, "x")
    assert other.startswith("/site-packages/lightning/a.py:7: UserWarning: note")
