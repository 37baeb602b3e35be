"""Shared data for the report tests, and the ``browser`` marker (also listed in pyproject)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: renders reports in headless Chromium")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a non-empty, non-uniform PNG file."""
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 1.0, f"{path.name} is blank"
    return pixels.shape[1], pixels.shape[0]


def assert_sane_size(path: Path, min_side: int = 150, max_side: int = 4000) -> None:
    width, height = png_size(path)
    assert min_side <= width <= max_side and min_side <= height <= max_side, (width, height)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def history():
    rows = []
    for epoch in range(4):
        for i in range(3):
            rows.append(
                {"epoch": epoch, "step": 3 * epoch + i, "train_loss": 1.0 / (1 + epoch + i)}
            )
        rows.append(
            {
                "epoch": epoch,
                "step": 3 * epoch + 2,
                "val_loss": 0.9 / (1 + epoch),
                "val_accuracy": 0.5 + 0.1 * epoch,
                "val_f1": float("nan") if epoch == 0 else 0.6,
            }
        )
    return rows


@pytest.fixture
def forecast_data(rng):
    """Two sequences: 4 inputs, 3 truth frames and a noisy forecast of 1x16x16 frames."""
    inputs = rng.random((2, 4, 1, 16, 16))
    truth = rng.random((2, 3, 1, 16, 16))
    forecast = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1)
    return inputs, truth, forecast
