"""The command line's error lines (lesionkit.console)."""

from pathlib import Path

import pytest

from lesionkit.console import os_error


def test_os_errors_name_the_file_and_what_stands_there(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError) as caught:
        (tmp_path / "file").mkdir(parents=True, exist_ok=True)
    assert os_error(caught.value) == f"{tmp_path / 'file'}: expected a folder (or nothing) " \
        "there, found a file"
    with pytest.raises(NotADirectoryError) as caught:
        (tmp_path / "file" / "a" / "b").mkdir(parents=True)
    assert os_error(caught.value).endswith(f"expected {tmp_path / 'file'} to be a folder, "
                                            "found a file")
    with pytest.raises(FileExistsError) as caught:
        tmp_path.mkdir()  # an existing folder: the system's own words
    assert os_error(caught.value) == f"{tmp_path}: File exists"
    assert os_error(FileExistsError("model folder m exists; use --overwrite")) == \
        "model folder m exists; use --overwrite"
