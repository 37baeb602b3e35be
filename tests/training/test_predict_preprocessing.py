"""``convlstm predict`` applies exactly the preprocessing training applied, from a copied
run folder whose training data is gone, at sizes that take the fast path (64x64).

Each case trains a tiny run on real files (a uint8 .npy with ``data.normalize``, class
folders of MP4 videos with ``data.normalize``, a NetCDF variable cropped, coarsened and
standardised), records what the model gives on the clips evaluation sees, moves the run
folder elsewhere, deletes the data, and predicts from ``/`` on the raw files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import convlstm
from convlstm.training.evaluation import datamodule_for

from .walk import cli, moving_square_video, relocate

FORECAST_MODEL = {"name": "encoder-forecaster", "in_channels": 1, "hidden_channels": [8],
                  "input_frames": 3, "output_frames": 2}  # fmt: skip
TRAINER = {"max_epochs": 1, "enable_progress_bar": False, "limit_train_batches": 2,
           "log_every_n_steps": 1}  # fmt: skip


def _predict_every_window(run_dir: Path, source: Path, output: Path):
    """``convlstm predict --stride 1`` from ``/``: the predictions and window starts."""
    out = json.loads(cli("predict", run_dir, source, "--stride", "1", "--json",
                         "--output", output, cwd="/").stdout)  # fmt: skip
    return np.load(out["predictions"]), [w["start"] for w in out["windows"]]


def _train(config: dict, run_dir: Path):
    return convlstm.train(config, run_dir=run_dir, report=False)


@pytest.fixture(scope="module")
def npy_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("npy")
    frames = (np.random.default_rng(0).random((60, 4, 64, 64)) * 255).astype(np.uint8)
    np.save(root / "frames.npy", frames)
    config = {
        "task": "forecasting", "seed": 1, "model": FORECAST_MODEL,
        "data": {"name": "arrays", "path": str(root / "frames.npy"), "axes": "TNHW",
                 "input_frames": 3, "output_frames": 2, "batch_size": 4, "normalize": True},
        "trainer": TRAINER,
    }  # fmt: skip
    run = _train(config, root / "run")
    test = datamodule_for(run).datasets["test"]
    inputs = torch.stack([test[i][0] for i in range(len(test))])
    stats = json.loads((run.run_dir / "norm_stats.json").read_text())
    with torch.no_grad():
        out = run.model(inputs) * stats["std"][0] + stats["mean"][0]
    # The test split's windows of sequence 0 (ArraySequences orders windows by sequence).
    starts = [int(s) for s in test.index[:, 1][test.index[:, 0] == 0]]
    expected = {s: out[i] for i, s in enumerate(starts)}
    raw = frames[:, 0][:, None]  # sequence 0 as (T, 1, H, W) uint8, the file's units
    np.save(root / "sequence.npy", raw)
    copied = relocate(run.run_dir, tmp_path_factory.mktemp("moved") / "run", root / "frames.npy")
    return copied, root / "sequence.npy", expected


def test_npy_forecast_from_a_moved_run_equals_evaluation(npy_case, tmp_path):
    run_dir, source, expected = npy_case
    predictions, starts = _predict_every_window(run_dir, source, tmp_path)
    assert predictions.shape == (len(starts), 2, 1, 64, 64)
    checked = 0
    for start, frames in expected.items():
        got = torch.from_numpy(predictions[starts.index(start)])
        torch.testing.assert_close(got, frames, rtol=0, atol=1e-6)
        checked += 1
    assert checked >= 3


@pytest.fixture(scope="module")
def video_case(tmp_path_factory):
    pytest.importorskip("av")
    root = tmp_path_factory.mktemp("videos")
    for label, speed in (("slow", 1), ("fast", 4)):
        for k in range(5):
            moving_square_video(root / "clips" / label / f"{label}{k}.mp4", 8, 64, speed, k)
    config = {
        "task": "classification", "seed": 2,
        "model": {"name": "clip-classifier", "in_channels": 1, "hidden_channels": [8],
                  "num_classes": 1, "batch_norm": False},
        "data": {"name": "video_folder", "root": str(root / "clips"), "frames": 4,
                 "size": [64, 64], "grayscale": True, "batch_size": 4, "normalize": True,
                 "split_fractions": [0.6, 0.2, 0.2]},
        "trainer": TRAINER,
    }  # fmt: skip
    run = _train(config, root / "run")
    test = datamodule_for(run).datasets["test"]
    video = test.dataset
    path = video.sources[int(video.index[0, 0])][0]
    rows = [i for i in range(len(test)) if video.sources[int(video.index[i, 0])][0] == path]
    clips = torch.stack([test[i][0] for i in rows])
    with torch.no_grad():
        expected = torch.sigmoid(run.model(clips).reshape(-1))
    starts = [int(video.index[i, 1]) for i in rows]
    source = root / "keep" / Path(path).name
    source.parent.mkdir()
    Path(path).rename(source)
    copied = relocate(run.run_dir, tmp_path_factory.mktemp("moved") / "run", root / "clips")
    return copied, source, dict(zip(starts, expected))


def test_video_classifier_from_a_moved_run_equals_evaluation(video_case, tmp_path):
    run_dir, source, expected = video_case
    result = cli("predict", run_dir, source, "--stride", "4", "--output", tmp_path, cwd="/")
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{source.name} [0-3]: ") for line in lines), result.stdout
    assert any(line.startswith(f"{source.name} [4-7]: ") for line in lines), result.stdout
    table = (tmp_path / "predictions.csv").read_text().splitlines()
    assert table[0] == "source,sequence,start,stop,predicted,p_fast,p_slow"
    probs = np.load(tmp_path / "predictions.npy")
    assert len(probs) == len(table) - 1 == 2
    for row, p in zip(table[1:], probs):
        start = int(row.split(",")[2])
        assert abs(p - expected[start].item()) <= 1e-6
        assert float(row.split(",")[-1]) == pytest.approx(p, abs=1e-6)


@pytest.fixture(scope="module")
def netcdf_case(tmp_path_factory):
    xr = pytest.importorskip("xarray")
    root = tmp_path_factory.mktemp("grid")
    rng = np.random.default_rng(3)
    values = rng.gamma(0.5, 2.0, (40, 140, 132)).astype(np.float32)
    values[5, 10:20, 10:20] = np.nan  # missing values: filled after normalisation
    lat, lon = np.linspace(60, 50, 140), np.linspace(0, 13, 132)
    times = np.datetime64("2020-01-01") + np.arange(40) * np.timedelta64(5, "m")
    xr.Dataset(
        {"rain": (("time", "lat", "lon"), values), "other": (("time",), np.arange(40.0))},
        coords={"time": times, "lat": lat, "lon": lon},
    ).to_netcdf(root / "rain.nc", engine="h5netcdf")
    config = {
        "task": "forecasting", "seed": 4, "model": FORECAST_MODEL,
        "data": {"name": "xarray", "path": str(root / "rain.nc"), "variable": "rain",
                 "input_frames": 3, "output_frames": 2, "crop": {"lat": [51, 59.5]},
                 "coarsen": 2, "fill_value": -1.0, "batch_size": 4,
                 # the data set's own normalize (data.normalize is the run's, a bool)
                 "options": {"normalize": "standard"}},
        "trainer": TRAINER,
    }  # fmt: skip
    run = _train(config, root / "run")
    test = datamodule_for(run).datasets["test"]
    inputs = torch.stack([test[i][0] for i in range(len(test))])
    assert inputs.shape[-2:] == (59, 66)  # lat cropped to 118 of 140 rows; coarsened by 2
    with torch.no_grad():
        expected = test.stats.denormalize(run.model(inputs))
    starts = [int(s) for s in test.starts]
    source = root / "new.nc"
    (root / "rain.nc").rename(source)  # the same file under another name: new data
    copied = relocate(run.run_dir, tmp_path_factory.mktemp("moved") / "run")
    return copied, source, dict(zip(starts, expected))


def test_netcdf_forecast_from_a_moved_run_equals_evaluation(netcdf_case, tmp_path):
    run_dir, source, expected = netcdf_case
    predictions, starts = _predict_every_window(run_dir, source, tmp_path)
    assert predictions.shape[1:] == (2, 1, 59, 66)
    for start, frames in expected.items():
        got = torch.from_numpy(predictions[starts.index(start)])
        torch.testing.assert_close(got, frames, rtol=1e-6, atol=1e-6)


def test_python_predict_applies_normalisation(npy_case):
    run_dir, source, expected = npy_case
    run = convlstm.Run.open(run_dir)
    raw = np.load(source)
    start = next(iter(expected))
    got = run.predict(torch.from_numpy(raw[start : start + 3]))  # uint8, as in the file
    torch.testing.assert_close(got[0], expected[start], rtol=0, atol=1e-6)
