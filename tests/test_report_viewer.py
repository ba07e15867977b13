"""The viewer page: what it embeds, which layers a task's predictions give, its errors.

That the page draws in a browser is checked in ``test_report_browser.py``.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import brain_mask, oblique_affine, smooth_field, write_task_dataset
from lesionkit.io import InputError
from lesionkit.report.viewer import NIIVUE, PROBABILITY_FLOOR, Layer, render_viewer, write_viewer


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


def _specs(document: str) -> list[dict]:
    payload = re.search(r'<script type="application/json" id="layer-data">(.*?)</script>',
                        document, re.S)
    assert payload is not None
    return json.loads(payload.group(1))


def _decoded(spec: dict) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(spec["data"])))


def test_layers_are_embedded_with_their_affines_and_display_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    affine = oblique_affine(1.5)
    intensity = 1000 + 400 * smooth_field(rng) * brain_mask()
    probability = np.clip(smooth_field(rng), 0, 1) * brain_mask()
    document = render_viewer("a viewer", [
        Layer(_nifti(tmp_path / "flair.nii.gz", intensity, affine), "FLAIR"),
        Layer(_nifti(tmp_path / "prob.nii.gz", probability, affine), "lesion probability",
              kind="probability", unit="1")])
    assert NIIVUE.read_text(encoding="utf-8")[:200] in document  # NiiVue is in the page
    background, overlay = _specs(document)
    assert (background["colormap"], overlay["colormap"]) == ("gray", "warm")
    assert overlay["label"] == "lesion probability (1)" and overlay["visible"]
    assert (overlay["cal_min"], overlay["cal_max"]) == (PROBABILITY_FLOOR, 1.0)
    inside = intensity[intensity != 0]
    assert background["cal_min"] == pytest.approx(np.percentile(inside, 1), rel=1e-6)
    for spec, original, dtype in ((background, intensity, np.int16),
                                  (overlay, probability, np.uint8)):
        image = _decoded(spec)
        assert image.get_data_dtype() == dtype  # stored small, scaled back by NiiVue
        np.testing.assert_allclose(image.affine, affine, atol=1e-5)
        shown = np.asarray(image.dataobj, dtype=np.float32)
        step = float(np.ptp(original)) / (255 if dtype == np.uint8 else 65535)
        np.testing.assert_allclose(shown, original, atol=2 * step)


def test_the_probability_slider_is_there_only_for_probability_maps(tmp_path: Path) -> None:
    image = _nifti(tmp_path / "a.nii.gz", np.ones((4, 4, 4)), np.eye(4))
    assert 'id="floor"' not in render_viewer("t", [Layer(image, "a")])
    assert 'id="floor"' in render_viewer("t", [Layer(image, "a"),
                                               Layer(image, "p", kind="probability")])


def test_the_payload_cannot_close_its_script_element(tmp_path: Path) -> None:
    image = _nifti(tmp_path / "a.nii.gz", np.ones((4, 4, 4)), np.eye(4))
    document = render_viewer("t", [Layer(image, "</script><b>bold</b>")])
    assert "</script><b>" not in document
    assert _specs(document)[0]["label"] == "</script><b>bold</b>"


def test_a_4d_series_shows_its_first_volume(tmp_path: Path) -> None:
    series = np.stack([np.full((4, 4, 4), float(k)) for k in (3, 7)], axis=-1)
    document = render_viewer("t", [Layer(_nifti(tmp_path / "s.nii.gz", series, np.eye(4)), "s")])
    assert np.asarray(_decoded(_specs(document)[0]).dataobj).shape == (4, 4, 4)


def test_bad_images_are_refused_naming_the_file_and_nothing_is_written(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    out = tmp_path / "viewer.html"
    with pytest.raises(InputError, match=r"broken\.nii\.gz: expected a NIfTI image"):
        write_viewer(out, "t", [Layer(broken, "broken")])
    flat = _nifti(tmp_path / "flat.nii.gz", np.ones((4, 4)), np.eye(4))
    with pytest.raises(InputError, match=r"flat\.nii\.gz: expected a 3D or 4D image to show, "
                       "found 2D"):
        write_viewer(out, "t", [Layer(flat, "flat")])
    with pytest.raises(InputError, match="expected at least one image"):
        write_viewer(out, "t", [])
    assert not out.exists()


def _predictions(tmp_path: Path, sources: bool = True) -> tuple:
    """flair-lesion's tiny dataset with a written lesion map per subject (sidecar with
    its ``Sources`` as predict writes it, or none)."""
    from lesionkit.bids import bids_path, write_dataset_description
    from lesionkit.io import load_volume, save_volume
    from lesionkit.tasks import get_task
    from lesionkit.volume import Volume

    task = get_task("flair-lesion")
    data = write_task_dataset(tmp_path / "bids", task, subjects=2)
    predictions = tmp_path / "predictions"
    write_dataset_description(predictions, "predictions")
    for subject in ("01", "02"):
        flair = bids_path(data, subject, "FLAIR")
        volume = load_volume(flair)
        path = bids_path(predictions, subject, "probseg", desc=task.outputs[-1].desc,
                         label="lesion")
        save_volume(Volume((volume.data > 1.5).astype(np.float32), volume.affine,
                           kind="probability", unit="1"), path)
        if sources:
            path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
                json.dumps({"Sources": [str(flair)]}))
    return task, data, predictions


def test_a_tasks_predictions_give_the_input_as_background_and_the_maps_over_it(
        tmp_path: Path) -> None:
    from lesionkit.evaluation import viewer_layers

    task, _, predictions = _predictions(tmp_path)
    background, lesion = viewer_layers(task, predictions, "02")
    assert Path(background.path).name == "sub-02_FLAIR.nii.gz" and background.name == "FLAIR"
    assert lesion.kind == "probability" and lesion.visible
    assert lesion.name == f"lesion probability, desc-{task.outputs[-1].desc}"
    assert viewer_layers(task, predictions, "03") == []  # no predictions


def test_the_brain_mask_lesion_labels_and_changes_written_are_hidden_layers(
        tmp_path: Path) -> None:
    from lesionkit.bids import bids_path
    from lesionkit.evaluation import viewer_layers

    task, data, predictions = _predictions(tmp_path)
    flair = nib.load(bids_path(data, "02", "FLAIR"))
    mask = bids_path(predictions, "02", "mask", label="brain", desc=task.outputs[-1].desc)
    _nifti(mask, np.ones(flair.shape), flair.affine)
    lesions = bids_path(predictions, "02", "dseg", desc=task.outputs[-1].desc)
    _nifti(lesions, np.zeros(flair.shape), flair.affine)
    changes = bids_path(predictions, "02", "dseg", label="lesion",
                        desc=f"{task.outputs[-1].desc}change")
    _nifti(changes, np.zeros(flair.shape), flair.affine)
    background, brain, labels, changed, lesion = viewer_layers(task, predictions, "02")
    assert Path(brain.path) == mask and brain.kind == "label" and not brain.visible
    assert Path(labels.path) == lesions and labels.kind == "label" and not labels.visible
    assert Path(changed.path) == changes and not changed.visible
    assert changed.name.startswith("lesion changes")
    assert lesion.visible and Path(background.path).name == "sub-02_FLAIR.nii.gz"
    assert len(viewer_layers(task, predictions, "01")) == 2  # none written for sub-01


def test_a_finer_intensity_output_becomes_the_background(tmp_path: Path) -> None:
    """A super-resolved map on a finer grid than its input is the background, so that
    the viewer shows it at its own resolution; the input stays one click away."""
    from lesionkit.bids import bids_path
    from lesionkit.evaluation import viewer_layers
    from lesionkit.tasks.task import OutputSpec

    task, data, predictions = _predictions(tmp_path)
    fine = OutputSpec(suffix="FLAIR", desc="finer", unit="a.u.")
    task = replace(task, outputs=(*task.outputs, fine))
    flair = nib.load(bids_path(data, "01", "FLAIR"))
    finer = flair.affine @ np.diag([0.5, 0.5, 0.5, 1.0])
    out = bids_path(predictions, "01", "FLAIR", desc="finer")
    out.parent.mkdir(parents=True, exist_ok=True)
    _nifti(out, np.zeros([2 * n for n in flair.shape]), finer)
    layers = viewer_layers(task, predictions, "01")
    assert layers[0].name == "FLAIR, desc-finer"
    assert [(layer.kind, layer.visible) for layer in layers[1:]] == [
        ("intensity", False), ("probability", True)]


def test_of_several_probability_maps_the_last_is_shown_the_others_in_other_colours(
        tmp_path: Path) -> None:
    """mrf-lesion predicts T1 and T2* maps and NAWM, GM and lesion probabilities: the
    T1 map is the background and only the lesion map is drawn when the page opens."""
    from lesionkit.bids import bids_path
    from lesionkit.evaluation import viewer_layers
    from lesionkit.tasks.task import OutputSpec

    task, data, predictions = _predictions(tmp_path)
    flair = nib.load(bids_path(data, "01", "FLAIR"))
    extra = (OutputSpec(suffix="T1map", desc="x", unit="ms"),
             OutputSpec(suffix="probseg", desc="x", unit="1", kind="probability",
                        entities=(("label", "GM"),)))
    for spec in extra:
        path = bids_path(predictions, "01", spec.suffix, desc="x", **dict(spec.entities))
        _nifti(path, np.ones(flair.shape), flair.affine)
    task = replace(task, outputs=(*extra, *task.outputs))
    layers = viewer_layers(task, predictions, "01")
    assert [(layer.name, layer.visible) for layer in layers] == [
        ("T1map, desc-x", True), ("FLAIR", False), ("GM probability, desc-x", False),
        (f"lesion probability, desc-{task.outputs[-1].desc}", True)]
    assert layers[-1].colormap == "warm" and layers[2].colormap not in (None, "warm")


def test_report_links_a_viewer_when_the_predictions_name_their_inputs(tmp_path: Path) -> None:
    from lesionkit.evaluation import report

    task, data, predictions = _predictions(tmp_path)
    page = report(task, data, predictions=predictions)
    viewer = page.with_name("task-flair-lesion_viewer.html")
    assert 'href="task-flair-lesion_viewer.html"' in page.read_text(encoding="utf-8")
    assert "lesionkit flair-lesion: sub-01" in viewer.read_text(encoding="utf-8")

    other = report(task, data, tmp_path / "elsewhere" / "page.html", predictions=predictions)
    assert 'href="page_viewer.html"' in other.read_text(encoding="utf-8")
    assert (tmp_path / "elsewhere" / "page_viewer.html").is_file()

    task, data, predictions = _predictions(tmp_path / "no-sources", sources=False)
    page = report(task, data, predictions=predictions)
    assert not page.with_name("task-flair-lesion_viewer.html").exists()
    assert "_viewer.html" not in page.read_text(encoding="utf-8")


def test_an_image_the_viewer_cannot_show_costs_the_viewer_not_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lesionkit.evaluation import report

    task, data, predictions = _predictions(tmp_path)
    prediction = next(predictions.rglob("sub-01_*_probseg.json"))
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    prediction.write_text(json.dumps({"Sources": [str(broken)]}))
    page = report(task, data, predictions=predictions, subjects=["01"])
    assert page.is_file() and not page.with_name("task-flair-lesion_viewer.html").exists()
    assert "broken.nii.gz: expected a NIfTI image" in capsys.readouterr().err


def test_view_needs_no_truth_and_names_what_is_missing(tmp_path: Path) -> None:
    from lesionkit.evaluation import view

    task, data, predictions = _predictions(tmp_path)
    for truth in data.rglob("*lesion_mask.nii.gz"):
        truth.unlink()  # a user's scans: predictions, no ground truth
    page = view(task, predictions)
    assert page == predictions / "sub-01_viewer.html"
    assert "lesionkit flair-lesion: sub-01" in page.read_text(encoding="utf-8")
    chosen = view(task, predictions, subject="sub-02", out=tmp_path / "v" / "two.html")
    assert "lesionkit flair-lesion: sub-02" in chosen.read_text(encoding="utf-8")
    with pytest.raises(InputError, match=r"predictions: expected flair-lesion's predictions "
                                         r"\(probseg \(desc-.*\)\) of sub-07"):
        view(task, predictions, subject="07")
    with pytest.raises(InputError, match="expected a predictions folder"):
        view(task, tmp_path / "nowhere")



def test_the_view_opens_at_the_largest_region_of_the_first_map_shown(tmp_path: Path) -> None:
    """The cross-hair starts at the largest region of the first visible probability or
    label map (world mm, through its affine), not at the centre of the volume."""
    from lesionkit.report.viewer import largest_region_centre

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-40.0, -50.0, -30.0)
    probability = np.zeros((40, 48, 36), np.float32)
    probability[5:8, 5:8, 5:8] = 0.95  # small and brightest
    probability[25:31, 30:36, 20:26] = 0.7  # largest
    probability[0, 0, 0] = 0.05  # below the floor
    centre = [2.0 * c + o for c, o in zip((27, 32, 22), (-40.0, -50.0, -30.0), strict=True)]
    assert largest_region_centre(probability, affine, PROBABILITY_FLOOR) == pytest.approx(
        centre, abs=2.0)
    assert largest_region_centre(np.full((4, 4, 4), 0.05), affine, PROBABILITY_FLOOR) is None
    background = _nifti(tmp_path / "flair.nii.gz", np.ones(probability.shape), affine)
    shown = _nifti(tmp_path / "prob.nii.gz", probability, affine)

    def focus(*layers: Layer) -> list[float] | None:
        document = render_viewer("t", [Layer(background, "FLAIR"), *layers])
        found = re.search(r'<script type="application/json" id="focus">(.*?)</script>',
                          document, re.S)
        assert found is not None
        return json.loads(found.group(1))

    assert focus(Layer(shown, "p", kind="probability")) == pytest.approx(centre, abs=2.0)
    assert focus(Layer(shown, "p", kind="probability", visible=False)) is None
    assert focus() is None


def test_a_label_map_the_view_opens_on_keeps_its_display_window(tmp_path: Path) -> None:
    labels = np.zeros((20, 20, 20), np.float32)
    labels[4:7, 4:7, 4:7] = 3  # any label counts, whatever its number
    background = _nifti(tmp_path / "flair.nii.gz", np.ones(labels.shape), np.eye(4))
    document = render_viewer("t", [Layer(background, "FLAIR"),
                                   Layer(_nifti(tmp_path / "l.nii.gz", labels, np.eye(4)),
                                         "lesions", kind="label")])
    assert _specs(document)[1]["cal_min"] == 0.5
    found = re.search(r'id="focus">(.*?)</script>', document, re.S)
    assert found is not None and json.loads(found.group(1)) == [5.0, 5.0, 5.0]
