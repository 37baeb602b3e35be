"""``LightningModule``s for clip classification and frame forecasting."""

from __future__ import annotations

import inspect
import math
from typing import Any

import lightning.pytorch as pl
import torch

from ..metrics import ClassificationMetrics, ForecastMetrics
from ..models import create_model
from .config import OptimizerConfig, SchedulerConfig
from .objectives import build_objective


def last_frame(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """The last input frame ``(B, C, *S)`` when frames in and out are alike (the
    persistence baseline of ``ForecastMetrics``), else ``None``."""
    if inputs.dim() != targets.dim() or inputs.shape[2:] != targets.shape[2:]:
        return None
    return inputs[:, -1].float()


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``(B, 1)`` logits -> ``(B,)`` probability of class 1 (sigmoid); ``(B, K)`` -> softmax."""
    if logits.shape[-1] == 1:
        return torch.sigmoid(logits.reshape(-1).float())
    return torch.softmax(logits.float(), dim=-1)


def training_progress(trainer: pl.Trainer):
    """A function giving the fraction of ``trainer``'s ``max_time`` spent training (the
    ``Timer`` callback's count, which a resumed run carries on), capped at 1."""
    from lightning.pytorch.callbacks import Timer

    timers = [c for c in trainer.callbacks if isinstance(c, Timer)]
    budget = timers[0]._duration if timers else None
    if not budget:
        raise ValueError("scheduler.over: time needs trainer.max_time")
    return lambda: min(timers[0].time_elapsed("train") / budget, 1.0)


def time_schedule(sched: SchedulerConfig, lr: float, progress):
    """The learning-rate factor of ``cosine`` or ``onecycle`` at the training-time
    fraction ``progress()``, for ``LambdaLR``: cosine from 1 to ``min_lr / lr``;
    onecycle as ``OneCycleLR`` (from ``1/25`` up to 1 over ``warmup_fraction`` of the
    time, cosine annealing, then down to ``1/25e4``)."""

    def cosine(t: float, high: float, low: float) -> float:
        return low + (high - low) * 0.5 * (1 + math.cos(math.pi * t))

    def factor(step: int) -> float:
        t = progress()
        if sched.name == "cosine":
            return cosine(t, 1.0, sched.min_lr / lr)
        warm = sched.warmup_fraction
        if t < warm:
            return cosine(1 - t / warm, 1.0, 1 / 25)
        return cosine((t - warm) / max(1 - warm, 1e-12), 1.0, 1 / 25e4)

    return factor


class _Task(pl.LightningModule):
    """Shared optimiser/scheduler set-up; ``model`` is built from the registry."""

    def __init__(
        self,
        model_name: str,
        model_options: dict[str, Any],
        loss: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        monitor: str = "val_loss",
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model_name, **model_options)
        self.optimizer_config = OptimizerConfig(**optimizer)
        self.scheduler_config = SchedulerConfig(**scheduler)
        self.monitor = monitor

    # Subclasses define _evaluate(batch, prefix, metrics) and _log_metrics(prefix, metrics).
    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def configure_optimizers(self):
        opt, sched = self.optimizer_config, self.scheduler_config
        params = [p for p in self.parameters() if p.requires_grad]
        if opt.name == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
            )
        else:
            cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
            optimizer = cls(params, lr=opt.lr, weight_decay=opt.weight_decay)
        if sched.name == "none":
            return optimizer
        if sched.name == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min" if self.monitor.endswith(("loss", "mse", "mae")) else "max",
                factor=sched.factor,
                patience=sched.patience,
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor},
            }
        if sched.over == "time":
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, time_schedule(sched, opt.lr, training_progress(self.trainer))
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if sched.name == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=total, eta_min=sched.min_lr
            )
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=opt.lr, total_steps=total, pct_start=sched.warmup_fraction
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class ClassificationTask(_Task):
    """Clip classification: ``(clip (B, T, C, H, W), label (B,))`` batches.

    A model with ``num_classes == 1`` is binary (one logit, sigmoid probability);
    otherwise the outputs are ``num_classes`` logits (softmax).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_classes = int(getattr(self.model, "num_classes", 1))
        weights = self.hparams.class_weights
        self.objective = build_objective(
            "classification", self.hparams.loss, num_classes=self.num_classes,
            class_weights=None if weights is None else torch.tensor(weights),
        )  # fmt: skip
        metric_classes = 2 if self.num_classes == 1 else self.num_classes
        self.val_metrics = ClassificationMetrics(metric_classes)
        self.test_metrics = ClassificationMetrics(metric_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return class_probabilities(logits)

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip, label = batch
        if self.objective.needs_embedding:
            embedding = self.model.embed(clip)
            logits = self.model.head(embedding)
        else:
            embedding, logits = None, self.model(clip)
        return self.objective(logits, label, embedding), logits, label

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def _evaluate(self, batch, prefix: str, metrics: ClassificationMetrics) -> None:
        loss, logits, label = self._loss(batch)
        metrics.update(self.scores(logits), label)
        self.log(f"{prefix}_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True)

    def _log_metrics(self, prefix: str, metrics: ClassificationMetrics) -> None:
        values = metrics.compute()
        for key in ("accuracy", "balanced_accuracy", "roc_auc", "f1"):
            if key in values:
                # Already synced by torchmetrics; sync_dist keeps Lightning quiet under DDP.
                self.log(f"{prefix}_{key}", float(values[key]), prog_bar=key == "accuracy",
                         sync_dist=True)  # fmt: skip
        metrics.reset()

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        clip = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.scores(self.model(clip))


class ForecastingTask(_Task):
    """Frame forecasting: ``(inputs (B, T_in, C, H, W), targets (B, T_out, C, H, W))``.

    In training the model sees the targets for scheduled sampling (models that accept
    them); validation and test run free. A model with ``predict_inputs`` set (an
    ``EncoderForecaster``) is also trained on its predictions of the input frames after
    the first, with the same loss over the whole sequence; validation scores the
    forecast only.
    """

    def __init__(
        self, *args, data_range: float = 1.0, thresholds: list[float] | None = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.objective = build_objective("forecasting", self.hparams.loss)
        forward = inspect.signature(self.model.forward).parameters
        self.model_takes_target = "target" in forward
        self.val_metrics = ForecastMetrics(data_range=data_range, thresholds=thresholds)
        self.test_metrics = ForecastMetrics(data_range=data_range, thresholds=thresholds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def sampling_step(self) -> int:
        """The step a scheduled-sampling model reads its schedule at: the training step,
        or with ``scheduler.over: time`` the same fraction of the schedule (its
        ``sampling_start + sampling_steps``) as of the time budget, so that it ends at
        the deadline as the learning rate does, however many steps fit."""
        if self.scheduler_config.over != "time":
            return self.global_step
        length = self.model.sampling_start + self.model.sampling_steps
        return round(training_progress(self.trainer)() * length)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        if hasattr(self.model, "set_sampling_step"):
            self.model.set_sampling_step(self.sampling_step())
        if getattr(self.model, "predict_inputs", False):
            # The encoder's predictions of input frames 2 .. T_in are scored too: the
            # loss covers all T_in + T_out - 1 predicted frames (PredRNN, OpenSTL).
            preds, seen = self.model(inputs, targets, return_encoder_predictions=True)
            loss = self.objective(
                torch.cat([seen, preds], dim=1), torch.cat([inputs[:, 1:], targets], dim=1)
            )
        else:
            preds = self.model(inputs, targets) if self.model_takes_target else self.model(inputs)
            loss = self.objective(preds, targets)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def _evaluate(self, batch, prefix: str, metrics: ForecastMetrics) -> None:
        inputs, targets = batch
        preds = self.model(inputs)
        self.log(f"{prefix}_loss", self.objective(preds, targets), prog_bar=True, sync_dist=True)
        metrics.update(preds.float(), targets.float(), last_frame(inputs, targets))

    def _log_metrics(self, prefix: str, metrics: ForecastMetrics) -> None:
        for key, value in metrics.compute().items():
            if isinstance(value, (int, float)) or (torch.is_tensor(value) and value.numel() == 1):
                self.log(f"{prefix}_{key}", float(value), sync_dist=True)
        metrics.reset()

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.model(inputs)


TASKS: dict[str, type[_Task]] = {
    "classification": ClassificationTask,
    "forecasting": ForecastingTask,
}
