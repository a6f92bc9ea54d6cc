"""gan-client and the client SDK against the real server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan_client.cli import main
from gan_client.client import AsyncGeneratorClient, GeneratorClient
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


def test_generate_into_a_folder_writes_one_png_per_sample(server: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "each"
    argv = ["--target", server.target, "generate", "--model", "digits", "--count", "5", "--scale", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"sample-{i:06d}.png" for i in range(5)]
    assert Image.open(out / files[0]).size == (16, 16)


def test_large_counts_are_split_into_reproducible_calls(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "many.npy"
    argv = ["--target", server.target, "--json", "generate", "--model", "digits", "--count", "600", "--seed", "3"]
    assert main([*argv, "--label", "4", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calls"] == 3 and report["seed"] == 3 and report["count"] == 600  # max_count is 256
    many = np.load(out)
    assert many.shape == (600, 1, 16, 16)
    with GeneratorClient(server.target) as client:  # the second call is seed 3 + 1
        second = client.generate("digits", 256, seed=4, labels=[4]).array
    np.testing.assert_array_equal(many[256:512], second)


def test_labels_must_be_one_or_one_per_sample(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--target", server.target, "generate", "--model", "digits", "--count", "3", "--label", "1", "--label", "2"]
    with pytest.raises(SystemExit, match="--label once"):
        main([*argv, "--out", "x.npy"])


def test_list_as_json(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", server.target, "--json", "list"]) == 0
    names = {model["name"] for model in json.loads(capsys.readouterr().out)}
    assert {"digits", "noise"} <= names


def test_the_asyncio_client_gives_the_same_samples(server: ServerThread) -> None:
    async def generate() -> np.ndarray:
        async with AsyncGeneratorClient(server.target) as client:
            names = [model.name for model in await client.list_models()]
            assert "digits" in names and (await client.get_model("digits")).latent_dim == 8
            return (await client.generate("digits", 4, seed=11, labels=[2])).array

    with GeneratorClient(server.target) as client:
        expected = client.generate("digits", 4, seed=11, labels=[2]).array
    np.testing.assert_array_equal(asyncio.run(generate()), expected)


def test_wait_for_ready_rides_out_a_server_that_is_still_starting(model_repository: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = threading.Event()
    stop = threading.Event()

    def serve_later() -> None:
        time.sleep(1.0)
        with ServerThread(model_repository=model_repository, grpc_port=port):
            started.set()
            stop.wait(30)

    thread = threading.Thread(target=serve_later, daemon=True)
    thread.start()
    try:
        with GeneratorClient(f"127.0.0.1:{port}", timeout=30, wait_for_ready=True) as client:
            assert "digits" in [model.name for model in client.list_models()]
        assert started.is_set()
    finally:
        stop.set()
        thread.join(timeout=30)
