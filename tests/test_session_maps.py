"""The session maps of a predictions folder, in time order."""

from __future__ import annotations

import json
from pathlib import Path

from lesionkit.session_maps import SessionMap, session_order


def test_session_order(tmp_path: Path) -> None:
    """Given order, then acq_time of sessions.tsv, then labels with numbers as numbers."""
    raw = tmp_path / "raw" / "sub-01"
    maps = []
    for session in ("10", "2", "baseline"):
        source = raw / f"ses-{session}" / "anat" / f"sub-01_ses-{session}_FLAIR.nii.gz"
        path = tmp_path / "pred" / f"sub-01_ses-{session}_label-lesion_probseg.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"Sources": [str(source)]}))
        maps.append(SessionMap(path, "01", session, ()))
    assert [m.session for m in session_order(maps)] == ["2", "10", "baseline"]
    assert [m.session for m in session_order(maps, ["baseline", "10"])] == ["baseline", "10"]
    raw.mkdir(parents=True)
    (raw / "sub-01_sessions.tsv").write_text(
        "session_id\tacq_time\nses-baseline\t2020-01-01T10:00:00\n"
        "ses-2\t2021-06-01T10:00:00\nses-10\t2021-01-01T10:00:00\n")
    assert [m.session for m in session_order(maps)] == ["baseline", "10", "2"]
