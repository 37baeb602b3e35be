"""Gate statistics: how open the input, forget and output gates are, and the cell state.

The core layer does not expose its gates, so ``recompute_step`` re-runs one recorded
step with the cell's own weights and plan, exactly as ``ConvLSTMCellNd.step`` and
``functional.lstm_pointwise`` compute it, and returns every intermediate. The tests
check that its ``h`` and ``c`` equal what the layer returned.

A gate is *saturated* below 0.05 or above 0.95: there its sigmoid passes almost no
gradient, and a forget gate stuck near 1 (or 0) makes the cell a pure memory (or a
pure feed-forward unit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_int
from ..nn.cell import ConvLSTMCellNd, StepPlan
from ..nn.functional import lstm_gate_values
from ..reports.plotting import new_figure, save_figure
from ._common import StepRecorder, eval_mode, iter_batches, model_device

SATURATION = (0.05, 0.95)
GATES = {"input": "i", "forget": "f", "output": "o"}


def recompute_step(
    cell: ConvLSTMCellNd,
    x: torch.Tensor,
    state: tuple[torch.Tensor, ...],
    plan: StepPlan,
    weight: torch.Tensor,
    recurrent_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """One step of ``cell`` with every intermediate kept.

    Args: as ``ConvLSTMCellNd.step``: ``x`` an entry of ``cell.prepare_inputs``;
        ``state`` ``(h, c[, m])``, each ``(B, F, *S')``.

    Returns:
        ``{"i", "f", "g", "o", "c", "h"}`` (and ``"m"`` with self-attention memory), each
        ``(B, F, *S')``: the gate activations, the candidate, the new cell and hidden state.
    """
    z = cell.gate_preactivations(x, state[0], plan, weight, recurrent_mask)
    out = lstm_gate_values(z, state[1], **cell.pointwise_options())
    if cell.attention is not None:
        out["h"], out["m"] = cell.attention(out["h"], state[2].to(out["h"].dtype))
    return out


class _GateAccumulator:
    """Running histograms, moments and saturation counts of one cell's gates."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.hist = {g: np.zeros(bins) for g in GATES}
        self.moments = {g: np.zeros(3) for g in GATES}  # count, sum, sum of squares
        self.low = dict.fromkeys(GATES, 0.0)
        self.high = dict.fromkeys(GATES, 0.0)
        self.cell_norm: list[list[float]] = []  # per t: [sum of norms, sum of rms, count]

    def add(self, t: int, step: dict[str, torch.Tensor]) -> None:
        for gate, key in GATES.items():
            values = step[key].detach().float()
            self.hist[gate] += torch.histc(values.clamp(0, 1), self.bins, 0, 1).cpu().numpy()
            total, squares = values.sum().item(), values.square().sum().item()
            self.moments[gate] += [values.numel(), total, squares]
            self.low[gate] += (values < SATURATION[0]).sum().item()
            self.high[gate] += (values > SATURATION[1]).sum().item()
        c = step["c"].detach().float().flatten(1)
        while len(self.cell_norm) <= t:
            self.cell_norm.append([0.0, 0.0, 0])
        row = self.cell_norm[t]
        row[0] += c.norm(dim=1).sum().item()
        row[1] += c.square().mean(dim=1).sqrt().sum().item()
        row[2] += c.shape[0]

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gate in GATES:
            n, total, squares = self.moments[gate]
            mean = total / n
            out[gate] = {
                "mean": mean,
                "std": float(np.sqrt(max(squares / n - mean * mean, 0.0))),
                "saturated": (self.low[gate] + self.high[gate]) / n,
                "below": self.low[gate] / n,
                "above": self.high[gate] / n,
                "histogram": self.hist[gate].astype(int).tolist(),
            }
        out["cell_norm"] = [s / k for s, _, k in self.cell_norm]
        out["cell_rms"] = [r / k for _, r, k in self.cell_norm]
        out["steps"] = len(self.cell_norm)
        return out


@torch.no_grad()
def gate_statistics(model: torch.nn.Module, loader: Any, *, max_batches: int | None = 8,
                    bins: int = 20) -> dict[str, Any]:  # fmt: skip
    """Input, forget and output gate statistics of every ConvLSTM cell of ``model``.

    Args:
        model: any module containing ConvLSTM layers (run in eval mode).
        loader: batches ``(x, y)`` or ``x`` with ``x`` ``(B, T, C, *S)``.
        max_batches: batches to use (``None``: all).
        bins: histogram bins over [0, 1].

    Returns:
        ``{"saturation": [0.05, 0.95], "bin_edges": [...], "layers": {cell: {...}}}``; per
        cell and gate (``"input"``, ``"forget"``, ``"output"``): ``mean``, ``std``, the
        ``saturated`` fraction (``below`` 0.05 plus ``above`` 0.95) and ``histogram``
        counts; ``cell_norm`` and ``cell_rms``: per time step, the L2 norm and the RMS of
        the cell state over channels and positions, averaged over samples. Empty
        ``layers`` (and a ``note``) when the model has no ConvLSTM cell.
    """
    check_int("bins", bins, minimum=2)
    device = model_device(model)
    recorder = StepRecorder(model)
    result: dict[str, Any] = {
        "saturation": list(SATURATION),
        "bin_edges": np.linspace(0, 1, bins + 1).tolist(),
        "layers": {},
    }
    if not recorder.cells:
        result["note"] = "the model has no ConvLSTM cell: no gates to measure"
        return result
    acc = {info.name: _GateAccumulator(bins) for info in recorder.cells}
    with eval_mode(model), recorder:
        for x, _ in iter_batches(loader, max_batches):
            recorder.clear()
            model(x.to(device))
            for info in recorder.cells:
                for t, call in enumerate(recorder.steps(info.name)):
                    args = {k: call.args.get(k) for k in ("x", "state", "plan", "weight")}
                    step = recompute_step(
                        info.cell, recurrent_mask=call.args.get("recurrent_mask"), **args
                    )
                    acc[info.name].add(t, step)
    result["layers"] = {name: a.result() for name, a in acc.items() if a.cell_norm}
    return result


def plot_gate_statistics(result: dict[str, Any], path: str | Path) -> Path:
    """Per cell: gate-activation histograms (saturated fractions in the legend) and the
    cell-state RMS over time. ``result`` is ``gate_statistics``'s output."""
    layers = result.get("layers", {})
    fig = new_figure(10, 2.8 * max(1, len(layers)))
    if not layers:
        fig.text(0.5, 0.5, result.get("note", "no ConvLSTM cell"), ha="center")
        return save_figure(fig, path)
    edges = np.asarray(result["bin_edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    axes = fig.subplots(len(layers), 2, squeeze=False)
    for row, (name, stats) in zip(axes, layers.items()):
        for gate in GATES:
            counts = np.asarray(stats[gate]["histogram"], float)
            share = counts / max(counts.sum(), 1)
            label = f"{gate} (sat. {stats[gate]['saturated']:.0%})"
            row[0].step(centres, share, where="mid", label=label)
        for edge in SATURATION:
            row[0].axvline(edge, color="grey", lw=0.8, ls=":")
        row[0].set(title=f"{name}: gate activations", xlabel="activation", ylabel="share")
        row[0].legend(fontsize=7)
        row[1].plot(range(stats["steps"]), stats["cell_rms"], marker="o", ms=3)
        row[1].set(title=f"{name}: cell state", xlabel="time step t", ylabel="RMS of c_t")
    return save_figure(fig, path)


__all__ = ["GATES", "SATURATION", "gate_statistics", "plot_gate_statistics", "recompute_step"]
