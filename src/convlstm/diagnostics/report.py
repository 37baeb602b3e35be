"""Run every diagnostic on a model and a loader; write ``diagnostics.json`` and
``diagnostics.html`` (self-contained, the plots embedded as in ``report.html``)."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..reports.html import figure_section, html_page, table, write_html
from ._common import check_max_batches, class_names_of, first_batch, to_jsonable
from .attention import attention_maps, plot_attention
from .gates import gate_statistics, plot_gate_statistics
from .gradients import gradient_flow, plot_gradient_flow
from .receptive_field import plot_receptive_field, receptive_field
from .similarity import class_similarity, plot_class_similarity

JSON_FILE, HTML_FILE = "diagnostics.json", "diagnostics.html"
#: ``||dL/dh_0|| / ||dL/dh_{T-1}||`` below this is reported as vanishing gradient.
VANISHING = 1e-2
#: A gate saturated on more than this share of its activations is reported.
SATURATED = 0.5


def _classification_targets(y: torch.Tensor | None, batch: int) -> bool:
    if y is None or y.reshape(-1).shape[0] != batch:
        return False
    return not y.is_floating_point() or bool(torch.equal(y, y.round()))


def run_diagnostics(
    model: nn.Module,
    loader: Any,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    object_scale: float | None = None,
    max_batches: int | None = 8,
    class_names: Sequence[str] | None = None,
    attention_samples: int = 4,
) -> dict[str, Any]:
    """Every diagnostic of ``model`` on ``loader`` (re-iterable, batches ``(x, y)``).

    Args:
        model: a clip model taking ``x`` ``(B, T, C, *S)``; left in its train/eval mode.
        loader: e.g. a ``DataLoader`` of the validation split.
        loss_fn: ``loss_fn(output, y)`` for the gradients; default BCE, cross-entropy or
            MSE chosen from the output and target shapes.
        object_scale: size in pixels of what must be recognised, for the receptive-field
            warnings.
        max_batches: batches per diagnostic (``None``: all; gradients use half as many).
        class_names: names of the classes, indexed by label; default the ``classes`` of
            ``loader.dataset`` when it has them.
        attention_samples: clips whose attention maps are kept.

    Returns:
        ``{"model", "input_shape", "similarity", "gradients", "receptive_field",
        "gates", "attention", "warnings", "summary"}``; a diagnostic that does not apply
        holds ``{"skipped": reason}``. ``summary`` is a list of short findings.
    """
    max_batches = check_max_batches(max_batches)
    class_names = class_names if class_names is not None else class_names_of(loader)
    x, y = first_batch(loader)
    result: dict[str, Any] = {
        "model": {
            "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "input_shape": list(x.shape[1:]),
        "max_batches": max_batches,
    }
    if _classification_targets(y, x.shape[0]):
        result["similarity"] = class_similarity(
            model, loader, max_batches=max_batches, class_names=class_names
        )
    else:
        result["similarity"] = {"skipped": "targets are not one class label per clip"}
    if y is None:
        result["gradients"] = {"skipped": "the loader gives no targets for a loss"}
    else:
        grad_batches = None if max_batches is None else max(1, max_batches // 2)
        result["gradients"] = gradient_flow(
            model, loader, loss_fn=loss_fn, max_batches=grad_batches
        )
    result["receptive_field"] = receptive_field(model, (x, y), object_scale=object_scale)
    result["gates"] = gate_statistics(model, loader, max_batches=max_batches)
    result["attention"] = attention_maps(model, (x, y), num_samples=attention_samples)
    result["warnings"] = list(result["receptive_field"].get("warnings", []))
    result["summary"] = summarize(result)
    return result


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def summarize(result: dict[str, Any]) -> list[str]:
    """Short human-readable findings of a ``run_diagnostics`` result."""
    lines: list[str] = []
    sim = result.get("similarity", {})
    if "layers" in sim:
        chain = " -> ".join(f"{k} {_fmt(v['ratio'])}" for k, v in sim["layers"].items())
        chance = next(iter(sim["layers"].values()))["ratio_chance"]
        lines.append(f"between/within-class distance ratio by layer: {chain} "
                     f"(shuffled labels: about {_fmt(chance)})")  # fmt: skip
        worst = sim["collapse"]
        if worst is not None:
            layer = sim["layers"][worst]
            pair = layer["pairs"][0]
            lines.append(
                f"classes are closest in {worst} (ratio {_fmt(layer['ratio'])}); most "
                f"confusable pair there: {pair['pair'][0]} vs {pair['pair'][1]} "
                f"(cosine {_fmt(pair['cosine'])}, separation {_fmt(pair['separation'])})"
            )
    grads = result.get("gradients", {})
    for name, ratio in grads.get("first_to_last", {}).items():
        if ratio is None:
            continue
        verdict = " (vanishing)" if ratio < VANISHING else ""
        where = "model input" if name == "input" else name
        lines.append(f"gradient at t=0 / at the last step, {where}: {_fmt(ratio)}{verdict}")
    rf = result.get("receptive_field", {})
    if rf.get("stages"):
        last = rf["stages"][-1]
        lines.append(
            f"receptive field of {last['name']}: {last['rf']} px per frame, "
            f"{last['rf_over_time']} px after {rf['steps']} steps (frame {rf['input_size']})"
            + (" + global attention" if last["global"] else "")
        )
    for name, stats in result.get("gates", {}).get("layers", {}).items():
        sat = {g: stats[g]["saturated"] for g in ("input", "forget", "output")}
        flag = [g for g, v in sat.items() if v > SATURATED]
        lines.append(
            f"gates of {name}: forget mean {stats['forget']['mean']:.2f}; saturated "
            + ", ".join(f"{g} {v:.0%}" for g, v in sat.items())
            + (f" (mostly saturated: {', '.join(flag)})" if flag else "")
        )
    att = result.get("attention", {})
    if att.get("available"):
        for key, entry in att["maps"].items():
            if entry.get("entropy") is not None:
                lines.append(f"attention {key} ({entry['kind']}): normalised entropy "
                             f"{entry['entropy']:.2f} (1 = uniform)")  # fmt: skip
    return lines + [f"warning: {w}" for w in result.get("warnings", [])]


# ---------------------------------------------------------------- writing
def _similarity_html(sim: dict[str, Any]) -> str:
    rows = []
    for name, layer in sim["layers"].items():
        pair = layer["pairs"][0]
        rows.append([name, layer["dim"], layer["ratio"], layer["ratio_chance"],
                     layer["between"], layer["within"], " vs ".join(pair["pair"]),
                     pair["cosine"], pair["separation"]])  # fmt: skip
    headers = ["layer", "dim", "between/within", "same, shuffled labels", "between", "within",
               "most confusable", "cosine", "separation"]  # fmt: skip
    return table(headers, rows)


def _rf_html(rf: dict[str, Any]) -> str:
    rows = [[s["name"], s["kind"], s["kernel"], s["stride"], s["dilation"], s["rf"],
             s["growth_per_step"], s["rf_over_time"], s["global"]]
            for s in rf["stages"]]  # fmt: skip
    headers = ["stage", "kind", "kernel", "stride", "dilation", "rf (1 step)", "growth / step",
               f"rf ({rf['steps']} steps)", "global"]  # fmt: skip
    empirical = [[k, v["support"], v["effective"], v["support_by_frame"]]
                 for k, v in rf["empirical"].items()]  # fmt: skip
    notes = "".join(f"<li>{escape(n)}</li>" for n in rf.get("notes", []))
    return (
        table(headers, rows)
        + "<h3>Empirical (input gradient of the centre unit, last step)</h3>"
        + table(["probe", "support", "95% mass", "support per frame t"], empirical)
        + (f"<ul>{notes}</ul>" if notes else "")
    )


def _gates_html(gates: dict[str, Any]) -> str:
    rows = []
    for name, stats in gates["layers"].items():
        rows.append([name] + [f"{stats[g]['mean']:.2f} / {stats[g]['saturated']:.0%}"
                              for g in ("input", "forget", "output")])  # fmt: skip
    return table(["cell", "input mean / sat.", "forget mean / sat.", "output mean / sat."], rows)


def _grad_html(grads: dict[str, Any]) -> str:
    rows = [[k, v] for k, v in grads["first_to_last"].items()]
    return f"<p>loss {grads['loss']:.4g} over {grads['batches']} batches</p>" + table(
        ["series", "||grad|| at t=0 / at last t"], rows
    )


def write_diagnostics(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``diagnostics.json`` (every number) and ``diagnostics.html`` (plots) into
    ``out_dir``, with the PNG plots beside them; return ``(json_path, html_path)``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_FILE
    text = json.dumps(to_jsonable(result), indent=1, allow_nan=False)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, json_path)

    parts = []
    summary = "".join(f"<li>{escape(line)}</li>" for line in result.get("summary", []))
    parts.append(f"<section><h2>Summary</h2><ul>{summary}</ul></section>")
    sim = result.get("similarity", {})
    if "layers" in sim:
        png = plot_class_similarity(sim, out_dir / "similarity.png")
        parts.append(figure_section("Class feature similarity", [png], _similarity_html(sim)))
    grads = result.get("gradients", {})
    if "hidden" in grads:
        png = plot_gradient_flow(grads, out_dir / "gradients.png")
        parts.append(figure_section("Gradient flow through time", [png], _grad_html(grads)))
    rf = result.get("receptive_field", {})
    if "stages" in rf:
        png = plot_receptive_field(rf, out_dir / "receptive_field.png")
        parts.append(figure_section("Receptive field", [png], _rf_html(rf)))
    gates = result.get("gates", {})
    if gates.get("layers"):
        png = plot_gate_statistics(gates, out_dir / "gates.png")
        parts.append(figure_section("Gate statistics", [png], _gates_html(gates)))
    att = result.get("attention", {})
    if att.get("available"):
        parts.append(figure_section("Attention maps", plot_attention(att, out_dir)))
    else:
        reason = escape(att.get("reason", "not run"))
        parts.append(f"<section><h2>Attention maps</h2><p>none: {reason}</p></section>")
    skipped = [f"{k}: {v['skipped']}" for k, v in result.items()
               if isinstance(v, dict) and "skipped" in v]  # fmt: skip
    if skipped:
        items = "".join(f"<li>{escape(s)}</li>" for s in skipped)
        parts.append(f"<section><h2>Skipped</h2><ul>{items}</ul></section>")

    model = result.get("model", {})
    title = f"Diagnostics: {model.get('class', 'model')}"
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    meta = (f"{model.get('parameters', '?')} parameters · input {result.get('input_shape')} · "
            f"written {stamp}")  # fmt: skip
    page = html_page(title, meta, parts)
    html_path = write_html(out_dir / HTML_FILE, page)
    return json_path, html_path


__all__ = ["run_diagnostics", "summarize", "write_diagnostics"]
