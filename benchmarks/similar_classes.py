"""The similar-classes study: which models and remedies tell two near-identical motions apart?

SimilarMotions, two classes ("gentle": constant speed; "jerky": slightly faster, uneven
steps): the same hand-like object in every clip, so a single frame carries no class
information. Every model gets the same training budget (data, epochs, batch size,
optimiser, learning-rate schedule) and is scored on the same test clips for accuracy,
ROC-AUC and the class similarity of its pooled embedding (``convlstm.diagnostics``).

Models:
    frame          FrameClassifier: per-frame CNN, mean over time (no motion: near chance)
    single-frame   ANTI-PATTERN, defined only here: a CNN on ONE frame whose feature-map
                   rows are fed to an LSTM as if they were time steps
    cnn-lstm       CNNLSTMClassifier: per-frame CNN, globally pooled, LSTM over the frames
    cnn-lstm (flatten)   the same without global pooling: the LSTM reads the whole map
    cnn-lstm (+coords)   the same with coordinate channels (position survives pooling)
    cnn-lstm (+diff)     the same with frame differences as a second input channel
    convlstm       ClipClassifier, plain
    +layer-norm    ClipClassifier(layer_norm=True)
    +res+ms        ClipClassifier(residual=True, multiscale=True)
    +attention     ClipClassifier(attention=["spatial", "temporal"])
    +supcon        ClipClassifier with BCE + 0.5 * supervised contrastive loss on the embedding
    +diff          ClipClassifier(frame_differences=True)
    +attention+diff   ClipClassifier(attention=["spatial", "temporal"], frame_differences=True)

Every model is scored at p > 0.5 and at the threshold that maximises accuracy on a
validation set (tuned on validation, applied to test).

Usage::

    python benchmarks/similar_classes.py --quick      # smoke test, seconds
    python benchmarks/similar_classes.py              # the study (about 40 min, 2 CPU cores)

Results: ``docs/similar_classes.json`` (``benchmarks/results/`` is git-ignored; the quick
mode writes there) and a Markdown table on stdout; see ``docs/similar_classes.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from convlstm.data import SimilarMotions
from convlstm.diagnostics import class_similarity, run_diagnostics
from convlstm.diagnostics._common import to_jsonable
from convlstm.metrics import ClassificationMetrics
from convlstm.models import create_model
from convlstm.models._blocks import FrameCNN, check_clip, make_head
from convlstm.training.objectives import build_objective

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["gentle", "jerky"]


@dataclass(frozen=True)
class Budget:
    """Everything every model shares: data, epochs, batch size, optimiser, schedule."""

    train: int = 384
    val: int = 256
    test: int = 256
    frames: int = 12
    size: int = 32
    speed: float = 3.0  # px per frame at size 64, i.e. 1.5 px per frame at 32 px
    epochs: int = 8
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    difficulties: tuple[float, ...] = (0.1, 0.5)
    seeds: tuple[int, ...] = (0, 1, 2)


QUICK = Budget(train=16, val=16, test=16, frames=4, size=16, epochs=1, batch=8,
               difficulties=(0.1,), seeds=(0,))  # fmt: skip


class SingleFrameRowLSTM(nn.Module):
    """ANTI-PATTERN (do not use): the "CNN->LSTM" that never sees time.

    A CNN turns ONE frame (the last) into a feature map ``(B, D, h, w)``; the LSTM then
    reads its ``h`` rows as a "sequence" of ``D * w`` vectors. The recurrence runs over
    image rows of a single moment, not over frames, so it cannot see motion: on classes
    that differ only in motion it must stay at chance. ``CNNLSTMClassifier`` is the
    correct form (CNN per frame, LSTM over the frames).

    Shapes: ``x`` ``(B, T, C, H, W)`` -> logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int,
        size: int,
        num_classes: int = 1,
        conv_channels: tuple[int, ...] = (16, 32),
        lstm_hidden: int = 32,
    ) -> None:
        super().__init__()
        self.in_channels, self.ndim, self.num_classes = in_channels, 2, num_classes
        self.cnn = FrameCNN(in_channels, list(conv_channels))
        side = math.ceil(size / 2 ** (len(conv_channels) - 1))
        self.lstm = nn.LSTM(conv_channels[-1] * side, lstm_hidden, batch_first=True)
        self.embedding_dim = lstm_hidden
        self.head = make_head(lstm_hidden, num_classes, 0, 0.0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, self.ndim, self.in_channels)
        features = self.cnn.body(x[:, -1])  # (B, D, h, w) of the last frame only
        rows = features.permute(0, 2, 1, 3).flatten(2)  # (B, h, D * w): rows as "time"
        _, (h_n, _) = self.lstm(rows)
        return h_n[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def _cnn_lstm(**options) -> Callable[[Budget], nn.Module]:
    return lambda budget: create_model("cnn-lstm", in_channels=1, lstm_hidden=32, **options)


def _clip(**options) -> Callable[[Budget], nn.Module]:
    base = dict(in_channels=1, hidden_channels=[8, 8], global_pool="avg")
    return lambda budget: create_model("clip-classifier", **base, **options)


#: name -> (model builder, loss config)
VARIANTS: dict[str, tuple[Callable[[Budget], nn.Module], dict]] = {
    "frame": (lambda b: create_model("frame-classifier", in_channels=1), {}),
    "single-frame (anti-pattern)": (lambda b: SingleFrameRowLSTM(1, b.size), {}),
    "cnn-lstm": (_cnn_lstm(), {}),
    "cnn-lstm (flatten)": (lambda b: _cnn_lstm(frame_pool="flatten", spatial_size=b.size)(b), {}),
    "cnn-lstm (+coords)": (_cnn_lstm(coordinates=True), {}),
    "cnn-lstm (+diff)": (_cnn_lstm(frame_differences=True), {}),
    "convlstm": (_clip(), {}),
    "+layer-norm": (_clip(layer_norm=True), {}),
    "+res+ms": (_clip(residual=True, multiscale=True), {}),
    "+attention": (_clip(attention=["spatial", "temporal"]), {}),
    "+supcon": (_clip(), {"metric": "supcon", "metric_weight": 0.5}),
    "+diff": (_clip(frame_differences=True), {}),
    "+attention+diff": (_clip(attention=["spatial", "temporal"], frame_differences=True), {}),
}


def make_data(budget: Budget, difficulty: float) -> dict[str, torch.Tensor]:
    """Train, validation and test clips ``(N, T, 1, S, S)`` and labels, generated once
    (data seed 0)."""
    out = {}
    for split, n in (("train", budget.train), ("val", budget.val), ("test", budget.test)):
        ds = SimilarMotions(
            split, n, classes=CLASSES, frames=budget.frames, image_size=budget.size,
            difficulty=difficulty, speed=budget.speed,
        )  # fmt: skip
        clips, labels = zip(*(ds[i] for i in range(n)))
        out[f"x_{split}"], out[f"y_{split}"] = torch.stack(clips), torch.stack(labels)
    return out


def train(model: nn.Module, loss: dict, data: dict, budget: Budget, seed: int) -> float:
    """Train with AdamW + one-cycle for ``budget.epochs``; return the seconds taken."""
    objective = build_objective("classification", {"name": "bce", **loss}, num_classes=1)
    optimizer = torch.optim.AdamW(model.parameters(), budget.lr, weight_decay=budget.weight_decay)
    n = data["x_train"].shape[0]
    steps = math.ceil(n / budget.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, budget.lr, total_steps=budget.epochs * steps, pct_start=0.2
    )
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(budget.epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, budget.batch):
            index = order[i : i + budget.batch]
            x, y = data["x_train"][index], data["y_train"][index]
            if objective.needs_embedding:
                embedding = model.embed(x)
                value = objective(model.head(embedding), y, embedding)
            else:
                value = objective(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            nn.utils.clip_grad_norm_(model.parameters(), budget.clip_norm)
            optimizer.step()
            schedule.step()
    return time.perf_counter() - start


def tuned_threshold(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The threshold ``t`` (predict class 1 for ``p >= t``) with the highest accuracy on
    ``scores``: the midpoint between consecutive sorted scores (or below all of them)."""
    values, order = scores.double().sort()
    y = labels[order].double()
    # predicting 1 from position i on: correct = zeros before i + ones from i
    zeros_before = torch.cat([torch.zeros(1, dtype=y.dtype), (1 - y).cumsum(0)])
    ones_from = torch.cat([y.flip(0).cumsum(0).flip(0), torch.zeros(1, dtype=y.dtype)])
    best = int((zeros_before + ones_from).argmax())
    if best == 0:
        return float(values[0]) - 1e-6
    if best == len(values):
        return float(values[-1]) + 1e-6
    return float((values[best - 1] + values[best]) / 2)


@torch.no_grad()
def scores_of(model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([torch.sigmoid(model(x)).reshape(-1) for x in clips.split(64)])


@torch.no_grad()
def evaluate(model: nn.Module, data: dict) -> dict:
    """Accuracy (at 0.5 and at a threshold tuned on the validation clips), ROC-AUC and the
    class similarity of every feature layer on the test clips."""
    scores = scores_of(model, data["x_test"])
    threshold = tuned_threshold(scores_of(model, data["x_val"]), data["y_val"])
    metrics = ClassificationMetrics(2)
    metrics.update(scores, data["y_test"])
    values = metrics.compute()
    loader = DataLoader(TensorDataset(data["x_test"], data["y_test"]), batch_size=64)
    similarity = class_similarity(model, loader, max_batches=None, class_names=CLASSES)
    embedding = similarity["layers"]["embedding"]
    return {
        "accuracy": values["accuracy"],
        "accuracy_tuned": float(((scores >= threshold).long() == data["y_test"]).double().mean()),
        "threshold": threshold,
        "roc_auc": values["roc_auc"],
        "embedding_cosine": embedding["cosine"][0][1],
        "embedding_ratio": embedding["ratio"],
        "embedding_ratio_chance": embedding["ratio_chance"],
        "layer_ratios": {k: v["ratio"] for k, v in similarity["layers"].items()},
    }


def diagnose(model: nn.Module, data: dict, object_scale: float) -> dict:
    """The full diagnostics of one trained model (findings and the numbers the doc uses)."""
    loader = DataLoader(TensorDataset(data["x_test"], data["y_test"]), batch_size=32)
    result = run_diagnostics(model, loader, object_scale=object_scale, max_batches=4,
                             class_names=CLASSES)  # fmt: skip
    keep = {"summary": result["summary"]}
    if "first_to_last" in result["gradients"]:
        keep["gradient_first_to_last"] = result["gradients"]["first_to_last"]
        keep["gradient_hidden"] = result["gradients"]["hidden"]
    keep["gates"] = {
        name: {g: {k: stats[g][k] for k in ("mean", "saturated")}
               for g in ("input", "forget", "output")}
        for name, stats in result["gates"].get("layers", {}).items()
    }  # fmt: skip
    stages = result["receptive_field"]["stages"]
    keep["receptive_field"] = [{k: s[k] for k in ("name", "rf", "rf_over_time")} for s in stages]
    return keep


def loadavg() -> list[float] | None:
    """The machine's 1, 5 and 15 minute load averages (Linux), or ``None``."""
    path = Path("/proc/loadavg")
    return [float(v) for v in path.read_text().split()[:3]] if path.exists() else None


def summarise(runs: list[dict]) -> dict:
    """Mean, sample standard deviation and values per variant, difficulty and metric."""
    table: dict = {}
    for run in runs:
        cell = table.setdefault(run["variant"], {}).setdefault(str(run["difficulty"]), {})
        for key in ("accuracy", "accuracy_tuned", "threshold", "roc_auc", "embedding_cosine",
                    "embedding_ratio", "embedding_ratio_chance", "train_seconds"):  # fmt: skip
            cell.setdefault(key, {"values": []})["values"].append(run[key])
    for per_difficulty in table.values():
        for cell in per_difficulty.values():
            for stats in cell.values():
                v = np.array([np.nan if x is None else x for x in stats["values"]], float)
                stats["mean"] = float(np.nanmean(v))
                stats["std"] = float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0
    return table


def markdown(table: dict, budget: Budget) -> str:
    def fmt(stats: dict, digits: int = 2) -> str:
        return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"

    head = ["model"]
    for d in budget.difficulties:
        head += [f"acc (d={d})", f"acc, tuned t (d={d})", f"ROC-AUC (d={d})",
                 f"emb. ratio (d={d})", f"emb. 1-cos (d={d})", f"train s (d={d})"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, per_difficulty in table.items():
        row = [variant]
        for d in budget.difficulties:
            cell = per_difficulty[str(d)]
            one_minus = [1 - c for c in cell["embedding_cosine"]["values"]]
            spread = float(np.std(one_minus, ddof=1)) if len(one_minus) > 1 else 0.0
            row += [fmt(cell["accuracy"]), fmt(cell["accuracy_tuned"]), fmt(cell["roc_auc"]),
                    fmt(cell["embedding_ratio"]), f"{np.mean(one_minus):.1e} ± {spread:.0e}",
                    f"{cell['train_seconds']['mean']:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 3; quick 1)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        help="a subset, run in the order given")  # fmt: skip
    parser.add_argument("--difficulties", nargs="+", type=float, help="default 0.1 0.5")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed, first-seed + 1, ... (default 0)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, help="results JSON path")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else Budget()
    if args.difficulties:
        budget = Budget(**{**asdict(budget), "difficulties": tuple(args.difficulties)})
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error(f"--seeds must be >= 1, got {args.seeds}")
        budget = Budget(**{**asdict(budget), "seeds": tuple(range(args.seeds))})
    if args.first_seed:
        budget = Budget(**{**asdict(budget),
                           "seeds": tuple(s + args.first_seed for s in budget.seeds)})  # fmt: skip
    default_out = (ROOT / "benchmarks" / "results" / "similar_classes_quick.json" if args.quick
                   else ROOT / "docs" / "similar_classes.json")  # fmt: skip
    out = args.out or default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    variants = args.variants or list(VARIANTS)
    # the hand is about 28 px tall at 64 px frames: the object scale at this frame size
    object_scale = 28 * budget.size / 64

    start = time.perf_counter()
    runs, diagnostics = [], {}
    data_of = {d: make_data(budget, d) for d in budget.difficulties}
    # seeds outermost: a study cut short still has every model at every difficulty
    for seed in budget.seeds:
        for difficulty in budget.difficulties:
            data = data_of[difficulty]
            for name in variants:
                build, loss = VARIANTS[name]
                torch.manual_seed(seed)
                model = build(budget)
                seconds = train(model, loss, data, budget, seed)
                result = {"variant": name, "difficulty": difficulty, "seed": seed,
                          "train_seconds": seconds, "loadavg": loadavg(),
                          **evaluate(model, data)}  # fmt: skip
                runs.append(result)
                if seed == 0 and name in ("convlstm", "cnn-lstm", "+layer-norm", "+diff"):
                    diagnostics.setdefault(str(difficulty), {})[name] = diagnose(
                        model, data, object_scale
                    )
                print(f"[{time.perf_counter() - start:7.1f}s] d={difficulty} seed={seed} "
                      f"{name:28s} acc {result['accuracy']:.3f} "
                      f"(tuned {result['accuracy_tuned']:.3f}) auc {result['roc_auc']:.3f} "
                      f"emb ratio {result['embedding_ratio']:.3f} ({seconds:.1f}s)",
                      flush=True)  # fmt: skip
                report = {
                    "budget": asdict(budget),
                    "object_scale": object_scale,
                    "torch": torch.__version__,
                    "threads": args.threads,
                    "elapsed_seconds": time.perf_counter() - start,
                    "summary": summarise(runs),
                    "runs": runs,
                    "diagnostics": diagnostics,
                }
                out.write_text(json.dumps(to_jsonable(report), indent=1))
    print(markdown(summarise(runs), budget))
    print(f"\n{len(runs)} runs in {time.perf_counter() - start:.0f} s; results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
