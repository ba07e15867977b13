"""An interactive slice viewer page: predicted maps over their input, in NiiVue.

The page embeds NiiVue (a WebGL2 NIfTI viewer, BSD 2-Clause, vendored as one file in
``lesionkit/report/vendor``) and every image it shows, so it opens from disk with no
network and no other file. Images keep their affines: NiiVue places each layer in world
space, so a map on another grid than the background still lands where it belongs.
For display only, each image is stored in the page at 8 bits (probabilities and labels)
or 16 bits (intensities) with a NIfTI scale factor; the files on disk are untouched.

Example:
    >>> write_viewer("viewer.html", "sub-01: lesion probability over FLAIR", [  # doctest: +SKIP
    ...     Layer("sub-01_FLAIR.nii.gz", "FLAIR"),
    ...     Layer("sub-01_label-lesion_probseg.nii.gz", "lesion probability",
    ...           kind="probability", unit="1")])
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionkit.report.page import page_head

__all__ = ["NIIVUE", "OVERLAY_COLORMAPS", "PROBABILITY_FLOOR", "Layer", "largest_region_centre",
           "render_viewer", "write_viewer"]

#: The vendored NiiVue build embedded in every viewer page.
NIIVUE = Path(__file__).with_name("vendor") / "niivue.umd.js"

#: Probability maps are transparent below this value when the page opens (the page's
#: slider moves it).
PROBABILITY_FLOOR = 0.1

#: NiiVue colour map per kind of image: intensities grey, probabilities warm, labels red.
_COLORMAPS = {"intensity": "gray", "probability": "warm", "label": "red"}

#: NiiVue colour maps that tell several overlays apart, the first for the main one.
OVERLAY_COLORMAPS = ("warm", "winter", "green", "violet", "blue", "red")


@dataclass(frozen=True)
class Layer:
    """One image of a viewer page; the first layer is the background.

    Attributes:
        path: NIfTI file (3D; of a 4D series the first volume is shown).
        name: What the layer is, shown beside its check box, e.g. "FLAIR".
        kind: ``intensity`` (grey, 1st-99th percentile window), ``probability`` (warm
            colours from :data:`PROBABILITY_FLOOR` to 1) or ``label`` (red above 0).
        unit: Unit of the values, e.g. "s^-1" or "1" (shown beside the name).
        visible: Shown when the page opens (hidden layers are one click away). Intensity
            layers drawn over the background replace it; other kinds are blended at 60 %.
        colormap: A NiiVue colour map name instead of the kind's (e.g. "winter", to tell
            a second probability map apart).
    """

    path: str | os.PathLike[str]
    name: str
    kind: str = "intensity"
    unit: str = ""
    visible: bool = True
    colormap: str | None = None


def _display_nifti(layer: Layer) -> tuple[str, float, float, np.ndarray, np.ndarray]:
    """The layer as a gzipped NIfTI in base64, with its display window (cal_min, cal_max),
    and the values shown (3D) with their affine."""
    import nibabel as nib

    from lesionkit.io import InputError

    path = Path(layer.path)
    try:
        image = nib.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise InputError(f"{path}: expected a NIfTI image to show, found one that cannot be "
                         f"read ({error})") from None
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D or 4D image to show, found {data.ndim}D")
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    if layer.kind == "intensity":
        inside = data[data != 0]
        low, high = (np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0))
        stored, dtype = data, np.int16
    else:
        low, high = (PROBABILITY_FLOOR, 1.0) if layer.kind == "probability" else (0.5, 1.0)
        stored, dtype = np.clip(data, 0, None), np.uint8
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)  # nibabel scales float values into the 8 / 16 bits
    out = nib.Nifti1Image(stored, image.affine, header)
    out.set_qform(image.affine, code=1)
    out.set_sform(image.affine, code=1)
    blob = gzip.compress(out.to_bytes(), compresslevel=6, mtime=0)
    return (base64.b64encode(blob).decode("ascii"), float(low), float(high or 1.0), data,
            np.asarray(image.affine, dtype=np.float64))


def largest_region_centre(data: np.ndarray, affine: np.ndarray, floor: float
                          ) -> list[float] | None:
    """Where a map's largest region lies (world mm): the voxel nearest the centre of mass
    of its largest 26-connected region at or above half its peak and at or above
    ``floor``; None for a map with nothing above ``floor``."""
    from scipy import ndimage

    peak = float(data.max()) if data.size else 0.0
    if not peak > floor:
        return None
    regions, _ = ndimage.label(data >= max(floor, peak / 2), np.ones((3, 3, 3), bool))
    largest = int(np.argmax(np.bincount(regions.ravel())[1:])) + 1
    voxels = np.argwhere(regions == largest)
    nearest = voxels[np.argmin(((voxels - voxels.mean(0)) ** 2).sum(1))]
    return [round(float(v), 2) for v in (affine @ np.array([*nearest, 1.0]))[:3]]


def render_viewer(title: str, layers: Sequence[Layer], text: str = "",
                  data_note: str | None = None) -> str:
    """The viewer page as one HTML string (see :func:`write_viewer`)."""
    from lesionkit.io import InputError

    if not layers:
        raise InputError(f"viewer '{title}': expected at least one image, found none")
    specs, focus, focus_name = [], None, ""
    for index, layer in enumerate(layers):
        data, low, high, values, affine = _display_nifti(layer)
        if (focus is None and index and layer.visible
                and layer.kind in ("probability", "label")):
            floor = low
            if layer.kind == "label":  # every label counts, whatever its number
                values, floor = (values > 0).astype(np.float32), 0.0
            focus = largest_region_centre(values, affine, floor)
            focus_name = layer.name
        label = f"{layer.name} ({layer.unit})" if layer.unit else layer.name
        colormap = layer.colormap or _COLORMAPS.get(layer.kind, "gray")
        specs.append({"name": f"layer{index}.nii.gz", "label": label, "data": data,
                      "colormap": colormap, "kind": layer.kind,
                      "cal_min": low, "cal_max": high, "visible": layer.visible,
                      "opacity": 1.0 if layer.kind == "intensity" else 0.6})
    payload = json.dumps(specs).replace("</", "<\\/")  # no "</script>" inside the JSON
    opens = (f"The view opens at the largest region of {html.escape(focus_name)}. "
             if focus is not None else "")
    parts = page_head(title, data_note, _VIEWER_CSS)
    parts.extend(f"<p>{html.escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())
    slider = ('<div class="viewer-controls"><label>probability maps shown from '
              f'<input type="range" id="floor" min="0" max="0.95" step="0.05" '
              f'value="{PROBABILITY_FLOOR}"> <output id="floor-value">'
              f"{PROBABILITY_FLOOR:.2f}</output></label></div>")
    parts += [
        '<div class="viewer-controls" id="layers"></div>',
        *([slider] if any(layer.kind == "probability" for layer in layers) else []),
        '<div class="viewer"><canvas id="viewer"></canvas></div>',
        f'<p class="meta" id="location">{opens}Click or drag in a view to move the '
        "cross-hair; scroll to step through slices.</p>",
        f"<script>{NIIVUE.read_text(encoding='utf-8')}</script>",
        f'<script type="application/json" id="layer-data">{payload}</script>',
        f'<script type="application/json" id="focus">{json.dumps(focus)}</script>',
        f"<script>{_VIEWER_JS}</script>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


def write_viewer(out_path: str | os.PathLike[str], title: str, layers: Sequence[Layer],
                 text: str = "", data_note: str | None = None) -> Path:
    """Write a self-contained viewer page: the layers over the first, in three planes,
    opening at the largest region of the first visible probability or label map
    (:func:`largest_region_centre`; at the volume's centre without one).

    Args:
        out_path: The HTML file; parent folders are created.
        title: Page title, e.g. "sub-01: lesion probability over FLAIR".
        layers: The background first, then the maps drawn over it (:class:`Layer`).
        text: Paragraphs above the viewer (blank lines separate them).
        data_note: Shown at the top, e.g. ``PHANTOM_NOTE`` when the data are simulated.

    Returns:
        The path written (atomically).

    Raises:
        InputError: No layer, or an image that cannot be read or is not 3D/4D.
    """
    from lesionkit.io import atomic_path

    path = Path(out_path)
    document = render_viewer(title, layers, text, data_note)
    with atomic_path(path) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return path


_VIEWER_CSS = """
.viewer{width:100%;height:640px;background:#000}
.viewer canvas{width:100%;height:100%;display:block}
.viewer-controls{margin:.4em 0}.viewer-controls label{margin-right:1.2em;white-space:nowrap}
"""

#: Loads every layer into NiiVue, draws three planes, wires the check boxes and the
#: probability slider; sets ``window.lesionkitViewer`` to "ready" (or the error).
_VIEWER_JS = """
(async function () {
  var specs = JSON.parse(document.getElementById('layer-data').textContent);
  var nv = new niivue.Niivue({backColor: [0, 0, 0, 1], show3Dcrosshair: true,
                              isColorbar: false, loadingText: 'loading images'});
  await nv.attachTo('viewer');
  for (var i = 0; i < specs.length; i++) {
    var s = specs[i];
    var image = await niivue.NVImage.loadFromBase64({
      base64: s.data, name: s.name, colormap: s.colormap, cal_min: s.cal_min,
      cal_max: s.cal_max, trustCalMinMax: true, opacity: s.visible ? s.opacity : 0});
    nv.addVolume(image);
  }
  nv.setSliceType(nv.sliceTypeMultiplanar);
  var focus = JSON.parse(document.getElementById('focus').textContent);
  if (focus) { nv.scene.crosshairPos = nv.mm2frac(focus); nv.updateGLVolume(); }
  var box = document.getElementById('layers');
  specs.forEach(function (s, i) {
    var label = document.createElement('label'), check = document.createElement('input');
    check.type = 'checkbox'; check.checked = s.visible;
    check.addEventListener('change', function () {
      nv.setOpacity(i, check.checked ? s.opacity : 0);
    });
    label.appendChild(check);
    label.appendChild(document.createTextNode(' ' + s.label + (i === 0 ? ' (background)' : '')));
    box.appendChild(label);
  });
  var floor = document.getElementById('floor'), shown = document.getElementById('floor-value');
  if (floor) floor.addEventListener('input', function () {
    shown.textContent = Number(floor.value).toFixed(2);
    specs.forEach(function (s, i) {
      if (s.kind === 'probability') { nv.volumes[i].cal_min = Number(floor.value); }
    });
    nv.updateGLVolume();
  });
  nv.onLocationChange = function (data) {
    document.getElementById('location').textContent = data.string;
  };
  window.lesionkitViewer = 'ready';
})().catch(function (error) {
  window.lesionkitViewer = 'failed: ' + error;
  document.getElementById('location').textContent = 'The viewer could not start: ' + error;
  console.error(error);
});
"""
