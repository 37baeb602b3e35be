"""The reports render in a real browser: headless Chromium loads every embedded image.

Run with ``pytest -m browser``; skipped when ``/usr/bin/chromium`` is missing
(Debian: ``apt-get install -y chromium``).
"""

import base64
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convlstm.metrics import ClassificationMetrics, ForecastMetrics
from convlstm.reports import build_classification_report, build_forecast_report

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]

# Test-side page (the report itself has no script): load the report in an iframe, then list
# every image with whether it decoded and its natural size.
WRAPPER = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="report" src="{src}" width="1280" height="900"></iframe>
<script>
document.getElementById("report").addEventListener("load", () => {{
  let out;
  try {{
    const doc = document.getElementById("report").contentDocument;
    out = JSON.stringify({{title: doc.title, images: Array.from(doc.images).map(img => ({{
      ok: img.complete && img.naturalWidth > 0, width: img.naturalWidth,
      height: img.naturalHeight}}))}});
  }} catch (err) {{ out = "error: " + err; }}
  document.getElementById("result").textContent = out;
}});
</script></body></html>
"""


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / "chromium-profile"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def images_in_browser(tmp_path: Path, report: Path) -> dict:
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(WRAPPER.format(src=report.resolve().as_uri()), encoding="utf-8")
    dom = chromium(
        tmp_path,
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
        "--dump-dom",
        wrapper.as_uri(),
    )
    match = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert match, dom[:2000]
    text = match.group(1).replace("&quot;", '"').replace("&amp;", "&")
    assert text.startswith("{"), text
    return json.loads(text)


def embedded_sizes(report: Path) -> list[tuple[int, int]]:
    sizes = []
    for data in re.findall(r'src="data:image/\w+;base64,([^"]+)"', report.read_text()):
        path = report.parent / "decoded.bin"
        path.write_bytes(base64.b64decode(data))
        with Image.open(path) as image:
            sizes.append(image.size)
    return sizes


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    rng = np.random.default_rng(0)
    history = [
        {
            "epoch": e,
            "step": 10 * e,
            "train_loss": 1 / (1 + e),
            "val_loss": 1.1 / (1 + e),
            "val_accuracy": 0.5 + 0.1 * e,
        }
        for e in range(4)
    ]
    labels = rng.integers(0, 2, 40)
    probs = np.clip(0.4 * labels + 0.6 * rng.random(40), 0, 1)
    metric = ClassificationMetrics(2)
    metric.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(labels))
    cls_dir = tmp_path_factory.mktemp("classification")
    build_classification_report(
        cls_dir,
        history,
        {
            "metrics": metric.compute(),
            "probs": probs,
            "labels": labels,
            "class_names": ["left", "right"],
            "clips": rng.random((3, 6, 1, 16, 16)),
            "attention": rng.random((3, 6, 4, 4)),
        },
    )
    truth = rng.random((2, 4, 1, 16, 16))
    forecast = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1)
    fmetric = ForecastMetrics(thresholds=[0.5])
    fmetric.update(torch.tensor(forecast), torch.tensor(truth))
    fc_dir = tmp_path_factory.mktemp("forecast")
    build_forecast_report(
        fc_dir,
        history,
        {
            "metrics": fmetric.compute(),
            "inputs": rng.random((2, 5, 1, 16, 16)),
            "truth": truth,
            "forecast": forecast,
        },
    )
    return {"classification": cls_dir / "report.html", "forecast": fc_dir / "report.html"}


@pytest.mark.parametrize("kind", ["classification", "forecast"])
def test_every_image_loads_in_chromium(tmp_path, reports, kind):
    report = reports[kind]
    result = images_in_browser(tmp_path, report)
    expected = embedded_sizes(report)
    assert len(result["images"]) == len(expected) >= 4
    assert all(image["ok"] for image in result["images"]), result
    assert [(i["width"], i["height"]) for i in result["images"]] == expected
    assert result["title"].endswith("classification" if kind == "classification" else "forecasting")


def test_a_broken_image_is_detected(tmp_path, reports):
    """Control: the same check fails on a copy of a report with one image corrupted."""
    html = reports["classification"].read_text()
    start = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(html[:start] + "AAAA" + html[start + 400 :], encoding="utf-8")
    result = images_in_browser(tmp_path, broken)
    assert [image["ok"] for image in result["images"]].count(False) == 1


def test_screenshot_is_not_blank(tmp_path, reports):
    shot = tmp_path / "shot.png"
    chromium(
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
        reports["forecast"].resolve().as_uri(),
    )
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape == (2400, 1280)
    dark = (pixels < 128).mean()
    assert pixels.std() > 20 and 0.02 < dark < 0.9, (pixels.std(), dark)
