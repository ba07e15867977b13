"""enhance-r1: image quality transfer from 3T to 7T-like R1 maps (METHODS.md section 1).

Paired 3T -> 7T R1 patches (s^-1): the 3T map resliced onto the 7T grid (order-4
B-spline) is the input, the 7T map the target, voxel to voxel. 32^3 sliding-window
patches with steps 8x8x4; patches with more than 80 % background dropped; 3D U-Net;
MSE; Adam 1e-4; early stopping after 10 epochs without validation improvement.
Trained on healthy subjects only (participants.tsv group "control"). Baseline: the
B-spline-upsampled 3T map itself.

Choices where the paper is silent or does not fit MONAI:
- Kernels are 3x3x3 (the paper's 2x2x2 kernels do not keep the size of a stride-1
  convolution); 4 levels of 32-64-128-256 features, batch normalisation.
- The decoder up-samples by trilinear interpolation followed by a convolution (MONAI's
  ``UpSample``, ``upsample="nontrainable"``), not by MONAI's stride-2 transposed
  convolution, whose uneven kernel overlap printed a 2-voxel checkerboard on the output.
- Loss: MSE plus the L1 distance of the image gradients (``mse+gradient-l1``): MSE alone
  rewards a blurred GM-WM boundary, the gradient term makes a blurred edge cost as much
  as a misplaced one. Both changes are measured in docs/results.md ("enhance-r1:
  sharper output").
- Input and target are z-scored with their own mean and standard deviation inside the
  brain mask of the training subjects; the output is inverted back to s^-1.
- Prediction slides windows of at most 96^3 (the fully convolutional network takes
  larger windows than its 32^3 training patches), fitted to the volume with at least
  12.5 % overlap and blended with a Gaussian: few windows, little border effect, memory
  bounded. On 8 phantom subjects this scored as fixed 96^3 windows at 25 % overlap (RMSE
  0.0664 against 0.0662 s^-1) and better than one whole-volume pass (0.0686;
  ``benchmarks/window_accuracy.py``). Training steps are only used to build the patch
  library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lesionkit.tasks.strategies import GridSampler, SlidingWindow
from lesionkit.tasks.task import DemoStep, ImageSpec, OutputSpec, Task

R1_3T = ImageSpec("r1_3t", "R1map", session="3T", exclude=("acq",), unit="s^-1")
R1_7T = ImageSpec("r1_7t", "R1map", session="7T", exclude=("acq",), unit="s^-1")
BRAIN = ImageSpec("brain", "mask", session="7T", derivatives="phantom",
                  entities=(("desc", "brain"),), kind="label", normalisation="none",
                  other_pipelines=True)
ENHANCED = OutputSpec("R1map", "enhanced", "s^-1", target="r1_7t")
#: Units of the metrics (report tables, printed figures).
UNITS = {"rmse": "s^-1", "psnr": "dB", "edge_sharpness": "s^-1/mm",
         "relative_edge_sharpness": "1/mm", "lesion_contrast": "ratio"}


def _truth(root: Path, subject: str, suffix: str, **entities: str) -> np.ndarray | None:
    from lesionkit.bids import BIDSDataset
    from lesionkit.io import load_volume

    found = BIDSDataset(root).find(subject=subject, session="7T", suffix=suffix,
                                   derivatives="phantom", **entities)
    return load_volume(found[0].path).data if found else None


def _load(root: Path, subject: str, spec: ImageSpec | OutputSpec):
    """(path, volume) of an image of the dataset ``root``, or of a prediction when ``root``
    holds them, in the spec's unit."""
    from lesionkit.bids import BIDSDataset

    query = {"desc": spec.desc} if isinstance(spec, OutputSpec) else spec.query()
    found = BIDSDataset(root).get(subject, spec.suffix, **query)
    return found.path, found.load_in(spec.unit)


def evaluate(task: Task, root: Path, predictions: Path, subjects: list[str]) -> list[dict]:
    """Metrics per subject for the 3T baseline, the enhanced map and the 7T reference.

    RMSE (s^-1), PSNR (dB) and SSIM against the 7T map inside the brain mask; the share
    of power at the 2-voxel period over the 7T map's (``nyquist_power_ratio``; the 7T
    map's share is its noise, so a clean map scores near 0 and a checkerboard near or
    above 1); GM-WM edge sharpness (the mean slope across the boundary, which noise does
    not raise; s^-1/mm) and the same over each map's own GM-WM contrast (1/mm,
    comparable across field strengths whose R1 differ); the fine texture of deep white
    matter over its mean (``white_matter_texture``: noise or grain a map carries, which
    the sharpness scores do not see); lesion contrast to a 2 mm shell
    and its preservation (output contrast over 7T contrast) where the subject has a
    lesion mask.

    Phantom datasets also give the noise-free 7T map (method "truth"): the 7T map's noise
    raises its power at the 2-voxel period, and the truth shows by how much; its RMSE
    against the 7T map is the noise floor of every RMSE.
    """
    from lesionkit.bids import BIDSDataset
    from lesionkit.io import GRID_TOLERANCE_MM, check_same_grid
    from lesionkit.metrics import image as m

    table = BIDSDataset(root).participants().set_index("participant_id")
    rows = []
    for subject in subjects:
        loaded = dict((_load(root, subject, R1_7T), _load(root, subject, R1_3T),
                       _load(predictions, subject, ENHANCED)))
        # Voxel-wise scores need one grid: the prediction is on the 3T input's grid.
        check_same_grid(loaded, atol_mm=GRID_TOLERANCE_MM * 10)
        (reference, baseline, enhanced) = loaded.values()
        images = {"baseline": baseline.data, "enhanced": enhanced.data,
                  "reference": reference.data}
        truth = _truth(root, subject, "R1map")  # a phantom's noise-free 7T map
        if truth is not None and truth.shape == reference.shape:
            images["truth"] = truth
        brain = _truth(root, subject, "mask", desc="brain") > 0.5
        gm, wm = (_truth(root, subject, "probseg", label=t) for t in ("GM", "WM"))
        lesion = _truth(root, subject, "mask", label="lesion")
        lesion = lesion > 0.5 if lesion is not None and (lesion > 0.5).any() else None
        group = table["group"].get(f"sub-{subject}") if "group" in table else None
        for method, image in images.items():
            row: dict = {"participant_id": f"sub-{subject}", "group": group, "method": method}
            scored = method != "reference"
            row["rmse"] = m.rmse(image, reference.data, brain) if scored else None
            row["psnr"] = m.psnr(image, reference.data, brain) if scored else None
            row["ssim"] = m.ssim(image, reference.data, brain) if scored else None
            row["nyquist_power_ratio"] = (m.nyquist_power_ratio(image, reference.data, brain)
                                          if scored else None)
            row["edge_sharpness"] = (m.edge_sharpness(image, gm, wm, brain, reference.spacing)
                                     if gm is not None and wm is not None else None)
            row["relative_edge_sharpness"] = (
                m.relative_edge_sharpness(image, gm, wm, brain, reference.spacing)
                if gm is not None and wm is not None else None)
            row["white_matter_texture"] = (
                m.white_matter_texture(image, wm, brain, reference.spacing)
                if wm is not None else None)
            row["lesion_contrast"] = (m.lesion_contrast(image, lesion, 2.0, reference.spacing,
                                                        brain) if lesion is not None else None)
            row["contrast_preservation"] = (
                m.contrast_preservation(image, reference.data, lesion, 2.0, reference.spacing,
                                        brain) if lesion is not None and scored else None)
            rows.append(row)
    return rows


def report_sections(task: Task, root: Path, predictions: Path, subjects: list[str],
                    rows: list[dict]) -> list:
    """Report sections: the metric table, slices of 3T, enhanced, 7T and differences, and
    the mean GM-WM edge profile of each map.

    Slices (s^-1) pass through the lesion where a subject has one (FCD subjects first).
    """
    from lesionkit.report import Section, caption, curve_figure, slice_panel
    from lesionkit.summaries import summarise

    summary = summarise(rows)
    table = [{"method": method, **{f"{k} (mean)": v["mean"] for k, v in columns.items()},
              "subjects": max((v["n"] for v in columns.values()), default=0)}
             for method, columns in summary.items()]
    figures = {}
    lesioned = [s for s in subjects if _has_lesion(root, s)]
    for subject in (lesioned + [s for s in subjects if s not in lesioned])[:3]:
        r3 = _load(root, subject, R1_3T)[1]
        enhanced = _load(predictions, subject, ENHANCED)[1].data
        r7 = _load(root, subject, R1_7T)[1].data
        lesion = _truth(root, subject, "mask", label="lesion")
        outline = lesion > 0.5 if lesion is not None and (lesion > 0.5).any() else None
        figures[caption("R1 (s^-1), axial slice of the 3T baseline, the enhanced map, the "
                        "7T reference and the differences"
                        + (" through the lesion (outlined in yellow)" if outline is not None
                           else ""), f"sub-{subject}", f"{task.name} {task.network} (enhanced) "
                        "against B-spline upsampling (3T baseline)")] = slice_panel(
            {"3T (baseline)": r3.data, "enhanced": enhanced, "7T (reference)": r7,
             "3T - 7T": r3.data - r7, "enhanced - 7T": enhanced - r7},
            outline=outline, diverging=("3T - 7T", "enhanced - 7T"), unit="s^-1",
            spacing=r3.spacing)
    profile = _edge_profiles(root, predictions, subjects[0]) if subjects else None
    if profile is not None:
        figures[caption("mean GM-WM edge: R1 against the distance from the boundary (mm, "
                        "negative in GM), scaled so that the map's mean GM is 0 and its mean "
                        "WM 1; a blurred map rises over a longer distance",
                        f"sub-{subjects[0]}", f"{task.name} {task.network} (enhanced) against "
                        "B-spline upsampling (3T baseline)")] = curve_figure(
            *profile, xlabel="distance from the GM-WM boundary (mm)",
            ylabel="R1, GM mean 0, WM mean 1", marker_x=0.0, marker_label="boundary")
    text = ("RMSE (s^-1), PSNR (dB) and SSIM against the 7T map inside the brain mask, for "
            "the B-spline-upsampled 3T baseline and the enhanced map; power at the 2-voxel "
            "period over the 7T map's (nyquist_power_ratio: above 1, a checkerboard or other "
            "periodic texture); GM-WM edge sharpness, the mean slope across the boundary "
            "(s^-1/mm, and over each map's own GM-WM contrast, 1/mm; noise does not raise it) "
            "for 3T, enhanced, 7T and, on phantoms, the noise-free 7T map (truth); lesion "
            "contrast to a 2 mm shell and its "
            "preservation (output over 7T) on FCD subjects. Held-out subjects only.")
    return [Section("enhance-r1: metrics", text,
                    tables={"mean over subjects": table, "per subject": rows},
                    units=UNITS, first=task.metrics),
            Section("enhance-r1: slices", figures=figures)]


def _edge_profiles(root: Path, predictions: Path, subject: str
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Mean GM-WM edge profiles (:func:`lesionkit.metrics.image.edge_profile`) of the 3T
    baseline, the enhanced map, the 7T map and, on phantoms, the noise-free 7T map, at
    the distances all of them share; None without tissue probabilities, a boundary, a
    GM-WM contrast in every map, or shared distances."""
    from lesionkit.metrics.image import edge_profile

    gm, wm = (_truth(root, subject, "probseg", label=t) for t in ("GM", "WM"))
    brain = _truth(root, subject, "mask", desc="brain")
    if gm is None or wm is None or brain is None:
        return None
    reference = _load(root, subject, R1_7T)[1]
    images = {"3T (baseline)": _load(root, subject, R1_3T)[1].data,
              "enhanced": _load(predictions, subject, ENHANCED)[1].data,
              "7T (reference)": reference.data}
    truth = _truth(root, subject, "R1map")
    if truth is not None and truth.shape == reference.shape:
        images["7T truth (noise-free)"] = truth
    try:
        profiles = {name: edge_profile(image, gm, wm, brain > 0.5, reference.spacing)
                    for name, image in images.items()}
    except ValueError:  # no boundary or no contrast: the report goes without this figure
        return None
    shared = sorted(set.intersection(*(set(d.tolist()) for d, _ in profiles.values())))
    if not shared:
        return None
    return np.asarray(shared), {name: v[np.isin(d, shared)] for name, (d, v) in profiles.items()}


def _has_lesion(root: Path, subject: str) -> bool:
    lesion = _truth(root, subject, "mask", label="lesion")
    return lesion is not None and bool((lesion > 0.5).any())


ENHANCE_R1 = Task(
    name="enhance-r1",
    description="3T R1 map -> 7T-like R1 map in s^-1 (image quality transfer)",
    inputs=(R1_3T,),
    targets=(R1_7T,),
    mask=BRAIN,
    outputs=(ENHANCED,),
    network="unet",
    network_kwargs={"channels": (32, 64, 128, 256), "strides": (2, 2, 2), "norm": "batch",
                    "upsample": "nontrainable"},
    loss="mse+gradient-l1",
    sampler=GridSampler(patch_size=(32, 32, 32), step=(8, 8, 4), max_background=0.8),
    inference=SlidingWindow(window=(96, 96, 96), overlap=0.125),
    learning_rate=1e-4,
    batch_size=16,
    max_epochs=100,
    patience=10,
    train_on={"group": ("control",)},
    metrics=("rmse", "psnr", "ssim", "nyquist_power_ratio", "edge_sharpness",
             "relative_edge_sharpness", "white_matter_texture", "lesion_contrast",
             "contrast_preservation"),
    metric_units=UNITS,
    evaluate=evaluate,
    report_sections=report_sections,
)

#: Network of the demo and the shipped model: a small U-Net (16-32-64) with the task's
#: interpolating decoder.
SMALL_UNET = {"channels": (16, 32, 64), "strides": (2, 2), "norm": "batch",
              "upsample": "nontrainable"}

#: The demo: the shipped model predicts 2 held-out subjects with 4 flips (the 8 of the
#: task's default take twice as long for a change in the fourth digit of the RMSE), then
#: is fine-tuned for one epoch of 512 patches on the controls among the first 4 subjects
#: and scored again. Without a shipped model, the small U-Net (Adam 1e-3, the task's MSE +
#: gradient-L1 loss) is trained for 5 such epochs instead.
DEMO = DemoStep(
    task="enhance-r1", cohort="enhance-r1", subjects=6, held_out=2, epochs=5,
    examples_per_epoch=512, tta=4, fine_tune_epochs=1,
    overrides={"network_kwargs": SMALL_UNET, "learning_rate": 1e-3},
    shown=("rmse", "psnr", "ssim", "nyquist_power_ratio", "relative_edge_sharpness",
           "contrast_preservation"))

#: Shipped model (``make models``): the demo's network and loss trained for 50 epochs of
#: 512 patches on the controls among 13 phantom subjects at 2 mm, scored on 3 more
#: (0.45 MB of weights in float32, 0.22 MB as shipped in float16; about 32 minutes on one
#: core). Against 8 epochs on the same split: RMSE 0.051 s^-1 against 0.055, relative
#: edge sharpness 0.233 against 0.227 (the 7T map's 0.323), docs/results.md.
SHIPPED_MODEL = DemoStep(
    task="enhance-r1", cohort="enhance-r1", subjects=16, held_out=3, epochs=50,
    examples_per_epoch=512,
    overrides={"network_kwargs": SMALL_UNET, "learning_rate": 1e-3},
    shown=DEMO.shown)
SHIPPED_MODELS = (SHIPPED_MODEL,)
