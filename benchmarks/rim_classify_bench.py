"""rim-classify benchmarks on one 1 mm phantom subject: PyRadiomics extraction per lesion
(the task's 527 features of the QSM) and the six rim coverage features of the ``-edge``
arms, reading one training example (a lesion patch of 32^3 voxels from the subject
store, with its features, through the task's augmentation), one training step (batch
of 32 lesion patches with their features, with and without in-batch oversampling) and
per-lesion inference.

Networks: the task's two-branch network with the full-width ResNet-18 and with the
quarter-width ResNet-18 used for the CPU cross-validation. Network times are the best of
``REPEATS`` after a warm-up; the extraction is timed once per lesion over every lesion
of the subject.

Run alone: ``python benchmarks/rim_classify_bench.py bench-out/rim-classify``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from fcd_bench import _best

BATCH = 32
WIDTHS = (1.0, 0.25)


def _extraction(data: Path) -> tuple[list[float], list[int], int, list[float]]:
    """Seconds and voxels of every lesion of sub-01, the number of features, and the
    seconds of the rim coverage features (``lesion_edge``, the ``-edge`` arms) of each."""
    from scipy import ndimage

    from lesionkit.bids import BIDSDataset
    from lesionkit.io import load_volume
    from lesionkit.lesion_edge import edge_features
    from lesionkit.lesion_features import crop_margin
    from lesionkit.tasks.rim_classify import RADIOMICS, RADIOMICS_EDGE

    dataset = BIDSDataset(data)
    volume = load_volume(dataset.get("01", "Chimap").path)
    qsm, spacing = volume.data[None], tuple(float(v) for v in volume.spacing)
    labels = np.rint(load_volume(dataset.get("01", "dseg", derivatives="phantom",
                                             desc="lesions").path, kind="label").data)
    seconds, voxels, count, edge = [], [], 0, []
    edge_settings = dict(RADIOMICS_EDGE.settings["edge"])
    edge_settings.pop("image")
    warm = np.zeros((9, 9, 9), bool)
    warm[3:6, 3:6, 3:6] = True  # imports scipy.stats once, outside the timed calls
    edge_features(warm.astype(np.float32), warm, spacing, **edge_settings)
    for label, box in enumerate(ndimage.find_objects(labels.astype(np.int64)), start=1):
        if box is None:
            continue
        wide = tuple(slice(max(s.start - m, 0), s.stop + m)  # the engine's crop
                     for s, m in zip(box, crop_margin(RADIOMICS_EDGE, spacing), strict=True))
        start = time.perf_counter()
        edge_features(qsm[0][wide], labels[wide] == label, spacing, **edge_settings)
        edge.append(time.perf_counter() - start)
        margin = RADIOMICS.margin
        box = tuple(slice(max(s.start - margin, 0), s.stop + margin) for s in box)
        mask = labels[box] == label
        start = time.perf_counter()
        values = RADIOMICS.function({"qsm": qsm[(slice(None), *box)]}, mask, spacing,
                                    **dict(RADIOMICS.settings))
        seconds.append(time.perf_counter() - start)
        voxels.append(int(mask.sum()))
        count = len(values)
    return seconds, voxels, count, edge


def _example_seconds(data: Path, cache: Path) -> tuple[float, int]:
    """Mean wall time (s) of reading one training example of sub-01 (every lesion in turn,
    three passes after a warm-up pass), and the number of lesions."""
    from lesionkit.store import SubjectStore
    from lesionkit.tasks import get_task
    from lesionkit.training import augmentation

    task = get_task("rim-classify")
    store = SubjectStore(data, task, cache)
    store.prepare(["01"])
    examples = task.sampler.dataset(store, ["01"], task, store.fit_normalisation(["01"]),
                                    augmentation(task))
    torch.manual_seed(0)
    for i in range(len(examples)):
        examples[i]
    start = time.perf_counter()
    for _ in range(3):
        for i in range(len(examples)):
            examples[i]
    return (time.perf_counter() - start) / (3 * len(examples)), len(examples)


def bench_rim_classify(out_dir: str | Path) -> list[dict]:
    """Radiomics extraction (s per lesion), training step and per-lesion inference (s)."""
    from lesionkit.losses import BinaryCrossEntropy
    from lesionkit.simulate.cohorts import simulate_cohort
    from lesionkit.tasks.rim_classify import oversampling_step, rim_network

    out_dir = Path(out_dir)
    data = out_dir / "rim-classify"
    if not (data / "participants.tsv").is_file():
        simulate_cohort("rim-classify", data, subjects=1, seed=0, resolution=1)
    seconds, voxels, count, edge = _extraction(data)
    threads = torch.get_num_threads()
    common = {"benchmark": "rim-classify", "threads": threads}
    rows = [{**common, "case": f"PyRadiomics, {count} features, mean per lesion "
                               f"({len(seconds)} lesions, median {int(np.median(voxels))} voxels)",
             "value": float(np.mean(seconds)), "unit": "s"},
            {**common, "case": "PyRadiomics, slowest lesion "
                               f"({voxels[int(np.argmax(seconds))]} voxels)",
             "value": float(np.max(seconds)), "unit": "s"},
            {**common, "case": "rim coverage features (lesion_edge, 6), mean per lesion",
             "value": float(np.mean(edge)), "unit": "s"}]
    per_example, lesions = _example_seconds(data, out_dir / "rim-classify-store")
    rows.append({**common, "case": "training example read and augmented, mean per lesion "
                                   f"({lesions} lesions, 3 passes)", "value": per_example,
                 "unit": "s"})
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, 32, 32, 32)  # QSM, FLAIR, the lesion's mask
    features = torch.randn(BATCH, count)
    target = torch.zeros(BATCH)
    target[:8] = 1
    batch = {"input": x, "features": features, "target": target}
    loss = BinaryCrossEntropy()
    for width in WIDTHS:
        network = rim_network(3, 1, features=count, widen_factor=width)
        optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)

        def step(oversample: bool, network: torch.nn.Module = network,
                 optimiser: torch.optim.Optimizer = optimiser) -> None:
            network.train()
            optimiser.zero_grad()
            value = (oversampling_step(network, loss, batch) if oversample
                     else loss(network(x, features), target))
            value.backward()
            optimiser.step()

        def infer(network: torch.nn.Module = network) -> None:
            network.eval()
            with torch.inference_mode():
                torch.sigmoid(network(x, features))

        label = {**common, "network": f"ResNet-18 width {width:g} + radiomics MLP"}
        rows.append({**label, "case": f"training step, {BATCH} lesions (8 rim+) with "
                                      "oversampling", "value": _best(lambda: step(True)),
                     "unit": "s"})
        rows.append({**label, "case": f"training step, {BATCH} lesions, no oversampling",
                     "value": _best(lambda: step(False)), "unit": "s"})
        rows.append({**label, "case": "inference per lesion (batches of 32)",
                     "value": _best(infer) / BATCH, "unit": "s"})
    return rows


if __name__ == "__main__":
    from common import output_folder

    target = Path(output_folder("bench-out/rim-classify", __doc__))
    print(json.dumps(bench_rim_classify(target), indent=2))
