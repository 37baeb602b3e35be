"""Config validation: unknown keys and wrong types name the key; overrides parse as YAML."""

import copy

import pytest

from convlstm.training.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    resolve_config,
)

from .conftest import TINY_CLASSIFICATION, write_config


def test_valid_config_gathers_model_and_data_options():
    config = config_from_dict(copy.deepcopy(TINY_CLASSIFICATION))
    assert config.model.options["hidden_channels"] == [4]
    assert config.data.options == {"frames": 4, "image_size": 16}
    assert config.data.train == {"num_samples": 32}
    assert config.trainer.max_epochs == 2
    round_trip = config_from_dict(config.to_dict())
    assert round_trip == config


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["trainer", "max_epoch"], 3, r"unknown config key trainer.max_epoch; valid keys in"),
        (["trainer", "max_epochs"], "3", r"trainer.max_epochs: expected int, got '3' \(str\)"),
        (["task"], "regression", r"task: expected one of \['classification', 'forecasting'\]"),
        (["optimizer", "lr"], [1], r"optimizer.lr: expected float, got \[1\]"),
        (["evaluation", "thresholds"], [1, "a"], r"evaluation.thresholds\[1\]: expected float"),
        (["colour"], 1, r"unknown config key colour"),
        (["early_stopping"], 5, r"early_stopping: expected a mapping or NoneType, got 5"),
    ],
)
def test_bad_values_name_the_key(path, value, message):
    raw = apply_overrides(TINY_CLASSIFICATION, [(path, value)])
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_model_name():
    raw = copy.deepcopy(TINY_CLASSIFICATION)
    del raw["model"]["name"]
    with pytest.raises(ConfigError, match=r"missing required config key model\.name"):
        config_from_dict(raw)


def test_overrides_parse_yaml_values(tmp_path):
    path = write_config(copy.deepcopy(TINY_CLASSIFICATION), tmp_path / "c.yaml")
    overrides = [
        parse_override("--model.hidden_channels", "[8, 16]"),
        parse_override("--optimizer.lr", "0.5"),
        parse_override("--early_stopping", "{patience: 2}"),
    ]
    config = load_config(path, overrides)
    assert config.model.options["hidden_channels"] == [8, 16]
    assert config.optimizer.lr == 0.5
    assert config.early_stopping.patience == 2
    with pytest.raises(ConfigError, match="bad override key"):
        parse_override("--model..x", "1")


def test_load_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    "name", ["moving_digits", "similar_motions", "radar_nowcast", "fish_clip", "video_folder"]
)
def test_bundled_configs_validate(name):
    config = load_config(resolve_config(name))
    assert config.model.name and config.data.name


def test_every_bundled_config_names_a_registered_model_and_data_set():
    """In a fresh process, as ``convlstm train NAME`` starts: the registries must know every
    name a bundled config uses without the test suite having imported its module first
    (``radar_real`` failed with "unknown data set 'radar_files'")."""
    import subprocess
    import sys

    code = (
        "from convlstm.data import list_datasets\n"
        "from convlstm.models import list_models\n"
        "from convlstm.training.config import bundled_configs, load_config, resolve_config\n"
        "for name in bundled_configs():\n"
        "    config = load_config(resolve_config(name))\n"
        "    assert config.data.name in list_datasets(), (name, config.data.name)\n"
        "    assert config.model.name in list_models(), (name, config.model.name)\n"
        "print(len(bundled_configs()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip()) >= 5
