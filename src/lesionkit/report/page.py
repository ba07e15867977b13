"""The HTML page: sections of text, tables and figures embedded as base64 PNG.

All text (titles, paragraphs, captions, table cells) is HTML-escaped; the page needs
no other file.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["PHANTOM_NOTE", "Section", "figure_png", "render_html", "write_report"]

PHANTOM_NOTE = (
    "All images, figures and numbers in this report come from the lesionkit digital "
    "phantom (simulated data with known ground truth), not from patients."
)

Table = pd.DataFrame | Sequence[Mapping[str, Any]]
FigureLike = Figure | bytes | Path


@dataclass(frozen=True)
class Section:
    """One titled part of a report.

    Attributes:
        title: heading.
        text: plain text; blank lines separate paragraphs.
        tables: tables, or a mapping caption -> table (DataFrame or list of dicts).
        figures: figures, or a mapping caption -> figure (matplotlib Figure, PNG bytes,
            or the Path of a PNG file).
    """

    title: str
    text: str = ""
    tables: Mapping[str, Table] | Sequence[Table] = ()
    figures: Mapping[str, FigureLike] | Sequence[FigureLike] = ()


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:1.6em}
.note{background:#fff4d6;border-left:4px solid #e0a800;padding:.6em 1em}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;
padding:.2em .6em;text-align:right}th{background:#f2f2f2}figure{margin:1em 0}
img{max-width:100%}figcaption,caption{font-size:.9em;color:#555;text-align:left}
.meta{color:#777;font-size:.85em}.table{overflow-x:auto;max-width:100%}
"""


def figure_png(figure: FigureLike, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure (or of PNG bytes / a PNG file, returned as is)."""
    if isinstance(figure, bytes):
        return figure
    if isinstance(figure, os.PathLike | str):
        return Path(figure).read_bytes()
    if figure.canvas is None or not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _items(items: Mapping[str, Any] | Sequence[Any]) -> list[tuple[str, Any]]:
    if isinstance(items, Mapping):
        return list(items.items())
    return [("", item) for item in items]


def _table_html(caption: str, table: Table) -> str:
    """The table in a box of its own width that scrolls sideways when it is wider than
    the page; missing values (None, NaN) read "n/a"."""
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    frame = frame.astype(object).where(frame.notna(), None).map(
        lambda v: "n/a" if v is None or (isinstance(v, str) and v in ("None", "nan")) else v)
    body = frame.to_html(
        index=False, escape=True, border=0, na_rep="n/a", float_format=lambda v: f"{v:.4g}"
    )
    if caption:
        body = body.replace(">", f"><caption>{html.escape(caption)}</caption>", 1)
    return f'<div class="table">{body}</div>'


def _figure_html(caption: str, figure: FigureLike) -> str:
    encoded = base64.b64encode(figure_png(figure)).decode("ascii")
    alt = html.escape(caption or "figure", quote=True)
    caption_html = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{encoded}" alt="{alt}">{caption_html}</figure>'


def _text_html(text: str) -> str:
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)


def render_html(title: str, sections: Sequence[Section], data_note: str | None = None) -> str:
    """The report as one HTML string (see ``write_report``)."""
    from lesionkit import __version__

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">lesionkit {html.escape(__version__)}, {stamp}</p>',
    ]
    if data_note:
        parts.append(f'<p class="note">{html.escape(data_note)}</p>')
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts.append(_text_html(section.text))
        parts.extend(_table_html(c, t) for c, t in _items(section.tables))
        parts.extend(_figure_html(c, f) for c, f in _items(section.figures))
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    path: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section],
    data_note: str | None = None,
) -> Path:
    """Write a self-contained HTML report atomically and return its path.

    Args:
        path: output ``.html`` file; parent folders are created.
        title: page title.
        sections: report content in order.
        data_note: shown at the top, e.g. ``PHANTOM_NOTE`` when the data are simulated.
    """
    from lesionkit.io import atomic_path

    path = Path(path)
    document = render_html(title, sections, data_note)
    with atomic_path(path) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return path
