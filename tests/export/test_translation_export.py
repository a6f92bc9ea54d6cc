"""gan-export of gan-translate checkpoints: ONNX that matches PyTorch at two sizes and describes itself."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from export.cli import main
from export.translation import TranslationExport, example_sources, export_translation
from gan_client.client import GeneratorClient
from service.translator_signature import TranslatorSignature
from tests.conftest import ServerThread, modes, umask
from training.translation.checkpoint import load_translator
from training.translation.cli import translation_config
from training.translation.train import train_translation

TOLERANCE = 1e-4  # max abs difference, outputs in [-1, 1]
TINY = ["steps=2", "batch_size=2", "model.width=4", "model.d_width=4", "sample_every=1000"]
RUNS = {
    "sr": ["task=super-resolution", "data.patch_size=16", "model.depth=3"],  # inputs 4x4, multiples of 2
    "inpaint": ["task=inpainting", "data.patch_size=16", "model.depth=2"],  # multiples of 4
    "digits": ["task=unpaired", "data.patch_size=16", "data.channels=1", "model.blocks=1", "domains=[digits,bold]"],
}


@pytest.fixture(scope="module")
def translators(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("translators")
    checkpoints = {}
    for name, overrides in RUNS.items():
        config = translation_config(None, [*TINY, *overrides, f"out_dir={root / name}"])
        checkpoints[name] = train_translation(config, progress=False).checkpoint
    return checkpoints


@pytest.fixture(scope="module")
def exported(translators: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, TranslationExport]:
    """Each tiny translator exported once into one repository (exporting takes seconds)."""
    repository = tmp_path_factory.mktemp("repository")
    return {name: export_translation(checkpoint, repository, name) for name, checkpoint in translators.items()}


def session_of(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", sorted(RUNS))
def test_onnxruntime_matches_pytorch_at_the_training_size_and_another(
    name: str, translators: dict[str, Path], exported: dict[str, TranslationExport]
) -> None:
    result = exported[name]
    assert result.path.parts[-3:] == (name, "1", "model.onnx")
    assert result.parity.max_abs_error <= TOLERANCE and len(set(result.parity_sizes)) == 2
    signature, session = result.signature, session_of(result.path)
    generator = load_translator(translators[name]).generator
    multiple = signature.size_multiple
    for height, width in (signature.train_size, (3 * multiple, 5 * multiple)):  # a third size, checked here too
        sources = example_sources(signature, 2, (height, width), seed=7)
        (actual,) = session.run(["image"], {"source": sources.numpy()})
        with torch.no_grad():
            expected = generator(sources).numpy()
        assert actual.shape == (2, signature.output_channels, height * signature.scale, width * signature.scale)
        assert np.abs(actual - expected).max() <= TOLERANCE
        assert actual.min() >= -1.0 and actual.max() <= 1.0


@pytest.mark.parametrize("name", sorted(RUNS))
def test_saturated_translations_stay_inside_the_advertised_range(
    name: str, exported: dict[str, TranslationExport]
) -> None:
    """As for the generators (tests/export/test_export.py): the graph clamps onnxruntime's tanh."""
    signature = exported[name].signature
    sources = example_sources(signature, 8, signature.train_size, seed=3).numpy() * 1e4
    (images,) = session_of(exported[name].path).run(["image"], {"source": sources})
    assert images.min() >= -1.0 and images.max() <= 1.0


def test_the_metadata_round_trips_and_the_repository_config_is_small(exported: dict[str, TranslationExport]) -> None:
    result = exported["sr"]
    session = session_of(result.path)
    signature = TranslatorSignature.from_metadata(session.get_modelmeta().custom_metadata_map, "test")
    assert signature == result.signature
    assert (signature.task, signature.architecture, signature.input_format) == (
        "super-resolution",
        "pix2pix-unet",
        "rgb",
    )
    assert (signature.scale, signature.size_multiple, signature.train_size) == (4, 2, (4, 4))
    assert signature.dynamic_size and signature.value_range == (-1.0, 1.0) and len(signature.config_digest) == 64
    (source,) = session.get_inputs()
    assert source.name == "source" and source.shape[1] == 3
    assert all(isinstance(dim, str) for dim in (source.shape[0], source.shape[2], source.shape[3])), "dynamic N, H, W"
    config = json.loads((result.path.parents[1] / "config.json").read_text())
    assert config["max_batch_size"] == 16
    inpaint = exported["inpaint"].signature
    assert (inpaint.input_format, inpaint.input_channels, inpaint.output_channels) == ("rgb+mask", 4, 3)


def test_cyclegan_exports_either_direction(
    translators: dict[str, Path], exported: dict[str, TranslationExport], tmp_path: Path
) -> None:
    forward = exported["digits"].signature
    backward = export_translation(translators["digits"], tmp_path, "plain", direction="b2a").signature
    assert (forward.task, backward.task) == ("digits-to-bold", "bold-to-digits")
    assert forward.architecture == "cyclegan-resnet" and forward.input_format == "gray" and forward.size_multiple == 4


@pytest.mark.parametrize("name", ["sr", "digits"])
def test_a_size_that_is_not_a_multiple_is_refused(name: str, exported: dict[str, TranslationExport]) -> None:
    """The signature names the problem (the service checks it first); onnxruntime itself fails too."""
    result = exported[name]
    signature = result.signature
    odd = signature.train_size[0] + 1
    assert signature.size_problem(odd, odd) is not None and signature.size_problem(*signature.train_size) is None
    sources = example_sources(signature, 1, (odd, odd), seed=0).numpy()
    with pytest.raises(Exception, match=r"(?i)(mismatch|must match|shape)"):  # onnxruntime's own Fail type
        session_of(result.path).run(["image"], {"source": sources})


def test_gan_export_detects_a_translator(
    translators: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [str(translators["inpaint"]), "--repository", str(tmp_path), "--name", "inpaint"]
    assert main([*arguments, "--max-batch-size", "8"]) == 0
    assert "published inpaint version 1" in capsys.readouterr().out
    assert json.loads((tmp_path / "inpaint/config.json").read_text())["max_batch_size"] == 8
    assert main([*arguments[:-1], "inpaint", "--direction", "b2a"]) == 2
    assert "only translates a to b" in capsys.readouterr().err


def test_the_served_exports_translate_client_images(exported: dict[str, TranslationExport], tmp_path: Path) -> None:
    """Train -> export -> serve -> gan_client: odd sizes come back scaled, an inpainter keeps the known pixels."""
    repository = exported["sr"].path.parents[2]
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (10, 13, 3), dtype=np.uint8)  # neither side a multiple of the model's 2
    alpha = np.full((12, 12), 255, dtype=np.uint8)
    alpha[3:9, 4:10] = 0  # the hole
    masked = np.dstack([rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), alpha])
    with ServerThread(model_repository=repository) as server, GeneratorClient(server.target) as client:
        upscaled = client.translate("sr", [png(photo)], output="uint8").array
        filled = client.translate("inpaint", [png(masked)], output="uint8").array
    assert upscaled is not None and upscaled.shape == (1, 3, 40, 52)  # x4, cropped back from the padding
    assert filled is not None and filled.shape == (1, 3, 12, 12)
    known = alpha == 255
    difference = np.abs(filled[0].transpose(1, 2, 0).astype(int) - masked[..., :3].astype(int))
    assert difference[known].max() <= 1  # copied through the graph (uint8 rounding only)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_re_export_keeps_a_hand_edited_max_batch_size(translators: dict[str, Path], tmp_path: Path) -> None:
    """The translators' 16 is for a new config.json only, as the image generators' default is."""
    export_translation(translators["sr"], tmp_path, "sr")
    config_path = tmp_path / "sr/config.json"
    config = json.loads(config_path.read_text())
    assert config["max_batch_size"] == 16
    config_path.write_text(json.dumps({**config, "max_batch_size": 4}))
    assert export_translation(translators["sr"], tmp_path, "sr").version == 2
    assert json.loads(config_path.read_text())["max_batch_size"] == 4


def test_a_bad_batching_flag_publishes_no_translator(
    translators: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [str(translators["sr"]), "--repository", str(tmp_path), "--name", "sr"]
    assert main([*arguments, "--max-batch-size", "0"]) == 2
    assert "max_batch_size" in capsys.readouterr().err
    assert not (tmp_path / "sr").exists() or not any((tmp_path / "sr").iterdir())


def test_parity_samples_set_the_images_checked_at_each_size(
    translators: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [str(translators["sr"]), "--repository", str(tmp_path), "--name", "sr"]
    assert main([*arguments, "--parity-samples", "5"]) == 0
    assert "over 10 samples" in capsys.readouterr().out  # 5 images at each of the two sizes
    assert json.loads((tmp_path / "sr/1/export.json").read_text())["parity"]["samples"] == 10
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "for a translator, images at each of the two sizes" in " ".join(capsys.readouterr().out.split())


def test_a_published_translator_is_readable_by_another_user(translators: dict[str, Path], tmp_path: Path) -> None:
    with umask(0o022):
        folder = export_translation(translators["sr"], tmp_path, "sr").path.parent
    everything = modes(folder, *folder.iterdir(), folder.parent / "config.json")
    assert everything == {"1": 0o755, "model.onnx": 0o644, "export.json": 0o644, "config.json": 0o644}
