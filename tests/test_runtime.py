"""convlstm.runtime: the malloc settings the command-line tool applies."""

import sys

import pytest
import torch

from convlstm.runtime import configure_malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_configure_malloc_applies_and_tensors_still_work(monkeypatch):
    monkeypatch.delenv("CONVLSTM_MALLOC", raising=False)
    assert configure_malloc() is True
    big = torch.ones(50 << 20, dtype=torch.uint8)  # above glibc's 32 MiB mmap threshold
    assert int(big.sum()) == 50 << 20


def test_configure_malloc_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("CONVLSTM_MALLOC", "0")
    assert configure_malloc() is False
