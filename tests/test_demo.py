"""``convlstm demo``'s configs: the bundled recipes with a demo's budget."""

from __future__ import annotations

import pytest

from convlstm.demo import demo_config
from convlstm.training.config import load_config, resolve_config


@pytest.mark.parametrize("quick", [False, True])
def test_demo_forecaster_is_the_bundled_recipe_on_a_step_budget(quick, tmp_path):
    bundled = load_config(resolve_config("moving_digits"))
    config = demo_config("moving_digits", quick, str(tmp_path))
    # the bundled recipe trains to a time budget; the demo to a number of steps
    assert bundled.trainer.max_time is not None and bundled.scheduler.over == "time"
    assert config.trainer.max_time is None and config.scheduler.over == "steps"
    assert config.trainer.snapshot_minutes == []
    assert config.model == bundled.model and config.loss == bundled.loss
    assert config.optimizer == bundled.optimizer
    assert config.scheduler.name == bundled.scheduler.name
    if not quick:
        steps = config.trainer.max_epochs * config.data.train["num_samples"]
        assert steps // config.data.batch_size == 1100
    assert config.output.root == str(tmp_path)
