"""Bad configs and bad data stop before any work, with a message that says what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from training.cli import main
from training.config import ConfigError, TrainConfig, config_digest, load_config
from training.data import DataError, load_dataset
from training.translation.cli import translation_config
from training.translation.config import TranslationConfig


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["model.latent_dim=0"], ["model.latent_dim", "greater than or equal to 1", "got 0"]),
        (["steps=lots"], ["steps", "integer", "'lots'"]),
        (["stepz=10"], ["stepz", "unknown key"]),
        (["data.source=folder"], ["data", "path", "required"]),
        (["data.image_size=20"], ["data.image_size", "16, 32, 64, 128"]),
        (["steps"], ["steps", "key=value"]),
        (["steps=true"], ["steps", "must be a number, not true or false"]),
        (["optim.lr_g=true"], ["optim.lr_g", "must be a number"]),
        (["data.channels=true"], ["data.channels", "must be a number"]),
        (["device=cuda:x"], ["device", "cuda:N", "'cuda:x'"]),
        (["optim.loss=hinge", "optim.label_smoothing=0.2"], ["optim.label_smoothing", "hinge", "=0"]),
        (["optim.loss=lsgan", "optim.label_smoothing=0.1"], ["optim.label_smoothing", "lsgan"]),
    ],
)
def test_bad_config_names_the_field(overrides: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, overrides)
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize("kind", ["translation", "tabular"])
def test_every_training_config_refuses_true_for_a_number(kind: str) -> None:
    from training.config import load_settings_model
    from training.tabular.synthesizer import TabularConfig
    from training.translation.config import TranslationConfig

    model = TranslationConfig if kind == "translation" else TabularConfig
    with pytest.raises(ConfigError, match=r"steps.*must be a number, not true or false"):
        load_settings_model(model, None, ["steps=true"])


def test_a_home_folder_in_a_path_is_expanded() -> None:
    from training.config import load_settings_model
    from training.translation.config import TranslationConfig

    config = load_config(None, ["data.source=folder", "data.path=~/pictures", "out_dir=~/runs/a"])
    assert config.data.path == Path.home() / "pictures" and config.out_dir == Path.home() / "runs" / "a"
    translation = load_settings_model(TranslationConfig, None, ["task=colourisation", "data.folder=~/photos"])
    assert translation.data.folder == Path.home() / "photos"


def test_numbers_written_on_the_command_line_still_read_as_numbers() -> None:
    config = load_config(None, ["optim.lr_g=2e-4", "optim.lr_d=1", "steps=20", "device=cuda:1"])
    assert (config.optim.lr_g, config.optim.lr_d, config.steps, config.device) == (2e-4, 1.0, 20, "cuda:1")
    assert load_config(None, ["optim.label_smoothing=0.1"]).optim.label_smoothing == 0.1  # nonsaturating smooths


def test_the_digest_ignores_logging_and_where_a_run_goes() -> None:
    base = config_digest(load_config(None, []))
    logging = ["log_every=1", "sample_every=7", "checkpoint_every=9", "out_dir=elsewhere", "device=cpu"]
    assert config_digest(load_config(None, logging)) == base
    assert config_digest(load_config(None, ["model.width=8"])) != base


def test_config_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\nmodel:\n  width: 8\n")
    config = load_config(path, ["model.latent_dim=16"])
    assert (config.steps, config.model.width, config.model.latent_dim) == (5, 8, 16)
    path.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_digits_are_upsampled_in_range() -> None:
    dataset = load_dataset(load_config(None, ["data.image_size=32"]).data)
    assert dataset.images.shape == (1797, 1, 32, 32) and dataset.class_names == [str(d) for d in range(10)]
    assert dataset.images.min() == -1 and dataset.images.max() == 1


def write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 20, 3), value, dtype=np.uint8)).save(path)


def folder_config(path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, ["data.source=folder", f"data.path={path}", "data.channels=3", *extra]).data


def test_folder_with_class_subfolders(tmp_path: Path) -> None:
    write_image(tmp_path / "cat/a.png", 0)
    write_image(tmp_path / "dog/b.jpg", 255)
    write_image(tmp_path / "dog/c.png", 255)
    dataset = load_dataset(folder_config(tmp_path))
    assert dataset.class_names == ["cat", "dog"] and dataset.labels.tolist() == [0, 1, 1]
    assert dataset.images.shape == (3, 3, 16, 16) and dataset.images[0].max() == -1


def test_images_in_nested_folders_and_with_upper_case_suffixes_are_found(tmp_path: Path) -> None:
    """A camera's IMG_1.JPG, and photos sorted into dated subfolders of a class, are training images."""
    write_image(tmp_path / "cat/2024/a.png", 0)
    write_image(tmp_path / "cat/IMG_1.JPG", 0)
    write_image(tmp_path / "dog/B.PNG", 255)
    dataset = load_dataset(folder_config(tmp_path))
    assert dataset.class_names == ["cat", "dog"] and dataset.labels.tolist() == [0, 0, 1]


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(folder_config(tmp_path, "data.conditional=false"))
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="cat: class folder holds no images"):
        load_dataset(folder_config(tmp_path))


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    write_image(tmp_path / "cat/good.png", 10)
    (tmp_path / "cat/bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png: cannot read this image"):
        load_dataset(folder_config(tmp_path))
    whole = (tmp_path / "cat/good.png").read_bytes()
    (tmp_path / "cat/bad.png").write_bytes(whole[: len(whole) // 2])  # a header that opens, pixels cut short
    with pytest.raises(DataError, match=r"bad\.png: cannot read this image"):
        load_dataset(folder_config(tmp_path))


def test_cli_reports_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model.width=0", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gan-train: error: model.width") and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "nothing may be written before the config is valid"
    assert main(["data.source=folder", f"data.path={tmp_path / 'none'}", f"out_dir={tmp_path / 'out'}"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_resume_may_change_only_what_the_docs_list() -> None:
    """docs/training.md: steps, batch_size and data.path may change on resume; seed and beta1 may not."""
    from training.config import check_resumable

    recorded = TrainConfig().model_dump(mode="json")
    for change in (["steps=50"], ["batch_size=32"], ["data.path=/elsewhere"], ["optim.lr_g=1e-5"]):
        check_resumable(recorded, load_config(None, change))
    for change, field in (
        ("seed=7", "seed"),
        ("optim.beta1=0.9", r"optim\.beta1"),
        ("data.channels=3", r"data\.channels"),
    ):
        with pytest.raises(ConfigError, match=field):
            check_resumable(recorded, load_config(None, [change]))
    older = TrainConfig().model_dump(mode="json")
    del older["model"]["d_maxout"], older["optim"]["r1_gamma"]  # keys added after this checkpoint was written
    check_resumable(older, TrainConfig())


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "training" / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_validates(path: Path) -> None:
    if "task" in (yaml.safe_load(path.read_text()) or {}):  # a gan-translate config (training/translation/config.py)
        config: TrainConfig | TranslationConfig = translation_config(path, [])
    else:
        config = load_config(path)
    assert config.steps >= 1000  # example runs, not smoke tests
