"""Evaluation metrics: pure functions on numpy arrays.

- ``image``: RMSE, PSNR, SSIM inside a mask, GM-WM edge sharpness, lesion contrast.
- ``segmentation``: Dice, lesion detection rate, lesion-wise F1, threshold sweep.
- ``contrast``: CNR, LBR, CEP and matching of detections to reference lesions.
- ``classification``: accuracy, sensitivity, specificity, ROC / partial / PR AUC.
"""

from lesionkit.metrics.classification import (
    PartialAUC,
    accuracy,
    count_mse,
    partial_auc,
    pr_auc,
    roc_auc,
    sensitivity,
    specificity,
)
from lesionkit.metrics.contrast import (
    DetectionMatch,
    cep,
    cnr,
    detection_table,
    lbr,
    match_detections,
)
from lesionkit.metrics.image import (
    contrast_preservation,
    edge_profile,
    edge_sharpness,
    lesion_contrast,
    psnr,
    relative_deviation,
    relative_edge_sharpness,
    rmse,
    ssim,
    white_matter_texture,
)
from lesionkit.metrics.segmentation import (
    detection_rate,
    dice,
    lesion_hits,
    lesion_wise,
    probability_dice,
    threshold_sweep,
)

__all__ = [
    "DetectionMatch",
    "PartialAUC",
    "accuracy",
    "cep",
    "cnr",
    "contrast_preservation",
    "count_mse",
    "detection_rate",
    "detection_table",
    "dice",
    "edge_profile",
    "edge_sharpness",
    "lbr",
    "lesion_contrast",
    "lesion_hits",
    "lesion_wise",
    "match_detections",
    "partial_auc",
    "pr_auc",
    "probability_dice",
    "psnr",
    "relative_deviation",
    "relative_edge_sharpness",
    "rmse",
    "roc_auc",
    "sensitivity",
    "specificity",
    "ssim",
    "threshold_sweep",
    "white_matter_texture",
]
