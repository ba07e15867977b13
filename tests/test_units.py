"""Units of longitudinal data: example names and table rows in a scope."""

from __future__ import annotations

from pathlib import Path

from lesionkit.units import (
    example_name,
    example_unit,
    row_in_scope,
    subjects_of,
    trained_on,
    unit_scope,
)


def test_example_names_round_trip() -> None:
    assert example_name("p01", "2") == "p01_ses-2" and example_name("p01") == "p01"
    assert example_unit("p01_ses-2") == ("p01", "2") and example_unit("p01") == ("p01", None)
    assert subjects_of(["p02_ses-1", "p01_ses-2", "p01_ses-1", "p03"]) == ["p01", "p02", "p03"]


def test_rows_in_scope() -> None:
    rows = [{"participant_id": "sub-a", "session_id": "ses-1"},
            {"participant_id": "sub-a", "session_id": "ses-2"},
            {"participant_id": "sub-b", "session_id": "ses-1"},
            {"participant_id": "sub-c"}]  # no session column: every unit's
    assert all(row_in_scope(r) for r in rows)  # outside a scope
    with unit_scope(session="1"):
        assert [row_in_scope(r) for r in rows] == [True, False, True, True]
        with unit_scope(per_subject={"a": ("2", None)}):  # a at its own unit, b still at 1
            assert [row_in_scope(r) for r in rows] == [False, True, True, True]


def test_a_model_trained_on_a_dataset_knows_it_by_its_resolved_folder(tmp_path: Path) -> None:
    data = tmp_path / "bids"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    config = {"data": {"root": str(data)}}
    assert trained_on(config, data) and trained_on(config, tmp_path / "link")
    assert trained_on(config, tmp_path / "bids" / ".." / "bids")
    (tmp_path / "copy").mkdir()
    assert not trained_on(config, tmp_path / "copy")
    assert not trained_on({}, data) and not trained_on({"data": {}}, data)
