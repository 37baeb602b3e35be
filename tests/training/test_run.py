"""Training through the Python API: run folders, loading without pickle, resume, NaN guard."""

import json

import numpy as np
import pytest
import torch

import convlstm
from convlstm.training.errors import NonFiniteLossError
from convlstm.training.evaluation import metric_lines
from convlstm.training.run import Run, check_checkpoint


def test_train_writes_a_complete_run_folder(classification_config):
    run = convlstm.train(classification_config, report=False)
    folder = run.run_dir
    for name in (
        "config.yaml",
        "model.safetensors",
        "model.json",
        "metrics.json",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "logs/metrics.csv",
    ):
        assert (folder / name).is_file(), name
    saved = (folder / "config.yaml").read_text()
    assert "versions:" in saved and "torch:" in saved and "lightning:" in saved
    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "roc_auc" in metrics
    assert metrics["accuracy"] == pytest.approx(run.metrics["accuracy"])


def test_load_needs_no_pickle_and_matches_predict(classification_config):
    run = convlstm.train(classification_config, report=False)
    model = convlstm.load(run.run_dir)
    clip = torch.rand(3, 4, 1, 16, 16)
    with torch.no_grad():
        expected = torch.sigmoid(model(clip).reshape(-1))
    reopened = Run.open(run.run_dir)
    torch.testing.assert_close(reopened.predict(clip), expected)
    assert reopened.predict(clip[0]).shape == (1,)
    with pytest.raises(ValueError, match=r"expected a clip \(T, C, H, W\)"):
        reopened.predict(torch.rand(16, 16))
    metrics = reopened.evaluate()
    assert metrics["accuracy"] == pytest.approx(run.metrics["accuracy"])


def test_forecasting_run_and_metrics(forecasting_config):
    forecasting_config["evaluation"]["thresholds"] = [0.5]
    run = convlstm.train(forecasting_config, report=False)
    m = run.metrics
    assert m["mse"] == pytest.approx(m["mse_per_pixel"] * 16 * 16, rel=1e-5)
    assert len(m["mse_per_lead"]) == 2 and "csi@0.5" in m
    assert len(m["sharpness_per_lead"]) == 2 and m["sharpness"] > 0
    # the summary printed at the end of training names the sharpness beside the SSIM
    assert any("sharpness" in line and "ssim" in line for line in metric_lines(m))
    prediction = Run.open(run.run_dir).predict(torch.rand(2, 3, 1, 16, 16))
    assert prediction.shape == (2, 2, 1, 16, 16)


def test_resume_refuses_foreign_or_pickled_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    outside = tmp_path / "elsewhere.ckpt"
    torch.save({"state_dict": {}}, outside)
    with pytest.raises(ValueError, match="not inside the run folder"):
        check_checkpoint(outside, run_dir)
    pickled = run_dir / "checkpoints" / "last.ckpt"
    torch.save({"thing": Run}, pickled)  # a class object: only loadable with full pickle
    with pytest.raises(ValueError, match=r"torch.load\(weights_only=True\) cannot read it"):
        check_checkpoint(pickled, run_dir)


def test_nan_loss_stops_with_step_and_checkpoint(tmp_path, classification_config):
    frames = np.random.default_rng(0).random((40, 6, 8, 8)).astype(np.float32)
    frames[:] = np.nan
    np.save(tmp_path / "frames.npy", frames)
    config = {
        "task": "forecasting",
        "model": {
            "name": "encoder-forecaster",
            "in_channels": 1,
            "hidden_channels": [2],
            "input_frames": 2,
            "output_frames": 1,
        },
        "data": {
            "name": "arrays",
            "path": str(tmp_path / "frames.npy"),
            "axes": "TNHW",
            "input_frames": 2,
            "output_frames": 1,
            "scale": 1.0,
            "batch_size": 4,
        },
        "trainer": {"max_epochs": 1, "enable_progress_bar": False},
        "output": {"root": str(tmp_path / "runs")},
    }
    with pytest.raises(NonFiniteLossError, match=r"became nan at global step 0 .*none written yet"):
        convlstm.train(config, report=False)
