"""The ``lightning.Trainer`` of a run: callbacks, loggers and atomic checkpoints."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor

from ..nn.fast._torch import cpu_vector_isa
from ..runtime import ConvLSTMWarning
from .callbacks import (
    AtomicCheckpointIO,
    LossExplosionGuard,
    NonFiniteLossGuard,
    RankFingerprint,
    RNGState,
    TimeSnapshots,
)
from .config import RunConfig
from .datamodule import ResumeMidEpoch
from .run_folder import HistoryCSVLogger, RunCheckpoint


def resolve_precision(precision: str, accelerator: str) -> str:
    """``trainer.precision`` as Lightning takes it. ``"auto"`` is ``"bf16-mixed"`` where
    the run's device computes bfloat16 natively (a CUDA device that supports it, an x86
    CPU with AVX-512 BF16, whose loops ``convlstm.nn.fast.simd`` runs), else
    ``"32-true"``. An explicit bfloat16 precision is kept, with a warning on a CPU
    without AVX-512 BF16, where oneDNN emulates it."""
    cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    cpu = accelerator == "cpu" or (accelerator == "auto" and not cuda)
    native = torch.cuda.is_bf16_supported() if cuda else cpu and cpu_vector_isa() == "avx512"
    if precision == "auto":
        return "bf16-mixed" if native else "32-true"
    if cpu and not native and str(precision).startswith("bf16"):
        warnings.warn(
            f"trainer.precision {precision!r} on a CPU without AVX-512 BF16: bfloat16 is "
            "emulated there, and a training step ran 4-5x slower than '32-true' in the "
            "benchmarks (docs/performance.md); set trainer.precision to '32-true' or 'auto'",
            ConvLSTMWarning,
            stacklevel=3,
        )
    return precision


def build_trainer(config: RunConfig, run_dir: Path, **overrides) -> pl.Trainer:
    """A ``Trainer`` writing checkpoints to ``run_dir/checkpoints`` and logs to
    ``run_dir/logs`` (CSV, and TensorBoard when installed)."""
    t = config.trainer
    monitor, mode = config.monitored()
    checkpoint = RunCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode=mode,
        save_last=True,
        save_top_k=1,
        every_n_train_steps=t.checkpoint_every_n_steps,
        enable_version_counter=False,
    )
    callbacks: list[pl.Callback] = [checkpoint, NonFiniteLossGuard(), RNGState(), ResumeMidEpoch()]
    callbacks.append(RankFingerprint(run_dir))
    callbacks.append(LossExplosionGuard())
    if t.snapshot_minutes:
        callbacks.append(TimeSnapshots(run_dir / "checkpoints", t.snapshot_minutes))
    if config.early_stopping is not None:
        es = config.early_stopping
        callbacks.append(
            EarlyStopping(
                monitor=es.monitor, mode=es.mode, patience=es.patience, min_delta=es.min_delta
            )
        )
    if config.scheduler.name != "none":
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    loggers: list = [HistoryCSVLogger(run_dir, name="logs", version="")]
    try:  # TensorBoard is optional (pip install convlstm[tensorboard])
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir / "logs", name="tensorboard", version=""))
    except ModuleNotFoundError:
        pass
    options = dict(
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time=t.max_time,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision, t.accelerator),
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic,
        enable_progress_bar=t.enable_progress_bar,
        default_root_dir=run_dir,
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    # Passed only when set: Lightning prints a line for each of these given explicitly.
    for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches",
                 "val_check_interval"):  # fmt: skip
        value = getattr(t, name)
        if not (isinstance(value, float) and value == 1.0):  # the int 1 means one batch
            options[name] = value
    options.update(overrides)
    return pl.Trainer(**options)
