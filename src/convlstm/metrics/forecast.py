"""Frame-forecasting metrics: OpenSTL-style MSE/MAE, SSIM, PSNR and nowcasting skill scores.

Per-frame errors and SSIMs are kept as ``(N, T_out)`` ``cat`` states and the nowcasting
contingency counts as ``sum`` states, so under DDP torchmetrics combines all ranks before
:meth:`ForecastMetrics.compute` and the numbers equal those of one process on the whole set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.utilities import dim_zero_cat


def _ratio(num: int, den: int) -> float:
    """``num / den`` with the undefined ``0 / 0`` case returned as ``nan``."""
    return num / den if den else math.nan


def _contingency(pred: Tensor, target: Tensor, threshold: float) -> Tensor:
    """``[hits, misses, false alarms]`` (int64) where an event is ``value >= threshold``."""
    p, t = pred >= threshold, target >= threshold
    return torch.stack([(p & t).sum(), (~p & t).sum(), (p & ~t).sum()])


def _skill(hits: int, misses: int, false_alarms: int) -> dict[str, float]:
    return {
        "csi": _ratio(hits, hits + misses + false_alarms),
        "pod": _ratio(hits, hits + misses),
        "far": _ratio(false_alarms, hits + false_alarms),
    }


def nowcast_scores(pred: Tensor, target: Tensor, threshold: float) -> dict[str, float]:
    """Critical success index, probability of detection and false-alarm ratio at a threshold.

    Args:
        pred, target: tensors of the same (any) shape, e.g. rain rates in mm/h.
        threshold: an event is ``value >= threshold``.

    Returns:
        ``{"hits", "misses", "false_alarms", "csi", "pod", "far"}`` with
        CSI = H / (H + M + F), POD = H / (H + M), FAR = F / (H + F). A ratio whose
        denominator is zero (no event in either tensor for CSI, none observed for POD,
        none forecast for FAR) is ``nan``: the score is undefined, not perfect or zero.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    hits, misses, false_alarms = _contingency(pred, target, float(threshold)).tolist()
    return {
        "hits": hits,
        "misses": misses,
        "false_alarms": false_alarms,
        **_skill(hits, misses, false_alarms),
    }


class ForecastMetrics(Metric):
    """MSE, MAE, SSIM, PSNR, per-lead-time curves and CSI/POD/FAR over a forecast set.

    Args:
        data_range: value range of the frames (``max - min``), used by SSIM and PSNR.
        thresholds: event thresholds for nowcasting scores (e.g. rain rates in mm/h).

    ``update(pred, target)`` takes ``(B, T_out, C, H, W)`` tensors of the same shape.

    ``compute()`` returns python floats and lists (``N`` sequences of ``T_out`` frames):
        * ``mse``, ``mae``: OpenSTL's convention, the per-frame SUM of squared / absolute
          errors over ``C*H*W``, averaged over the ``N*T_out`` frames.
        * ``mse_per_pixel``, ``mae_per_pixel``: plain means over every value
          (``mse == mse_per_pixel * C*H*W``).
        * ``ssim``: mean SSIM of the ``N*T_out`` frames taken as ``C``-channel images
          (torchmetrics' SSIM: 11x11 Gaussian window, sigma 1.5; frames smaller than 11
          pixels use a uniform window of the largest odd size that fits, at least 3).
        * ``psnr``: mean per-frame PSNR ``10*log10(data_range**2 / frame_mse)``; a frame's
          MSE is floored at ``1e-10 * data_range**2`` so perfect frames count 100 dB, not inf.
        * ``mse_per_lead``, ``mae_per_lead`` (per-frame sums, as ``mse``/``mae``) and
          ``ssim_per_lead``: lists of length ``T_out``, lead time 1 first.
        * for each threshold ``thr`` (key suffix ``str(float(thr))``, e.g. ``csi@0.5``):
          ``csi@thr``, ``pod@thr``, ``far@thr`` from hits/misses/false alarms summed over
          the whole set (see :func:`nowcast_scores`; ``0/0`` is ``nan``).
        * with ``last_input`` given to every ``update``: ``baseline_mse_zero`` and
          ``baseline_mse_persistence``, the ``mse`` of two trivial forecasts (all-zero
          frames, and the last input frame repeated), to judge ``mse`` against.
        * ``num_sequences``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        data_range: float = 1.0,
        thresholds: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not data_range > 0:
            raise ValueError(f"data_range must be > 0, got {data_range}")
        self.data_range = float(data_range)
        self.thresholds = [float(t) for t in (thresholds or [])]
        for name in ("frame_se", "frame_ae", "frame_ssim", "frame_psnr", "zero_se", "last_se"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("pixels", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        counts = torch.zeros(len(self.thresholds), 3, dtype=torch.long)
        self.add_state("contingency", default=counts, dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, last_input: Tensor | None = None) -> None:
        """Add a batch of forecasts ``pred`` and truths ``target``, both ``(B, T_out, C, H, W)``;
        ``last_input`` ``(B, C, H, W)``, the last observed frame, adds the baselines."""
        if pred.dim() != 5 or pred.shape != target.shape:
            raise ValueError(
                "pred and target must both have shape (B, T_out, C, H, W), got pred "
                f"{tuple(pred.shape)} and target {tuple(target.shape)}"
            )
        if last_input is not None:
            expected = (target.shape[0], *target.shape[2:])
            if tuple(last_input.shape) != expected:
                raise ValueError(
                    f"last_input must have shape {expected} (B, C, H, W), "
                    f"got {tuple(last_input.shape)}"
                )
            truth = target.detach().float()
            self.zero_se.append(truth.square().sum(dim=(2, 3, 4)).double())
            last = last_input.detach().float().unsqueeze(1)
            self.last_se.append((last - truth).square().sum(dim=(2, 3, 4)).double())
        if self.frame_se and self.frame_se[0].shape[1] != pred.shape[1]:
            raise ValueError(
                f"T_out changed between updates: first {self.frame_se[0].shape[1]}, "
                f"now {pred.shape[1]} (pred {tuple(pred.shape)})"
            )
        pred, target = pred.detach().float(), target.detach().float()
        diff = pred - target
        frame_se = diff.square().sum(dim=(2, 3, 4)).double()
        self.frame_se.append(frame_se)
        self.frame_ae.append(diff.abs().sum(dim=(2, 3, 4)).double())
        self.frame_ssim.append(self._ssim(pred, target).double())
        range2 = self.data_range**2
        frame_mse = (frame_se / diff[0, 0].numel()).clamp_min(1e-10 * range2)
        self.frame_psnr.append(10 * torch.log10(range2 / frame_mse))
        self.pixels += diff.numel()
        for i, thr in enumerate(self.thresholds):
            self.contingency[i] += _contingency(pred, target, thr)

    def _ssim(self, pred: Tensor, target: Tensor) -> Tensor:
        """SSIM per frame, ``(B, T_out)``: Gaussian window (sigma 1.5, 11x11) or, for frames
        smaller than 11 pixels, a uniform window of the largest odd size that fits."""
        b, t, c, h, w = pred.shape
        side = min(h, w)
        if side < 3:
            raise ValueError(f"SSIM needs frames of at least 3x3 pixels, got H={h}, W={w}")
        window = {"gaussian_kernel": True}
        if side < 11:
            window = {"gaussian_kernel": False, "kernel_size": side - (1 - side % 2)}
        values = structural_similarity_index_measure(
            pred.reshape(b * t, c, h, w),
            target.reshape(b * t, c, h, w),
            data_range=self.data_range,
            reduction="none",
            **window,
        )
        return values.reshape(b, t)

    def compute(self) -> dict[str, Any]:
        """All metrics over every sequence seen since the last reset (all ranks under DDP)."""
        if isinstance(self.frame_se, list) and not self.frame_se:
            raise ValueError(
                "ForecastMetrics.compute(): no samples were evaluated (update() was never "
                "called since the last reset); is the evaluation data set or split empty?"
            )
        states = (self.frame_se, self.frame_ae, self.frame_ssim, self.frame_psnr)
        se, ae, ssim, psnr = (dim_zero_cat(s) for s in states)
        out: dict[str, Any] = {
            "num_sequences": int(se.shape[0]),
            "mse": float(se.mean()),
            "mae": float(ae.mean()),
            "mse_per_pixel": float(se.sum() / int(self.pixels)),
            "mae_per_pixel": float(ae.sum() / int(self.pixels)),
            "ssim": float(ssim.mean()),
            "psnr": float(psnr.mean()),
            "mse_per_lead": se.mean(dim=0).tolist(),
            "mae_per_lead": ae.mean(dim=0).tolist(),
            "ssim_per_lead": ssim.mean(dim=0).tolist(),
        }
        zero_se, last_se = (
            dim_zero_cat(s) if not (isinstance(s, list) and not s) else None
            for s in (self.zero_se, self.last_se)
        )
        if zero_se is not None and zero_se.shape == se.shape:
            out["baseline_mse_zero"] = float(zero_se.mean())
            out["baseline_mse_persistence"] = float(last_se.mean())
        for thr, (hits, misses, false_alarms) in zip(self.thresholds, self.contingency.tolist()):
            for name, value in _skill(hits, misses, false_alarms).items():
                out[f"{name}@{thr}"] = value
        return out
