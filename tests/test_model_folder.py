"""Model folders: which dataset a model trained on."""

from __future__ import annotations

from pathlib import Path

from lesionkit.model_folder import trained_on


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
