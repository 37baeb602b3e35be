"""``import_keras_run``: a Keras classifier as a normal run folder (predict, export, evaluate)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from convlstm.interop.keras import import_keras_run, load_keras_model
from convlstm.training.run import Run, load
from convlstm.training.run_folder import read_spec

FIXTURES = Path(__file__).parent / "fixtures"
STUDY = FIXTURES / "fish2-study-keras2-savedmodel"


def _data(name: str) -> tuple[torch.Tensor, np.ndarray]:
    """The fixture's input, channels-first (B, T, C, *S), and the Keras output."""
    data = np.load(FIXTURES / f"{name}.npz")
    x = torch.from_numpy(data["x"])
    return x.movedim(-1, 2).contiguous(), data["y"]


@pytest.fixture(scope="module")
def study_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "fish2"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        returned = import_keras_run(STUDY, run_dir, classes=["calm", "stressed"])
    assert returned == run_dir
    return run_dir


def test_run_folder_files_and_spec(study_run):
    assert {p.name for p in study_run.iterdir()} >= {"model.safetensors", "model.json",
                                                     "config.yaml"}  # fmt: skip
    spec = read_spec(study_run)
    assert (spec.task, spec.name, spec.transform) == ("classification", "keras-graph", "sigmoid")
    assert (spec.frames, spec.channels, spec.size) == (3, 4, [10, 12])
    assert spec.classes == ["calm", "stressed"]
    assert spec.options["logits"] is True and spec.options["source"] == str(STUDY)
    config = yaml.safe_load((study_run / "config.yaml").read_text())
    assert config["data"]["name"] == "none" and config["model"]["name"] == "keras-graph"
    json.dumps(spec.options)  # plain JSON


def test_predict_gives_the_keras_probabilities(study_run):
    """The output sigmoid is applied exactly once: by the run's transform."""
    x, expected = _data("fish2-study-keras2-savedmodel")
    run = Run.open(study_run)
    probabilities = run.predict(x).numpy()
    np.testing.assert_allclose(probabilities, expected[:, 0], rtol=0, atol=1e-5)
    with torch.no_grad():
        logits = load(study_run)(x)
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), expected, rtol=0, atol=1e-5)
    assert (logits.numpy() < 0).any() or (logits.numpy() > 1).any()  # logits, not probabilities


def test_export_torchscript(study_run, tmp_path):
    from convlstm.training.export import export_run

    exported = export_run(study_run, "torchscript", tmp_path / "model.pt")
    assert exported.max_error is not None and exported.max_error <= 1e-4
    scripted = torch.jit.load(str(exported.path))
    x, expected = _data("fish2-study-keras2-savedmodel")
    with torch.no_grad():
        np.testing.assert_allclose(scripted(x).numpy(), expected[:, 0], rtol=0, atol=1e-5)


def test_evaluate_with_another_data_config(study_run, tmp_path):
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(12, 3, 4, 10, 12)).astype("float32")
    labels = [0, 1] * 6
    path = tmp_path / "clips.npz"
    np.savez(path, clips=clips)
    data = {
        "name": "arrays", "path": str(path), "key": "clips", "axes": "NTCHW",
        "task": "classify", "frames": 3, "labels": labels, "split_fractions": [0.5, 0.25, 0.25],
        "batch_size": 4, "options": {"split_by": "sequence"},  # the data set's own split_by
    }  # fmt: skip
    from convlstm.training.evaluation import evaluate_run

    run = Run.open(study_run)
    result = evaluate_run(run, split="test", data=data)
    assert result["metrics"]["num_samples"] == len(result["labels"]) >= 2
    # The probabilities evaluated are the Keras model's on those clips.
    keras_like = load_keras_model(STUDY)
    with torch.no_grad():
        reference = keras_like(torch.from_numpy(result["clips"])).numpy()[:, 0]
    np.testing.assert_allclose(result["probs"][: len(reference)], reference, rtol=0, atol=1e-5)


def test_float64_run_folder(tmp_path):
    name = "fish2-float64-keras2-savedmodel"
    run_dir = import_keras_run(FIXTURES / name, tmp_path / "f64")
    model = load(run_dir)
    assert next(model.parameters()).dtype == torch.float64
    x, expected = _data(name)
    with torch.no_grad():
        probabilities = torch.sigmoid(model(x)).numpy()
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-10)


def test_softmax_and_logit_outputs(tmp_path):
    run_dir = import_keras_run(FIXTURES / "conv1d-keras3-keras.keras", tmp_path / "softmax")
    spec = read_spec(run_dir)
    assert (spec.transform, spec.frames, spec.channels, spec.size) == ("softmax", 4, 2, [16])
    x, expected = _data("conv1d-keras3-keras")
    with torch.no_grad():
        probabilities = torch.softmax(load(run_dir)(x), -1).numpy()
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    # A Keras model without a final activation: its outputs are taken as logits.
    with pytest.warns(UserWarning, match="no sigmoid/softmax; its outputs are taken as logits"):
        run_dir = import_keras_run(FIXTURES / "conv3d-keras3-keras.keras", tmp_path / "logits")
    assert read_spec(run_dir).transform == "softmax"
    x, expected = _data("conv3d-keras3-keras")
    with torch.no_grad():
        np.testing.assert_allclose(load(run_dir)(x).numpy(), expected, rtol=0, atol=1e-5)


def test_refuses_a_used_folder_and_wrong_classes(study_run, tmp_path):
    with pytest.raises(FileExistsError, match="already exists"):
        import_keras_run(STUDY, study_run)
    with pytest.raises(ValueError, match=r"classes: expected 2 names for 1 outputs"):
        import_keras_run(STUDY, tmp_path / "new", classes=["a", "b", "c"])


def test_cli_import_then_predict_matches_keras(tmp_path):
    """``convlstm import`` of the study-like SavedModel, then ``convlstm predict`` on the
    frames Keras saw, through the real entry point."""
    import subprocess
    import sys

    fixture = Path(__file__).parent / "fixtures" / "fish1-keras2-savedmodel"
    data = np.load(str(fixture) + ".npz")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "convlstm.cli"]
    done = subprocess.run([*command, "import", str(fixture), "--output", str(run),
                           "--classes", "calm,burst"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    again = subprocess.run([*command, "import", str(fixture), "--output", str(run)],
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 2 and "--overwrite" in again.stderr
    clips = np.moveaxis(data["x"], -1, 2)  # Keras (B, T, H, W, C) -> (B, T, C, H, W)
    np.save(tmp_path / "clips.npy", clips)
    out = subprocess.run([*command, "predict", str(run), str(tmp_path / "clips.npy"), "--json",
                          "--output", str(tmp_path / "p")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    probs = np.load(json.loads(out.stdout)["predictions"])
    np.testing.assert_allclose(probs, data["y"].reshape(-1), atol=1e-5)
