"""report.html is self-contained: every image embedded once, no scripts, no external links."""

import base64
import re

import numpy as np
import pytest
import torch

from convlstm.metrics import ClassificationMetrics, ForecastMetrics
from convlstm.reports import (
    build_classification_report,
    build_forecast_report,
    plot_roc,
    write_forecast_animation,
    write_report,
)

DATA_URI = re.compile(r'src="data:image/(png|gif);base64,([A-Za-z0-9+/=]+)"')


def embedded(html: str) -> list[tuple[str, bytes]]:
    return [(kind, base64.b64decode(data)) for kind, data in DATA_URI.findall(html)]


def assert_self_contained(html: str) -> None:
    outside_images = DATA_URI.sub("", html)
    assert "http" not in outside_images.lower()
    assert "<script" not in outside_images.lower()
    assert not re.search(r"\b(src|href)=", outside_images), "only data URIs may be referenced"
    assert "url(" not in outside_images


def test_write_report_embeds_each_image_once(tmp_path, forecast_data):
    roc = plot_roc([0, 0.5, 1], [0, 0.8, 1], 0.9, tmp_path / "roc.png")
    roc2 = plot_roc([0, 0.2, 1], [0, 0.6, 1], 0.7, tmp_path / "roc2.png")
    inputs, truth, forecast = forecast_data
    gif = write_forecast_animation(tmp_path / "a.gif", inputs[0], truth[0], forecast[0])
    metrics = {
        "accuracy": 0.875,
        "count": 12,
        "auc": float("nan"),
        "<b>": "x & y",
        "confusion_matrix": [[3, 1], [0, 4]],
        "curve": list(range(40)),
        "nested": {"csi": 0.25},
    }
    path = write_report(
        tmp_path / "run",
        "Run <1>",
        metrics,
        [("ROC", [roc, roc2]), ("Movie", [gif])],
        notes="line 1\nline <2>",
    )
    assert path == tmp_path / "run" / "report.html"
    html = path.read_text(encoding="utf-8")
    assert html.count('<img src="data:image/png;base64,') == 2
    assert html.count('<img src="data:image/gif;base64,') == 1
    images = embedded(html)
    assert [data for _, data in images] == [roc.read_bytes(), roc2.read_bytes(), gif.read_bytes()]
    assert_self_contained(html)
    assert "<title>Run &lt;1&gt;</title>" in html and "line &lt;2&gt;" in html
    assert "<th>&lt;b&gt;</th>" in html and "x &amp; y" in html
    assert "<td>0.875</td>" not in html and ">0.875<" in html
    assert ">nan<" in html and ">12<" in html and "nested.csi" in html
    assert "40 values" in html
    assert '<table class="matrix"><tr><td>3</td><td>1</td></tr>' in html
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_write_report_rejects_missing_and_unknown_images(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.png"):
        write_report(tmp_path, "t", {}, [("x", [tmp_path / "nothere.png"])])
    (tmp_path / "plot.svg").write_text("<svg/>")
    with pytest.raises(ValueError, match=r"plot\.svg"):
        write_report(tmp_path, "t", {}, [("x", [tmp_path / "plot.svg"])])


def _classification_result(rng, k):
    n = 30
    labels = rng.integers(0, k, n)
    if k == 2:
        probs = np.clip(0.35 * labels + 0.65 * rng.random(n), 0, 1)
        scores = torch.tensor(probs, dtype=torch.float32)
    else:
        probs = rng.dirichlet(np.ones(k), n)
        scores = torch.tensor(probs, dtype=torch.float32)
    metric = ClassificationMetrics(k)
    metric.update(scores, torch.tensor(labels))
    return {
        "metrics": metric.compute(),
        "probs": probs,
        "labels": labels,
        "class_names": [f"class {i}" for i in range(k)],
        "clips": rng.random((3, 5, 1, 12, 12)),
    }


def test_build_classification_report_binary(tmp_path, rng, history):
    result = _classification_result(rng, 2)
    result["attention"] = rng.random((3, 5, 3, 3))
    result["clip_indices"] = [4, 0, 7]
    path = build_classification_report(tmp_path, history, result)
    html = path.read_text(encoding="utf-8")
    names = ["learning_curves", "roc", "confusion_matrix", "clip_predictions", "attention"]
    for name in names:
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert html.count('<img src="data:image/png;base64,') == len(names)
    assert [data for _, data in embedded(html)] == [
        (tmp_path / f"{name}.png").read_bytes() for name in names
    ]
    assert "best_threshold" in html and "roc_fpr" not in html
    assert_self_contained(html)


def test_build_classification_report_multiclass_without_extras(tmp_path, rng):
    result = _classification_result(rng, 4)
    del result["clips"]
    path = build_classification_report(tmp_path, [], result)
    html = path.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["confusion_matrix.png"]
    assert html.count("data:image/png;base64,") == 1
    assert "balanced_accuracy" in html


def test_build_forecast_report(tmp_path, rng, history, forecast_data):
    inputs, truth, forecast = forecast_data
    metric = ForecastMetrics(thresholds=[0.5])
    metric.update(torch.tensor(forecast), torch.tensor(truth))
    result = {
        "metrics": metric.compute(),
        "inputs": inputs,
        "truth": truth,
        "forecast": forecast,
        "attention": rng.random((2, 3, 4, 4)),
        "cmap": "viridis",
        "notes": "tiny test run",
    }
    path = build_forecast_report(tmp_path, history, result)
    html = path.read_text(encoding="utf-8")
    pngs = ["learning_curves", "forecast_strip", "lead_time", "attention"]
    for name in pngs:
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert html.count('<img src="data:image/png;base64,') == len(pngs)
    assert html.count('<img src="data:image/gif;base64,') == 1
    assert "csi@0.5" in html and "psnr" in html and "mse_per_lead" not in html
    assert "tiny test run" in html
    assert_self_contained(html)


def test_build_forecast_report_metrics_only(tmp_path):
    path = build_forecast_report(tmp_path, None, {"metrics": {"mse": 1.5}})
    html = path.read_text(encoding="utf-8")
    assert "data:image" not in html and ">1.5<" in html


def test_metrics_table_formats_numpy_and_tensor_values(tmp_path):
    metrics = {
        "a": np.float32(0.123456),
        "b": np.int64(7),
        "c": torch.tensor(0.5),
        "d": np.array([1.0, 2.0]),
        "e": True,
    }
    html = write_report(tmp_path, "t", metrics, []).read_text(encoding="utf-8")
    for cell in (">0.1235<", ">7<", ">0.5<", ">1, 2<", ">True<"):
        assert cell in html, cell


def test_build_forecast_report_rejects_attention_of_unknown_length(tmp_path, rng, forecast_data):
    inputs, truth, forecast = forecast_data  # T_in = 4, T_out = 3
    result = {
        "metrics": {},
        "inputs": inputs,
        "truth": truth,
        "forecast": forecast,
        "attention": rng.random((2, 5, 4, 4)),
    }
    with pytest.raises(ValueError, match=r"T = T_in = 4 or T = T_out = 3.*\(2, 5, 4, 4\)"):
        build_forecast_report(tmp_path, None, result)
    result["attention"] = rng.random((2, 3, 4, 4))  # overlaid on the forecast frames
    html = build_forecast_report(tmp_path, None, result).read_text(encoding="utf-8")
    assert (tmp_path / "attention.png").is_file() and html.count("data:image/png") == 2
