"""Attention maps over sample clips, for models that return them.

A model has attention when its ``forward`` takes ``return_attention`` and then returns
``(output, maps)`` with a non-empty dict (``ClipClassifier`` with ``attention=...``, the
encoder-forecaster). Maps are recognised by shape:

- spatial ``(B, T, 1, *S)``: one map per frame;
- temporal ``(B, T)`` (one weight per step) or ``(B, T_out, T_in)`` (weights of each
  forecast step over the encoder steps), or any key ending in ``temporal``;
- self-attention memory ``(B, T, N, N_k)``: summarised as the attention each key
  position receives, averaged over the queries, ``(B, T, N_k)``, reshaped to a grid of
  the frame's aspect ratio when one fits.

Per map the result keeps the (small) maps of the sample clips and their mean normalised
entropy (1 = uniform attention, 0 = all weight on one position or step).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checks import check_int
from ..reports.frames import plot_attention_overlays
from ..reports.plotting import new_figure, save_figure
from ._common import eval_mode, first_batch, model_device


def _entropy(weights: torch.Tensor) -> float:
    """Mean entropy of distributions over the last axis, divided by ``log(n)``."""
    n = weights.shape[-1]
    if n < 2:
        return 0.0
    p = weights.clamp_min(0)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
    return float(entropy.mean() / math.log(n))


def _grid(n: int, frame: tuple[int, int]) -> tuple[int, int] | None:
    """``(h, w)`` with ``h * w == n`` and the aspect ratio of ``frame``, if one exists."""
    scale = math.sqrt(frame[0] * frame[1] / n)
    h, w = round(frame[0] / scale), round(frame[1] / scale)
    return (h, w) if h * w == n else None


def attention_maps(model: nn.Module, loader: Any, *, num_samples: int = 4) -> dict[str, Any]:
    """The attention maps of ``model`` on the first ``num_samples`` clips of ``loader``.

    Args:
        loader: a loader, a batch ``(x, y)`` or clips ``(B, T, C, *S)``.
        num_samples: clips to show.

    Returns:
        ``{"available": False, "reason"}`` without attention; else ``{"available": True,
        "labels", "maps": {key: {"kind", "maps", "entropy"}}, "_frames"}`` where
        ``_frames`` holds the clips for plotting (not written to the JSON).
    """
    check_int("num_samples", num_samples)
    forward = getattr(model, "forward", None)
    if forward is None or "return_attention" not in inspect.signature(forward).parameters:
        return {"available": False, "reason": "the model's forward takes no return_attention"}
    x, y = first_batch(loader)
    x = x[:num_samples].float().to(model_device(model))
    with torch.no_grad(), eval_mode(model):
        out = model(x, return_attention=True)
    maps = out[1] if isinstance(out, tuple) and len(out) > 1 else {}
    if not isinstance(maps, dict) or not maps:
        return {"available": False, "reason": "the model returned no attention maps"}
    frame = tuple(x.shape[3:])
    entries = {
        key: _summarise(key, value, x.shape[0], frame)
        for key, value in maps.items()
        if isinstance(value, torch.Tensor)
    }
    labels = None
    if y is not None and y.dim() == 1:
        labels = y[:num_samples].tolist()
    return {"available": True, "labels": labels, "maps": entries,
            "_frames": x.detach().cpu().numpy()}  # fmt: skip


def _summarise(key: str, value: torch.Tensor, batch: int, frame: tuple[int, ...]) -> dict:
    """Recognise one attention entry by its key and shape (see the module docstring)."""
    v = value.detach().float().cpu()
    entry: dict[str, Any] = {"shape": list(v.shape)}
    if v.shape[0] != batch:
        return {**entry, "kind": "other", "maps": None, "entropy": None}
    if key.endswith("temporal") or v.dim() == 2:
        return {**entry, "kind": "temporal", "maps": v.numpy(), "entropy": _entropy(v)}
    if v.dim() == 5 and v.shape[2] == 1:
        return {**entry, "kind": "spatial", "maps": v[:, :, 0].numpy(),
                "entropy": _entropy(v.flatten(2))}  # fmt: skip
    if v.dim() == 4:
        received = v.mean(dim=2)
        grid = _grid(received.shape[-1], frame) if len(frame) == 2 else None
        maps = received.unflatten(-1, grid) if grid else received
        return {**entry, "kind": "self-attention", "maps": maps.numpy(), "entropy": _entropy(v)}
    return {**entry, "kind": "other", "maps": None, "entropy": None}


def plot_attention(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Overlays of spatial (and self-attention) maps on the sample clips and a plot of the
    temporal weights; returns the written PNG paths (none without attention)."""
    if not result.get("available"):
        return []
    out_dir = Path(out_dir)
    frames = result.get("_frames")
    paths: list[Path] = []
    temporal = {k: v for k, v in result["maps"].items() if v["kind"] == "temporal"}
    for key, entry in result["maps"].items():
        maps = None if entry["maps"] is None else np.asarray(entry["maps"])
        overlay = entry["kind"] in ("spatial", "self-attention") and frames is not None
        if overlay and maps.ndim == 4 and frames.ndim == 5 and maps.shape[:2] == frames.shape[:2]:
            name = key.replace(".", "_").replace("/", "_")
            paths.append(plot_attention_overlays(frames, maps, out_dir / f"attn_{name}.png"))
    if temporal:
        fig = new_figure(6, 3.2)
        ax = fig.subplots()
        for key, entry in temporal.items():
            weights = np.asarray(entry["maps"])
            if weights.ndim == 3:  # (B, T_out, T_in): mean over the forecast steps
                weights = weights.mean(axis=1)
            for s, row in enumerate(weights):
                ax.plot(range(len(row)), row, marker="o", ms=3, label=f"{key} · clip {s}")
        ax.set(xlabel="time step t", ylabel="weight", title="Temporal attention")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, out_dir / "attn_temporal.png"))
    return paths


__all__ = ["attention_maps", "plot_attention"]
