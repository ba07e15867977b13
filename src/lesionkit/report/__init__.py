"""Self-contained HTML reports with embedded figures.

A report is a title, an optional note on where the data come from, and a list of
``Section``s holding text, tables (pandas DataFrames or lists of dicts) and matplotlib
figures. Figures are embedded as base64 PNG, so the page is one file. All text is
HTML-escaped.

Example:
    >>> fig = curve_figure(x, {"Dice": dice, "detection rate": rate},  # doctest: +SKIP
    ...                    "threshold", "value", marker_x=0.33)
    >>> write_report("report.html", "mrf-lesion", [Section("Lesions", "...",  # doctest: +SKIP
    ...              figures={"Dice and detection rate": fig})], data_note=PHANTOM_NOTE)
    >>> write_index("run/index.html", "lesionkit demo",  # doctest: +SKIP
    ...             [ReportEntry("report.html", "mrf-lesion", "phantom", "Dice 0.61")])

A run's reports are listed on one index page (``write_index``); ``write_viewer`` writes
an interactive slice viewer (NiiVue) of NIfTI maps over their input;
``lesionkit.report.browser`` opens a page in headless Chromium to screenshot it and check
what a reader would see.
"""

from lesionkit.report.figures import curve_figure, overlay_figure, slice_panel
from lesionkit.report.index import ReportEntry, render_index, write_index
from lesionkit.report.page import (
    PHANTOM_NOTE,
    Section,
    caption,
    column_label,
    figure_png,
    render_html,
    write_report,
)
from lesionkit.report.viewer import Layer, render_viewer, write_viewer

__all__ = [
    "PHANTOM_NOTE",
    "Layer",
    "ReportEntry",
    "Section",
    "caption",
    "column_label",
    "curve_figure",
    "figure_png",
    "overlay_figure",
    "render_html",
    "render_index",
    "render_viewer",
    "slice_panel",
    "write_index",
    "write_report",
    "write_viewer",
]
