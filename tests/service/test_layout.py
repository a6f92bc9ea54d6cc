"""The repository layout: which folders are model versions."""

from __future__ import annotations

from pathlib import Path

from service.layout import MODEL_FILE, version_dirs


def test_versions_are_folders_of_plain_decimal_numbers(tmp_path: Path) -> None:
    for name in ("1", "12", "007", "0", "²", "v3", "4"):
        (tmp_path / name).mkdir()
        (tmp_path / name / MODEL_FILE).write_bytes(b"")
    (tmp_path / "5").mkdir()  # no model file
    assert sorted(version_dirs(tmp_path)) == [1, 4, 12]
