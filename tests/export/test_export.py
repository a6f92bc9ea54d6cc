"""gan-export: ONNX that matches PyTorch, describes itself, and lands as a new immutable version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.cli import export_checkpoint, main
from export.model_repository import RepositoryError
from export.parity import ParityError, check_parity
from service.signature import signature_from_metadata
from tests.conftest import modes, umask
from training.checkpoint import load_generator


def test_export_publishes_a_self_describing_version(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = export_checkpoint(checkpoints["conditional"], tmp_path, "digits")
    assert result.version == 1 and result.path == tmp_path / "digits/1/model.onnx"
    assert result.parity.samples >= 64 and result.parity.max_abs_error <= 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    signature = signature_from_metadata(session.get_modelmeta().custom_metadata_map, "test")
    assert signature.class_names == tuple(str(d) for d in range(10))
    assert signature.sample_shape == (1, 16, 16) and signature.value_range == (-1.0, 1.0)
    assert signature.latent_dim == 8 and len(signature.config_digest) == 64
    assert signature.architecture == "conditional-dcgan", "GetModel reports it"
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs["latent"][1] == 8 and isinstance(inputs["latent"][0], str), "batch axis must be dynamic"
    assert onnx.load(str(result.path)).opset_import[0].version == 18
    config = json.loads((tmp_path / "digits/config.json").read_text())
    assert config["name"] == "digits" and config["max_batch_size"] >= 1


def test_dynamic_batch_runs_any_size(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = export_checkpoint(checkpoints["conditional"], tmp_path, "digits")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for size in (1, 3, 130):
        latent = np.zeros((size, 8), np.float32)
        weights = np.zeros((size, 10), np.float32)
        weights[:, 0] = 1.0
        (images,) = session.run(None, {"latent": latent, "class_weights": weights})
        assert images.shape == (size, 1, 16, 16)


def test_conditional_export_takes_class_weights_that_match_labels(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """One-hot class weights give PyTorch's image of that label (tolerance 1e-4); a mix lies between."""
    import torch

    result = export_checkpoint(checkpoints["conditional"], tmp_path, "digits")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert {i.name: i.type for i in session.get_inputs()} == {
        "latent": "tensor(float)",
        "class_weights": "tensor(float)",
    }
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["gan.label_input"] == "class_weights"
    loaded = load_generator(checkpoints["conditional"])
    latent = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    labels = np.array([1, 7, 7])
    weights = np.eye(10, dtype=np.float32)[labels]
    weights[2] = 0.5 * (np.eye(10, dtype=np.float32)[1] + np.eye(10, dtype=np.float32)[7])
    (images,) = session.run(None, {"latent": latent, "class_weights": weights})
    with torch.no_grad():
        expected = loaded.generator.eval()(torch.from_numpy(latent), torch.from_numpy(labels)).numpy()
        mixed = loaded.generator.from_class_weights(torch.from_numpy(latent), torch.from_numpy(weights)).numpy()
    np.testing.assert_allclose(images[:2], expected[:2], atol=1e-4)
    np.testing.assert_allclose(images[2], mixed[2], atol=1e-4)
    assert not np.allclose(images[2], expected[2], atol=1e-3), "a blend of two classes is not one of them"


def test_the_digits_bench_scores_an_exported_model(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """bench/digits_quality.py's default path (the newest ONNX version) gives PyTorch's images for each label."""
    import torch

    from bench.digits_quality import onnx_generator

    result = export_checkpoint(checkpoints["conditional"], tmp_path, "digits")
    generate, latent_dim = onnx_generator(result.path)
    latent = np.random.default_rng(0).standard_normal((4, latent_dim)).astype(np.float32)
    labels = np.array([0, 3, 3, 9], dtype=np.int64)
    generator = load_generator(checkpoints["conditional"]).generator
    with torch.no_grad():
        expected = generator(torch.from_numpy(latent), torch.from_numpy(labels))
    np.testing.assert_allclose(generate(latent, labels), expected.numpy(), atol=1e-4)


@pytest.mark.parametrize("kind", ["conditional", "unconditional"])
def test_saturated_samples_stay_inside_the_advertised_range(
    checkpoints: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """onnxruntime's tanh lands one float step past -1 and 1 where it saturates; the graph clamps."""
    result = export_checkpoint(checkpoints[kind], tmp_path, "m")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = {"latent": rng.standard_normal((4096, 8)).astype(np.float32) * 1e4}  # far into saturation
    if kind == "conditional":
        inputs["class_weights"] = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4096)] * 1e4
    (images,) = session.run(None, inputs)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert (np.abs(images) == 1.0).mean() > 0.01, "the inputs must saturate for this test to mean anything"


def test_unconditional_export_has_no_label_input(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = export_checkpoint(checkpoints["unconditional"], tmp_path, "noise")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["latent"]
    assert session.get_modelmeta().custom_metadata_map["gan.architecture"] == "dcgan"


def test_versions_increase_and_config_edits_survive(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    export_checkpoint(checkpoints["conditional"], tmp_path, "digits")
    config_path = tmp_path / "digits/config.json"
    config = json.loads(config_path.read_text())
    config["max_batch_size"] = 8
    config_path.write_text(json.dumps(config))
    second = export_checkpoint(checkpoints["conditional"], tmp_path, "digits")
    assert second.version == 2
    assert json.loads(config_path.read_text())["max_batch_size"] == 8
    with pytest.raises(RepositoryError, match="already exists"):
        export_checkpoint(checkpoints["conditional"], tmp_path, "digits", version=2)
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["1", "2", "config.json"]


def test_gan_export_without_batching_flags_keeps_a_hand_edited_config(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """The flags left out are no override: the edited max_batch_size stays, and no null is written."""
    arguments = [str(checkpoints["unconditional"]), "--repository", str(tmp_path), "--name", "noise"]
    assert main(arguments) == 0
    config_path = tmp_path / "noise/config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "max_batch_size": 8}))
    assert main(arguments) == 0
    config = json.loads(config_path.read_text())
    assert config["max_batch_size"] == 8 and None not in config.values()


def test_the_next_version_follows_the_newest_not_the_count(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """Versions 1 and 3 on disk (2 was deleted): the next export is 4, not a clash with 3."""
    export_checkpoint(checkpoints["unconditional"], tmp_path, "noise")
    export_checkpoint(checkpoints["unconditional"], tmp_path, "noise", version=3)
    assert export_checkpoint(checkpoints["unconditional"], tmp_path, "noise").version == 4


def test_version_zero_and_zero_parity_samples_are_refused_before_exporting(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Version 0 would be a folder the server never loads; 0 parity samples would check nothing."""
    arguments = [str(checkpoints["unconditional"]), "--repository", str(tmp_path), "--name", "noise"]
    assert main([*arguments, "--version", "0"]) == 2
    assert "--version must be a positive integer" in capsys.readouterr().err
    assert main([*arguments, "--parity-samples", "0"]) == 2
    assert "--parity-samples must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "noise").exists() or not any((tmp_path / "noise").iterdir())


def shift_weights(path: Path, name: str | None = None, row: int | None = None) -> None:
    """Add 0.5 to the initializer `name` (default: the largest), or to one row of it, in place."""
    model = onnx.load(str(path))
    largest = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weight = next(t for t in model.graph.initializer if t.name == name) if name else largest
    array = onnx.numpy_helper.to_array(weight).copy()
    if row is None:
        array += 0.5
    else:
        array[row] += 0.5
    weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
    onnx.save(model, str(path))


def test_parity_check_catches_a_graph_wrong_for_one_class(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """Parity runs every class: a graph whose class 7 alone is wrong fails it."""
    result = export_checkpoint(checkpoints["conditional"], tmp_path, "digits")
    graph = onnx.load(str(result.path)).graph
    (embedding,) = {name for node in graph.node if "class_weights" in node.input for name in node.input} & {
        t.name for t in graph.initializer
    }  # (classes, embedding) weights of the class_weights MatMul
    shift_weights(result.path, embedding, row=7)
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_parity(load_generator(checkpoints["conditional"]), result.path)


def test_an_export_that_fails_parity_exits_1_and_publishes_nothing(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import export.cli

    real_export = export.cli.export_onnx

    def wrong_export(loaded, path):  # type: ignore[no-untyped-def]
        signature = real_export(loaded, path)
        shift_weights(path)
        return signature

    monkeypatch.setattr(export.cli, "export_onnx", wrong_export)
    code = main([str(checkpoints["conditional"]), "--repository", str(tmp_path), "--name", "digits"])
    assert code == 1 and "differs from PyTorch" in capsys.readouterr().err
    assert not any((tmp_path / "digits").glob("*/model.onnx"))


def test_parity_check_catches_a_wrong_graph(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = export_checkpoint(checkpoints["conditional"], tmp_path, "digits")
    shift_weights(result.path)
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_parity(load_generator(checkpoints["conditional"]), result.path)


def test_cli_rejects_bad_name_and_missing_checkpoint(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(checkpoints["conditional"]), "--repository", str(tmp_path), "--name", "../evil"]) == 2
    assert "--name '../evil' is not a valid model name" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pt"), "--repository", str(tmp_path), "--name", "digits"]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert not (tmp_path / "digits").exists() or not any((tmp_path / "digits").glob("[0-9]*"))


def test_a_bad_batching_flag_publishes_nothing(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-batch-size 0 is refused before any export, so a corrected retry gets version 1, not 2."""
    arguments = [str(checkpoints["conditional"]), "--repository", str(tmp_path), "--name", "digits"]
    assert main([*arguments, "--max-batch-size", "0"]) == 2
    assert "max_batch_size" in capsys.readouterr().err
    assert not (tmp_path / "digits").exists() or not any((tmp_path / "digits").iterdir())
    assert main([*arguments, "--max-batch-size", "4"]) == 0
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["1", "config.json"]


def test_config_json_is_in_place_before_the_version_appears(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server polling the repository must never load the new version with default batching."""
    import os

    seen: list[object] = []
    rename = os.rename

    def watching_rename(source: Path, target: Path) -> None:
        config = Path(target).parent / "config.json"
        seen.append(json.loads(config.read_text())["max_batch_size"] if config.exists() else None)
        rename(source, target)

    monkeypatch.setattr(os, "rename", watching_rename)
    export_checkpoint(checkpoints["conditional"], tmp_path, "digits", model_config={"max_batch_size": 8})
    assert seen == [8]


def test_a_published_version_is_readable_by_another_user(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """Not mkdtemp's 0700: with umask 022 a server running as another uid can list and read the version."""
    with umask(0o022):
        folder = export_checkpoint(checkpoints["conditional"], tmp_path, "digits").path.parent
    everything = modes(folder, *folder.iterdir(), folder.parent / "config.json")
    assert everything == {"1": 0o755, "model.onnx": 0o644, "export.json": 0o644, "config.json": 0o644}
