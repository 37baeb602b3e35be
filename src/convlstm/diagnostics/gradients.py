"""Gradient flow through time: how much each time step's state matters to the loss.

For every ConvLSTM cell and step ``t`` this measures ``||dL/dh_t||``, the total gradient
of the loss with respect to the hidden state ``h_t`` (through the layers above *and*
through the recurrence to later steps), as a 2-norm over the batch, channels and
positions, averaged over batches. A readout from the last state gives the largest value
at the last step; a steep decay towards ``t = 0`` is vanishing gradient: early frames
hardly train the network. The same is reported for the model input per frame
(``||dL/dx_t||``, for every model) and for the input sequence of ``nn.LSTM``/``GRU``
layers (the CNN+LSTM baseline). Parameter-gradient norms are grouped per module.

Gradients are taken with ``torch.autograd.grad`` in eval mode: the model's ``.grad``
fields are left untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..reports.plotting import new_figure, save_figure
from ._common import (
    StepRecorder,
    default_loss,
    eval_mode,
    iter_batches,
    model_device,
    model_output,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_step_norms(grad: torch.Tensor | None, like: torch.Tensor, time_dim: int) -> np.ndarray:
    """2-norm of ``grad`` per index of ``time_dim`` (zeros when there is no gradient)."""
    if grad is None:
        return np.zeros(like.shape[time_dim])
    moved = grad.detach().float().movedim(time_dim, 0)
    return moved.flatten(1).norm(dim=1).cpu().numpy()


class _Series:
    """Per-step values averaged over batches (sequences may differ in length)."""

    def __init__(self) -> None:
        self.total: np.ndarray = np.zeros(0)
        self.count: np.ndarray = np.zeros(0)

    def add(self, values: np.ndarray) -> None:
        n = max(len(values), len(self.total))
        self.total = np.pad(self.total, (0, n - len(self.total)))
        self.count = np.pad(self.count, (0, n - len(self.count)))
        self.total[: len(values)] += values
        self.count[: len(values)] += 1

    def mean(self) -> list[float]:
        return (self.total / np.maximum(self.count, 1)).tolist()


def _rnn_inputs(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Forward pre-hooks keeping the input sequence of every ``nn.RNNBase``."""
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.RNNBase):

            def hook(mod, args, name=name):
                if args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
                    captured[name] = args[0]

            handles.append(module.register_forward_pre_hook(hook))
    return captured, handles


def _param_groups(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Trainable parameters grouped by owning module (``layers.0.cells.0``, ``head.0``)."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            owner = name.rsplit(".", 1)[0] if "." in name else "(model)"
            groups.setdefault(owner, []).append((name, param))
    return groups


def gradient_flow(
    model: nn.Module,
    loader: Any,
    *,
    loss_fn: LossFn | None = None,
    max_batches: int | None = 4,
) -> dict[str, Any]:
    """Gradient norms through time and per parameter group, averaged over batches.

    Args:
        model: the network (run in eval mode; its ``.grad`` fields are not touched).
        loader: batches ``(x, y)``: ``x`` ``(B, T, C, *S)`` and targets for ``loss_fn``.
        loss_fn: ``loss_fn(output, y) -> scalar``; default ``default_loss`` (BCE for one
            logit, cross-entropy for ``K`` logits, MSE for frames).
        max_batches: batches to average over (``None``: all).

    Returns:
        ``{"loss", "batches", "hidden": {cell: [||dL/dh_t|| for t]}, "input": [||dL/dx_t||],
        "rnn_input": {module: [...]}, "first_to_last": {cell or "input": ratio},
        "parameters": {group: ||dL/dθ||}, "relative": {group: ||dL/dθ|| / ||θ||}}``.
    """
    loss_fn = loss_fn or default_loss
    device = model_device(model)
    recorder = StepRecorder(model)
    groups = _param_groups(model)
    params = [p for members in groups.values() for _, p in members]
    hidden = {info.name: _Series() for info in recorder.cells}
    rnn: dict[str, _Series] = {}
    inputs, losses = _Series(), []
    param_sq = dict.fromkeys(groups, 0.0)
    captured, handles = _rnn_inputs(model)
    try:
        with eval_mode(model), recorder:
            for x, y in iter_batches(loader, max_batches):
                if y is None:
                    raise ValueError("gradient flow needs targets: batches (x, y)")
                recorder.clear()
                captured.clear()
                x = x.to(device).requires_grad_(True)
                loss = loss_fn(model_output(model(x)), y.to(device))
                states = {n: [c.state[0] for c in recorder.steps(n)] for n in hidden}
                rnn_names = list(captured)
                targets = [x, *(captured[n] for n in rnn_names), *params]
                targets += [h for seq in states.values() for h in seq]
                grads = torch.autograd.grad(loss, targets, allow_unused=True)
                losses.append(loss.item())
                inputs.add(_per_step_norms(grads[0], x, 1))
                pos = 1
                for name in rnn_names:
                    batch_first = getattr(model.get_submodule(name), "batch_first", False)
                    norms = _per_step_norms(grads[pos], captured[name], 1 if batch_first else 0)
                    rnn.setdefault(name, _Series()).add(norms)
                    pos += 1
                for group, members in groups.items():
                    for g in grads[pos : pos + len(members)]:
                        if g is not None:
                            param_sq[group] += g.detach().float().square().sum().item()
                    pos += len(members)
                for name, seq in states.items():
                    norms = [0.0 if g is None else g.detach().float().norm().item()
                             for g in grads[pos : pos + len(seq)]]  # fmt: skip
                    hidden[name].add(np.asarray(norms))
                    pos += len(seq)
    finally:
        for handle in handles:
            handle.remove()
    batches = len(losses)
    result: dict[str, Any] = {
        "loss": float(np.mean(losses)),
        "batches": batches,
        "hidden": {n: s.mean() for n, s in hidden.items() if len(s.total)},
        "input": inputs.mean(),
        "rnn_input": {n: s.mean() for n, s in rnn.items()},
    }
    series = {**result["hidden"], **{f"{k} (input)": v for k, v in result["rnn_input"].items()},
              "input": result["input"]}  # fmt: skip
    result["first_to_last"] = {
        n: (v[0] / v[-1] if v and v[-1] > 0 else None) for n, v in series.items()
    }
    result["parameters"] = {g: float(np.sqrt(v / batches)) for g, v in param_sq.items()}
    result["relative"] = {}
    for group, members in groups.items():
        norm = float(torch.sqrt(sum(p.detach().float().square().sum() for _, p in members)))
        result["relative"][group] = result["parameters"][group] / norm if norm > 0 else None
    return result


def plot_gradient_flow(result: dict[str, Any], path: str | Path) -> Path:
    """``||dL/dh_t||`` against ``t`` per cell (log scale, with the input's ``||dL/dx_t||``)
    and the parameter-gradient norm per module."""
    fig = new_figure(12, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=[1.2, 1])
    curves = {**result["hidden"], **{f"{k} input": v for k, v in result["rnn_input"].items()}}
    for name, values in curves.items():
        left.plot(range(len(values)), np.maximum(values, 1e-30), marker="o", ms=3, label=name)
    if result["input"]:
        values = np.maximum(result["input"], 1e-30)
        left.plot(range(len(values)), values, ls="--", color="grey", label="model input x_t")
    left.set_yscale("log")
    left.set(xlabel="time step t", ylabel="gradient norm", title="||dL/dh_t|| through time")
    left.legend(fontsize=7)
    params = result["parameters"]
    names = list(params)
    right.barh(range(len(names)), [max(params[n], 1e-30) for n in names], color="tab:blue")
    right.set_yticks(range(len(names)), names, fontsize=7)
    right.invert_yaxis()
    right.set_xscale("log")
    right.set(xlabel="||dL/dθ||", title="Parameter gradients per module")
    return save_figure(fig, path)


__all__ = ["gradient_flow", "plot_gradient_flow"]
