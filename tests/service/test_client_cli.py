"""gan-client and the client SDK against the real server."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan_client.cli import main, read_token
from gan_client.client import AsyncGeneratorClient, GeneratorClient, chunk_seed
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
    with GeneratorClient(server.target) as client:  # call 0 uses the seed, call 1 chunk_seed(3, 1)
        first = client.generate("digits", 256, seed=3, labels=[4]).array
        second = client.generate("digits", 256, seed=chunk_seed(3, 1), labels=[4]).array
    np.testing.assert_array_equal(many[:256], first)
    np.testing.assert_array_equal(many[256:512], second)
    assert first.flags.writeable and second.flags.writeable, "arrays the caller may write to"


def test_every_chunk_comes_from_the_version_that_answered_the_first(tmp_path: Path) -> None:
    """A version published during a long run must not change the samples half-way: later calls name the version."""
    from types import SimpleNamespace

    from gan_client.cli import generate, parse_args
    from gan_client.client import Samples

    asked: list[int] = []

    class Reloading:  # version 3 answers the first call; a version 4 appears right after
        def get_model(self, name: str, version: int = 0) -> SimpleNamespace:
            return SimpleNamespace(max_count=2)

        def generate(self, model: str, count: int, *, version: int = 0, **options: object) -> Samples:
            asked.append(version)
            answered = version or (3 if len(asked) == 1 else 4)
            return Samples(model, answered, 1, [], np.zeros((count, 1, 4, 4), np.float32))

    out = str(tmp_path / "a.npy")
    args = parse_args(["generate", "--model", "digits", "--count", "5", "--seed", "1", "--out", out])
    generate(args, Reloading())  # type: ignore[arg-type]
    assert asked == [0, 3, 3]


def test_generate_creates_the_folder_of_its_output_and_checks_the_seed(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--target", server.target, "generate", "--model", "noise", "--count", "2", "--seed", "1"]
    for name in ("grid/noise.png", "arrays/noise.npy"):
        assert main([*argv, "--out", str(tmp_path / "new" / name)]) == 0
        assert (tmp_path / "new" / name).is_file()
    for seed in ("-5", str(2**64)):
        with pytest.raises(SystemExit, match="--seed must be between 0 and 2\\*\\*64 - 1"):
            main([*argv[:-1], seed, "--out", str(tmp_path / "x.npy")])
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a folder")
    assert main([*argv, "--out", str(blocked / "x.npy")]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err


def test_token_files_are_read_as_the_server_reads_them(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("# the ops token, rotated monthly\n\n  s3cret  \n")
    assert read_token(token_file) == "s3cret"
    token_file.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="holds no token"):
        read_token(token_file)


def test_bad_client_options_exit_2_before_any_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error (exit 2), not a failed call (exit 1): no server listens at port 1."""
    assert main(["--target", "127.0.0.1:1", "--timeout", "0", "list"]) == 2
    assert "timeout" in capsys.readouterr().err
    assert main(["--target", "127.0.0.1:1", "--token-file", str(tmp_path / "missing"), "list"]) == 2
    assert "--token-file" in capsys.readouterr().err
    rows = ["--target", "127.0.0.1:1", "rows", "--model", "people", "--out", str(tmp_path / "rows.csv")]
    with pytest.raises(SystemExit, match="--count must be at least 1"):
        main([*rows, "--count", "0"])
    with pytest.raises(SystemExit, match="expected column=value"):
        main([*rows, "--count", "5", "--condition", "=red"])
    assert not (tmp_path / "rows.csv").exists()


def test_outputs_of_the_wrong_kind_are_refused_before_any_call(tmp_path: Path) -> None:
    """A .jpg --out would otherwise become a folder of PNGs, or a JPEG grid (no server listens at port 1)."""
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(image)
    offline = ["--target", "127.0.0.1:1"]
    commands = [
        (["generate", "--model", "digits"], r"--out must end in \.png or \.npy"),
        (["translate", str(image), "--model", "sr"], r"--out must end in \.png or be a folder"),
        (["interpolate", "--model", "digits", "--from-seed", "1", "--to-seed", "2"], r"--out must end in \.gif"),
    ]
    for command, message in commands:
        with pytest.raises(SystemExit, match=message):
            main([*offline, *command, "--out", str(tmp_path / "out.jpg")])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.png"]


def test_per_sample_labels_follow_their_samples_across_calls(server: ServerThread, tmp_path: Path) -> None:
    """300 samples with one label each take two calls (max_count 256): the second gets labels 256..299."""
    labels = [index % 10 for index in range(300)]
    out = tmp_path / "labelled.npy"
    argv = ["--target", server.target, "generate", "--model", "digits", "--count", "300", "--seed", "5"]
    assert main([*argv, *(f"--label={label}" for label in labels), "--out", str(out)]) == 0
    with GeneratorClient(server.target) as client:
        second = client.generate("digits", 44, seed=chunk_seed(5, 1), labels=labels[256:]).array
    np.testing.assert_array_equal(np.load(out)[256:], second)


def test_parquet_without_pyarrow_is_refused_before_any_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    argv = [
        "--target",
        "127.0.0.1:1",
        "rows",
        "--model",
        "people",
        "--count",
        "10",
        "--out",
        str(tmp_path / "r.parquet"),
    ]
    with pytest.raises(SystemExit, match="pyarrow"):  # no server listens at port 1: refused before calling it
        main(argv)


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


def test_the_asyncio_client_gets_the_same_pngs(server: ServerThread) -> None:
    async def pngs() -> list[bytes]:
        async with AsyncGeneratorClient(server.target) as client:
            return await client.generate_png("digits", 2, seed=11, labels=[2])

    with GeneratorClient(server.target) as client:
        expected = client.generate_png("digits", 2, seed=11, labels=[2])
    assert asyncio.run(pngs()) == expected and all(png.startswith(b"\x89PNG") for png in expected)


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


@pytest.fixture(scope="module")
def sr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    from tests.service.onnx_models import write_translator

    root = tmp_path_factory.mktemp("sr")
    write_translator(root / "sr/1/model.onnx", "rgb", scale=2, size_multiple=4)
    with ServerThread(model_repository=root) as running:
        yield running


def _png(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_translate_writes_one_output_per_input(sr_server: ServerThread, tmp_path: Path) -> None:
    first, second = _png(tmp_path / "a.png", 6, 10, 0), _png(tmp_path / "b.png", 6, 10, 1)
    out = tmp_path / "up.png"
    assert main(["--target", sr_server.target, "translate", str(tmp_path / "a.png"), "--model", "sr",
                 "--out", str(out)]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.asarray(Image.open(out)), first.repeat(2, axis=0).repeat(2, axis=1))
    folder = tmp_path / "outs"
    argv = ["--target", sr_server.target, "translate", str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert main([*argv, "--model", "sr", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "b.png")), second.repeat(2, axis=0).repeat(2, axis=1))
    (tmp_path / "again").mkdir()
    _png(tmp_path / "again" / "a.png", 6, 10, 2)
    with pytest.raises(SystemExit, match="inputs named a would write the same output file"):
        main([*argv, str(tmp_path / "again" / "a.png"), "--model", "sr", "--out", str(folder)])


def test_list_describes_every_kind_of_model(sr_server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", sr_server.target, "list"]) == 0
    assert "sr\tversion 1\timage-to-image (" in capsys.readouterr().out


def test_translate_errors_name_the_image(
    sr_server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    code = main(["--target", sr_server.target, "translate", str(tmp_path / "bad.png"), "--model", "sr",
                 "--out", str(tmp_path / "x.png")])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "images[0]" in err and "Traceback" not in err


def test_interpolate_writes_an_animated_gif_and_a_grid(server: ServerThread, tmp_path: Path) -> None:
    gif = tmp_path / "walk.gif"
    argv = ["--target", server.target, "interpolate", "--model", "digits", "--from-seed", "1", "--to-seed", "2"]
    assert main([*argv, "--steps", "6", "--scale", "1", "--out", str(gif)]) == 0
    animation = Image.open(gif)
    assert animation.n_frames == 6 and animation.size == (16, 16)
    grid = tmp_path / "walk.png"
    options = ["--steps", "4", "--method", "linear", "--from-label", "1", "--to-label", "7", "--truncation", "0.7"]
    assert main([*argv, *options, "--scale", "1", "--out", str(grid)]) == 0
    assert Image.open(grid).size == (4 * 18 + 2, 18 + 2)


def test_generate_takes_truncation(server: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "t.npy"
    argv = ["--target", server.target, "generate", "--model", "noise", "--count", "2", "--seed", "3"]
    assert main([*argv, "--truncation", "0.5", "--out", str(out)]) == 0
    with GeneratorClient(server.target) as client:
        expected = client.generate("noise", 2, seed=3, truncation=0.5).array
    np.testing.assert_array_equal(np.load(out), expected)


def test_sdk_translate_and_interpolate_sync_and_async(sr_server: ServerThread, server: ServerThread) -> None:
    from gan_client.client import Endpoint

    pixels = np.random.default_rng(2).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    with GeneratorClient(sr_server.target) as client:
        result = client.translate("sr", [pixels, pixels], output="uint8")
    assert result.array is not None and result.array.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(result.array[1], pixels.repeat(2, axis=1).repeat(2, axis=2))

    async def both() -> tuple[np.ndarray | None, np.ndarray | None]:
        async with AsyncGeneratorClient(sr_server.target) as client:
            translated = await client.translate("sr", [pixels], output="uint8")
        async with AsyncGeneratorClient(server.target) as client:
            walked = await client.interpolate("digits", Endpoint(seed=1), Endpoint(seed=1, label=4), 3, spherical=True)
        return translated.array, walked.class_weights

    translated, weights = asyncio.run(both())
    assert translated is not None and translated.shape == (1, 3, 8, 8)
    assert weights is not None and weights.shape == (3, 10) and weights[-1, 4] == 1.0
