"""Tiny run configs: seconds of training on a CPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

TINY_CLASSIFICATION = {
    "task": "classification",
    "seed": 3,
    "model": {
        "name": "clip-classifier",
        "in_channels": 1,
        "hidden_channels": [4],
        "num_classes": 1,
        "batch_norm": False,
        "dropout": 0.2,
    },
    "data": {
        "name": "similar_motions",
        "frames": 4,
        "image_size": 16,
        "batch_size": 8,
        "train": {"num_samples": 32},
        "val": {"num_samples": 16},
        "test": {"num_samples": 16},
    },
    "optimizer": {"name": "adamw", "lr": 0.01},
    "trainer": {"max_epochs": 2, "enable_progress_bar": False, "log_every_n_steps": 1},
    "evaluation": {"report_samples": 2},
}

TINY_FORECASTING = {
    "task": "forecasting",
    "seed": 5,
    "model": {
        "name": "encoder-forecaster",
        "in_channels": 1,
        "hidden_channels": [4],
        "input_frames": 3,
        "output_frames": 2,
    },
    "data": {
        "name": "moving_digits",
        "image_size": 16,
        "digit_size": 8,
        "num_digits": 1,
        "input_frames": 3,
        "output_frames": 2,
        "batch_size": 4,
        "train": {"num_samples": 16},
        "val": {"num_samples": 8},
        "test": {"num_samples": 8},
    },
    "trainer": {"max_epochs": 1, "enable_progress_bar": False, "log_every_n_steps": 1},
    "evaluation": {"report_samples": 2},
}


@pytest.fixture
def classification_config(tmp_path: Path) -> dict:
    config = copy.deepcopy(TINY_CLASSIFICATION)
    config["output"] = {"root": str(tmp_path / "runs")}
    return config


@pytest.fixture
def forecasting_config(tmp_path: Path) -> dict:
    config = copy.deepcopy(TINY_FORECASTING)
    config["output"] = {"root": str(tmp_path / "runs")}
    return config


def write_config(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
