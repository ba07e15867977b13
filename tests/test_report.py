import base64
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from lesionkit.report import (
    PHANTOM_NOTE,
    Section,
    curve_figure,
    figure_png,
    overlay_figure,
    render_html,
    slice_panel,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _volume(seed=0, shape=(12, 14, 10)):
    return np.random.default_rng(seed).random(shape)


def _lesion(shape=(12, 14, 10)):
    mask = np.zeros(shape, bool)
    mask[4:7, 5:8, 3:6] = True
    return mask


def test_write_report_embeds_png_and_escapes_text(tmp_path):
    x = np.linspace(0, 1, 11)
    curve = curve_figure(x, {"Dice": x, "detection rate": 1 - x}, "threshold", "value", 0.33)
    table = pd.DataFrame({"metric": ["<b>psnr</b>"], "value": [31.234567]})
    rows = [{"subject": "01", "dice": 0.5}, {"subject": "02", "dice": 0.75}]
    section = Section(
        title="Results & <checks>",
        text="First paragraph <script>alert(1)</script>.\n\nSecond paragraph.",
        tables={"Image quality": table, "Per subject": rows},
        figures={"Dice vs threshold": curve},
    )
    path = write_report(tmp_path / "out" / "report.html", "enhance <r1>", [section], PHANTOM_NOTE)
    assert path == tmp_path / "out" / "report.html"
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Results &amp; &lt;checks&gt;" in page
    assert "&lt;b&gt;psnr&lt;/b&gt;" in page
    assert "31.23" in page and "0.75" in page
    assert "digital phantom" in page
    assert page.count("<p>") == 2
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1
    assert base64.b64decode(images[0]).startswith(PNG_MAGIC)


def test_render_without_note_and_with_plain_lists():
    page = render_html("t", [Section("s", tables=[[{"a": 1}]], figures=[PNG_MAGIC])])
    assert 'class="note"' not in page
    assert "<table" in page and "data:image/png;base64," in page


def test_slice_panel_with_difference_and_outline():
    a, b = _volume(0), _volume(1)
    figure = slice_panel(
        {"3T": a, "enhanced": b, "7T": a, "difference": b - a},
        outline=_lesion(),
        diverging={"difference"},
        unit="s^-1",
        spacing=(0.5, 0.5, 1.0),
    )
    assert isinstance(figure, Figure)
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert len(images) == 4
    assert images[0].get_clim() == images[2].get_clim()  # shared range
    low, high = images[3].get_clim()
    assert low == pytest.approx(-high)  # symmetric difference
    assert images[3].get_cmap().name == "RdBu_r"
    assert figure_png(figure).startswith(PNG_MAGIC)


def test_slice_panel_per_image_range_and_explicit_limits():
    a = _volume(0)
    figure = slice_panel({"a": a, "b": 10 * a}, shared_range=False, axis=0, index=3)
    clims = [ax.images[0].get_clim() for ax in figure.axes if ax.images]
    assert clims[1][1] == pytest.approx(10 * clims[0][1])
    fixed = slice_panel({"a": a}, vmin=0.0, vmax=2.0)
    assert fixed.axes[0].images[0].get_clim() == (0.0, 2.0)


def test_overlay_figure_centres_on_overlay_maximum():
    image = _volume(2)
    cam = np.zeros(image.shape)
    cam[5, 6, 4] = 1.0
    figure = overlay_figure(image, cam, outline=_lesion(), overlay_label="Grad-CAM")
    titles = [ax.get_title() for ax in figure.axes[:3]]
    assert titles == ["sagittal 5", "coronal 6", "axial 4"]
    assert figure_png(figure).startswith(PNG_MAGIC)
