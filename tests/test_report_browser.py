"""Reports and the run index as a reader sees them: each page opened in headless Chromium.

Every page must load without console errors or failed loads, show every figure (decoded,
with a non-empty box) and need no sideways scroll (wide tables scroll in their own box).
Screenshots land in the test's temporary folder. Skipped when Chromium is not installed
(Debian: ``apt-get install chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from conftest import brain_mask, smooth_field, write_task_dataset
from lesionkit.report.browser import check_page, find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="headless Chromium not found on PATH (Debian: apt-get install chromium)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _task_report(root: Path) -> Path:
    """flair-lesion's own report of a tiny dataset, from written probability maps that
    also light up the background (as an untrained network does)."""
    from lesionkit.bids import bids_path, write_dataset_description
    from lesionkit.evaluation import report
    from lesionkit.io import load_volume, save_volume
    from lesionkit.tasks import get_task
    from lesionkit.volume import Volume

    task = get_task("flair-lesion")
    data = write_task_dataset(root / "bids", task, subjects=2)
    predictions = root / "predictions"
    write_dataset_description(predictions, "predictions")
    rng = np.random.default_rng(1)
    for subject in ("01", "02"):
        flair = load_volume(bids_path(data, subject, "FLAIR"))
        truth = load_volume(bids_path(data, subject, "mask", derivatives="phantom",
                                      label="lesion")).data > 0.5
        probability = np.clip(0.8 * ndimage.gaussian_filter(truth.astype(float), 1.0)
                              + 0.3 * smooth_field(rng), 0, 1)
        save_volume(Volume(probability.astype(np.float32), flair.affine, kind="probability",
                           unit="1"),
                    bids_path(predictions, subject, "probseg", desc="flairlesion",
                              label="lesion"))
    return report(task, data, root / "task-flair-lesion_report.html", predictions=predictions)


def _figure_report(root: Path) -> Path:
    """A report with every kind of figure and a table wider than the page."""
    from lesionkit.report import (
        PHANTOM_NOTE,
        Section,
        caption,
        curve_figure,
        overlay_figure,
        slice_panel,
        write_report,
    )

    rng = np.random.default_rng(0)
    brain = brain_mask()
    image, cam = smooth_field(rng) * brain, smooth_field(rng)
    wide = [{"participant_id": f"sub-{i:02d}", **{f"metric_{j}_long_name (mean)": i * j / 7
                                                  for j in range(24)}, "missing": None}
            for i in range(1, 4)]
    x = np.linspace(0, 100, 21)
    figures = {
        caption("Grad-CAM over FLAIR", "sub-01", "Grad-CAM (patient class)", "0.1"):
            overlay_figure(image, cam, outline=brain & (cam > 0.8), mask=brain,
                           overlay_label="Grad-CAM (0-1)"),
        caption("R1 slices", "sub-01", "enhance-r1 U-Net"):
            slice_panel({"3T": image, "7T": image * 1.1, "3T - 7T": -0.1 * image},
                        diverging={"3T - 7T"}, unit="s^-1"),
        caption("Dice against threshold", "2 subjects", "mrf-lesion U-Net", "33 %"):
            curve_figure(x, {"Dice": x / 100}, "threshold (%)", "Dice", marker_x=33),
    }
    return write_report(root / "figures.html", "lesionkit figures", [
        Section("Tables", "A table wider than the page.", tables={"per subject": wide},
                units={"metric_0_long_name": "s^-1"}),
        Section("Figures", figures=figures)], data_note=PHANTOM_NOTE)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    from lesionkit.report import ReportEntry, write_index

    root = tmp_path_factory.mktemp("pages")
    task, figures = _task_report(root / "task"), _figure_report(root)
    index = write_index(root / "index.html", "lesionkit test run", [
        ReportEntry(task, "flair-lesion", "tiny test dataset, 2 subjects", "lesion Dice n/a"),
        ReportEntry(figures, "figures", "synthetic volumes", "every kind of figure")])
    return {"index": index, "task": task, "figures": figures}


@pytest.mark.parametrize("name", ["index", "task", "figures"])
def test_page_loads_cleanly_and_shows_every_figure(pages: dict[str, Path], name: str) -> None:
    shot = pages[name].with_name(f"{name}.png")
    check = check_page(pages[name], screenshot=shot, width=1100, height=800)
    assert check.errors == []
    assert check.hidden_images == []
    assert not check.page_overflows, f"page {check.scroll_width} px wide in a 1100 px window"
    assert shot.read_bytes().startswith(PNG_MAGIC)
    expected = {"index": 0, "task": 2, "figures": 3}[name]  # task: curve + 2 overlays
    assert len(check.images) >= expected and all(i["naturalWidth"] > 0 for i in check.images)


def test_index_links_open_the_reports(pages: dict[str, Path]) -> None:
    import re

    page = pages["index"].read_text(encoding="utf-8")
    links = re.findall(r'href="([^"]+)"', page)
    assert len(links) == 2
    for link in links:
        assert (pages["index"].parent / link).resolve() in {pages["task"].resolve(),
                                                            pages["figures"].resolve()}


def test_a_broken_page_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="gone.png" alt="gone">'
                    '<div style="width:3000px">wide</div>'
                    "<script>console.error('boom')</script></body></html>")
    check = check_page(page, width=800, height=600)
    assert any("boom" in e for e in check.errors)
    assert any("gone.png" in e for e in check.errors)
    assert check.hidden_images == ["gone"] and check.page_overflows


def test_viewer_draws_the_map_over_its_background(tmp_path: Path) -> None:
    """NiiVue starts (WebGL2 in headless Chromium), raises no error, and the screenshot
    shows the grey background with the warm-coloured probability map over it."""
    import matplotlib.image
    import nibabel as nib

    from lesionkit.report.viewer import Layer, write_viewer

    rng = np.random.default_rng(2)
    brain = brain_mask()
    lesion = np.zeros_like(brain)
    lesion[tuple(n // 2 for n in brain.shape)] = True
    lesion = ndimage.binary_dilation(lesion, iterations=4)
    paths = {}
    for name, data in (("flair", (1 + smooth_field(rng)) * brain), ("prob", lesion * 0.9)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])),
                 paths[name])
    probe = tmp_path / "webgl2.html"
    probe.write_text("<script>window.webgl2 = String(!!document.createElement('canvas')"
                     ".getContext('webgl2'));</script>")
    if check_page(probe, ready="window.webgl2").ready != "true":
        pytest.skip("this Chromium has no WebGL2 (not even software-rendered)")
    page = write_viewer(tmp_path / "viewer.html", "viewer test", [
        Layer(paths["flair"], "FLAIR"),
        Layer(paths["prob"], "lesion probability", kind="probability", unit="1")])
    shot = tmp_path / "viewer.png"
    check = check_page(page, screenshot=shot, width=1100, height=900,
                       ready="window.lesionkitViewer")
    assert check.ready == "ready" and check.errors == []
    assert not check.page_overflows
    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # NiiVue's "warm" map at 0.9, blended over grey: yellow (the cross-hair is pure red)
    warm = (r > 150) & (g > 120) & (b < 100) & (abs(r - g) < 40)
    grey = (abs(r - g) < 8) & (abs(g - b) < 8) & (r > 60) & (r < 250)
    assert warm.sum() > 50, "the probability map is not drawn"
    assert grey.sum() > 2000, "the background image is not drawn"

