"""Sessions and runs of longitudinal data: the unit a look-up reads, and example names.

Most MS data is longitudinal: a subject has several sessions (visits), and an image may
be acquired in several runs. Code written for "the" image of a subject reads one unit of
it inside :func:`unit_scope`, which :meth:`lesionkit.bids.BIDSDataset.find` obeys. A
training example is a subject, or one session of it (:func:`example_name`,
"p01_ses-2"); folds are drawn over subjects (:func:`subjects_of`). A label names the
same person only within one dataset (:func:`trained_on`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

#: Subject label ("": every other subject) -> the (entity, label) pairs of the session and
#: run that :func:`unit_scope` restricts it to.
_SCOPE: ContextVar[tuple[tuple[str, tuple[tuple[str, str], ...]], ...]] = ContextVar(
    "lesionkit_unit_scope", default=())


def scopes() -> dict[str, tuple[tuple[str, str], ...]]:
    """Subject label ("": every other subject) -> (entity, label) pairs of the enclosing
    :func:`unit_scope`; empty outside one."""
    return dict(_SCOPE.get())


@contextmanager
def unit_scope(session: str | None = None, run: str | None = None,
               per_subject: Mapping[str, tuple[str | None, str | None]] | None = None
               ) -> Iterator[None]:
    """Within the block, :meth:`lesionkit.bids.BIDSDataset.find` sees one session (and run)
    of a subject.

    A file whose ``ses`` (``run``) entity names another session (run) is skipped; files
    without the entity are kept (a mask drawn once per subject serves each of its
    sessions); a query that names a session or run itself is left as it asks. So code
    written for one image per subject reads one unit of longitudinal data.

    Scopes nest: what an inner scope leaves unset (None) stays as the enclosing one set it.

    Args:
        session: Session label (without ``ses-``) every subject is read at.
        run: Run label every subject is read at.
        per_subject: Subject label -> (session, run) for subjects read at a unit of their
            own (the second visit of each, whatever its label); the others are read at
            ``session`` and ``run``.

    Example:
        >>> with unit_scope(session="2"):
        ...     flair = lesionkit.bids.BIDSDataset("/data").get("p01", "FLAIR")  # doctest: +SKIP
    """
    outer = scopes()  # an enclosing scope still holds where this one is silent
    scope = {**outer, "": _merged(outer.get("", ()), _pairs(session, run))}
    for name, unit in (per_subject or {}).items():
        scope[name] = _merged(outer.get(name, outer.get("", ())), _pairs(*unit))
    token = _SCOPE.set(tuple(scope.items()))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def _pairs(session: str | None, run: str | None) -> tuple[tuple[str, str], ...]:
    return tuple((key, value) for key, value in (("ses", session), ("run", run)) if value)


def _merged(outer: tuple[tuple[str, str], ...], inner: tuple[tuple[str, str], ...]
            ) -> tuple[tuple[str, str], ...]:
    return tuple({**dict(outer), **dict(inner)}.items())


def _scope_of(subject: str | None) -> dict[str, str]:
    """Entity -> label that the enclosing :func:`unit_scope` reads ``subject`` at."""
    scope = scopes()
    return dict(scope.get(subject or "", scope.get("", ())))


def row_in_scope(row: Mapping[str, object]) -> bool:
    """Whether a table row (``participant_id``, ``session_id`` "ses-<label>", ``run``)
    belongs to the units of the enclosing :func:`unit_scope`; rows without session and
    run columns belong to every unit."""
    def label(value: object) -> str:
        return "" if value is None or value != value else str(value)  # None, NaN: absent

    values = {"ses": label(row.get("session_id")).removeprefix("ses-"),
              "run": label(row.get("run"))}
    scope = _scope_of(label(row.get("participant_id")).removeprefix("sub-"))
    return all(not values[key] or values[key] == value for key, value in scope.items())


def unit_label(subject: str, session: str | None = None, run: str | None = None) -> str:
    """``sub-<label>[_ses-<label>][_run-<label>]``, e.g. "sub-p01_ses-2"."""
    return "_".join(f"{key}-{value}" for key, value in
                    (("sub", subject), ("ses", session), ("run", run)) if value)


#: Separates the subject from the session in the name of a training example ("p01_ses-2").
SESSION_SEPARATOR = "_ses-"


def example_name(subject: str, session: str | None = None) -> str:
    """The name of one training example: the subject label ("p01"), or with longitudinal
    data one session of it ("p01_ses-2"; BIDS labels hold no underscore)."""
    return f"{subject}{SESSION_SEPARATOR}{session}" if session else subject


def example_unit(name: str) -> tuple[str, str | None]:
    """(subject, session) of an :func:`example_name`."""
    subject, _, session = name.partition(SESSION_SEPARATOR)
    return subject, session or None


def subjects_of(names: Sequence[str]) -> list[str]:
    """The subjects (sorted, once each) of example names, such as a fold's ``train`` list."""
    return sorted({example_unit(name)[0] for name in names})


def trained_on(config: Mapping[str, Any], root: str | os.PathLike[str]) -> bool:
    """Whether a model folder's ``config`` trained on the dataset at ``root`` (the same
    folder, resolved). Only then do its training subjects' labels name the same people as
    the dataset's: ``sub-01`` of another dataset is someone else."""
    trained = (config.get("data") or {}).get("root")
    return trained is not None and Path(trained).resolve() == Path(root).resolve()
