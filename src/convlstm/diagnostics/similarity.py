"""Class feature similarity per layer: where in the network do two classes collapse?

For every feature layer (per-frame CNN features, each ConvLSTM cell's hidden state,
recurrent-layer outputs, the pooled embedding the head classifies) the features of each
sample are pooled to one vector, and per layer:

- ``cosine``: cosine similarity of the class-mean vectors (1 = same direction);
- ``ratio``: between/within-class distance ratio, the mean distance between class means
  over the RMS distance of samples to their class mean (0 = class means coincide;
  large = classes well apart relative to their spread);
- ``pairs``: class pairs ranked from most to least confusable by ``separation``, the
  distance of the two means over the RMS spread of the two classes.

Cosine similarity of raw means is high whenever the features share a common positive
component (after ReLU or max pooling they usually do), so read it together with
``ratio``, which does not have that bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import CNNLSTMClassifier, FrameClassifier
from ..reports.plotting import grid, new_figure, save_figure
from ._common import StepRecorder, eval_mode, finite, iter_batches, model_device

EMBEDDING = "embedding"


def _frame_cnns(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The per-frame CNNs (``cnn``) of the frame-by-frame models, with their module names."""
    return [
        (f"{name}.cnn" if name else "cnn", module.cnn)
        for name, module in model.named_modules()
        if isinstance(module, (CNNLSTMClassifier, FrameClassifier))
    ]


def _pool(x: torch.Tensor, time_axis: bool) -> torch.Tensor:
    """``(B, [T,] F, *S)`` -> ``(B, F)`` by the mean over time and positions."""
    if time_axis:
        x = x.mean(dim=1)
    return x.flatten(2).mean(-1) if x.dim() > 2 else x


class _FeatureHooks:
    """Forward hooks collecting pooled features of the non-ConvLSTM layers of one batch."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.features: dict[str, torch.Tensor] = {}
        self.handles: list[Any] = []
        self.batch = 0

    def __enter__(self) -> _FeatureHooks:
        for name, cnn in _frame_cnns(self.model):
            self.handles.append(cnn.register_forward_hook(self._frames(name)))
        for name, module in self.model.named_modules():
            if isinstance(module, nn.RNNBase):
                self.handles.append(module.register_forward_hook(self._rnn(name, module)))
        head = getattr(self.model, "head", None)
        if isinstance(head, nn.Module):
            self.handles.append(head.register_forward_pre_hook(self._embedding))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()

    def _frames(self, name: str):
        def hook(module, args, out):
            if out.dim() >= 2 and self.batch and out.shape[0] % self.batch == 0:
                steps = out.shape[0] // self.batch
                pooled = _pool(out.reshape(self.batch, steps, *out.shape[1:]), True)
                self.features[f"{name} (per frame)"] = pooled

        return hook

    def _rnn(self, name: str, module: nn.RNNBase):
        def hook(mod, args, out):
            seq = out[0] if isinstance(out, tuple) else out
            if isinstance(seq, torch.Tensor) and seq.dim() == 3:
                self.features[name] = seq.mean(dim=1 if module.batch_first else 0)

        return hook

    def _embedding(self, module, args):
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 2:
            self.features[EMBEDDING] = args[0]


@torch.no_grad()
def collect_features(
    model: nn.Module, loader: Any, *, max_batches: int | None = 8
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled per-sample features of every feature layer, and the labels.

    Returns:
        ``(features, labels)``: ``features`` maps a layer name to ``(N, D)`` (in the order
        the layers run; the pooled embedding is ``"embedding"``), ``labels`` is ``(N,)``.
    """
    device = model_device(model)
    recorder = StepRecorder(model)
    collected: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    with eval_mode(model), recorder, _FeatureHooks(model) as hooks:
        for x, y in iter_batches(loader, max_batches):
            if y is None or y.reshape(-1).shape[0] != x.shape[0] or (
                y.is_floating_point() and not torch.equal(y, y.round())
            ):
                shape = None if y is None else tuple(y.shape)
                raise ValueError(
                    f"class similarity needs one integer class label per clip, (B,) = "
                    f"({x.shape[0]},), as batch targets; got {shape}"
                )
            recorder.clear()
            hooks.features, hooks.batch = {}, x.shape[0]
            model(x.to(device))
            features = {
                info.name: _pool(recorder.hidden_sequence(info.name), True)
                for info in recorder.cells
                if recorder.calls[info.name]
            }
            features = {**hooks.features, **features}
            if EMBEDDING not in features and hasattr(model, "embed"):
                features[EMBEDDING] = model.embed(x.to(device))
            if EMBEDDING in features:  # always last
                features[EMBEDDING] = features.pop(EMBEDDING)
            for name, value in features.items():
                collected.setdefault(name, []).append(value.detach().float().cpu().numpy())
            labels.append(y.reshape(-1).long().cpu().numpy())
    return {k: np.concatenate(v) for k, v in collected.items()}, np.concatenate(labels)


def _ratio(x: np.ndarray, y: np.ndarray, classes: np.ndarray) -> float:
    """Mean distance between class means over the RMS distance to the own class mean."""
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    within = np.sqrt(np.mean(((x - means[np.searchsorted(classes, y)]) ** 2).sum(axis=1)))
    k = len(classes)
    between = np.mean([np.linalg.norm(means[a] - means[b])
                       for a in range(k) for b in range(a + 1, k)])  # fmt: skip
    return float(between / within) if within > 0 else (0.0 if between == 0 else np.inf)


def similarity_from_features(
    features: Any,
    labels: Any,
    class_names: Sequence[str] | None = None,
    *,
    permutations: int = 10,
) -> dict[str, Any]:
    """Class-mean cosine similarity, between/within ratio and ranked pairs of one layer.

    Args:
        features: ``(N, D)`` per-sample features.
        labels: ``(N,)`` integer classes; at least two distinct classes.
        class_names: names indexed by class; default the class indices.
        permutations: label shuffles for ``ratio_chance``.

    Returns:
        ``{"classes", "counts", "cosine" (K x K), "between", "within", "ratio",
        "ratio_chance", "pairs"}``: ``ratio_chance`` is the mean ratio over random
        permutations of the labels (seeded), the level finite samples reach without any
        class structure (about ``sqrt(1/n_a + 1/n_b)`` for two classes); ``pairs`` is a list
        of ``{"pair", "cosine", "distance", "separation"}`` sorted from the most confusable
        (smallest separation) on.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"features must be (N, D) with N = len(labels) = {y.shape[0]}, got {x.shape}"
        )
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(f"need samples of at least 2 classes, got labels {classes.tolist()}")
    names = [str(class_names[c]) if class_names is not None and 0 <= c < len(class_names)
             else str(c) for c in classes.tolist()]  # fmt: skip
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    spread = np.array([((x[y == c] - m) ** 2).sum(axis=1).mean() for c, m in zip(classes, means)])
    norms = np.linalg.norm(means, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = (means @ means.T) / np.outer(norms, norms)
    within = float(np.sqrt(np.mean(((x - means[np.searchsorted(classes, y)]) ** 2).sum(axis=1))))
    pairs, distances = [], []
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            distance = float(np.linalg.norm(means[a] - means[b]))
            scale = float(np.sqrt((spread[a] + spread[b]) / 2))
            separation = distance / scale if scale > 0 else (0.0 if distance == 0 else np.inf)
            distances.append(distance)
            pairs.append({"pair": [names[a], names[b]], "cosine": finite(cosine[a, b]),
                          "distance": distance, "separation": finite(separation)})  # fmt: skip
    pairs.sort(key=lambda p: (np.inf if p["separation"] is None else p["separation"]))
    between = float(np.mean(distances))
    ratio = between / within if within > 0 else (0.0 if between == 0 else np.inf)
    rng = np.random.default_rng(0)
    chance = [_ratio(x, rng.permutation(y), classes) for _ in range(permutations)]
    return {
        "classes": names,
        "counts": [int((y == c).sum()) for c in classes],
        "cosine": [[finite(v) for v in row] for row in cosine],
        "between": between,
        "within": within,
        "ratio": finite(ratio),
        "ratio_chance": finite(np.mean(chance)) if chance else None,
        "pairs": pairs,
    }


def class_similarity(
    model: nn.Module,
    loader: Any,
    *,
    max_batches: int | None = 8,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``similarity_from_features`` for every feature layer of ``model`` on ``loader``.

    Returns:
        ``{"num_samples", "order": [layer names], "layers": {name: {...}}, "collapse"}``;
        ``collapse`` names the layer with the smallest between/within ratio.
    """
    features, labels = collect_features(model, loader, max_batches=max_batches)
    layers = {
        name: {"dim": int(f.shape[1]), **similarity_from_features(f, labels, class_names)}
        for name, f in features.items()
    }
    ratios = {k: v["ratio"] for k, v in layers.items() if v["ratio"] is not None}
    return {
        "num_samples": int(labels.shape[0]),
        "order": list(layers),
        "layers": layers,
        "collapse": min(ratios, key=ratios.get) if ratios else None,
    }


def plot_class_similarity(result: dict[str, Any], path: str | Path) -> Path:
    """One heat map of class-mean cosine similarity per layer (titled with the ratio), and a
    last panel with the between/within ratio per layer against its shuffled-label level:
    the layer where the bar drops to that level is where the classes collapse."""
    layers = result["layers"]
    rows, cols = grid(len(layers) + 1, 3)
    k = max(len(v["classes"]) for v in layers.values())
    side = 2.2 + 0.35 * k
    fig = new_figure(side * cols + 0.8, side * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    image = None
    for ax, (name, layer) in zip(axes, layers.items()):
        matrix = np.array([[np.nan if v is None else v for v in row] for row in layer["cosine"]])
        image = ax.imshow(matrix, cmap="magma", vmin=-1, vmax=1)
        n = len(layer["classes"])
        ax.set_xticks(range(n), layer["classes"], rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(n), layer["classes"], fontsize=7)
        if n <= 8:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if matrix[i, j] > 0.3 else "white")  # fmt: skip
        ratio = layer["ratio"]
        ax.set_title(f"{name}\nratio {ratio:.3g}" if ratio is not None else name, fontsize=8)
    bars = axes[len(layers)]
    names = list(layers)
    ratios = [np.nan if layers[n]["ratio"] is None else layers[n]["ratio"] for n in names]
    chance = [np.nan if layers[n]["ratio_chance"] is None else layers[n]["ratio_chance"]
              for n in names]  # fmt: skip
    bars.bar(range(len(names)), ratios, color="tab:blue", label="between/within")
    bars.scatter(range(len(names)), chance, color="tab:red", marker="_", s=300, zorder=3,
                 label="shuffled labels")  # fmt: skip
    bars.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    bars.set_title("class separation per layer", fontsize=8)
    top = np.nanmax([*ratios, *chance, 1e-6])
    bars.set_ylim(0, 1.35 * top)  # room for the legend above the bars
    bars.legend(fontsize=6, ncols=2, loc="upper left")
    for ax in axes[len(layers) + 1 :]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes[: len(layers)].tolist(), label="cosine of class means",
                     shrink=0.8)  # fmt: skip
    return save_figure(fig, path)


__all__ = ["class_similarity", "collect_features", "plot_class_similarity",
           "similarity_from_features"]  # fmt: skip
