"""Scans named one by one (``predict --image KEY=FILE``) laid out as a BIDS dataset.

A converter's output folder or files named by series are predicted by naming each file
for the model's input it stands for. :func:`dataset_of_files` lays them out as a
one-subject BIDS dataset of links where the task looks for each image, so that they go
through the same checks, loading and outputs as a dataset; :func:`named_as_given` puts
the user's file names back into the messages about them.
"""

from __future__ import annotations

from pathlib import Path

from lesionkit.data import prediction_specs
from lesionkit.io import DICOM_ADVICE, InputError, is_dicom, other_format
from lesionkit.tasks.task import ImageSpec, Task


def dataset_of_files(task: Task, images: dict[str, Path], root: Path,
                     subject: str = "01", session: str | None = None) -> dict[str, str]:
    """Lay out image files named one by one (``predict --image KEY=FILE``) as a
    one-subject BIDS dataset of links under ``root``, each where the task looks for it,
    with its JSON sidecar when it has one (units, an MRF schedule).

    Args:
        task: The task predicting them.
        images: Key of each prediction image (``ImageSpec.key``: "flair", "t1w", ...; the
            brain mask "brain" is optional) -> its file. Keys are read in any case, and
            an image's BIDS suffix stands for it where no other image has that suffix.
        root: An empty folder for the dataset.
        subject: The subject label the outputs are named with.
        session: The session label of the files (a visit), or None for none; outputs of
            two visits of a subject then lie side by side for ``lesionkit changes``.

    Returns:
        Link -> the file it stands for (what the outputs' sidecars record as sources).

    Raises:
        InputError: a key the task does not read, a missing image, a file that is not a
            NIfTI image, or a session the task's images cannot take.
    """
    from lesionkit.bids import (
        bids_path,
        sidecar_path,
        write_dataset_description,
        write_participants,
    )

    if not subject.isalnum() or not subject.isascii():
        raise InputError(f"--subjects: expected one subject label of letters and digits for "
                         f"the files of --image, found {subject!r}")
    if session is not None and (not session.isalnum() or not session.isascii()):
        raise InputError(f"--sessions: expected one session label of letters and digits for "
                         f"the files of --image, found {session!r}")
    specs = {s.key: s for s in prediction_specs(task)}
    fixed = sorted({s.session for s in specs.values() if s.session})
    if session is not None and fixed:
        raise InputError(f"--sessions: expected none for the files of --image, as task "
                         f"{task.name} reads its images from session(s) {', '.join(fixed)}; "
                         f"found {session!r}")
    listed = image_keys(task)
    images = _keyed(images, specs)
    unknown = sorted(set(images) - set(specs))
    missing = [k for k, s in specs.items() if s is not task.mask and k not in images]
    if unknown or missing:
        found = (f"unknown {', '.join(unknown)}" if unknown else
                 f"none for {', '.join(missing)}")
        raise InputError(f"--image: expected KEY=FILE for each image of task {task.name}: "
                         f"{listed}; found {found}")
    files = {key: Path(file).resolve() for key, file in images.items()}
    for key, file in files.items():  # every file checked before anything is made
        if not file.is_file() or not file.name.endswith((".nii", ".nii.gz")):
            what = ("no such file" if not file.exists() else
                    f"DICOM: {DICOM_ADVICE}" if is_dicom(file) else
                    "a folder" if file.is_dir() else other_format(file) or
                    "another kind of file")
            raise InputError(f"{file}: expected a NIfTI image (.nii or .nii.gz) for --image "
                             f"{key}, found {what}")
    sources: dict[str, str] = {}
    for key, file in files.items():
        spec = specs[key]
        link = bids_path(root, subject, spec.suffix, derivatives=spec.derivatives,
                         session=spec.session or session,
                         extension=".nii.gz" if file.name.endswith(
                             ".gz") else ".nii", **dict(spec.entities))
        link.parent.mkdir(parents=True, exist_ok=True)
        _link(file, link)
        if sidecar_path(file).is_file():
            _link(sidecar_path(file), sidecar_path(link))
        sources[str(link)] = str(file)
    write_dataset_description(root, "files named on the command line")
    write_participants(root, [{"participant_id": f"sub-{subject}"}])
    return sources


def named_as_given(message: str, sources: dict[str, str] | None) -> str:
    """A message with the links of :func:`dataset_of_files` (paths, or names alone)
    replaced by the files they stand for."""
    import re

    names = {**{Path(link).name: file for link, file in (sources or {}).items()},
             **(sources or {})}
    if not names:
        return message
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.sub(pattern, lambda match: names[match.group(0)], message)


def _keyed(images: dict[str, Path], specs: dict[str, ImageSpec]) -> dict[str, Path]:
    """``--image`` keys as the task names them: a key in any case ("FLAIR" for "flair"),
    or the BIDS suffix of the one image that has it ("T1w", "Chimap"); other keys are
    kept, for the caller to name as unknown.

    Raises:
        InputError: two keys that stand for the same image.
    """
    by_name: dict[str, str] = {}
    suffixes = [s.suffix.casefold() for s in specs.values()]
    for key, spec in specs.items():
        if suffixes.count(spec.suffix.casefold()) == 1:
            by_name[spec.suffix.casefold()] = key
    by_name.update({key.casefold(): key for key in specs})
    keyed: dict[str, Path] = {}
    for given, file in images.items():
        key = by_name.get(given.casefold(), given)
        if key in keyed:
            raise InputError(f"--image: expected one file for image {key}, found two "
                             f"({keyed[key]} and {file})")
        keyed[key] = file
    return keyed


def image_keys(task: Task) -> str:
    """The keys of ``predict --image KEY=FILE`` for a task, with each image's BIDS
    entities and suffix: "flair (FLAIR), t1w (T1w), brain (desc-brain_mask, optional)"."""
    return ", ".join(f"{s.key} ({''.join(f'{k}-{v}_' for k, v in s.entities)}{s.suffix}"
                     f"{'' if s is not task.mask else ', optional'})"
                     for s in prediction_specs(task))


def _link(file: Path, link: Path) -> None:
    """A symbolic link to ``file``, or a copy where the system allows no links (Windows
    without developer mode)."""
    try:
        link.symlink_to(file)
    except OSError:
        import shutil

        shutil.copy2(file, link)


