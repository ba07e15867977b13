"""Find subjects, sessions and files in a BIDS dataset; write derivatives.

File names follow BIDS: ``sub-<label>[_ses-<label>][_<key>-<value>...]_<suffix><ext>``.
Derivatives live under ``<root>/derivatives/<pipeline>/`` with a
``dataset_description.json``; every derivative NIfTI gets a JSON sidecar naming the
producing command, the model folder where there is one, the lesionkit version and the
units.

Longitudinal data holds several sessions (and runs) of one subject; code that looks up
"the" image of a subject reads one of them inside :func:`lesionkit.units.unit_scope`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesionkit import __version__
from lesionkit.io import (
    DICOM_ADVICE,
    InputError,
    instead_of_folder,
    is_dicom,
    other_format,
    save_volume,
    write_json,
    write_tsv,
)
from lesionkit.units import scopes

if TYPE_CHECKING:
    import pandas as pd

    from lesionkit.volume import Kind, Volume

#: Order of entities in file names (BIDS specification, appendix on entities).
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part",
                "space", "label", "desc")
#: Keyword used in the Python API for each entity key.
_KEYWORD = {"sub": "subject", "ses": "session"}
_NAME = re.compile(r"^(?P<stem>(?:[a-zA-Z0-9]+-[a-zA-Z0-9]+_)+)(?P<suffix>[a-zA-Z0-9]+)"
                   r"(?P<ext>\.[a-z.]+)$")
#: Every entity key of the BIDS specification (1.10), which a filter may name.
BIDS_ENTITIES = ("sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce",
                 "trc", "stain", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt",
                 "part", "proc", "hemi", "space", "split", "recording", "chunk", "seg",
                 "res", "den", "label", "desc")
BIDS_VERSION = "1.10.0"
#: ``space-`` labels of a subject's own space (BIDS's image-based and individual
#: coordinate systems, and what pipelines write for native space); any other
#: (MNI152NLin2009cAsym, ...) is a template's, which look-ups skip unless a query or filter
#: names ``space``.
SUBJECT_SPACES = frozenset({"orig", "t1w", "t2w", "flair", "individual", "native", "scanner",
                            "scanras", "acpc"})
#: BIDS datatype folders of no anatomical image (fMRIPrep's func/ brain masks, field
#: maps, recordings): look-ups skip them unless a query names a datatype.
NON_ANATOMICAL = frozenset({"func", "fmap", "beh", "perf", "eeg", "meg", "ieeg", "pet",
                            "motion", "nirs", "micr", "emg"})
#: How a BIDS file name is built, as error messages tell it.
BIDS_NAME = ("sub-<label>[_<key>-<label>...]_<suffix>.nii[.gz]; labels of letters and digits "
             "only: sub-pat01, not sub-pat_01 or sub-pat-01")
#: File extensions read as NIfTI images.
NIFTI_EXTENSIONS = (".nii.gz", ".nii")


def _described(query: dict[str, Any]) -> str:
    """``key=value`` pairs of a query, without the unset ones."""
    shown = {k: v for k, v in query.items()
             if v is not None and v is not False and k != "prefer_without"}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "no entities"


#: What a link to absent content most likely is, and what to do.
UNFETCHED = "a DataLad or git-annex dataset whose files were not fetched? datalad get them"


def unfetched_message(path: Path) -> str:
    """One line for an image that is a link to content not on this machine."""
    return f"{path}: expected an image, found a link to content that is not here ({UNFETCHED})"


def _misnamed_hint(paths: Sequence[Path]) -> str:
    """What is wrong with files that look like an image but are not BIDS names."""
    if not paths:
        return ""
    return (f"; {paths[0].name}{' and others' if len(paths) > 1 else ''} is not a BIDS name "
            f"and is not read ({BIDS_NAME})")


def _other_format_hint(paths: Sequence[Path]) -> str:
    """What a file of the image in another format than NIfTI is (``sub-01_FLAIR.mgz``),
    and how to convert it."""
    return f"; {paths[0].name} is {other_format(paths[0])}" if paths else ""


def choice_hint(found: Sequence[BIDSFile]) -> str:
    """How to choose one of several files of an image: a ``--bids-filter`` on an entity
    whose labels differ between them, or, where only the extension differs, to keep one."""
    if len(found) < 2:
        return ""
    for key in sorted({k for f in found for k in f.entities} - {"sub", "ses"}):
        if len({f.entities.get(key, "") for f in found}) > 1:
            one = next(f for f in found if key in f.entities)
            example = EntityFilter(key, one.entities[key], one.suffix)
            return f"; choose one with --bids-filter (e.g. --bids-filter {example})"
    return "; the same image is stored twice (.nii and .nii.gz): keep one"


@dataclass(frozen=True)
class BIDSFile:
    """One file of a BIDS dataset.

    Attributes:
        path: Absolute path.
        entities: Entity key -> value, e.g. {"sub": "01", "ses": "3T"}.
        suffix: e.g. "R1map", "T1w", "mask".
        extension: e.g. ".nii.gz", ".tsv".
    """

    path: Path
    entities: dict[str, str] = field(hash=False)
    suffix: str
    extension: str

    @property
    def subject(self) -> str:
        """Subject label without the "sub-" prefix."""
        return self.entities["sub"]

    @property
    def sidecar(self) -> Path:
        """Path of the JSON sidecar beside this file."""
        return sidecar_path(self.path)

    def load_in(self, unit: str, kind: Kind = "intensity") -> Volume:
        """The image with its values in ``unit``, brought there from the ``Units`` its
        sidecar states (BIDS's s and ppm to ms and ppb, ...) as task inputs are read.

        Raises:
            InputError: unreadable image, or ``Units`` that do not convert to ``unit``.
        """
        from lesionkit.io import load_volume, sidecar_unit_factor

        volume = load_volume(self.path, kind=kind, unit=unit)
        factor = sidecar_unit_factor(self.path, self.sidecar, unit)[0]
        return volume if factor == 1.0 else replace(volume, data=volume.data * factor)


@dataclass(frozen=True)
class EntityFilter:
    """A choice among a subject's acquisitions of one image (``--bids-filter``).

    Attributes:
        entity: Entity key, e.g. "acq", "rec".
        label: The label to keep; "" keeps files without the entity.
        suffix: The image it narrows (e.g. "FLAIR"), then a file must carry ``label``
            (or, for "", lack the entity); None: every image, where a file naming
            another label is skipped and a file without the entity kept (as sessions).
    """

    entity: str
    label: str
    suffix: str | None = None

    def keeps(self, entities: dict[str, str], suffix: str) -> bool:
        """Whether a file of these entities and suffix passes the filter."""
        if self.suffix is None:
            return entities.get(self.entity, self.label) == self.label
        if suffix.lower() != self.suffix.lower():
            return True
        return entities.get(self.entity, "") == self.label

    def __str__(self) -> str:
        return f"{self.suffix + ':' if self.suffix else ''}{self.entity}={self.label}"


_FILTER = re.compile(r"^(?:(?P<suffix>[a-zA-Z0-9]+):)?(?P<entity>[a-z]+)=(?P<label>[a-zA-Z0-9]*)$")


def parse_filter(text: str) -> EntityFilter:
    """An :class:`EntityFilter` from ``[SUFFIX:]ENTITY=LABEL`` ("FLAIR:acq=3D", "rec=norm",
    "T1w:acq=" for the T1w without an acq entity).

    Raises:
        ValueError: text of another form, an unknown entity, or sub / ses (which other
            options choose).
    """
    match = _FILTER.match(text.strip())
    if match is None:
        raise ValueError(f"expected [SUFFIX:]ENTITY=LABEL (e.g. FLAIR:acq=3D or rec=norm), "
                         f"found {text!r}")
    entity = match["entity"]
    if entity in ("sub", "ses"):
        option = "--subjects" if entity == "sub" else "--session or --sessions"
        raise ValueError(f"expected an entity other than {entity} in {text!r}; "
                         f"choose {entity} with {option}")
    if entity not in BIDS_ENTITIES:
        raise ValueError(f"expected a BIDS entity ({', '.join(BIDS_ENTITIES[2:])}) in "
                         f"{text!r}, found {entity!r}")
    return EntityFilter(entity, match["label"], match["suffix"])


#: The entity names of pybids (as fMRIPrep's ``--bids-filter-file`` spells them) -> keys.
PYBIDS_ENTITIES = {"acquisition": "acq", "ceagent": "ce", "reconstruction": "rec",
                   "direction": "dir", "run": "run", "echo": "echo", "flip": "flip",
                   "inversion": "inv", "mtransfer": "mt", "part": "part",
                   "processing": "proc", "space": "space", "description": "desc",
                   "tracer": "trc", "chunk": "chunk"}


def filters_from_file(path: Path) -> list[EntityFilter]:
    """The filters of a BIDS-App filter file, as fMRIPrep's ``--bids-filter-file`` takes
    it: ``{"flair": {"acquisition": "3D"}, "t1w": {"reconstruction": null}}``; a key
    names an image by its suffix (any case), an entity by pybids's name or BIDS's key,
    null asks for the entity's absence. Keys of images lesionkit never reads (bold,
    fmap, ...) are kept and simply match nothing.

    Raises:
        InputError: unreadable JSON, another structure, a list of labels, or a subject
            or session entity (which --participant-label and --session-label choose).
    """
    import json

    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: expected a JSON filter file, found an unreadable file "
                         f"({str(error).splitlines()[0] if str(error) else error})") from None
    if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
        raise InputError(f"{path}: expected {{\"<image>\": {{\"<entity>\": \"<label>\"}}}}, "
                         f"found {type(found).__name__} of another shape")
    filters = []
    for image, entities in found.items():
        for name, label in entities.items():
            key = PYBIDS_ENTITIES.get(name, name)
            text = f"{image}:{key}={'' if label is None else label}"
            if name in ("suffix", "datatype", "extension"):
                continue  # lesionkit knows each image's suffix and datatype itself
            if key in ("sub", "subject", "ses", "session"):
                raise InputError(f"{path}: expected no {name} in a filter, found one for "
                                 f"{image}; choose it with --participant-label or "
                                 "--session-label")
            if not isinstance(label, (str, int)) and label is not None:
                raise InputError(f"{path}: expected one label for {image}'s {name}, found "
                                 f"{label!r}")
            try:
                filters.append(parse_filter(text))
            except ValueError as error:
                raise InputError(f"{path}: {error}") from None
    return filters


_FILTERS: ContextVar[tuple[EntityFilter, ...]] = ContextVar("lesionkit_bids_filters",
                                                            default=())


def active_filters() -> tuple[EntityFilter, ...]:
    """The filters of the enclosing :func:`bids_filters` (empty outside one)."""
    return _FILTERS.get()


@contextmanager
def bids_filters(filters: Sequence[EntityFilter]) -> Iterator[None]:
    """Within the block, :meth:`BIDSDataset.find` keeps only the files that pass every
    filter: the acquisition (``acq``), reconstruction (``rec``) or other entity a user
    chose where a subject has the same image more than once.

    Example:
        >>> with bids_filters([parse_filter("FLAIR:acq=3D")]):
        ...     flair = BIDSDataset("/data").get("01", "FLAIR")  # doctest: +SKIP
    """
    token = _FILTERS.set((*_FILTERS.get(), *filters))
    try:
        yield
    finally:
        _FILTERS.reset(token)


def sidecar_path(path: Path) -> Path:
    """Path of the JSON sidecar beside an image file (its extension replaced by .json)."""
    parsed = parse_name(path.name)
    extension = parsed[2] if parsed else "".join(path.suffixes)
    return path.with_name(path.name[: len(path.name) - len(extension)] + ".json")


def parse_name(name: str) -> tuple[dict[str, str], str, str] | None:
    """Split a BIDS file name into (entities, suffix, extension), or None if not BIDS."""
    match = _NAME.match(name)
    if match is None:
        return None
    entities = dict(part.split("-", 1) for part in match["stem"].rstrip("_").split("_"))
    return entities, match["suffix"], match["ext"]


def build_name(entities: dict[str, str], suffix: str, extension: str = ".nii.gz") -> str:
    """Compose a BIDS file name with entities in the standard order."""
    unknown = sorted(set(entities) - set(ENTITY_ORDER))
    if unknown:
        raise ValueError(f"unknown BIDS entities {unknown}; known: {list(ENTITY_ORDER)}")
    parts = [f"{key}-{entities[key]}" for key in ENTITY_ORDER if entities.get(key)]
    return "_".join([*parts, suffix]) + extension


def bids_path(
    root: str | os.PathLike[str],
    subject: str,
    suffix: str,
    session: str | None = None,
    datatype: str = "anat",
    derivatives: str | None = None,
    extension: str = ".nii.gz",
    **entities: str,
) -> Path:
    """Canonical path of a file in a raw dataset or one of its derivatives.

    Example:
        >>> bids_path("/data", "01", "R1map", session="3T").as_posix()
        '/data/sub-01/ses-3T/anat/sub-01_ses-3T_R1map.nii.gz'
    """
    base = Path(root) / "derivatives" / derivatives if derivatives else Path(root)
    folder = base / f"sub-{subject}"
    if session:
        folder = folder / f"ses-{session}"
    name = build_name({"sub": subject, "ses": session or "", **entities}, suffix, extension)
    return folder / datatype / name


class BIDSDataset:
    """Read access to a BIDS dataset and its derivatives.

    Args:
        root: Dataset folder (holding ``dataset_description.json`` and ``sub-*``).

    Raises:
        InputError: when ``root`` is not a folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InputError(f"{self.root}: expected a BIDS dataset folder, found "
                             f"{instead_of_folder(self.root)}")

    def _base(self, derivatives: str | None) -> Path:
        return self.root / "derivatives" / derivatives if derivatives else self.root

    def subjects(self, derivatives: str | None = None) -> list[str]:
        """Subject labels (without "sub-"), sorted."""
        base = self._base(derivatives)
        return sorted(p.name[4:] for p in base.glob("sub-*") if p.is_dir())

    def sessions(self, subject: str) -> list[str]:
        """Session labels of one subject (without "ses-"), sorted; [] when unsessioned."""
        folder = self.root / f"sub-{subject}"
        return sorted(p.name[4:] for p in folder.glob("ses-*") if p.is_dir())

    def pipelines(self) -> list[str]:
        """Names of the derivatives pipelines (folders under ``derivatives/``), sorted."""
        folder = self.root / "derivatives"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def find(
        self,
        subject: str | None = None,
        session: str | None = None,
        suffix: str | None = None,
        datatype: str | None = None,
        derivatives: str | None = None,
        extension: str | tuple[str, ...] | None = NIFTI_EXTENSIONS,
        unfetched: bool = False,
        **entities: str | None,
    ) -> list[BIDSFile]:
        """Files matching the given entities, sorted by path.

        An entity passed as None must be absent (``acq=None`` excludes ``acq-native``);
        an entity not passed matches anything (inside :func:`lesionkit.units.unit_scope`:
        the unit's session and run, or none). Suffixes match regardless of case (``T1W`` is
        found as ``T1w``, as scanners and converters often write it); NIfTI
        files are found as ``.nii.gz`` or ``.nii``. Inside :func:`bids_filters`, only the
        files that pass every filter. Files in a template's space (``space-MNI...``, see
        :data:`SUBJECT_SPACES`) only when the query or a filter names ``space``, the phase,
        real or imaginary part of a complex image (``part-phase``) only when they name
        ``part`` (the magnitude, ``part-mag``, is the image, as fMRIPrep reads it), and files
        in a folder of :data:`NON_ANATOMICAL` only when the query names its datatype.
        ``unfetched``: instead of files, the links whose content is absent (a DataLad or
        git-annex dataset not fetched).
        """
        base = self._base(derivatives)
        extensions = (extension,) if isinstance(extension, str) else extension
        wanted = {"sub": subject, "ses": session, **entities}
        any_space = "space" in entities or any(f.entity == "space" for f in active_filters())
        any_part = "part" in entities or any(f.entity == "part" for f in active_filters())
        scoped = {name: {k: v for k, v in pairs if wanted.get(k) is None
                         and not (k in entities and entities[k] is None)}
                  for name, pairs in scopes().items()}
        found = []
        for path in sorted(base.glob(f"sub-{subject or '*'}/**/*")):
            parsed = parse_name(path.name)
            if parsed is None:
                continue
            absent = path.is_symlink() and not path.exists()  # an annexed file not fetched
            if not absent if unfetched else not path.is_file():
                continue
            ents, sfx, ext = parsed
            if suffix is not None and sfx.lower() != suffix.lower():
                continue
            if datatype is not None and path.parent.name != datatype:
                continue
            if datatype is None and path.parent.name in NON_ANATOMICAL:
                continue
            if extensions is not None and ext not in extensions:
                continue
            if any(ents.get(k) != v for k, v in wanted.items() if v is not None):
                continue
            if any(k in ents for k, v in entities.items() if v is None):
                continue
            scope = scoped.get(ents.get("sub", ""), scoped.get("", {}))
            if any(ents.get(k, v) != v for k, v in scope.items()):
                continue
            if not all(f.keeps(ents, sfx) for f in active_filters()):
                continue
            if not any_space and ents.get("space", "orig").lower() not in SUBJECT_SPACES:
                continue  # a template's space (fMRIPrep's MNI masks): not on the subject
            if not any_part and ents.get("part", "mag") != "mag":
                continue  # the phase (or real, imaginary) part of a complex image
            found.append(BIDSFile(path=path, entities=ents, suffix=sfx, extension=ext))
        return found

    def locate(self, subject: str, suffix: str, derivatives: str | None = None,
               other_pipelines: bool = False, prefer_without: tuple[str, ...] = (),
               **query: Any) -> list[BIDSFile]:
        """Files matching a query in ``derivatives`` (None: raw data) or, when it has none
        and ``other_pipelines`` is set, in the one other derivatives pipeline that has them.
        Of several matches, those carrying an entity of ``prefer_without`` are left out
        when others do not (``("ce",)``: the T1w before contrast beside a
        ``ce-gadolinium`` one).

        Raises:
            InputError: when several other pipelines hold a match (the message lists them).
        """
        found = self.find(subject=subject, suffix=suffix, derivatives=derivatives, **query)
        without = [f for f in found if not any(k in f.entities for k in prefer_without)]
        if without and len(without) < len(found):
            return without
        if found or not other_pipelines:
            return found
        hits = {name: files for name in self.pipelines() if name != derivatives
                for files in [self.find(subject=subject, suffix=suffix, derivatives=name,
                                        **query)] if files}
        if len(hits) > 1:
            raise InputError(f"{self.root / 'derivatives'}: expected one pipeline holding "
                             f"sub-{subject}'s '{suffix}' ({_described(query)}), found "
                             f"{', '.join(sorted(hits))}; choose one (--truth PIPELINE)")
        return next(iter(hits.values()), [])

    def misnamed(self, suffix: str, subject: str | None = None,
                 derivatives: str | None = None) -> list[Path]:
        """NIfTI files ending in ``_<suffix>`` under subject folders (of the raw data, or
        of a derivatives pipeline) whose names are not BIDS names (a label holding "_" or
        "-", ``sub-pat_01_FLAIR.nii.gz``; an extension in capitals), which no look-up
        finds."""
        ends = tuple(f"_{suffix.lower()}{e}" for e in NIFTI_EXTENSIONS)
        base = self._base(derivatives)
        return sorted(p for p in base.glob(f"sub-{subject or '*'}/**/*")
                      if p.name.lower().endswith(ends) and parse_name(p.name) is None)

    def other_formats(self, suffix: str, subject: str | None = None,
                      derivatives: str | None = None) -> list[Path]:
        """Files of an image under subject folders in another image format than NIfTI
        (``sub-01_FLAIR.mgz``, :data:`lesionkit.io.OTHER_FORMATS`), which no look-up
        reads."""
        base = self._base(derivatives)
        return sorted(p for p in base.glob(f"sub-{subject or '*'}/**/*_{suffix}.*")
                      if other_format(p) is not None)

    def without_subjects(self) -> str:
        """What the folder is when it holds no ``sub-<label>`` folder, and what to do: a
        subject's folder (give the dataset's root), or NIfTI files outside a BIDS layout
        (name them with ``predict --image``)."""
        inside = next((p for p in (self.root, *self.root.parents) if p.name.startswith("sub-")),
                      None)
        if inside is not None:
            return (f"no sub-<label> folder in {self.root}, which is part of the subject "
                    f"folder {inside}; give the dataset's root ({inside.parent})")
        images = sorted(p.name for p in self.root.iterdir()
                        if p.name.lower().endswith(NIFTI_EXTENSIONS))
        if images:
            return (f"no sub-<label> folder but {len(images)} NIfTI file(s) outside a BIDS "
                    f"layout ({', '.join(images[:3])}{', ...' if len(images) > 3 else ''}): "
                    f"name each with predict --image KEY=FILE, or lay them out as "
                    f"sub-<label>/anat/sub-<label>_<suffix>.nii.gz")
        if is_dicom(self.root):
            return (f"no sub-<label> folder but DICOM files: {DICOM_ADVICE}, then lay them "
                    "out in BIDS or name each with predict --image KEY=FILE")
        return ("no sub-<label> folder (a BIDS dataset holds one per subject, e.g. "
                "sub-01/anat/sub-01_FLAIR.nii.gz)")

    def unfetched(self, subject: str, suffix: str, **query: Any) -> list[BIDSFile]:
        """Links matching a query (:meth:`locate` arguments) whose content is not here."""
        lookup = {k: v for k, v in query.items() if k not in ("other_pipelines",
                                                               "prefer_without")}
        return self.find(subject=subject, suffix=suffix, unfetched=True, **lookup)

    def get(self, subject: str, suffix: str, **query: Any) -> BIDSFile:
        """The one file matching a query (:meth:`locate` arguments).

        Raises:
            InputError: when no file or more than one file matches; the message lists the
                files the subject has.
        """
        found = self.locate(subject, suffix, **query)
        if len(found) == 1:
            return found[0]
        links = [] if found else self.unfetched(subject, suffix, **query)
        if links:
            raise InputError(unfetched_message(links[0].path))
        where = self._base(query.get("derivatives")) / f"sub-{subject}"
        if found:
            what = f"{len(found)} files ({', '.join(f.path.name for f in found)})"
        else:
            have = sorted(p.name for p in where.glob("**/*") if p.is_file()
                          and not p.name.endswith(".json"))
            what = ("no such file; the subject has " + ", ".join(have[:8]) +
                    (f" and {len(have) - 8} more" if len(have) > 8 else "")
                    if have else "no files")
            what += _misnamed_hint(self.misnamed(suffix, subject, query.get("derivatives")))
            what += _other_format_hint(self.other_formats(suffix, subject,
                                                          query.get("derivatives")))
        chosen = "".join(f", --bids-filter {f}" for f in active_filters())
        raise InputError(f"{where}: expected one '{suffix}' image "
                         f"({_described(query)}{chosen}), found {what}{choice_hint(found)}")

    def get_run(self, subject: str, suffix: str, run: str | None = None, **query: Any
                ) -> BIDSFile:
        """The file of ``run`` where the image has one, else the image's one file (a T1w
        acquired once beside two FLAIR runs); :meth:`get` without ``run``.

        Raises:
            InputError: when no file or more than one file matches.
        """
        if run is not None:
            found = self.locate(subject, suffix, **query, run=run)
            if len(found) == 1:
                return found[0]
        return self.get(subject, suffix, **query)

    def participants(self) -> pd.DataFrame:
        """The participants.tsv table, with "n/a" read as missing.

        Raises:
            InputError: when the file is missing or has no participant_id column.
        """
        import pandas as pd

        path = self.root / "participants.tsv"
        if not path.is_file():
            raise InputError(f"{path}: expected a participants table, found no such file")
        table = pd.read_csv(path, sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False)
        if "participant_id" not in table.columns:
            raise InputError(
                f"{path}: expected a 'participant_id' column, found {list(table.columns)}"
            )
        repeated = table["participant_id"][table["participant_id"].duplicated()]
        if len(repeated):
            raise InputError(f"{path}: expected one row per participant, found "
                             f"{', '.join(sorted(set(repeated)))} more than once")
        return table


def check_output_place(root: Path, out: Path, name: str = "an output folder") -> None:
    """Refuse an output folder that would write into the dataset ``root`` itself: it must
    lie outside ``root`` (and not hold it) or under ``root/derivatives/``.

    Raises:
        InputError: One line naming both folders and a place that would do.
    """
    root, out = Path(root).resolve(), Path(out).resolve()
    inside = out.is_relative_to(root) and not out.is_relative_to(root / "derivatives")
    if out == root or root.is_relative_to(out) or inside:
        raise InputError(f"{out}: expected {name} outside the dataset {root} or under its "
                         f"derivatives/ (e.g. {root / 'derivatives' / 'lesionkit'}), found "
                         "one that would write into the dataset")


def write_dataset_description(
    root: str | os.PathLike[str],
    name: str,
    dataset_type: str = "raw",
    generated_by: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``dataset_description.json`` (BIDS version, name, type, provenance)."""
    description: dict[str, Any] = {
        "Name": name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": dataset_type,
    }
    if dataset_type == "derivative":
        description["GeneratedBy"] = generated_by or [
            {"Name": "lesionkit", "Version": __version__}
        ]
    return write_json(description, Path(root) / "dataset_description.json")


def write_participants(root: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write ``participants.tsv``; each row needs ``participant_id`` ("sub-01")."""
    for row in rows:
        if not str(row.get("participant_id", "")).startswith("sub-"):
            raise ValueError(f"participant_id must start with 'sub-', found {row!r}")
    return write_tsv(rows, Path(root) / "participants.tsv")


def derivatives_root(root: str | os.PathLike[str], pipeline: str = "lesionkit") -> Path:
    """``<root>/derivatives/<pipeline>``, with its dataset_description.json in place."""
    folder = Path(root) / "derivatives" / pipeline
    if not (folder / "dataset_description.json").is_file():
        write_dataset_description(folder, name=f"{pipeline} derivatives",
                                  dataset_type="derivative")
    return folder


def save_derivative(
    volume: Volume,
    path: str | os.PathLike[str],
    sidecar: dict[str, Any] | None = None,
    dtype: Any = None,
) -> Path:
    """Save a NIfTI derivative and its JSON sidecar.

    The sidecar always holds ``Units`` (from the volume), ``lesionkit_version`` and
    whatever ``sidecar`` adds (e.g. ``Command``, ``ModelFolder``, ``Sources``).
    """
    path = Path(path)
    meta: dict[str, Any] = {"Units": volume.unit or "a.u.", "lesionkit_version": __version__}
    meta.update(sidecar or {})
    save_volume(volume, path, dtype=dtype)
    parsed = parse_name(path.name)
    extension = parsed[2] if parsed else "".join(path.suffixes)
    write_json(meta, path.with_name(path.name[: -len(extension)] + ".json"))
    return path
