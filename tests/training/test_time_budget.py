"""Training to a time budget: learning-rate schedules over ``trainer.max_time``, minute
snapshots, and the forecaster trained on its predictions of the input frames too."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from convlstm.cli import main
from convlstm.training.callbacks import TimeSnapshots
from convlstm.training.config import ConfigError, SchedulerConfig, config_from_dict
from convlstm.training.run import train
from convlstm.training.tasks import ForecastingTask, time_schedule

from .conftest import TINY_FORECASTING
from .walk import tiny


def _factors(name: str, at: list[float], **options) -> list[float]:
    clock = {"t": 0.0}
    factor = time_schedule(SchedulerConfig(name=name, over="time", **options), 0.01,
                           lambda: clock["t"])  # fmt: skip
    values = []
    for t in at:
        clock["t"] = t
        values.append(factor(0))  # the step number is ignored: only the time counts
    return values


def test_cosine_over_time_falls_from_the_rate_to_min_lr():
    start, middle, end = _factors("cosine", [0.0, 0.5, 1.0], min_lr=0.001)
    assert start == pytest.approx(1.0)
    assert middle == pytest.approx((1.0 + 0.1) / 2)
    assert end == pytest.approx(0.1)  # min_lr / lr


def test_onecycle_over_time_warms_up_then_anneals():
    values = _factors("onecycle", [0.0, 0.1, 0.2, 0.6, 1.0], warmup_fraction=0.2)
    assert values[0] == pytest.approx(1 / 25)
    assert values[0] < values[1] < values[2] == pytest.approx(1.0)
    assert values[3] == pytest.approx((1 + 1 / 25e4) / 2)
    assert values[4] == pytest.approx(1 / 25e4)


def test_time_schedule_needs_a_time_budget():
    raw = tiny(TINY_FORECASTING, "runs", scheduler={"name": "cosine", "over": "time"})
    with pytest.raises(ConfigError, match=r"needs trainer\.max_time"):
        config_from_dict(raw)
    raw = tiny(TINY_FORECASTING, "runs", trainer={"snapshot_minutes": [0]})
    with pytest.raises(ConfigError, match="snapshot_minutes"):
        config_from_dict(raw)


def test_time_budgeted_run_anneals_and_keeps_minute_snapshots(tmp_path):
    raw = tiny(
        TINY_FORECASTING, tmp_path,
        scheduler={"name": "cosine", "over": "time"},
        # a budget far beyond the run: the steps end it, the time sets the learning rate
        trainer={"max_time": "00:01:00:00", "max_epochs": 2, "snapshot_minutes": [1e-9, 1e9]},
    )  # fmt: skip
    run = train(raw, report=False)
    checkpoints = run.run_dir / "checkpoints"
    assert (checkpoints / TimeSnapshots.name(1e-9)).is_file()
    assert not (checkpoints / TimeSnapshots.name(1e9)).exists()
    snapshot = torch.load(checkpoints / TimeSnapshots.name(1e-9), weights_only=True)
    assert snapshot["global_step"] >= 1 and "state_dict" in snapshot
    # the snapshot is evaluated as the run's model would be
    model = run.checkpoint_model(Path("checkpoints") / TimeSnapshots.name(1e-9))
    assert not model.training
    assert run.evaluate(model=model)["mse"] >= 0
    assert main(["evaluate", str(run.run_dir), "--json", "--checkpoint",
                 str(checkpoints / "last.ckpt")]) == 0  # fmt: skip
    elsewhere = tmp_path / "elsewhere.ckpt"
    elsewhere.write_bytes((checkpoints / "last.ckpt").read_bytes())
    with pytest.raises(ValueError, match="not inside the run folder"):
        run.checkpoint_model(elsewhere)
    assert TimeSnapshots.name(5) == "minute-5.ckpt"
    assert TimeSnapshots.name(2.5) == "minute-2.5.ckpt"
    # a few seconds of an hour's cosine: the rate has hardly moved from its start
    lr = run.config.optimizer.lr
    rates = [row for row in _lr_rows(run.run_dir)]
    assert rates and all(0.99 * lr <= r <= lr for r in rates)


def _lr_rows(run_dir) -> list[float]:
    import csv

    with open(run_dir / "logs" / "metrics.csv") as handle:
        return [float(r["lr-AdamW"]) for r in csv.DictReader(handle) if r.get("lr-AdamW")]


def test_forecaster_predicting_inputs_is_scored_on_the_whole_sequence(monkeypatch):
    options = {**TINY_FORECASTING["model"], "predict_inputs": True}
    options.pop("name")
    task = ForecastingTask("encoder-forecaster", options, loss={"name": "mse"},
                           optimizer={}, scheduler={})  # fmt: skip
    monkeypatch.setattr(task, "log", lambda *args, **kwargs: None)
    inputs, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    task.train()
    torch.manual_seed(0)
    loss = task.training_step((inputs, targets), 0)
    torch.manual_seed(0)
    forecast, seen = task.model(inputs, targets, return_encoder_predictions=True)
    both = torch.cat([seen, forecast], dim=1)
    expected = torch.mean((both - torch.cat([inputs[:, 1:], targets], dim=1)) ** 2)
    torch.testing.assert_close(loss, expected)
    forecast_only = torch.mean((forecast - targets) ** 2)
    assert not math.isclose(float(loss.detach()), float(forecast_only.detach()))


@pytest.mark.parametrize("over, expected", [("steps", 3), ("time", 2_500)])
def test_scheduled_sampling_follows_the_learning_rate_clock(monkeypatch, over, expected):
    """With ``scheduler.over: time`` a step-counted sampling schedule (10,000 steps by
    default, longer than the bundled hour's ~6,000 steps) would barely start before the
    deadline: it is stretched over the time budget, as the learning rate is."""
    options = {**TINY_FORECASTING["model"], "scheduled_sampling": "reverse",
               "sampling_start": 1_000, "sampling_steps": 4_000}  # fmt: skip
    options.pop("name")
    task = ForecastingTask("encoder-forecaster", options, loss={"name": "mse"}, optimizer={},
                           scheduler={"name": "cosine", "over": over})  # fmt: skip
    monkeypatch.setattr(task, "log", lambda *args, **kwargs: None)
    monkeypatch.setattr(ForecastingTask, "global_step", property(lambda self: 3))
    monkeypatch.setattr(ForecastingTask, "trainer", property(lambda self: None))
    monkeypatch.setattr("convlstm.training.tasks.training_progress", lambda trainer: lambda: 0.5)
    task.train()
    task.training_step((torch.rand(2, 3, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)), 0)
    # half the budget gone: half of the schedule's 5,000 steps (start included)
    assert task.model.sampling_step == expected
