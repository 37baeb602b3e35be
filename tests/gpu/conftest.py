"""The GPU checks: every test here runs on ``DEVICE`` and is skipped, with its reason,
where that device is missing.

``CONVLSTM_TEST_DEVICE`` (default ``cuda``) names the device: ``cpu`` runs the same
checks on the CPU, which is how the suite itself is tried on a machine without a GPU.
``CONVLSTM_REQUIRE_DEVICE=1`` (set by ``make test-gpu``) turns the skip into a failure,
so that the one GPU command never passes by running nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

DEVICE = os.environ.get("CONVLSTM_TEST_DEVICE", "cuda")


def device_missing() -> str | None:
    """Why ``DEVICE`` cannot run here, or ``None``."""
    if DEVICE == "cuda" and not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def pytest_collection_modifyitems(config, items) -> None:
    reason = device_missing()
    if reason is None or not any("cuda" in item.keywords for item in items):
        return
    if os.environ.get("CONVLSTM_REQUIRE_DEVICE") == "1":
        pytest.exit(f"the GPU checks cannot run: {reason}", returncode=1)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def device() -> torch.device:
    return torch.device(DEVICE)


@pytest.fixture(autouse=True)
def exact_float32() -> Iterator[None]:
    """TF32 (on by default for cuDNN convolutions on Ampere and later) rounds float32
    products to 10 bits; the comparisons with the CPU want float32 itself."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
