"""The HTML page: sections of text, tables and figures embedded as base64 PNG.

All text (titles, paragraphs, captions, table cells) is HTML-escaped; the page needs
no other file. Tables sit in a box of the page's width that scrolls sideways (and down,
with the header kept in view) when they are larger; headers carry the columns' units;
missing values read "n/a". Figure captions name the subject, the method and the
threshold (:func:`caption`).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["PHANTOM_NOTE", "Section", "caption", "column_label", "figure_png", "render_html",
           "write_report"]

PHANTOM_NOTE = (
    "All images, figures and numbers on this page come from the lesionkit digital "
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
            or the Path of a PNG file); write captions with :func:`caption`.
        units: column name -> unit, shown in the tables' headers (:func:`column_label`),
            e.g. ``{"rmse": "s^-1", "psnr": "dB"}``.
        links: URL (relative to the page) -> link text, one paragraph each, e.g. the
            viewer page beside a report.
        first: Metric columns shown first in its tables, in this order, after the
            columns that name the case (participant, session, run, method, ...): the
            task's headline metrics (``Task.metrics``); a summary column such as
            ``lesion_dice (mean)`` goes with its metric.
    """

    title: str
    text: str = ""
    tables: Mapping[str, Table] | Sequence[Table] = ()
    figures: Mapping[str, FigureLike] | Sequence[FigureLike] = ()
    units: Mapping[str, str] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    first: Sequence[str] = ()


def caption(what: str, subject: str, method: str, threshold: str | None = None) -> str:
    """A figure caption that says what is shown, of whom, by which method, at which threshold.

    Args:
        what: What the figure shows, e.g. "lesion probability on FLAIR, true lesions
            outlined in cyan".
        subject: The subject(s), e.g. "sub-03" or "2 held-out subjects".
        method: The method that made the map or numbers, e.g. "Grad-CAM of the
            fcd-classify ResNet (patient class)".
        threshold: The threshold applied, with its unit, where one applies.

    Example:
        >>> caption("lesion probability on FLAIR", "sub-03", "mrf-lesion U-Net", "33 %")
        'sub-03: lesion probability on FLAIR. Method: mrf-lesion U-Net. Threshold: 33 %.'
    """
    text = f"{subject}: {what}. Method: {method}."
    return f"{text} Threshold: {threshold}." if threshold else text


def column_label(name: str, units: Mapping[str, str]) -> str:
    """A column's header with its unit: ``rmse`` -> ``rmse (s^-1)``, and a qualified
    column ``rmse (mean)`` takes the unit of ``rmse``: ``rmse (mean, s^-1)``."""
    base, _, qualifier = name.partition(" (")
    unit = units.get(name) or units.get(base)
    if not unit:
        return name
    if qualifier.endswith(")"):
        return f"{base} ({qualifier[:-1]}, {unit})"
    return f"{name} ({unit})"


#: The style of every lesionkit page (reports and the run index). Tables scroll inside
#: their own box (a shadow on the side that has more), the header row stays in view.
CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:1.6em}
.note{background:#fff4d6;border-left:4px solid #e0a800;padding:.6em 1em}
.table{overflow:auto;max-width:100%;max-height:32em;margin:.5em 0 1.2em;
background:linear-gradient(to right,#fff 30%,#fff0),linear-gradient(to left,#fff 30%,#fff0)
100% 0,radial-gradient(farthest-side at 0 50%,#0003,#0000),
radial-gradient(farthest-side at 100% 50%,#0003,#0000) 100% 0;background-repeat:no-repeat;
background-size:2.5em 100%,2.5em 100%,.9em 100%,.9em 100%;
background-attachment:local,local,scroll,scroll}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;
padding:.2em .5em;text-align:right}th{background:#f2f2f2;position:sticky;top:0;
vertical-align:bottom}td{white-space:nowrap}
td:first-child,th:first-child{text-align:left}td:first-child{white-space:normal;
min-width:6em;max-width:24em}
figure{margin:1.2em 0}img{max-width:100%;height:auto}
figcaption,caption{font-size:.9em;color:#444;text-align:left;caption-side:top;
padding-bottom:.3em}
.meta{color:#777;font-size:.85em}a{color:#0b5cad}
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


#: Columns that name a table's case, kept at its left.
_CASE_COLUMNS = ("participant_id", "session_id", "run", "method", "metric", "lesion", "label",
                 "arm", "kind", "image")


def _ordered(frame: pd.DataFrame, first: Sequence[str]) -> pd.DataFrame:
    """The case columns, then the columns of each metric in ``first`` (``name`` and
    ``name (...)``), then the rest, each group in its own order."""
    columns = [str(c) for c in frame.columns]
    case = [c for c in columns if c in _CASE_COLUMNS]
    metrics = [c for name in first for c in columns
               if c not in case and c.partition(" (")[0] == name]
    rest = [c for c in columns if c not in case and c not in metrics]
    return frame[[*case, *dict.fromkeys(metrics), *rest]]


def _table_html(caption: str, table: Table, units: Mapping[str, str] | None = None,
                first: Sequence[str] = ()) -> str:
    """The table in a box of the page's width that scrolls when the table is larger;
    headers carry units and may wrap after an underscore; missing values read "n/a";
    the columns of the metrics in ``first`` come right after those naming the case."""
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    if first and len(frame.columns):
        frame = _ordered(frame.rename(columns=str), first)
    frame = frame.rename(columns=lambda c: column_label(str(c), units or {}))
    frame = frame.astype(object).where(frame.notna(), None).map(
        lambda v: "n/a" if v is None or (isinstance(v, str) and v in ("None", "nan")) else v)
    body = frame.to_html(
        index=False, escape=True, border=0, na_rep="n/a", float_format=lambda v: f"{v:.4g}"
    )
    head, _, rest = body.partition("</thead>")
    body = head.replace("_", "_<wbr>") + "</thead>" + rest
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


def page_head(title: str, data_note: str | None = None, css: str = "") -> list[str]:
    """The opening HTML of a lesionkit page: title, version and time stamp, data note.

    Args:
        title: Page title (also its first heading).
        data_note: Shown at the top, e.g. ``PHANTOM_NOTE``.
        css: Style rules added to the shared ``CSS``.
    """
    from lesionkit import __version__

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}{css}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">lesionkit {html.escape(__version__)}, {stamp}</p>',
    ]
    if data_note:
        parts.append(f'<p class="note">{html.escape(data_note)}</p>')
    return parts


def render_html(title: str, sections: Sequence[Section], data_note: str | None = None) -> str:
    """The report as one HTML string (see ``write_report``)."""
    parts = page_head(title, data_note)
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts.append(_text_html(section.text))
        parts.extend(f'<p><a href="{html.escape(quote(url), quote=True)}">{html.escape(text)}'
                     "</a></p>" for url, text in section.links.items())
        parts.extend(_table_html(c, t, section.units, section.first)
                     for c, t in _items(section.tables))
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
