"""The ``convlstm`` command through its real entry point (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import write_config

CLI = [sys.executable, "-m", "convlstm.cli"]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def cli(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=ENV)
    if check and result.returncode != 0:
        raise AssertionError(f"convlstm {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory) -> Path:
    from .conftest import TINY_CLASSIFICATION

    folder = tmp_path_factory.mktemp("cls")
    config = write_config(
        {**TINY_CLASSIFICATION, "output": {"root": str(folder)}}, folder / "c.yaml"
    )
    result = cli(
        "train", str(config), "--trainer.max_epochs", "1", "--run-dir", str(folder / "run"),
        "--json",
    )
    summary = json.loads(result.stdout)
    assert summary["run_dir"] == str(folder / "run")
    assert 0 <= summary["metrics"]["accuracy"] <= 1
    return folder / "run"


def test_help_and_config_errors_without_loading_lightning():
    """Help and config errors come before anything runs: one process prints every
    command's help and one config error, and none of it may import Lightning (seconds of
    a user's wait per `--help` or typo)."""
    commands = ("train", "evaluate", "predict", "export", "diagnose", "import", "demo",
                "list-models")  # fmt: skip
    script = (
        "import contextlib, io, json, sys\n"
        "from convlstm.cli import main\n"
        "out = {}\n"
        f"for command in {commands!r}:\n"
        "    buffer = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):\n"
        "        main([command, '--help'])\n"
        "    out[command] = buffer.getvalue()\n"
        "with contextlib.redirect_stderr(io.StringIO()) as error:\n"
        "    code = main(['train', 'moving_digits', '--trainer.max_epoch', '3'])\n"
        "print(json.dumps({'help': out, 'lightning': 'lightning' in sys.modules,\n"
        "                  'error': [code, error.getvalue()]}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env=ENV, check=True)  # fmt: skip
    got = json.loads(result.stdout)
    for command in commands:
        assert "usage: convlstm " + command in got["help"][command]
    assert "example" in got["help"]["train"]
    code, message = got["error"]  # a config error, reported before Lightning loads too
    assert code == 2 and "unknown config key trainer.max_epoch" in message
    assert not got["lightning"], "convlstm --help or a config error imported Lightning"
    assert "usage: convlstm train" in cli("train", "--help").stdout  # the real entry point


def test_list_models():
    names = cli("list-models").stdout.split()
    assert {"clip-classifier", "encoder-forecaster", "fish-2layer"} <= set(names)


def test_train_writes_report_and_evaluate_prints_metrics(trained_classifier):
    report = trained_classifier / "report.html"
    assert report.is_file() and "data:image/png;base64," in report.read_text()
    metrics = json.loads(cli("evaluate", str(trained_classifier), "--json").stdout)
    saved = json.loads((trained_classifier / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(saved["accuracy"])


def test_predict_from_npy(trained_classifier, tmp_path):
    clips = np.random.default_rng(0).random((3, 4, 1, 16, 16), dtype=np.float32)
    np.save(tmp_path / "clips.npy", clips)
    out = json.loads(
        cli(
            "predict",
            str(trained_classifier),
            str(tmp_path / "clips.npy"),
            "--output",
            str(tmp_path / "pred"),
            "--stride",
            "1",
            "--json",
        ).stdout
    )
    probs = np.load(out["predictions"])
    assert probs.shape == (3,) and ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export(trained_classifier, tmp_path, fmt):
    target = tmp_path / f"model.{fmt}"
    result = cli("export", str(trained_classifier), "--format", fmt, "--output", str(target),
                 "--json")  # fmt: skip
    assert Path(json.loads(result.stdout)["path"]) == target and target.stat().st_size > 1000
    # PyTorch's ONNX exporter logged that torchvision, which the model does not use, is
    # not installed
    assert "torchvision" not in result.stderr


def test_config_errors_name_the_key(tmp_path):
    from .conftest import TINY_CLASSIFICATION

    config = write_config(TINY_CLASSIFICATION, tmp_path / "c.yaml")
    result = cli("train", str(config), "--trainer.max_epoch", "3", check=False)
    assert result.returncode == 2
    assert "unknown config key trainer.max_epoch" in result.stderr
    result = cli("train", str(config), "--model.hidden_channel", "3", check=False)
    assert result.returncode == 2 and "hidden_channel" in result.stderr
    result = cli("evaluate", str(tmp_path / "nope"), check=False)
    assert result.returncode == 2 and "not a run folder" in result.stderr


def _final_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_killed_run_resumes_to_the_same_metrics(tmp_path, forecasting_config):
    forecasting_config["trainer"]["max_epochs"] = 4
    config = write_config(forecasting_config, tmp_path / "f.yaml")
    reference = tmp_path / "reference"
    cli("train", str(config), "--run-dir", str(reference))

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*CLI, "train", str(config), "--run-dir", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "metrics.json").exists()

    cli("train", "--resume", str(killed))
    resumed, expected = _final_metrics(killed), _final_metrics(reference)
    assert resumed["mse"] == pytest.approx(expected["mse"], rel=1e-6)
    assert resumed["ssim"] == pytest.approx(expected["ssim"], rel=1e-6)
    a = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_ddp_two_processes_end_with_identical_weights(tmp_path, classification_config):
    config = write_config(classification_config, tmp_path / "c.yaml")
    run_dir = tmp_path / "ddp"
    cli(
        "train",
        str(config),
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.max_epochs",
        "1",
        "--run-dir",
        str(run_dir),
        timeout=600,
    )
    ranks = [json.loads((run_dir / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["global_step"] == ranks[1]["global_step"] > 0
    assert ranks[0]["sha256"] == ranks[1]["sha256"]


@pytest.fixture(scope="module")
def trained_forecaster(tmp_path_factory) -> Path:
    from .conftest import TINY_FORECASTING

    folder = tmp_path_factory.mktemp("fc")
    config = write_config(TINY_FORECASTING, folder / "f.yaml")
    cli("train", str(config), "--run-dir", str(folder / "run"))
    return folder / "run"


def _write_video(path: Path, frames: int = 6, size: int = 20) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            image = np.zeros((size, size, 3), dtype=np.uint8)
            image[t : t + 6, t : t + 6] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("kind", ["npy", "mp4", "nc"])
def test_predict_forecast_writes_frames_and_animation(trained_forecaster, tmp_path, kind):
    source = tmp_path / f"input.{kind}"
    if kind == "npy":
        np.save(source, np.random.default_rng(0).random((3, 1, 16, 16), dtype=np.float32))
    elif kind == "mp4":
        pytest.importorskip("av")
        _write_video(source)
    else:
        xr = pytest.importorskip("xarray")
        values = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
        xr.Dataset({"rain": (("time", "y", "x"), values)}).to_netcdf(source, engine="h5netcdf")
    out = json.loads(
        cli("predict", str(trained_forecaster), str(source), "--output", str(tmp_path / "o"),
            "--json").stdout
    )
    frames = np.load(out["predictions"])
    assert frames.shape == (1, 2, 1, 16, 16)
    assert ((frames >= 0) & (frames <= 1)).all()  # sigmoid output
    from PIL import Image

    with Image.open(out["animation"]) as gif:
        assert gif.n_frames == 3 + 2


def test_predict_rejects_wrong_array_shape(trained_forecaster, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 2, 16, 16), dtype=np.float32))
    result = cli("predict", str(trained_forecaster), str(tmp_path / "bad.npy"), check=False)
    assert result.returncode == 2
    assert "expected an array (T, 1, H, W)" in result.stderr and "(3, 2, 16, 16)" in result.stderr
