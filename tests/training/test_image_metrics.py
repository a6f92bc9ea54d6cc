"""Image metrics: known answers on generated data, the digits feature network, and `gan-eval images`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from torch import nn

from tests.conftest import train_tiny
from training.checkpoint import load_generator
from training.config import DataConfig
from training.data import load_dataset
from training.eval_cli import main
from training.features import FeatureNetwork, feature_network, train_feature_net
from training.image_eval import evaluate, report_table
from training.image_metrics import (
    Memorisation,
    class_accuracy,
    class_coverage,
    frechet_distance,
    frechet_distance_gaussians,
    kernel_inception_distance,
    kth_neighbour_radii,
    leave_one_out_distances,
    memorisation,
    nearest_distances,
    precision_recall,
)

# ---- the metrics on generated data with known answers


def gaussian(n: int, mean: float | np.ndarray = 0.0, std: float = 1.0, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, size=(n, dim))


def test_frechet_distance_of_a_set_with_itself_is_zero() -> None:
    x = gaussian(500, dim=8)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 2.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()  # 25 + 1 + 0 + 4
    assert frechet_distance_gaussians(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_frechet_distance_of_shifted_samples_approaches_the_closed_form() -> None:
    shift = np.array([1.0, 0.0, -1.0])
    a, b = gaussian(20_000, dim=3, seed=1), gaussian(20_000, mean=shift, std=2.0, dim=3, seed=2)
    assert frechet_distance(a, b) == pytest.approx(2.0 + 3 * (2.0 - 1.0) ** 2, abs=0.1)  # |shift|^2 + tr(...)


def test_frechet_distance_agrees_with_a_general_square_root_and_survives_dead_features() -> None:
    rng = np.random.default_rng(3)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov1, cov2 = m1 @ m1.T, m2 @ m2.T  # covariances that do not commute
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    cross = scipy.linalg.sqrtm(cov1 @ cov2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * cross)
    assert frechet_distance_gaussians(mu1, cov1, mu2, cov2) == pytest.approx(reference, rel=1e-6)
    dead = gaussian(300, dim=6, seed=4)
    dead[:, :3] = 0.0  # three features that never fire: singular covariances
    assert np.isfinite(frechet_distance(dead, dead + 0.5))


def test_kid_is_about_zero_for_one_distribution_and_clearly_positive_for_a_shifted_one() -> None:
    a, b = gaussian(600, dim=8, seed=5), gaussian(600, dim=8, seed=6)
    same = kernel_inception_distance(a, b, subsets=20)
    shifted = kernel_inception_distance(a, b + 1.0, subsets=20)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert shifted.mean > 10 * shifted.std and shifted.mean > 100 * abs(same.mean)
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(a, b, subset_size=601)


def test_precision_and_recall_tell_collapse_from_off_manifold_samples() -> None:
    real = gaussian(400, dim=4, seed=7)
    fresh = precision_recall(real, gaussian(400, dim=4, seed=8))
    assert fresh.precision > 0.8 and fresh.recall > 0.8
    collapsed = precision_recall(real, np.repeat(real[:3], 134, axis=0)[:400])  # three real samples, repeated
    assert collapsed.precision == 1.0 and collapsed.recall < 0.05
    far = precision_recall(real, gaussian(400, mean=20.0, dim=4, seed=9))
    assert far.precision == 0.0 and far.recall == 0.0


def test_class_accuracy_counts_matching_labels() -> None:
    assert class_accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 3])) == 0.75
    with pytest.raises(ValueError, match="two equal"):
        class_accuracy(np.array([0, 1]), np.array([0, 1, 2]))


def test_memorisation_flags_a_generator_that_copies_its_training_set() -> None:
    train = gaussian(1000, dim=16, seed=10)
    held_out = leave_one_out_distances(train, np.arange(200))
    copies = train[np.random.default_rng(11).choice(1000, 200)] + 1e-6
    copied = memorisation(nearest_distances(copies, train)[0], held_out)
    assert copied.copy_share == 1.0 and copied.suspicious and copied.median_ratio < 0.01
    fresh = memorisation(nearest_distances(gaussian(200, dim=16, seed=12), train)[0], held_out)
    assert fresh.copy_share < 0.05 and not fresh.suspicious and 0.8 < fresh.median_ratio < 1.25


def test_nearest_distances_find_the_right_training_row() -> None:
    train = gaussian(50, dim=3, seed=13)
    distances, index = nearest_distances(train[[4, 17]] + 0.001, train, chunk=1)
    assert index.tolist() == [4, 17] and np.allclose(distances, 0.001 * np.sqrt(3))
    assert (leave_one_out_distances(train, np.arange(50)) > 0).all()  # a row is never its own neighbour


def test_a_class_the_reference_lacks_keeps_the_divergence_finite() -> None:
    """Samples of class 3 when the real labels hold only 0-2: a large but finite KL, not inf or nan."""
    stray = class_coverage(np.array([0, 1, 2, 3]), np.arange(100) % 3, 4)
    assert stray.found == 4 and np.isfinite(stray.kl) and stray.kl > 0.1


def test_suspicious_means_more_than_five_times_the_expected_copies() -> None:
    quantiles = {"q50": 1.0}
    for share, suspicious in ((0.06, True), (0.04, False)):
        report = Memorisation(0.1, share, 0.01, quantiles, quantiles, 1.0)
        assert report.suspicious is suspicious and report.as_dict()["suspicious"] is suspicious


def test_the_kth_neighbour_radius_is_the_kth_nearest_other_point() -> None:
    line = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert kth_neighbour_radii(line, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert kth_neighbour_radii(line, 2).tolist() == [3.0, 2.0, 3.0, 6.0]


# ---- the feature network and whole evaluations


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def digits_features(cache_dir: Path) -> FeatureNetwork:
    return feature_network(DataConfig(), cache_dir)  # the tiny checkpoints' data: digits at 16x16


def test_the_digits_feature_network_classifies_held_out_digits_and_is_cached(
    digits_features: FeatureNetwork, cache_dir: Path
) -> None:
    assert digits_features.objective == "classes" and digits_features.class_names == [str(d) for d in range(10)]
    assert digits_features.held_out_accuracy > 0.95
    assert digits_features.cache_file is not None and digits_features.cache_file.parent == cache_dir
    again = feature_network(DataConfig(conditional=False), cache_dir)  # an unconditional run on the same digits
    assert not again.trained and again.cache_file == digits_features.cache_file
    images = load_dataset(DataConfig()).images[:64]
    assert np.array_equal(again.embed(images), digits_features.embed(images))
    assert digits_features.embed(images).shape == (64, 64)


def test_feature_training_is_deterministic_and_a_corrupt_cache_is_retrained(tmp_path: Path) -> None:
    dataset = load_dataset(DataConfig())
    small = replace(dataset, images=dataset.images[:200], labels=dataset.labels[:200])
    (first, _), (second, _) = (train_feature_net(small, "classes", seed=1, epochs=1) for _ in range(2))
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), f"{name} differs between two seeded trainings"
    fresh = feature_network(DataConfig(), tmp_path, epochs=1)
    assert fresh.trained and not feature_network(DataConfig(), tmp_path, epochs=1).trained
    assert fresh.cache_file is not None
    fresh.cache_file.write_bytes(b"truncated")
    assert feature_network(DataConfig(), tmp_path, epochs=1).trained


def digit_folder(root: Path, per_class: int, classes: bool) -> Path:
    """Real 16x16 digits as PNG files: one subfolder per class, or all in one folder."""
    dataset = load_dataset(DataConfig())
    for digit in range(3):
        folder = root / str(digit) if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        images = dataset.images[dataset.labels == digit][:per_class]
        for index, image in enumerate(images):
            pixels = ((image[0] + 1) * 127.5).round().to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{digit}-{index}.png")
    return root


def test_a_folder_without_classes_trains_on_rotations_and_class_folders_give_classes(tmp_path: Path) -> None:
    flat = DataConfig(source="folder", path=digit_folder(tmp_path / "flat", 60, classes=False), conditional=False)
    rotation = feature_network(flat, None, epochs=5)
    assert rotation.objective == "rotation" and rotation.held_out_accuracy > 0.5  # chance is 0.25
    with pytest.raises(ValueError, match="rotations, not classes"):
        rotation.classify(torch.zeros(1, 1, 16, 16))
    sorted_ = DataConfig(source="folder", path=digit_folder(tmp_path / "sorted", 30, classes=True), conditional=False)
    assert feature_network(sorted_, None, epochs=2).class_names == ["0", "1", "2"]


class CopyingGenerator(nn.Module):
    """A 'generator' that returns a random training image of the requested label."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.images, self.labels = images, labels
        self.rng = torch.Generator().manual_seed(0)

    def forward(self, latent: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        of_label = [torch.nonzero(self.labels == y).flatten() for y in label]
        return self.images[[int(rows[torch.randint(len(rows), (1,), generator=self.rng)]) for rows in of_label]]


def test_a_generator_that_copies_training_digits_matches_the_floor_and_is_flagged(
    checkpoints: dict[str, Path], digits_features: FeatureNetwork
) -> None:
    dataset = load_dataset(DataConfig())
    loaded = load_generator(checkpoints["conditional"])
    copier = replace(loaded, generator=CopyingGenerator(dataset.images, dataset.labels))
    result = evaluate(copier, dataset, digits_features, samples=300)
    assert result.class_accuracy is not None and result.class_accuracy.generated > 0.95
    assert result.precision.generated > 0.8 and result.recall.generated > 0.8
    assert result.frechet_distance.generated < 3 * result.frechet_distance.floor + 0.5
    assert result.memorisation.copy_share > 0.9 and result.memorisation.suspicious
    assert result.class_coverage is not None
    assert result.class_coverage.generated.found == 10 == result.class_coverage.floor.found
    assert result.class_coverage.generated.kl < 0.05


class CollapsedGenerator(nn.Module):
    """Mode collapse: whatever it is asked for, one training image of digit 3 or 8."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.modes = torch.stack([images[labels == 3][0], images[labels == 8][0]])

    def forward(self, latent: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.modes[torch.arange(len(latent)) % 2]


def test_a_collapsed_generator_is_caught_by_class_coverage(
    checkpoints: dict[str, Path], digits_features: FeatureNetwork
) -> None:
    dataset = load_dataset(DataConfig())
    loaded = load_generator(checkpoints["unconditional"])
    collapsed = replace(loaded, generator=CollapsedGenerator(dataset.images, dataset.labels))
    result = evaluate(collapsed, dataset, digits_features, samples=300)
    assert result.class_accuracy is None, "an unconditional model has no labels to check"
    coverage = result.class_coverage
    assert coverage is not None and coverage.generated.found <= 2 and coverage.floor.found == 10
    assert coverage.generated.kl > 1.0 > 10 * coverage.floor.kl  # about log(10 / 2) against about 0
    assert "classes found" in report_table(result) and "of 10" in report_table(result)


def test_class_coverage_counts_classes_and_measures_the_mix() -> None:
    even = class_coverage(np.arange(100) % 4, np.arange(100) % 4, 4)
    assert (even.found, even.classes) == (4, 4) and even.kl == pytest.approx(0.0)
    half = class_coverage(np.arange(100) % 2, np.arange(100) % 4, 4)
    assert half.found == 2 and half.kl == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match="labels"):
        class_coverage(np.array([], dtype=int), np.arange(4), 4)


def test_gan_eval_images_writes_figures_beside_their_floors_and_a_plot(
    checkpoints: dict[str, Path], cache_dir: Path, digits_features: FeatureNetwork, tmp_path: Path
) -> None:
    out, picture = tmp_path / "eval.json", tmp_path / "eval.png"
    argv = [
        "images",
        "--checkpoint",
        str(checkpoints["conditional"]),
        "--samples",
        "200",
        "--cache-dir",
        str(cache_dir),
    ]
    assert main([*argv, "--json", str(out), "--plot", str(picture)]) == 0
    figures = json.loads(out.read_text())
    assert figures["generator"] == "ema" and figures["samples"] == 200
    assert figures["features"]["cache_file"] == str(digits_features.cache_file)  # not retrained
    # Two training steps make noise: every figure sits far from its floor.
    assert figures["class_accuracy"]["generated"] < 0.5 < figures["class_accuracy"]["floor"]
    assert figures["class_coverage"]["floor"]["found"] == 10 and figures["class_coverage"]["floor"]["classes"] == 10
    assert figures["frechet_distance"]["generated"] > 10 * figures["frechet_distance"]["floor"]
    assert figures["kid"]["generated"]["mean"] > figures["kid"]["floor"]["mean"] + 10 * figures["kid"]["floor"]["std"]
    assert figures["precision"]["floor"] > 0.7 and figures["recall"]["floor"] > 0.7
    assert figures["memorisation"]["expected_share"] == 0.01 and not figures["memorisation"]["suspicious"]
    colours = {colour for _, colour in Image.open(picture).convert("RGB").getcolors(maxcolors=100_000) or []}
    assert (200, 40, 40) in colours and (40, 90, 200) in colours  # both histograms are drawn
    assert main([*argv, "--no-ema", "--json", str(out)]) == 0
    live = json.loads(out.read_text())
    assert live["generator"] == "live" and live["frechet_distance"] != figures["frechet_distance"]
    assert live["frechet_distance"]["floor"] == figures["frechet_distance"]["floor"]  # the same real halves


def test_gan_eval_images_of_an_unconditional_model_has_no_class_accuracy(
    checkpoints: dict[str, Path], cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    argv = ["images", "--checkpoint", str(checkpoints["unconditional"]), "--samples", "100", "--json", str(out)]
    assert main([*argv, "--cache-dir", str(cache_dir)]) == 0
    assert json.loads(out.read_text())["class_accuracy"] is None
    printed = capsys.readouterr().out
    assert "Fréchet distance" in printed and "class accuracy" not in printed


def test_gan_eval_images_refuses_bad_input_with_exit_2(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["images", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoints["conditional"].read_bytes()[:1000])
    assert main(["images", "--checkpoint", str(corrupt)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["images", "--checkpoint", str(checkpoints["conditional"]), "--samples", "0"])
    assert exit_.value.code == 2 and "whole number >= 1" in capsys.readouterr().err
    no_ema = train_tiny(tmp_path / "no-ema", "optim.ema_decay=0")
    assert main(["images", "--checkpoint", str(no_ema), "--use-ema"]) == 2
    assert "no EMA generator" in capsys.readouterr().err
