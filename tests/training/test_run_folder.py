"""A run folder is a safe, self-contained artefact: it predicts and exports from a copy
without its data, long inputs are windowed, it is never overwritten by accident, two
processes never write it, and a damaged or edited one fails at once naming its files."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import convlstm
from convlstm.training.config import ConfigError
from convlstm.training.run import Run, RunFolderError
from convlstm.training.run_folder import RunLock

from .conftest import TINY_CLASSIFICATION, write_config
from .walk import cli, relocate, tiny


@pytest.fixture(scope="module")
def moved_classifier(tmp_path_factory) -> Path:
    """A tiny classifier trained on an .npy of labelled sequences, moved elsewhere with its
    data deleted."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    frames = rng.random((12, 20, 1, 16, 16)).astype(np.float32)  # N T C H W
    np.save(root / "clips.npy", frames)
    np.save(root / "labels.npy", np.arange(12) % 2)
    config = {
        "task": "classification", "seed": 0,
        "model": {**TINY_CLASSIFICATION["model"], "dropout": 0.0},
        "data": {"name": "arrays", "path": str(root / "clips.npy"), "axes": "NTCHW",
                 "task": "classify", "frames": 4, "stride": 4,
                 "labels": str(root / "labels.npy"), "split_fractions": [0.5, 0.25, 0.25],
                 "batch_size": 8, "normalize": True,
                 "options": {"split_by": "sequence"}},  # data.split_by is the run's own
        "trainer": {"max_epochs": 1, "enable_progress_bar": False},
    }  # fmt: skip
    run = convlstm.train(config, run_dir=root / "run", report=False)
    return relocate(run.run_dir, tmp_path_factory.mktemp("moved") / "run",
                    root / "clips.npy", root / "labels.npy")  # fmt: skip


def test_long_npy_is_windowed_not_fed_whole(moved_classifier, tmp_path):
    long = np.random.default_rng(1).random((50_000, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "long.npy", long)
    started = time.perf_counter()
    result = cli("predict", moved_classifier, tmp_path / "long.npy", "--output", tmp_path / "o",
                 cwd="/")  # fmt: skip
    assert time.perf_counter() - started < 60
    lines = result.stdout.splitlines()
    assert "50000 frames; predicting on the last window of 4" in lines[0]
    assert lines[1].startswith("long.npy [49996-49999]: class ")
    assert np.load(tmp_path / "o" / "predictions.npy").shape == (1,)
    run = Run.open(moved_classifier)
    expected = run.predict(long[-4:])
    assert np.load(tmp_path / "o" / "predictions.npy")[0] == pytest.approx(expected.item(),
                                                                            abs=1e-6)  # fmt: skip

    strided = json.loads(cli("predict", moved_classifier, tmp_path / "long.npy", "--json",
                             "--stride", "10000", "--output", tmp_path / "s").stdout)  # fmt: skip
    assert [w["start"] for w in strided["windows"]] == [0, 10000, 20000, 30000, 40000]
    assert strided["table"].endswith("predictions.csv")


def test_python_predict_refuses_clips_of_another_length(moved_classifier):
    run = Run.open(moved_classifier)
    with pytest.raises(ValueError, match=r"takes clips \(T=4, C=1, H, W\), got \(5, 1, 16, 16\)"):
        run.predict(torch.rand(5, 1, 16, 16))
    logits = run.predict(torch.rand(2, 4, 1, 16, 16), logits=True)
    probs = run.predict(torch.rand(2, 4, 1, 16, 16))
    assert logits.shape == (2, 1) and probs.shape == (2,)


def test_onnx_export_from_a_moved_run_has_dynamic_batch(moved_classifier, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    target = tmp_path / "m.onnx"
    out = cli("export", moved_classifier, "--output", target, cwd="/").stdout
    assert "matches PyTorch to" in out and "batches of 1 and 3" in out
    description = json.loads(Path(str(target) + ".json").read_text())
    assert description["input"]["shape"] == ["batch", 4, 1, 16, 16]
    assert description["in_graph"]["output_transform"] == "sigmoid"
    assert description["in_graph"]["preprocessing"][0]["op"] == "normalize"
    run = Run.open(moved_classifier)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 5):
        x = np.random.default_rng(batch).random((batch, 4, 1, 16, 16)).astype(np.float32)
        (got,) = session.run(None, {"x": x})
        np.testing.assert_allclose(got, run.predict(x).numpy(), atol=1e-5)


def test_onnx_export_without_the_extra_names_it(moved_classifier, tmp_path, monkeypatch):
    from convlstm.training.export import export_run

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r"pip install 'convlstm\[onnx\]'"):
        export_run(moved_classifier, "onnx", tmp_path / "m.onnx")


def test_torchscript_export_from_a_moved_run(moved_classifier, tmp_path):
    out = cli("export", moved_classifier, "--format", "torchscript", "--output",
              tmp_path / "m.pt", cwd="/").stdout  # fmt: skip
    assert "matches PyTorch" in out
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.rand(3, 4, 1, 16, 16)
    torch.testing.assert_close(scripted(x), Run.open(moved_classifier).predict(x))


# --- nothing is lost or overwritten -------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    config = write_config(tiny(TINY_CLASSIFICATION, root, trainer={"max_epochs": 1}),
                          root / "c.yaml")  # fmt: skip
    cli("train", config, "--run-dir", root / "run")
    return root / "run"


def test_training_into_an_existing_run_refuses(finished):
    before = (finished / "model.safetensors").read_bytes()
    config = finished.parent / "c.yaml"
    result = cli("train", config, "--run-dir", finished, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "already exists" in result.stderr
    assert "--resume" in result.stderr and "--overwrite" in result.stderr
    assert (finished / "model.safetensors").read_bytes() == before


def test_resuming_a_finished_run_changes_nothing(finished):
    files = {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()}
    result = cli("train", "--resume", finished)
    assert "is finished already" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()} == files


def test_run_files_are_readable_by_others(finished):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "model.json", "metrics.json", "checkpoints/last.ckpt"):
        mode = stat.S_IMODE((finished / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))


def test_overwrite_replaces_the_run(tmp_path, classification_config):
    first = convlstm.train(classification_config, run_dir=tmp_path / "run", report=False)
    (first.run_dir / "stale.txt").write_text("from the first run")
    with pytest.raises(RunFolderError, match="already exists"):
        convlstm.train(classification_config, run_dir=tmp_path / "run", report=False)
    broken = {**classification_config, "model": {**classification_config["model"], "bad": 1}}
    with pytest.raises(ConfigError, match="bad"):  # a failing config keeps the old run
        convlstm.train(broken, run_dir=tmp_path / "run", report=False, overwrite=True)
    assert (tmp_path / "run" / "stale.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    convlstm.train(classification_config, run_dir=tmp_path / "run", report=False, overwrite=True)
    assert not (tmp_path / "run" / "stale.txt").exists()
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_locked_run_folder_names_the_other_process(tmp_path):
    config = write_config(tiny(TINY_CLASSIFICATION, tmp_path), tmp_path / "c.yaml")
    with RunLock(tmp_path / "run"):
        result = cli("train", config, "--run-dir", tmp_path / "run", check=False)
    assert result.returncode == 2
    assert f"being written by another process (PID {os.getpid()})" in result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (("--trainer.max_epochs", "0"), "trainer.max_epochs: expected a number of epochs >= 1"),
        (("--output.name", "../escaped"), "must be a plain folder name inside output.root"),
        (("--data.colour", "red"), "unknown config key data.colour for data set"),
        (("--model.num_classes", "3"), "model.num_classes: the model has 3 outputs"),
    ],
)
def test_a_failed_config_leaves_no_run_folder(tmp_path, override, message):
    config = write_config(tiny(TINY_CLASSIFICATION, tmp_path / "runs"), tmp_path / "c.yaml")
    result = cli("train", config, *override, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / "escaped").exists()


# --- load checks the files before allocating -------------------------------------------------


def test_edited_model_json_fails_at_once_naming_both_files(moved_classifier, tmp_path):
    import shutil

    folder = Path(shutil.copytree(moved_classifier, tmp_path / "edited"))
    meta = json.loads((folder / "model.json").read_text())
    meta["options"]["hidden_channels"] = [10**9]
    (folder / "model.json").write_text(json.dumps(meta))
    started = time.perf_counter()
    with pytest.raises(ValueError) as error:
        convlstm.load(folder)
    assert time.perf_counter() - started < 5  # built on the meta device: nothing allocated
    assert "model.json does not describe the weights in" in str(error.value)
    assert "model.safetensors" in str(error.value)


@pytest.mark.parametrize("damage", ["truncate-weights", "garble-json", "empty-weights"])
def test_damaged_run_files_are_named(moved_classifier, tmp_path, damage):
    import shutil

    folder = Path(shutil.copytree(moved_classifier, tmp_path / "damaged"))
    weights, meta = folder / "model.safetensors", folder / "model.json"
    if damage == "truncate-weights":
        weights.write_bytes(weights.read_bytes()[:-100])
        name = "model.safetensors is truncated"
    elif damage == "empty-weights":
        weights.write_bytes(b"")
        name = "model.safetensors is not a safetensors file"
    else:
        meta.write_text(meta.read_text()[:-20])
        name = "model.json is not valid JSON"
    with pytest.raises(ValueError, match=name):
        convlstm.load(folder)
    result = cli("predict", folder, tmp_path / "x.npy", check=False)
    assert result.returncode == 2


def test_a_video_with_fewer_frames_than_its_header_promises_warns(tmp_path, monkeypatch):
    pytest.importorskip("av")
    from convlstm.data import _av
    from convlstm.training.predict import read_sequences
    from convlstm.training.run_folder import ModelSpec

    from .walk import moving_square_video

    moving_square_video(tmp_path / "v.mp4", 8, 32, 2, 0)
    spec = ModelSpec(task="classification", name="clip-classifier", options={}, frames=4,
                     channels=1, size=[32, 32], any_size=True, transform="sigmoid")  # fmt: skip
    (frames,) = read_sequences(tmp_path / "v.mp4", spec)
    assert frames.shape == (8, 1, 32, 32) and frames.dtype == np.uint8
    monkeypatch.setattr(_av, "probe_video", lambda path, count=False: {"frames": 100})
    with pytest.warns(UserWarning, match="header promises 100 frames but 8 decode"):
        read_sequences(tmp_path / "v.mp4", spec)
