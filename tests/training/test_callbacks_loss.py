"""A training loss that grows by orders of magnitude without becoming NaN is reported
with one warning, through a real Lightning Trainer; noisy or merely bumpy losses are not."""

import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from convlstm.training.callbacks import LossExplosionGuard, LossExplosionWarning
from convlstm.training.config import config_from_dict
from convlstm.training.trainer import build_trainer

from .conftest import TINY_FORECASTING


class ScriptedLoss(pl.LightningModule):
    """A module whose training loss at step ``k`` is ``losses[k]`` (its weight never moves:
    the learning rate is 0), so the callback sees exactly the scripted values."""

    def __init__(self, losses: list[float]) -> None:
        super().__init__()
        self.losses = losses
        self.weight = torch.nn.Parameter(torch.ones(1))

    def training_step(self, batch, batch_idx):
        return self.weight.square().sum() * self.losses[self.global_step]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(losses: list[float], guard: LossExplosionGuard) -> list[warnings.WarningMessage]:
    trainer = pl.Trainer(
        max_steps=len(losses),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[guard],
    )
    loader = DataLoader(TensorDataset(torch.zeros(len(losses), 1)), batch_size=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(ScriptedLoss(losses), loader)
    assert trainer.global_step == len(losses)
    return [w for w in record if issubclass(w.category, LossExplosionWarning)]


def test_exploding_loss_warns_once_and_the_run_goes_on():
    losses = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.3, 0.2] + [10.0**k for k in range(1, 13)]
    found = _fit(losses, LossExplosionGuard())
    assert len(found) == 1
    message = str(found[0].message)
    assert message.startswith("training loss is exploding") and "\n" not in message
    # median of the last 5 steps first exceeds 1000 x the lowest (0.3) and the start at
    # step 12 (losses 10, 100, 1e3, 1e4, 1e5 -> median 1e3 = 3333 x 0.3)
    assert "global step 12" in message and "lowest of 0.3" in message
    assert "gradient_clip_val" in message


@pytest.mark.parametrize(
    "losses",
    [
        [1.0] * 8 + [1e6] + [0.9] * 8,  # one wild batch is not an explosion
        [1.0, 0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.001, 0.002, 0.01, 0.01, 0.01],  # from ~0
        [1.0] * 5 + [1e-4] * 5 + [0.5] * 5,  # regressed, but not past where it started
        [-1.0, -2.0, -3.0, -4.0, -5.0, -1.0, -1.0, -1.0, -0.5, -0.5, -0.5],  # not positive
    ],
    ids=["spike", "from-zero", "regression", "negative"],
)
def test_bumpy_losses_do_not_warn(losses):
    assert _fit(losses, LossExplosionGuard()) == []


def test_options_are_checked():
    with pytest.raises(ValueError, match=r"factor must be > 1, got 1"):
        LossExplosionGuard(factor=1)
    with pytest.raises(ValueError, match=r"window must be an integer >= 1, got 0"):
        LossExplosionGuard(window=0)


def test_build_trainer_registers_the_guard(tmp_path):
    trainer = build_trainer(config_from_dict(TINY_FORECASTING), tmp_path)
    assert sum(isinstance(c, LossExplosionGuard) for c in trainer.callbacks) == 1
