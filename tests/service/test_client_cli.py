"""gan-client against the real server: the README's generate command writes a grid PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan_client.cli import main
from tests.conftest import ServerThread


def test_generate_writes_a_grid_of_sixteen(server: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "sevens.png"
    code = main(["--target", server.target, "generate", "--model", "digits", "--label", "7", "--count", "16",
                 "--seed", "1", "--scale", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    grid = Image.open(out)
    # 4 x 4 tiles of 16 px with 2 px padding around and between them
    assert grid.size == (4 * 18 + 2, 4 * 18 + 2) and grid.mode == "L"


def test_generate_npy_and_list(server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "noise.npy"
    assert main(["--target", server.target, "generate", "--model", "noise", "--count", "3", "--out", str(out)]) == 0
    assert np.load(out).shape == (3, 1, 16, 16)
    assert main(["--target", server.target, "list"]) == 0
    listing = capsys.readouterr().out
    assert "digits\tversion 1" in listing and "noise\tversion 1" in listing


def test_server_errors_print_the_message(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--target", server.target, "generate", "--model", "digits", "--label", "12", "--out", "x.png"])
    assert code == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "labels[0]" in err and "Traceback" not in err
