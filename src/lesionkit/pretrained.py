"""Load pretrained encoder weights: MedicalNet (Med3D) checkpoints and lesionkit's own.

MedicalNet (Chen et al. 2019, "Med3D") publishes 3D ResNets pretrained on 23 segmentation
datasets as ``.pth`` files holding ``{'state_dict': {...}}`` with ``module.``-prefixed
names (saved from DataParallel): ``module.conv1.weight``, ``module.bn1.*``,
``module.layer1.0.conv1.weight`` ... and the segmentation head ``module.conv_seg.*``.
The encoder names are those of MONAI's ResNet (conv1, bn1, layer1..layer4; MONAI's
classification head is ``fc``). lesionkit never downloads them; a user who has one passes
its path. Files are read with ``torch.load(weights_only=True)``, which refuses pickled
objects other than tensors and plain containers.

Build the receiving network with MedicalNet's options, or its downsampling tensors are
reported missing or unexpected (see :func:`medicalnet_resnet_args`): shortcut type A
(parameter-free zero-padding) for ResNet-18/34, B (1x1x1 convolution + BatchNorm, no
bias) for ResNet-10/50. MedicalNet's first convolution has one input channel, so a
multi-channel model gets a shape mismatch there. MedicalNet replaces the strides of
layer3/layer4 by dilations; MONAI's ResNet keeps the strides, which changes no tensor shape.

lesionkit's own segmentation-pretrained encoders are safetensors files of the same
tensor names (:func:`save_encoder`, :func:`load_encoder`). Both loaders share one
matching rule: strip the prefix, drop the head, copy every tensor whose name and shape
match the model, report the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from lesionkit.io import InputError, atomic_path

#: Name prefix added by torch.nn.DataParallel, as in MedicalNet's files.
MEDICALNET_PREFIX = "module."
#: Segmentation head of MedicalNet's networks, dropped on loading.
MEDICALNET_HEAD = ("conv_seg.",)
#: Classification head of MONAI's ResNet, left out of saved encoders.
CLASSIFIER_HEAD = ("fc.",)


class ShapeMismatch(NamedTuple):
    """A tensor present in both file and model with different shapes."""

    name: str
    file_shape: tuple[int, ...]
    model_shape: tuple[int, ...]


@dataclass(frozen=True)
class LoadReport:
    """What a loader copied into the model and what it left.

    Attributes:
        path: The weights file.
        loaded: Model tensors overwritten from the file.
        missing: Model tensors the file does not provide (left as initialised), e.g. the
            classification head ``fc.*``; BatchNorm ``num_batches_tracked`` counters and
            shape mismatches are not listed.
        unexpected: File tensors with no counterpart in the model (ignored).
        dropped: File tensors of the pretraining head, dropped on purpose (``conv_seg.*``).
        shape_mismatches: Tensors named alike whose shapes differ (not copied).
    """

    path: Path
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    dropped: tuple[str, ...]
    shape_mismatches: tuple[ShapeMismatch, ...]

    @property
    def downsample_differs(self) -> bool:
        """True when residual shortcut tensors are missing or unexpected.

        The usual cause is a ``shortcut_type`` (A/B) or ``bias_downsample`` that differs
        from the pretrained network's.
        """
        return any(".downsample." in name for name in (*self.missing, *self.unexpected))

    def summary(self) -> str:
        """One line for logs, e.g. 'weights.pth: loaded 102 tensors, 2 missing (fc.*) ...'."""
        parts = [f"{self.path}: loaded {len(self.loaded)} tensors"]
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("dropped head", self.dropped)):
            if names:
                parts.append(f"{len(names)} {label} ({_groups(names)})")
        if self.shape_mismatches:
            first = self.shape_mismatches[0]
            parts.append(
                f"{len(self.shape_mismatches)} with other shapes (e.g. {first.name}: "
                f"file {first.file_shape}, model {first.model_shape})"
            )
        if self.downsample_differs:
            parts.append("check shortcut_type and bias_downsample")
        return ", ".join(parts)


def _groups(names: Iterable[str], limit: int = 3) -> str:
    """Short description of tensor names by their first component: 'fc.*, layer2.*'."""
    groups = list(dict.fromkeys(name.split(".")[0] + ".*" for name in names))
    more = f", +{len(groups) - limit} more" if len(groups) > limit else ""
    return ", ".join(groups[:limit]) + more


def medicalnet_resnet_args(depth: int) -> dict[str, object]:
    """MONAI ResNet options that make a network's tensors match MedicalNet's.

    Args:
        depth: 10, 18, 34, 50, 101, 152 or 200.

    Returns:
        Keyword arguments for ``monai.networks.nets.resnet{depth}``: shortcut_type,
        bias_downsample and n_input_channels=1.
    """
    from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args

    bias_downsample, shortcut_type = get_medicalnet_pretrained_resnet_args(depth)
    return {"shortcut_type": shortcut_type, "bias_downsample": bias_downsample,
            "n_input_channels": 1}


def _match(
    model: torch.nn.Module,
    tensors: Mapping[str, torch.Tensor],
    path: Path,
    prefix: str,
    head: tuple[str, ...],
) -> LoadReport:
    """Copy into ``model`` every tensor whose name (without ``prefix``) and shape match."""
    own = model.state_dict()
    names = {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v
             for k, v in tensors.items()}
    dropped = tuple(k for k in names if k.startswith(head)) if head else ()
    chosen: dict[str, torch.Tensor] = {}
    mismatches: list[ShapeMismatch] = []
    unexpected: list[str] = []
    for name, tensor in names.items():
        if name in dropped:
            continue
        if name not in own:
            unexpected.append(name)
        elif tuple(tensor.shape) != tuple(own[name].shape):
            mismatches.append(ShapeMismatch(name, tuple(tensor.shape), tuple(own[name].shape)))
        else:
            chosen[name] = tensor
    if not chosen:
        example = ", ".join(list(names)[:3]) or "no tensors"
        raise InputError(
            f"{path}: expected tensors named and shaped like the model's (e.g. "
            f"{', '.join(list(own)[:2])}), found none among {len(names)} ({example}, ...)"
        )
    model.load_state_dict(chosen, strict=False)
    mismatched = {m.name for m in mismatches}
    missing = tuple(k for k in own if k not in chosen and k not in mismatched
                    and not k.endswith("num_batches_tracked"))
    return LoadReport(path, tuple(chosen), missing, tuple(unexpected), dropped, tuple(mismatches))


def _tensor_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        found = type(obj).__name__
        if isinstance(obj, Mapping):
            found = f"a {found} with keys {list(obj)[:3]}" if obj else "an empty mapping"
        raise InputError(
            f"{path}: expected a state dict ({{'state_dict': {{name: tensor}}}} or "
            f"{{name: tensor}}), found {found}"
        )
    return dict(obj)


def _existing(path: str | os.PathLike[str], what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected {what}, found no such file")
    return path


def load_medicalnet(model: torch.nn.Module, path: str | os.PathLike[str]) -> LoadReport:
    """Load a MedicalNet (Med3D) checkpoint into a MONAI ResNet's encoder.

    ``module.`` prefixes are stripped and the segmentation head ``conv_seg.*`` dropped;
    tensors whose names and shapes match the model are copied, the others reported.

    Args:
        model: The receiving network (e.g. ``resnet18(spatial_dims=3, n_input_channels=1,
            num_classes=2, shortcut_type="A")``), or the submodule holding the encoder.
        path: The ``.pth`` file, e.g. ``resnet_18_23dataset.pth``.

    Returns:
        The report (loaded, missing, unexpected, dropped, shape mismatches).

    Raises:
        InputError: missing or unreadable file, not a state dict, or no tensor matching.
    """
    path = _existing(path, "a MedicalNet checkpoint (.pth)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on foreign bytes
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise InputError(
            f"{path}: expected a PyTorch checkpoint of tensors, found an unreadable or "
            f"unsafe file ({type(error).__name__}{': ' + reason if reason else ''})"
        ) from error
    return _match(model, _tensor_dict(obj, path), path, MEDICALNET_PREFIX, MEDICALNET_HEAD)


def load_encoder(
    model: torch.nn.Module, path: str | os.PathLike[str], prefix: str = ""
) -> LoadReport:
    """Load an encoder saved by :func:`save_encoder` (safetensors) into ``model``.

    Args:
        model: The receiving network.
        path: The ``.safetensors`` file.
        prefix: Name prefix to strip from the file's tensors (e.g. "encoder.").

    Returns:
        The report, as :func:`load_medicalnet`'s.

    Raises:
        InputError: missing or unreadable file, or no tensor matching.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _existing(path, "an encoder weights file (.safetensors)")
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(
            f"{path}: expected a safetensors file, found an unreadable file ({error})"
        ) from error
    return _match(model, _tensor_dict(tensors, path), path, prefix, ())


def save_encoder(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    exclude: tuple[str, ...] = CLASSIFIER_HEAD,
) -> Path:
    """Save a network's tensors, less its head, as safetensors (atomically).

    Args:
        model: The pretrained network (or its encoder submodule).
        path: Target ``.safetensors`` file.
        exclude: Name prefixes to leave out (the head; ``fc.`` for MONAI's ResNet).

    Returns:
        The written path.
    """
    from safetensors.torch import save_file

    tensors = {name: tensor.detach().cpu().contiguous()
               for name, tensor in model.state_dict().items() if not name.startswith(exclude)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    return path
