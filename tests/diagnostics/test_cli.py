"""``convlstm diagnose`` end to end: a tiny run trained here, the CLI in a subprocess."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import convlstm
from tests.training.conftest import TINY_CLASSIFICATION


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "convlstm.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    config = copy.deepcopy(TINY_CLASSIFICATION)
    config["model"]["hidden_channels"] = [3, 3]
    config["trainer"]["max_epochs"] = 1
    config["output"] = {"root": str(tmp_path_factory.mktemp("runs"))}
    return convlstm.train(config, report=False).run_dir


def test_diagnose_writes_json_and_html(run_dir):
    done = _cli("diagnose", str(run_dir), "--split", "test", "--object-scale", "100",
                "--max-batches", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert Path(printed["json"]) == run_dir / "diagnostics" / "diagnostics.json"
    assert Path(printed["html"]).is_file()
    assert any("far smaller" in line for line in printed["summary"])
    result = json.loads(Path(printed["json"]).read_text())
    names = result["similarity"]["layers"]["embedding"]["classes"]
    assert names == ["gentle", "jerky"]  # the data set's class names
    assert len(result["gradients"]["hidden"]["layers.1.cells.0"]) == 4  # frames: 4
    assert result["receptive_field"]["object_scale"] == 100


def test_diagnose_help_and_errors(tmp_path, capsys):
    from convlstm.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["diagnose", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "example:" in out and "--object-scale" in out
    assert main(["diagnose", str(tmp_path / "nope")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path), "--max-batches", "0"]) == 2
    assert "--max-batches must be >= 1, got 0" in capsys.readouterr().err
