"""Classifier plots: confusion matrix and sample clips with their predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plotting import as_array, evenly_spaced, frame_image, new_figure, save_figure, value_range


def predicted_classes(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and its probability from ``(n,)`` P(class 1) or ``(n, K)`` probabilities.

    Binary scores predict class 1 when ``p > 0.5``, as :class:`convlstm.metrics`'s accuracy.
    """
    if probs.ndim == 1:
        pred = (probs > 0.5).astype(int)
        return pred, np.where(pred == 1, probs, 1 - probs)
    pred = probs.argmax(axis=1)
    return pred, probs[np.arange(len(probs)), pred]


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str], path: str | Path
) -> Path:
    """Counts (rows = true class, columns = predicted) with each cell's share of its row."""
    m = as_array(matrix, "matrix", 2, "(K, K)")
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(
            f"matrix must have shape (K, K) = ({k}, {k}) for {k} class_names, got {m.shape}"
        )
    size = min(2.8 + 0.55 * k, 14.0)
    fig = new_figure(size + 1.0, size)
    ax = fig.subplots()
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of true class", shrink=0.8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{int(m[i, j])}\n{share[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(k), [str(c) for c in class_names], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(c) for c in class_names])
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix")
    return save_figure(fig, path)


def plot_clip_predictions(
    clips: Any,
    probs: Any,
    labels: Any,
    class_names: Sequence[str],
    path: str | Path,
    frames_per_clip: int = 4,
    cmap: str = "gray",
) -> Path:
    """A row of evenly spaced frames per clip, titled with the true label and the predicted
    class with its probability (green when right, red when wrong).

    Args:
        clips: ``(n, T, C, H, W)`` frames; ``C == 3`` is shown as RGB, else channel 0.
        probs: ``(n,)`` probability of class 1 (binary) or ``(n, K)`` class probabilities.
        labels: ``(n,)`` true class indices.
    """
    x = as_array(clips, "clips", 5, "(n, T, C, H, W)")
    p = as_array(probs, "probs", (1, 2), "(n,) or (n, K)")
    y = as_array(labels, "labels", 1, "(n,)").astype(int)
    n = x.shape[0]
    if p.shape[0] != n or y.shape[0] != n:
        raise ValueError(
            f"clips, probs and labels must hold the same n samples, got clips "
            f"{x.shape}, probs {p.shape} and labels {y.shape}"
        )
    k = p.shape[1] if p.ndim == 2 else 2
    bad_labels = sorted({int(v) for v in y if not 0 <= v < len(class_names)})
    if len(class_names) < k or bad_labels:
        raise ValueError(
            f"class_names must name all {k} classes and every label, got {len(class_names)} "
            f"names; labels without a name: {bad_labels}"
        )
    pred, confidence = predicted_classes(p)
    frames = evenly_spaced(x.shape[1], frames_per_clip)
    fig = new_figure(1.9 * len(frames) + 0.4, 2.3 * n)
    for sub, clip, truth, guess, conf in zip(
        np.atleast_1d(fig.subfigures(n, 1)), x, y, pred, confidence
    ):
        vmin, vmax = value_range(clip)
        verdict = "right" if guess == truth else "wrong"
        sub.suptitle(
            f"true: {class_names[truth]}  |  predicted: {class_names[guess]} "
            f"(p = {conf:.2f}, {verdict})",
            color="forestgreen" if guess == truth else "crimson",
            fontsize=10,
        )
        for ax, t in zip(np.atleast_1d(sub.subplots(1, len(frames))), frames):
            ax.imshow(frame_image(clip[t], vmin, vmax), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"t = {t}", fontsize=8)
    return save_figure(fig, path)
