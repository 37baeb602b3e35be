"""Spatial receptive field: analytic (kernels, dilations, strides, pooling, recurrence)
and empirical (input gradients of a centre unit), with warnings against an object scale.

Analytic, per spatial stage in execution order, with ``r`` the receptive field in input
pixels and ``j`` the jump (input pixels between neighbouring units)::

    convolution / pooling:  r += (dilation * (kernel - 1)) * j;   j *= stride

A ConvLSTM cell's input path is such a convolution. Its recurrent path is a "same"
convolution with the same kernel ``k`` on its own output grid, so every recurrent step
widens the field by ``(k - 1) * j_out``: the last state of a single ConvLSTM layer over
``T`` steps sees ``r_step + (T - 1) (k - 1) j_out`` pixels. In a stack, a path from the
first frame to the last state makes at most ``T - 1`` recurrent hops in total (spread over
the layers), so ``r_T = r_step + (T - 1) * max_l (k_l - 1) j_l`` over the layers so far.
Self-attention memory (SAM) and softmax spatial attention mix all positions: marked
``global``. The empirical field is where the input gradient of the centre unit of the
last step is non-zero; it is cut by the frame border, and it also shows the effective
field (the central 95 % of the gradient mass), usually much smaller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn.attention import SpatialAttention, TemporalAttention
from ..nn.layer import ConvLSTMNd
from ..nn.sam import SelfAttentionMemory
from ..reports.plotting import new_figure, save_figure
from ._common import StepRecorder, eval_mode, first_batch, model_device

#: Warn when the receptive field is below ``SMALL`` or above ``LARGE`` times the object.
SMALL, LARGE = 0.5, 4.0
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ATTENTION = (SpatialAttention, TemporalAttention, SelfAttentionMemory)


def _tuple(value: Any, ndim: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * ndim


def _trace(model: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """Spatial stages (convolutions, poolings, ConvLSTM layers) in the order they first run,
    skipping the scoring networks inside attention modules; plus notes on attention."""
    skip: set[int] = set()
    notes: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, (*_ATTENTION, ConvLSTMNd)):
            skip.update(id(m) for m in module.modules() if m is not module)
        if isinstance(module, SpatialAttention) and module.mode == "softmax":
            notes.append(f"{name}: softmax spatial attention normalises over all positions")
        if isinstance(module, nn.RNNBase):
            notes.append(f"{name}: {type(module).__name__} over pooled vectors: no spatial field")
    order: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (*_CONV, *_POOL, ConvLSTMNd)) and id(module) not in skip:

            def hook(mod, args, name=name):
                if id(mod) not in seen:
                    seen.add(id(mod))
                    order.append((name, mod))

            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return order, notes


def analytic_receptive_field(
    model: nn.Module, input_shape: tuple[int, ...] | torch.Size
) -> dict[str, Any]:
    """The analytic receptive field of every spatial stage of ``model``.

    Args:
        input_shape: one clip's shape ``(T, C, *S)``.

    Returns:
        ``{"input_size", "steps", "stages": [...], "notes"}``; each stage has ``name``,
        ``kind`` (``conv``, ``pool``, ``convlstm``), ``kernel``, ``stride``, ``dilation``,
        ``rf`` (single step, per spatial dim), ``jump``, ``growth_per_step`` and
        ``rf_over_time`` (after ``T`` steps), and ``global`` (attention over all positions).
    """
    if len(input_shape) < 3:
        raise ValueError(f"input_shape must be one clip's (T, C, *S), got {tuple(input_shape)}")
    steps, size = int(input_shape[0]), tuple(int(s) for s in input_shape[2:])
    ndim = len(size)
    x = torch.zeros(1, *input_shape, device=model_device(model))
    order, notes = _trace(model, x)
    rf, jump, growth = np.ones(ndim), np.ones(ndim), np.zeros(ndim)
    is_global = False
    stages: list[dict[str, Any]] = []

    def add(name: str, kind: str, kernel, stride, dilation) -> None:
        nonlocal rf, jump
        k, s, d = (np.array(_tuple(v, ndim), float) for v in (kernel, stride, dilation))
        rf = rf + d * (k - 1) * jump
        jump = jump * s
        as_list = {"kernel": k, "stride": s, "dilation": d}
        stages.append({"name": name, "kind": kind,
                       **{key: v.astype(int).tolist() for key, v in as_list.items()}})  # fmt: skip

    for name, module in order:
        if isinstance(module, ConvLSTMNd):
            for layer in range(module.num_layers):
                cell = module.cell(layer)
                add(f"{name}.cells.{layer * module.num_directions}", "convlstm",
                    cell.kernel_size, cell.stride, cell.dilation)  # fmt: skip
                growth = np.maximum(growth, (np.array(cell.kernel_size) - 1) * jump)
                is_global = is_global or cell.attention is not None
                stages[-1]["recurrent_kernel"] = list(cell.kernel_size)
                _finish(stages[-1], rf, jump, growth, steps, is_global)
            continue
        kind = "conv" if isinstance(module, _CONV) else "pool"
        dilation = getattr(module, "dilation", 1) if kind == "conv" else 1
        stride = module.stride if module.stride is not None else module.kernel_size
        add(name, kind, module.kernel_size, stride, dilation)
        _finish(stages[-1], rf, jump, growth, steps, is_global)
    if is_global:
        notes.append("self-attention memory: every state position attends to all others")
    return {"input_size": list(size), "steps": steps, "stages": stages, "notes": notes}


def _finish(stage: dict, rf, jump, growth, steps: int, is_global: bool) -> None:
    stage.update(
        rf=rf.astype(int).tolist(),
        jump=jump.astype(int).tolist(),
        growth_per_step=growth.astype(int).tolist(),
        rf_over_time=(rf + (steps - 1) * growth).astype(int).tolist(),
        **{"global": is_global},
    )


def _extent(mask: np.ndarray) -> list[int]:
    """Bounding-box side of the True entries along every axis (0 when none)."""
    sides = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        sides.append(int(hit[-1] - hit[0] + 1) if hit.size else 0)
    return sides


def _effective(magnitude: np.ndarray, mass: float = 0.95) -> list[int]:
    """Per axis, the width of the central interval holding ``mass`` of the gradient."""
    sides = []
    total = magnitude.sum()
    for axis in range(magnitude.ndim):
        other = tuple(a for a in range(magnitude.ndim) if a != axis)
        cdf = np.cumsum(magnitude.sum(axis=other)) / total if total > 0 else None
        if cdf is None:
            sides.append(0)
            continue
        lo = int(np.searchsorted(cdf, (1 - mass) / 2))
        hi = int(np.searchsorted(cdf, 1 - (1 - mass) / 2))
        sides.append(hi - lo + 1)
    return sides


def empirical_receptive_field(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Where the centre unit of each ConvLSTM cell's last state (or, without cells, of the
    last convolution's output for the last frame) depends on the input.

    Args:
        x: ``(B, T, C, *S)`` clips (a few real samples); gradients are summed over them.

    Returns:
        ``{probe: {"support", "effective", "support_by_frame", "map"}}``: the side of the
        non-zero gradient region per spatial dim (union over frames), the 95 % mass width,
        the support side per input frame ``t`` (0 where the frame does not matter) and the
        gradient magnitude summed over frames ``(*S)``.
    """
    device = model_device(model)
    x = x.detach().float().to(device)
    recorder = StepRecorder(model)
    conv_out: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda mod, a, out: conv_out.append(out))
        for m in model.modules()
        if isinstance(m, _CONV)
    ]
    probes: dict[str, torch.Tensor] = {}
    try:
        with eval_mode(model), recorder:
            x = x.requires_grad_(True)
            model(x)
            for info in recorder.cells:
                steps = recorder.steps(info.name)
                if steps:
                    probes[info.name] = steps[-1].state[0]
            if not probes and conv_out:
                out = conv_out[-1]
                steps = out.shape[0] // x.shape[0]
                probes["last convolution"] = out.unflatten(0, (x.shape[0], steps))[:, -1]
            result = {}
            for name, h in probes.items():
                centre = tuple(s // 2 for s in h.shape[2:])
                unit = h[(slice(None), slice(None), *centre)].sum()
                (grad,) = torch.autograd.grad(unit, x, retain_graph=True, allow_unused=True)
                result[name] = _summarise(grad, x)
    finally:
        for handle in handles:
            handle.remove()
    return result


def _summarise(grad: torch.Tensor | None, x: torch.Tensor) -> dict[str, Any]:
    if grad is None:
        zero = [0] * (x.dim() - 3)
        return {"support": zero, "effective": zero, "support_by_frame": [], "map": []}
    magnitude = grad.detach().abs().sum(dim=(0, 2)).cpu().double().numpy()  # (T, *S)
    mask = magnitude > 1e-10 * max(magnitude.max(), 1e-300)
    union = magnitude.sum(axis=0)
    return {
        "support": _extent(mask.any(axis=0)),
        "effective": _effective(union),
        "support_by_frame": [max(_extent(m)) for m in mask],
        "map": union.tolist(),
    }


def receptive_field(
    model: nn.Module, sample: Any, *, object_scale: float | None = None
) -> dict[str, Any]:
    """Analytic and empirical receptive fields, and warnings against ``object_scale``.

    Args:
        sample: a clip batch ``(B, T, C, *S)``, a loader batch ``(x, y)``, or a loader
            (its first batch is used; at most 4 clips).
        object_scale: the size in pixels of the objects (or motions) that matter, if known.

    Returns:
        ``analytic_receptive_field`` plus ``"empirical"``, ``"object_scale"`` and
        ``"warnings"`` (a list of sentences).
    """
    if object_scale is not None and (
        not isinstance(object_scale, (int, float)) or isinstance(object_scale, bool)
        or object_scale <= 0
    ):  # fmt: skip
        raise ValueError(f"object_scale must be a positive number of pixels, got {object_scale!r}")
    x = first_batch(sample)[0][:4]
    result = analytic_receptive_field(model, tuple(x.shape[1:]))
    result["empirical"] = empirical_receptive_field(model, x)
    result["object_scale"] = object_scale
    result["warnings"] = _warnings(result, object_scale)
    return result


def _warnings(result: dict[str, Any], scale: float | None) -> list[str]:
    stages = result["stages"]
    size, steps = result["input_size"], result["steps"]
    if not stages:
        return ["no spatial stage found: the model has no convolution or ConvLSTM layer"]
    last = stages[-1]
    rf, rf_t = min(last["rf"]), min(last["rf_over_time"])
    out = []
    if scale is not None:
        if rf_t < SMALL * scale and not last["global"]:
            out.append(
                f"receptive field far smaller than the object: {last['name']} sees {rf_t} px "
                f"even after {steps} steps ({rf} px within one frame), the object is "
                f"{scale:g} px; add layers, pooling or dilation, or larger kernels"
            )
        elif rf < SMALL * scale:
            out.append(
                f"within one frame {last['name']} sees only {rf} px of a {scale:g} px object; "
                f"only the recurrence (to {rf_t} px over {steps} steps) joins its parts"
            )
        if rf > LARGE * scale:
            out.append(
                f"receptive field far larger than the object: {last['name']} sees {rf} px per "
                f"frame for a {scale:g} px object; features mix the object with its "
                "surroundings (fewer pooling stages or smaller kernels localise better)"
            )
    if rf_t > 2 * max(size):
        out.append(
            f"after {steps} steps {last['name']} spans {rf_t} px, over twice the "
            f"{max(size)} px frame: most of it is zero padding"
        )
    return out


def plot_receptive_field(result: dict[str, Any], path: str | Path) -> Path:
    """Analytic field per stage (one step and after ``T`` steps, with the frame size) and
    each probe's input-gradient map with its support per frame."""
    probes = {k: v for k, v in result["empirical"].items() if np.asarray(v["map"]).ndim == 2}
    fig = new_figure(4.5 + 3.2 * max(1, len(probes)), 4.0)
    axes = np.atleast_1d(fig.subplots(1, 1 + max(1, len(probes)), squeeze=False)).ravel()
    stages = result["stages"]
    names = [s["name"] for s in stages]
    axes[0].plot(names, [max(s["rf"]) for s in stages], marker="o", label="one step")
    axes[0].plot(names, [max(s["rf_over_time"]) for s in stages], marker="s",
                 label=f"after {result['steps']} steps")  # fmt: skip
    axes[0].axhline(max(result["input_size"]), color="grey", ls="--", label="frame size")
    if result.get("object_scale"):
        axes[0].axhline(result["object_scale"], color="tab:red", ls=":", label="object scale")
    axes[0].set_yscale("log")
    axes[0].tick_params(axis="x", labelrotation=60, labelsize=7)
    axes[0].set(ylabel="receptive field (px)", title="Analytic receptive field")
    axes[0].legend(fontsize=7)
    for ax, (name, probe) in zip(axes[1:], probes.items()):
        image = ax.imshow(np.asarray(probe["map"]), cmap="viridis")
        fig.colorbar(image, ax=ax, shrink=0.7, label="|d unit / d x|")
        ax.set_title(f"{name}\nsupport {probe['support']}, 95% {probe['effective']}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if not probes:
        axes[1].set_axis_off()
    return save_figure(fig, path)


__all__ = ["analytic_receptive_field", "empirical_receptive_field", "plot_receptive_field",
           "receptive_field"]  # fmt: skip
