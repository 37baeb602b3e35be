"""Class feature similarity: hand-computed values, identical classes, ranking, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from convlstm.diagnostics import class_similarity, plot_class_similarity, similarity_from_features
from convlstm.models import create_model

from .conftest import clips


def test_hand_computed_two_classes():
    features = [[1, 0], [3, 0], [0, 1], [0, 3]]
    result = similarity_from_features(features, [0, 0, 1, 1], ["a", "b"])
    # means (2, 0) and (0, 2): orthogonal; every sample is 1 from its mean
    assert result["classes"] == ["a", "b"]
    assert result["cosine"][0][1] == pytest.approx(0.0)
    assert result["cosine"][0][0] == pytest.approx(1.0)
    assert result["within"] == pytest.approx(1.0)
    assert result["between"] == pytest.approx(2 * math.sqrt(2))
    assert result["ratio"] == pytest.approx(2 * math.sqrt(2))
    assert result["pairs"][0]["separation"] == pytest.approx(2 * math.sqrt(2))


def test_pairs_ranked_most_confusable_first():
    rng = np.random.default_rng(0)
    centres = {0: [0.0, 0.0], 1: [0.3, 0.0], 2: [5.0, 5.0]}
    x = np.concatenate([rng.normal(centres[c], 0.5, (40, 2)) for c in range(3)])
    y = np.repeat([0, 1, 2], 40)
    result = similarity_from_features(x, y, ["gentle", "jerky", "pausing"])
    assert result["pairs"][0]["pair"] == ["gentle", "jerky"]
    assert [p["pair"] for p in result["pairs"][1:]] in (
        [["gentle", "pausing"], ["jerky", "pausing"]],
        [["jerky", "pausing"], ["gentle", "pausing"]],
    )
    separations = [p["separation"] for p in result["pairs"]]
    assert separations == sorted(separations)


def test_shuffled_label_baseline_is_the_noise_floor():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 16))
    result = similarity_from_features(x, np.arange(200) % 2)
    # no class structure: the ratio is at the level of shuffled labels, ~sqrt(2/100)
    assert result["ratio_chance"] == pytest.approx(math.sqrt(2 / 100), rel=0.5)
    assert result["ratio"] < 3 * result["ratio_chance"]


def test_identical_classes_give_similarity_one_in_every_layer(clip_model):
    x = clips(6)
    # the same clips under both labels: class means coincide in every layer
    data = TensorDataset(torch.cat([x, x]), torch.tensor([0] * 6 + [1] * 6))
    result = class_similarity(clip_model, DataLoader(data, batch_size=4), class_names=["a", "b"])
    assert result["order"] == ["layers.0.cells.0", "layers.1.cells.0", "embedding"]
    assert result["num_samples"] == 12
    for layer in result["layers"].values():
        assert layer["cosine"][0][1] == pytest.approx(1.0, abs=1e-6)
        assert layer["ratio"] == pytest.approx(0.0, abs=1e-5)
        assert layer["pairs"][0]["pair"] == ["a", "b"]
    assert result["layers"]["layers.1.cells.0"]["dim"] == 4


def test_cnn_lstm_layers_and_plot(tmp_path, loader):
    torch.manual_seed(0)
    model = create_model("cnn-lstm", in_channels=1, conv_channels=[4], lstm_hidden=5)
    result = class_similarity(model, loader, max_batches=1)
    assert result["order"] == ["cnn (per frame)", "lstm", "embedding"]
    assert result["num_samples"] == 8
    assert result["layers"]["lstm"]["dim"] == 5
    assert result["collapse"] in result["order"]
    path = plot_class_similarity(result, tmp_path / "sim.png")
    assert path.stat().st_size > 1000


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 2 classes"):
        similarity_from_features(np.ones((4, 2)), [1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        similarity_from_features(np.ones((4, 2)), [0, 1, 0])
    frames = TensorDataset(clips(4), clips(4))  # forecasting-like targets
    model = create_model("frame-classifier", in_channels=1, conv_channels=[2])
    with pytest.raises(ValueError, match="one integer class label per clip"):
        class_similarity(model, DataLoader(frames, batch_size=2))
