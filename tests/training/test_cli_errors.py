"""Every user mistake on the command line gets one line naming the file or key at fault,
exit code 2 and no traceback (``--debug`` shows it); the output is readable and quiet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import TINY_CLASSIFICATION, TINY_FORECASTING, write_config
from .walk import cli, tiny


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cfg")
    return write_config(tiny(TINY_CLASSIFICATION, root / "runs"), root / "c.yaml")


def test_malformed_override_value_names_the_key(config):
    result = cli("train", config, "--trainer.max_epochs", "[1", check=False)
    one_line_error(result, "--trainer.max_epochs: cannot read '[1' as a value")
    debug = cli("train", config, "--trainer.max_epochs", "[1", "--debug", check=False)
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{config}", "--trainer.max_epochs=7", "--print-config"],
        ["train", "--trainer.max_epochs", "7", "{config}", "--print-config"],
        ["train", "--trainer.max_epochs=7", "{config}", "--print-config"],
    ],
)
def test_overrides_in_any_position_and_form(config, argv):
    out = cli(*(a.format(config=config) for a in argv)).stdout
    import yaml

    resolved = yaml.safe_load(out)
    assert resolved["trainer"]["max_epochs"] == 7
    assert resolved["model"]["name"] == "clip-classifier"


def test_help_lists_every_command_and_config_keys():
    top = cli("--help").stdout
    for command in ("train", "evaluate", "predict", "export", "diagnose", "demo", "list-models"):
        assert command in top
    train = cli("train", "--help").stdout
    assert "trainer: max_epochs=10" in train and "accelerator='auto'" in train
    assert cli("--version").stdout.startswith("convlstm ")


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fc")
    config = write_config(tiny(TINY_FORECASTING, root), root / "f.yaml")
    result = cli("train", config, "--run-dir", root / "run")
    return root / "run", result


def test_train_output_is_readable_and_quiet(forecaster):
    run_dir, result = forecaster
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Trained encoder-forecaster on moving_digits (forecasting): ")
    assert any("mse" in line and "blank frames" in line and "repeating the last input" in line
               for line in lines)  # fmt: skip
    assert any(line.strip().startswith("report: ") for line in lines)
    noise = ("was configured so", "litlogger", "GPU available", "LeafSpec")
    for word in noise:
        assert word not in result.stdout + result.stderr, word


def test_json_output_is_json_only(forecaster, tmp_path):
    run_dir, _ = forecaster
    metrics = json.loads(cli("evaluate", run_dir, "--json").stdout)
    assert "mse" in metrics
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32))
    out = json.loads(cli("predict", run_dir, tmp_path / "x.npy", "--json",
                         "--output", tmp_path / "o").stdout)  # fmt: skip
    assert out["windows"][0]["start"] == 0


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        ("text.npy", ("is not a NumPy .npy file",)),
        ("missing_variable.nc", ("no variable 'nope'",)),
        ("no_time.nc", ("no time dimension", "time_dim")),
    ],
)
def test_bad_prediction_inputs_get_one_line(forecaster, tmp_path, make, fragments):
    run_dir, _ = forecaster
    path = tmp_path / make
    extra: list[str] = []
    if make == "text.npy":
        path.write_text("1,2,3\n4,5,6\n")
    else:
        xr = pytest.importorskip("xarray")
        values = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
        dims = ("time", "y", "x") if make == "missing_variable.nc" else ("level", "y", "x")
        xr.Dataset({"rain": (dims, values)}).to_netcdf(path, engine="h5netcdf")
        if make == "missing_variable.nc":
            extra = ["--variable", "nope"]
    result = cli("predict", run_dir, path, *extra, check=False)
    one_line_error(result, *fragments)
    assert "allow_pickle" not in result.stderr


def test_every_option_of_every_command_has_help():
    import argparse

    from convlstm.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {c.dest for c in commands._choices_actions} >= {"diagnose", "predict", "export"}
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"convlstm {name}: {action.option_strings or action.dest}"


def test_python_api_takes_bundled_config_names(tmp_path, monkeypatch):
    from convlstm.training.run import _as_config

    monkeypatch.chdir(tmp_path)  # bundled configs are found from any directory
    assert _as_config("similar_motions").data.name == "similar_motions"
    with pytest.raises(FileNotFoundError, match=r"nor one of .*moving_digits"):
        _as_config("no_such_config")


def test_first_compilation_says_so(monkeypatch, capsys):
    import time

    import torch

    from convlstm import runtime
    from convlstm.nn.fast import gates as fused_gates

    def slow(x):
        time.sleep(0.3)
        return x + 1

    monkeypatch.setattr(torch, "compile", lambda fn, dynamic=True: fn)
    monkeypatch.setattr(fused_gates, "_kernels", {})
    monkeypatch.setattr(runtime, "ANNOUNCE_AFTER_S", 0.1)
    kernel = fused_gates._compiled("probe", slow)
    assert kernel(1) == 2 and kernel(2) == 3
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (
        "convlstm: compiling the fused kernel 'probe' (first use; cached for later runs)..."
    )
    assert lines[1].startswith("convlstm: compiling the fused kernel 'probe' took 0.")
    assert len(lines) == 2  # the second call compiles nothing and says nothing
    monkeypatch.setattr(runtime, "ANNOUNCE_AFTER_S", 1.0)
    monkeypatch.setattr(fused_gates, "_kernels", {})
    fused_gates._compiled("quick", lambda x: x)(1)
    assert capsys.readouterr().err == ""  # served quickly (a warm cache): silent


def test_an_explicit_bfloat16_on_a_cpu_without_it_is_one_warning_line(config, tmp_path):
    """``trainer.precision bf16-mixed`` held to AVX2 (as on most CPUs, where bfloat16 is
    emulated): the run trains as asked, and says once, on one line, that it is slow."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["ATEN_CPU_CAPABILITY"] = "avx2"
    result = subprocess.run(
        [sys.executable, "-m", "convlstm.cli", "train", str(config), "--trainer.max_epochs", "1",
         "--trainer.precision", "bf16-mixed", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    warned = [line for line in result.stderr.splitlines() if "trainer.precision" in line]
    assert warned == [
        "convlstm: warning: trainer.precision 'bf16-mixed' on a CPU without AVX-512 BF16: "
        "bfloat16 is emulated there, and a training step ran 4-5x slower than '32-true' in "
        "the benchmarks (docs/performance.md); set trainer.precision to '32-true' or 'auto'"
    ]
    assert "build_trainer(" not in result.stderr  # no source line
