"""A self-contained ``report.html``: inline CSS, images as base64 data URIs, no scripts and no
external resources, so the file can be mailed, archived or opened offline."""

from __future__ import annotations

import base64
import datetime
import math
import numbers
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_MAX_INLINE_LIST = 12

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       background: #f6f7f9; color: #1d232b; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { margin: 0 0 4px; font-size: 1.7em; }
h2 { margin-top: 32px; border-bottom: 2px solid #d8dde3; padding-bottom: 4px; }
.meta { color: #5b6672; margin: 0; }
table { border-collapse: collapse; background: #fff; }
th, td { padding: 4px 12px; border: 1px solid #d8dde3; text-align: left; }
th { background: #eef1f4; font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; }
table.matrix td { text-align: right; padding: 2px 8px; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; background: #fff; padding: 8px; border: 1px solid #d8dde3; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #5b6672; font-size: 0.85em; margin-top: 4px; }
.notes { white-space: pre-wrap; background: #fff; padding: 12px; border: 1px solid #d8dde3; }
"""


def _format_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return escape(str(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return "nan" if math.isnan(value) else f"{float(value):.4g}"


def format_value(value: Any) -> str:
    """A table cell: numbers to 4 significant digits, short lists inline, matrices as tables."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars, tensors
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(row, (list, tuple)) for row in value):
            rows = "".join(
                "<tr>" + "".join(f"<td>{_format_number(v)}</td>" for v in row) + "</tr>"
                for row in value
            )
            return f'<table class="matrix">{rows}</table>'
        if len(value) > _MAX_INLINE_LIST:
            return f"{len(value)} values (see the plots)"
        return ", ".join(_format_number(v) for v in value)
    return _format_number(value)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """An HTML table of ``metrics`` (nested dicts flattened to ``a.b`` keys)."""
    rows = "".join(
        f'<tr><th>{escape(key)}</th><td class="num">{format_value(value)}</td></tr>'
        for key, value in _flatten(metrics)
    )
    return f"<table>{rows}</table>"


def grid_table(rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table whose first row is the header."""
    if not rows:
        return "<table></table>"
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{_format_number(cell)}</td>' for cell in row) + "</tr>"
        for row in rows[1:]
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table under ``headers``; cells as :func:`format_value` shows them."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{format_value(v)}</td>' for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_section(heading: str, images: Sequence[str | Path], html: str = "") -> str:
    """A ``<section>``: the heading, ``html`` (already escaped) and the images embedded."""
    figures = "".join(image_tag(p) for p in images)
    return (
        f'<section><h2>{escape(heading)}</h2>{html}<div class="figures">{figures}</div>'
        "</section>"
    )


def html_page(title: str, meta: str, sections: Sequence[str]) -> str:
    """A complete page in the reports' style: ``title``, a line of ``meta`` (plain text) and
    ``sections`` (HTML), with the CSS inline so that the file stands alone."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f'<h1>{escape(title)}</h1>\n<p class="meta">{escape(meta)}</p>\n'
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def write_html(path: str | Path, page: str) -> Path:
    """Write ``page`` to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def image_tag(path: str | Path) -> str:
    """``<figure>`` with the file embedded as a base64 data URI (PNG, GIF or JPEG)."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed {path.name!r}: expected one of {sorted(_MIME)}")
    if not path.is_file():
        raise FileNotFoundError(f"report image not found: {path}")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = escape(path.name)
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{escape(path.stem)}">'
        f"<figcaption>{name}</figcaption></figure>"
    )


def write_report(
    run_dir: str | Path,
    title: str,
    metrics: Mapping[str, Any],
    sections: Sequence[tuple[str, Sequence[str | Path]]],
    notes: str = "",
    tables: Sequence[tuple[str, Sequence[Sequence[Any]]]] = (),
) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    Args:
        title: page heading.
        metrics: shown as a table; floats to 4 significant digits, lists of up to 12 values
            inline, lists of lists as small matrices, nested dicts as ``a.b`` rows.
        sections: ``(heading, image paths)`` in order; every image is embedded.
        notes: plain text shown at the end (escaped, line breaks kept).
        tables: ``(heading, rows)`` after the metrics; the first row is the header, cells
            are numbers (4 significant digits) or text.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = []
    if metrics:
        parts.append(f"<section><h2>Metrics</h2>{metrics_table(metrics)}</section>")
    for heading, rows in tables:
        parts.append(f"<section><h2>{escape(heading)}</h2>{grid_table(rows)}</section>")
    parts += [figure_section(heading, images) for heading, images in sections]
    if notes:
        parts.append(f'<section><h2>Notes</h2><div class="notes">{escape(notes)}</div></section>')
    page = html_page(title, f"{run_dir.name} · written {stamp}", parts)
    return write_html(run_dir / "report.html", page)
