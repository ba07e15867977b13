"""The index page of a run: one row per task report, linked relatively.

Example:
    >>> write_index("demo/index.html", "lesionkit demo", [  # doctest: +SKIP
    ...     ReportEntry("demo/phantom/mrf-lesion/derivatives/lesionkit/"
    ...                 "task-mrf-lesion_report.html", "mrf-lesion", "phantom mrf-lesion",
    ...                 "lesion Dice 0.61, detection rate 0.85 (2 held-out subjects)")],
    ...     data_note=PHANTOM_NOTE)
"""

from __future__ import annotations

import datetime
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lesionkit.report.page import page_head

__all__ = ["ReportEntry", "render_index", "write_index"]


@dataclass(frozen=True)
class ReportEntry:
    """One report listed on the index page.

    Attributes:
        path: The report's HTML file (linked relative to the index page).
        task: Task name, e.g. "mrf-lesion" (the link's text).
        dataset: The data it reports on, e.g. "phantom mrf-lesion, 2 held-out subjects".
        summary: One line of headline figures, e.g. "lesion Dice 0.61, detection 0.85".
        date: When the report was written; default the file's modification time.
    """

    path: str | os.PathLike[str]
    task: str
    dataset: str
    summary: str = ""
    date: datetime.datetime | datetime.date | str | None = None


def _entry(entry: ReportEntry | Mapping[str, Any]) -> ReportEntry:
    return entry if isinstance(entry, ReportEntry) else ReportEntry(**entry)


def _date(entry: ReportEntry) -> str:
    date = entry.date
    if date is None:
        date = datetime.datetime.fromtimestamp(Path(entry.path).stat().st_mtime)
    if isinstance(date, datetime.datetime):
        return date.strftime("%Y-%m-%d %H:%M")
    return date.isoformat() if isinstance(date, datetime.date) else str(date)


def _link(target: Path, index: Path) -> str:
    """URL of ``target`` relative to the folder of ``index``."""
    relative = os.path.relpath(target.resolve(), index.resolve().parent)
    return quote(Path(relative).as_posix())


def render_index(out_path: str | os.PathLike[str], title: str,
                 entries: Sequence[ReportEntry | Mapping[str, Any]], text: str = "",
                 data_note: str | None = None) -> str:
    """The index page as one HTML string (see :func:`write_index`)."""
    from lesionkit.io import InputError

    rows = []
    for entry in map(_entry, entries):
        if not Path(entry.path).is_file():
            raise InputError(f"{entry.path}: expected the {entry.task} report, found no file")
        link = html.escape(_link(Path(entry.path), Path(out_path)), quote=True)
        rows.append(f'<tr><th scope="row"><a href="{link}">{html.escape(entry.task)}</a></th>'
                    f"<td>{html.escape(entry.dataset)}</td>"
                    f"<td>{html.escape(entry.summary) or 'n/a'}</td>"
                    f"<td>{html.escape(_date(entry))}</td></tr>")
    parts = page_head(title, data_note, _INDEX_CSS)
    parts.extend(f"<p>{html.escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())
    parts += ['<div class="table index"><table><caption>'
              f"{len(rows)} report{'' if len(rows) == 1 else 's'}; each opens on its own "
              "page</caption>",
              "<thead><tr><th>task</th><th>dataset</th><th>headline figures</th>"
              "<th>date</th></tr></thead><tbody>", *rows, "</tbody></table></div>",
              "</body></html>\n"]
    return "\n".join(parts)


#: The index's table: text columns left-aligned, the summary wraps.
_INDEX_CSS = """
.table.index{max-height:none}.index table{width:100%}
.index td,.index th{text-align:left;vertical-align:top}
.index td{white-space:normal}.index td:nth-child(4),.index tbody th{white-space:nowrap}
.index tbody th{background:none;position:static}
"""


def write_index(out_path: str | os.PathLike[str], title: str,
                entries: Sequence[ReportEntry | Mapping[str, Any]], text: str = "",
                data_note: str | None = None) -> Path:
    """Write the index page of a run: one row per report, linked relative to the page.

    Args:
        out_path: The index's HTML file, e.g. ``RUN_DIR/index.html``; parent folders are
            created. Reports are linked relative to its folder, so the run folder can move.
        title: Page title, e.g. "lesionkit demo".
        entries: One :class:`ReportEntry` (or a dict with the same keys) per report, in
            the order shown.
        text: Paragraphs above the table (blank lines separate them).
        data_note: Shown at the top, e.g. ``PHANTOM_NOTE`` when the data are simulated.

    Returns:
        The path written (atomically).

    Raises:
        InputError: A report file does not exist.
    """
    from lesionkit.io import atomic_path

    path = Path(out_path)
    document = render_index(path, title, entries, text, data_note)
    with atomic_path(path) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return path
