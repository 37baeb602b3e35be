"""Lightning callbacks and checkpoint I/O that make runs safe to kill and resume."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from ..runtime import ConvLSTMWarning
from .errors import NonFiniteLossError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename,
    so a reader (or a run killed mid-write) never sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; run files are shared artefacts, so give them the mode a
        # plain open() would (0666 less the umask).
        if hasattr(os, "fchmod"):  # POSIX only
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose writes are atomic (temporary file + rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        import io

        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


class NonFiniteLossGuard(pl.Callback):
    """Stop the run at the first NaN/inf training loss, naming the step and the last good
    checkpoint (which ``convlstm train --resume`` would restart from)."""

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        # Checked before backward, so the bad loss never reaches the weights.
        if bool(torch.isfinite(loss).all()):
            return
        last = None
        for callback in trainer.checkpoint_callbacks:
            candidate = getattr(callback, "last_model_path", "") or getattr(
                callback, "best_model_path", ""
            )
            if candidate and Path(candidate).is_file():
                last = candidate
        raise NonFiniteLossError(
            f"training loss became {loss.item()} at global step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}); "
            f"last good checkpoint: {last or 'none written yet'}. Lower the learning rate, "
            "enable gradient clipping (trainer.gradient_clip_val) or check the data."
        )


class LossExplosionWarning(ConvLSTMWarning):
    """The training loss grew by orders of magnitude (see :class:`LossExplosionGuard`)."""


class LossExplosionGuard(pl.Callback):
    """Warn once (on rank zero) when the training loss explodes without becoming NaN/inf.

    The running loss is the median of the last ``window`` step losses, so one wild batch
    does not count but a loss that stays high does, within ``window // 2 + 1`` steps. The
    guard warns when the running loss exceeds ``factor`` times the lowest running loss
    seen and is also above the first running loss: a loss still below where training
    started is not diverging, and this keeps a loss that reached about zero from warning
    at every small rise (``factor`` times zero). Losses whose first running value is not
    positive (log-likelihoods, say) are not judged, as ratios of them mean nothing.
    The run goes on: a loss that then becomes NaN/inf is stopped by
    :class:`NonFiniteLossGuard`.
    """

    def __init__(self, factor: float = 1000.0, window: int = 5) -> None:
        if not factor > 1:
            raise ValueError(f"factor must be > 1, got {factor!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.factor, self.window = float(factor), window
        self._recent: deque[float] = deque(maxlen=window)
        self._initial: float | None = None
        self._lowest = math.inf
        self.warned = False

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if self.warned or not trainer.is_global_zero:
            return
        value = float(loss.detach().float().mean())
        if not math.isfinite(value):
            return  # NonFiniteLossGuard's case
        self._recent.append(value)
        if len(self._recent) < self.window:
            return
        running = statistics.median(self._recent)
        if self._initial is None:
            self._initial = running
        self._lowest = min(self._lowest, running)
        if self._initial <= 0 or running <= max(self.factor * self._lowest, self._initial):
            return
        self.warned = True
        rank_zero_warn(
            f"training loss is exploding: its running value (median of the last "
            f"{self.window} steps) is {running:.3g} at global step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}), over {self.factor:g}x its lowest of "
            f"{self._lowest:.3g} and above the {self._initial:.3g} it started at; the run "
            "goes on, but lower the learning rate, enable gradient clipping "
            "(trainer.gradient_clip_val) or check the data",
            category=LossExplosionWarning,
        )


class RNGState(pl.Callback):
    """Save the Python, NumPy and torch random states in every checkpoint and restore them
    on resume, so a resumed run draws the same dropout masks and augmentations."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0],
            "python_gauss": random.getstate()[2],
            "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]),
            "numpy_gauss": [int(np_state[3]), float(np_state[4])],
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
        keys = state["numpy_keys"].numpy().astype(np.uint32)
        has_gauss, gauss = state["numpy_gauss"]
        np.random.set_state(("MT19937", keys, state["numpy_pos"], has_gauss, gauss))
        torch.set_rng_state(state["torch"])


class TimeSnapshots(pl.Callback):
    """Save ``dirpath/minute-<m>.ckpt`` when the training time (the ``Timer``'s count
    with ``trainer.max_time``, which a resumed run carries on; else the wall time since
    this fit started) first reaches each of ``minutes``, so one run gives the model it
    had at several budgets. A snapshot already on disk is not written again."""

    def __init__(self, dirpath: str | Path, minutes: list[float]) -> None:
        self.dirpath = Path(dirpath)
        self.minutes = sorted(float(m) for m in minutes)
        self._start: float | None = None

    @staticmethod
    def name(minutes: float) -> str:
        """``minute-5.ckpt`` for 5, ``minute-2.5.ckpt`` for 2.5."""
        return f"minute-{minutes:g}.ckpt"

    def elapsed(self, trainer) -> float:
        from lightning.pytorch.callbacks import Timer

        for callback in trainer.callbacks:
            if isinstance(callback, Timer):
                return callback.time_elapsed("train")
        return time.monotonic() - (self._start or time.monotonic())

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, trainer, *args) -> None:
        elapsed = self.elapsed(trainer) / 60
        for minutes in self.minutes:
            path = self.dirpath / self.name(minutes)
            if elapsed >= minutes and not path.exists():
                trainer.save_checkpoint(path)


class RankFingerprint(pl.Callback):
    """In multi-process runs, write every rank's parameter fingerprint to
    ``run_dir/ranks/rank{k}.json`` at the end of fitting (ranks must agree under DDP)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.world_size <= 1:
            return
        digest = hashlib.sha256()
        for name, param in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
        folder = self.run_dir / "ranks"
        folder.mkdir(parents=True, exist_ok=True)
        body = {"rank": trainer.global_rank, "world_size": trainer.world_size,
                "sha256": digest.hexdigest(), "global_step": trainer.global_step}  # fmt: skip
        atomic_write_bytes(folder / f"rank{trainer.global_rank}.json", json.dumps(body).encode())


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: map non-finite floats to ``None``."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
