"""lesionkit: 3D deep networks that make brain lesions easier to find on MRI.

The public API is flat and imported lazily, so ``import lesionkit`` and
``lesionkit --help`` stay fast::

    import lesionkit as lk
    lk.simulate_cohort("enhance-r1", "phantom/", subjects=4, seed=0, resolution=2)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access.
_EXPORTS: dict[str, str] = {
    "Volume": "lesionkit.volume",
    "resample_to": "lesionkit.volume",
    "InputError": "lesionkit.io",
    "load_volume": "lesionkit.io",
    "save_volume": "lesionkit.io",
    "check_same_grid": "lesionkit.io",
    "BIDSDataset": "lesionkit.bids",
    "BIDSFile": "lesionkit.bids",
    "bids_path": "lesionkit.bids",
    "simulate_cohort": "lesionkit.simulate",
    "TASKS": "lesionkit.tasks",
    "get_task": "lesionkit.tasks",
    "train": "lesionkit.training",
    "predict": "lesionkit.infer",
    "evaluate": "lesionkit.evaluation",
    "write_report": "lesionkit.report",
    "grad_cam": "lesionkit.explain",
    "heat_score": "lesionkit.explain",
    "energy_fraction": "lesionkit.explain",
    "load_medicalnet": "lesionkit.pretrained",
    "build_network": "lesionkit.models",
    "MRF_EPI": "lesionkit.mrf",
    "build_dictionary": "lesionkit.mrf",
    "match": "lesionkit.mrf",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lesionkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
