"""gan-export of gan-tabular models: what lands in the repository, and what is refused before it does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export.cli import main
from tests.conftest import modes, umask
from tests.training.test_tabular import correlated_table


@pytest.fixture(scope="module")
def tabular_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.tabular.synthesizer import TabularConfig, train_table

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("tabular") / "people.pt"
    train_table(correlated_table(200), TabularConfig(steps=2, batch_size=100, seed=1)).save(path)
    return path


def test_a_bad_batching_flag_publishes_no_tabular_version(
    tabular_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [str(tabular_model), "--repository", str(tmp_path), "--name", "people"]
    assert main([*arguments, "--max-batch-size", "0"]) == 2
    assert "max_batch_size" in capsys.readouterr().err
    assert not (tmp_path / "people").exists() or not any((tmp_path / "people").iterdir())
    assert main(arguments) == 0
    assert "published people version 1" in capsys.readouterr().out


def test_the_model_and_its_version_are_readable_by_another_user(tabular_model: Path, tmp_path: Path) -> None:
    """Neither the saved model (mkstemp: 0600) nor the published version (mkdtemp: 0700) stays private."""
    from training.tabular.synthesizer import load_synthesizer

    saved, folder = tmp_path / "saved.pt", tmp_path / "models/people/1"
    with umask(0o022):
        load_synthesizer(tabular_model).save(saved)
        assert main([str(saved), "--repository", str(tmp_path / "models"), "--name", "people"]) == 0
    assert modes(saved) == {"saved.pt": 0o644}
    everything = modes(folder, *folder.iterdir(), folder.parent / "config.json")
    assert everything == {"1": 0o755, "model.onnx": 0o644, "export.json": 0o644, "config.json": 0o644}
