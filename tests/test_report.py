import base64
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from lesionkit.report import (
    PHANTOM_NOTE,
    ReportEntry,
    Section,
    caption,
    column_label,
    curve_figure,
    figure_png,
    overlay_figure,
    render_html,
    slice_panel,
    write_index,
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


def test_overlay_figure_draws_nothing_outside_the_mask():
    image = _volume(3)
    cam = np.ones(image.shape)  # an upsampled CAM lights up every voxel, background too
    cam[5, 6, 4] = 0.5
    brain = np.zeros(image.shape, bool)
    brain[2:10, 3:11, 2:8] = True
    cam[0, 0, 0] = 2.0  # the maximum lies outside the brain: not the default centre
    figure = overlay_figure(image, cam, mask=brain, overlay_label="Grad-CAM (0-1)")
    assert [ax.get_title() for ax in figure.axes[:3]] == ["sagittal 2", "coronal 3", "axial 2"]
    axial = figure.axes[2].images[1].get_array()  # the heat layer, axial plane k = 2
    drawn = ~np.ma.getmaskarray(axial)
    assert drawn.any() and not drawn[~brain[:, :, 2].T].any()
    assert figure.axes[2].images[1].get_clim()[1] == 1.0  # colour range from inside only
    with pytest.raises(ValueError, match="same grid"):
        overlay_figure(image, cam, mask=brain[:-1])


def test_caption_names_subject_method_and_threshold():
    text = caption("lesion probability on FLAIR", "sub-03", "mrf-lesion U-Net", "33 %")
    assert text == ("sub-03: lesion probability on FLAIR. Method: mrf-lesion U-Net. "
                    "Threshold: 33 %.")
    assert "Threshold" not in caption("ROC curve", "12 subjects", "rim-classify")


def test_table_headers_carry_units_wrap_and_say_na():
    rows = [{"participant_id": "sub-01", "rmse (mean)": 0.1, "psnr": 30.0, "ssim": None},
            {"participant_id": "sub-02", "rmse (mean)": float("nan"), "psnr": 31.0,
             "ssim": 0.9}]
    page = render_html("t", [Section("s", tables={"per subject": rows},
                                     units={"rmse": "s^-1", "psnr": "dB"})])
    assert column_label("rmse (mean)", {"rmse": "s^-1"}) == "rmse (mean, s^-1)"
    assert column_label("psnr", {"psnr": "dB"}) == "psnr (dB)"
    assert column_label("ssim", {"psnr": "dB"}) == "ssim"
    assert "<th>rmse (mean, s^-1)</th>" in page and "<th>psnr (dB)</th>" in page
    assert "participant_<wbr>id" in page  # long snake-case headers may wrap
    assert "sub-01" in page and "sub_<wbr>" not in page  # cells are left as they are
    assert page.count("<td>n/a</td>") == 2
    assert 'class="table"' in page and "overflow:auto" in page


def test_write_index_links_reports_relatively(tmp_path):
    run = tmp_path / "run"
    first = write_report(run / "phantom" / "mrf lesion" / "report.html", "mrf-lesion",
                         [Section("s")])
    second = write_report(run / "models" / "fcd-classify" / "report.html", "fcd", [Section("s")])
    entries = [ReportEntry(first, "mrf-lesion", "phantom mrf-lesion, 2 held-out subjects",
                           "lesion Dice 0.61, detection rate 0.85", "2026-01-02"),
               {"path": second, "task": "fcd-<classify>", "dataset": "phantom fcd-classify"}]
    index = write_index(run / "index.html", "lesionkit demo", entries, "Two reports.",
                        data_note=PHANTOM_NOTE)
    assert index == run / "index.html"
    page = index.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>lesionkit demo</title>" in page
    assert 'href="phantom/mrf%20lesion/report.html"' in page
    assert 'href="models/fcd-classify/report.html"' in page
    assert "fcd-&lt;classify&gt;" in page and "lesion Dice 0.61" in page
    assert "2026-01-02" in page and "<td>n/a</td>" in page  # no summary given
    assert "digital phantom" in page and "<p>Two reports.</p>" in page
    assert page.index("mrf-lesion") < page.index("fcd-&lt;classify&gt;")  # order kept
    assert [p.name for p in run.iterdir() if p.is_file()] == ["index.html"]
    moved = tmp_path / "moved"
    run.rename(moved)  # relative links survive moving the run folder
    assert (moved / "phantom" / "mrf lesion" / "report.html").is_file()


def test_write_index_refuses_a_missing_report(tmp_path):
    from lesionkit.io import InputError

    with pytest.raises(InputError, match=r"missing\.html: expected the mrf-lesion report"):
        write_index(tmp_path / "index.html", "run",
                    [ReportEntry(tmp_path / "missing.html", "mrf-lesion", "phantom")])
    assert not (tmp_path / "index.html").exists()


def test_slice_panel_masks_differences_outside_the_brain():
    a = _volume(4)
    b = a + 0.1 * _volume(5)
    b[0] = 50.0  # a network's output far off outside the brain
    brain = np.zeros(a.shape, bool)
    brain[2:10, 2:12, :] = True
    figure = slice_panel({"7T": a, "enhanced - 7T": b - a}, diverging={"enhanced - 7T"},
                         mask=brain, index=5)
    difference = figure.axes[1].images[0]
    low, high = difference.get_clim()
    assert high == pytest.approx(-low) and high < 1.0  # range from inside the brain
    drawn = ~np.ma.getmaskarray(difference.get_array())
    assert drawn.any() and not drawn[~brain[:, :, 5].T].any()
    assert not np.ma.getmaskarray(figure.axes[0].images[0].get_array()).any()  # anatomy whole


def test_curve_figure_over_one_epoch_shows_a_point_on_an_integer_tick():
    figure = curve_figure(np.array([1]), {"fold-0 training": np.array([0.5])}, "epoch", "loss")
    ax = figure.axes[0]
    assert list(ax.get_xticks()) == [1]
    assert ax.lines[0].get_marker() == "o"


def test_a_sections_headline_metrics_come_first_in_its_tables() -> None:
    """The case's columns stay left, then the headline metrics in their order (with their
    summary columns), then the rest as they came."""
    from lesionkit.report.page import _table_html

    rows = [{"participant_id": "sub-01", "t1_deviation": 4.0, "lesion_dice (mean)": 0.4,
             "method": "network", "detection_rate": 0.3, "lesion_dice (sd)": 0.1}]
    page = _table_html("", rows, first=("lesion_dice", "detection_rate", "absent"))
    order = [page.index(name) for name in ("participant_<wbr>id", "method",
                                           "lesion_<wbr>dice (mean)", "lesion_<wbr>dice (sd)",
                                           "detection_<wbr>rate", "t1_<wbr>deviation")]
    assert order == sorted(order)
    assert _table_html("", rows).index("t1_<wbr>deviation") < _table_html("", rows).index(
        "lesion_<wbr>dice (mean)")  # no headline metrics: the columns as they came
