"""Nowcasting baselines a learnt nowcaster has to beat, on rain rates in mm/h.

* ``persistence``: the last observed frame, repeated.
* ``optical_flow``: pysteps' Lucas-Kanade optical flow on the last ``frames`` inputs
  (in dBR, as pysteps' examples do) and semi-Lagrangian extrapolation of the last
  frame along it (``pip install 'convlstm[radar]'``). Rain advected in from outside the
  frame is unknown and taken as dry.
* ``sprog``: pysteps' S-PROG (Seed 2003): the same motion, the last three inputs in dBR
  decomposed into a cascade of spatial scales, each scale extrapolated with an AR(2)
  model fitted on the inputs (so the scales that lose their predictability fade), then
  probability-matched to the last input's distribution.

All take inputs ``(B, T_in, 1, H, W)`` and return forecasts ``(B, T_out, 1, H, W)``
(tensors, float32, mm/h), so that they run on exactly the windows a model is evaluated
on::

    from convlstm.models.nowcasting_baselines import baseline_forecast
    flow = baseline_forecast("optical_flow", inputs, output_frames=12)
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data.radar_files import pysteps_module


def _check_inputs(inputs: torch.Tensor, output_frames: int) -> None:
    if inputs.dim() != 5 or inputs.shape[2] != 1 or inputs.shape[1] < 1:
        raise ValueError(
            f"nowcasting baselines take rain rates (B, T_in, 1, H, W), got shape "
            f"{tuple(inputs.shape)}"
        )
    if not isinstance(output_frames, int) or output_frames < 1:
        raise ValueError(f"output_frames must be an int >= 1, got {output_frames!r}")


def persistence(inputs: torch.Tensor, output_frames: int) -> torch.Tensor:
    """The last input frame for every lead time: ``(B, T_in, 1, H, W) -> (B, T_out, 1, H, W)``."""
    _check_inputs(inputs, output_frames)
    last = inputs[:, -1:].float()
    return last.expand(-1, output_frames, -1, -1, -1).clone()


class OpticalFlowExtrapolation:
    """Lucas-Kanade optical flow and semi-Lagrangian extrapolation (pysteps).

    The motion field comes from the last ``frames`` inputs turned into dBR
    (``10 log10 R``; rain below ``threshold`` mm/h set to ``zerovalue`` dB, as pysteps'
    examples do); the last input is then moved along it, step by step, for
    ``output_frames`` steps. ``lk_options`` go to ``pysteps.motion.lucaskanade
    .dense_lucaskanade``.

    Args:
        frames: inputs used for the motion field (at least 2). Default 4.
        threshold: mm/h. Default 0.1.
        zerovalue: dBR of dry pixels. Default -15.
        lk_options: extra options of ``dense_lucaskanade``.
    """

    def __init__(
        self,
        frames: int = 4,
        threshold: float = 0.1,
        zerovalue: float = -15.0,
        lk_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(frames, int) or frames < 2:
            raise ValueError(f"frames must be an int >= 2 (a motion needs two), got {frames!r}")
        self.frames, self.threshold, self.zerovalue = frames, float(threshold), float(zerovalue)
        self.lk_options = dict(lk_options or {})

    def to_dbr(self, rain: np.ndarray) -> np.ndarray:
        """``10 log10 R`` of mm/h, with rain below ``threshold`` (and NaN) at ``zerovalue``."""
        rain = np.nan_to_num(np.asarray(rain, dtype=np.float64), nan=0.0)
        with np.errstate(divide="ignore"):
            return np.where(rain >= self.threshold, 10.0 * np.log10(np.maximum(rain, 1e-12)),
                            self.zerovalue)  # fmt: skip

    def motion(self, rain: np.ndarray) -> np.ndarray:
        """The advection field ``(2, H, W)`` (x and y, pixels per step) of ``(T, H, W)`` mm/h."""
        lucaskanade = pysteps_module("motion.lucaskanade")
        dbr = self.to_dbr(rain)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OpenCV/pysteps chatter on featureless frames
            return lucaskanade.dense_lucaskanade(dbr, verbose=False, **self.lk_options)

    def extrapolate(self, last: np.ndarray, velocity: np.ndarray, steps: int) -> np.ndarray:
        """``last`` ``(H, W)`` moved along ``velocity`` for 1 .. ``steps`` steps."""
        semilagrangian = pysteps_module("extrapolation.semilagrangian")
        last = np.nan_to_num(np.asarray(last, dtype=np.float64), nan=0.0)
        out = semilagrangian.extrapolate(last, velocity, steps, outval=0.0)
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, None)

    def __call__(self, inputs: torch.Tensor, output_frames: int) -> torch.Tensor:
        _check_inputs(inputs, output_frames)
        if inputs.shape[1] < 2:
            raise ValueError("optical flow needs at least 2 input frames, got 1")
        rain = inputs[:, -self.frames :, 0].detach().double().cpu().numpy()
        forecasts = []
        for sample in rain:
            if not np.any(sample >= self.threshold):  # nothing to track: nothing moves
                forecasts.append(np.repeat(sample[-1:], output_frames, axis=0))
                continue
            velocity = self.motion(sample)
            forecasts.append(self.extrapolate(sample[-1], velocity, output_frames))
        stacked = np.stack(forecasts)[:, :, None].astype(np.float32)
        return torch.from_numpy(stacked).to(inputs.device)


class SPROG(OpticalFlowExtrapolation):
    """pysteps' S-PROG nowcast (Seed 2003) on the optical flow's motion field.

    The last ``ar_order + 1`` inputs, in dBR, are decomposed into ``cascade_levels``
    spatial scales; each is advected and evolved with an AR model fitted to the inputs,
    so small scales that decorrelate within minutes are smoothed away, and the result is
    matched to the last input's rain distribution (``probmatching_method="cdf"``).

    Args:
        frames, threshold, zerovalue, lk_options: as :class:`OpticalFlowExtrapolation`.
        cascade_levels: scales of the cascade. Default 6 (pysteps' default).
        ar_order: order of the AR model per scale. Default 2.
    """

    def __init__(self, frames: int = 4, threshold: float = 0.1, zerovalue: float = -15.0,
                 lk_options: dict[str, Any] | None = None, cascade_levels: int = 6,
                 ar_order: int = 2) -> None:  # fmt: skip
        super().__init__(frames, threshold, zerovalue, lk_options)
        if not isinstance(ar_order, int) or not 1 <= ar_order < frames:
            raise ValueError(f"ar_order must be an int in [1, frames - 1], got {ar_order!r}")
        if not isinstance(cascade_levels, int) or cascade_levels < 1:
            raise ValueError(f"cascade_levels must be an int >= 1, got {cascade_levels!r}")
        self.cascade_levels, self.ar_order = cascade_levels, ar_order

    def __call__(self, inputs: torch.Tensor, output_frames: int) -> torch.Tensor:
        _check_inputs(inputs, output_frames)
        if inputs.shape[1] < self.ar_order + 1:
            raise ValueError(
                f"S-PROG with ar_order={self.ar_order} needs {self.ar_order + 1} input frames, "
                f"got {inputs.shape[1]}"
            )
        rain = np.nan_to_num(inputs[:, -self.frames :, 0].detach().double().cpu().numpy())
        db_threshold = 10.0 * np.log10(self.threshold)
        forecasts = []
        for sample in rain:
            wet = sample >= self.threshold
            if not wet.any():  # nothing to track: nothing moves
                forecasts.append(np.repeat(sample[-1:], output_frames, axis=0))
                continue
            velocity = self.motion(sample)
            out = None
            # S-PROG fits its AR model on each of these inputs; a dry one has no scales
            # to fit, so the forecast is the optical flow's extrapolation
            if wet[-self.ar_order - 1 :].any(axis=(1, 2)).all():
                out = sprog_fields(
                    self.to_dbr(sample), velocity, output_frames,
                    precip_thr=db_threshold, cascade_levels=self.cascade_levels,
                    ar_order=self.ar_order, probmatching="cdf",
                )  # fmt: skip
            if out is None:  # a dry input, or inputs too alike for the AR fit
                forecasts.append(self.extrapolate(sample[-1], velocity, output_frames))
                continue
            out = np.nan_to_num(np.asarray(out, dtype=np.float64), nan=self.zerovalue)
            rate = np.where(out >= db_threshold, 10.0 ** (out / 10.0), 0.0)
            forecasts.append(rate)
        stacked = np.stack(forecasts)[:, :, None].astype(np.float32)
        return torch.from_numpy(stacked).to(inputs.device)


def sprog_fields(
    fields: np.ndarray, velocity: np.ndarray, steps: int, *, precip_thr: float,
    cascade_levels: int, ar_order: int, probmatching: str | None,
) -> np.ndarray | None:  # fmt: skip
    """pysteps' S-PROG forecast ``(steps, H, W)`` of the last ``ar_order + 1`` ``fields``
    ``(T, H, W)`` along ``velocity`` ``(2, H, W)`` (x then y, pixels per step), without
    pysteps' printing; ``None`` where the AR fit is singular (inputs too alike: rain that
    neither moves nor changes)."""
    sprog = pysteps_module("nowcasts.sprog")
    # pysteps prints its parameters and progress for every forecast
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return sprog.forecast(
                fields[-ar_order - 1 :], np.ascontiguousarray(velocity), steps,
                precip_thr=precip_thr, n_cascade_levels=cascade_levels, ar_order=ar_order,
                probmatching_method=probmatching,
            )  # fmt: skip
        except np.linalg.LinAlgError:
            return None


Baseline = Callable[[torch.Tensor, int], torch.Tensor]
BASELINES: dict[str, Callable[[], Baseline]] = {
    "persistence": lambda: persistence,
    "optical_flow": OpticalFlowExtrapolation,
    "sprog": SPROG,
}


def list_baselines() -> list[str]:
    """Names of the nowcasting baselines."""
    return sorted(BASELINES)


def get_baseline(name: str, **options: Any) -> Baseline:
    """The baseline ``name`` (see :func:`list_baselines`), built with ``options``."""
    if name not in BASELINES:
        raise KeyError(f"unknown baseline {name!r}; known baselines: {', '.join(list_baselines())}")
    if name == "persistence":
        if options:
            raise TypeError(f"the persistence baseline takes no options, got {sorted(options)}")
        return persistence
    return BASELINES[name](**options)


def baseline_forecast(
    name: str, inputs: torch.Tensor, output_frames: int, **options: Any
) -> torch.Tensor:
    """Forecast ``output_frames`` frames of rain rate after ``inputs`` with a baseline."""
    return get_baseline(name, **options)(inputs, output_frames)
