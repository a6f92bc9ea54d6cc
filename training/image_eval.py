"""Judge a checkpoint's generator against the real data of its own config, each figure beside its floor.

The real images are shuffled (seeded) into two disjoint halves A and B of n images each, where n
is the number of generated samples (at most half the real set). Generated samples are compared
with A; the floor compares B with A: the same reference, the same counts, so a generated figure
can be read against the best any generator could show at this sample size. A conditional
generator draws its samples for B's labels, so both sides have the same class mix.

- Fréchet distance, KID, precision and recall: on the embeddings of training/features.py.
- Class accuracy (conditional models): the feature network's classifier on the generated samples;
  its floor is the classifier's accuracy on real images it never trained on.
- Class coverage (any model of data with classes): how many classes the classifier finds among the
  generated samples, and the KL divergence of their class mix from the real one; a collapsed
  generator drops classes. Its floor classifies B's real images.
- Memorisation: in pixel space, where a copy is unmistakably a copy (learned features may map
  distinct images together). Each generated sample's distance to its nearest training image
  is compared with each of B's real images' distance to its nearest *other* training image:
  the GAN trained on every real image, so leaving each one out is how a real image can be held out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import LoadedGenerator, load_generator
from training.data import ImageDataset, load_dataset
from training.features import FeatureNetwork, feature_network
from training.image_metrics import (
    NEAREST_K,
    ClassCoverage,
    Kid,
    Memorisation,
    class_accuracy,
    class_coverage,
    frechet_distance,
    kernel_inception_distance,
    leave_one_out_distances,
    memorisation,
    nearest_distances,
    precision_recall,
)

DEFAULT_SAMPLES = 1000
GENERATE_CHUNK = 256


@dataclass(frozen=True)
class Figure:
    generated: float  # generated samples against real half A
    floor: float  # real half B against real half A


@dataclass(frozen=True)
class CoverageFigure:
    generated: ClassCoverage
    floor: ClassCoverage  # real half B, classified


@dataclass(frozen=True)
class KidFigure:
    generated: Kid
    floor: Kid


@dataclass(frozen=True)
class FeatureSummary:
    objective: str  # classes or rotation (training/features.py)
    held_out_accuracy: float
    cache_file: str | None


@dataclass(frozen=True)
class NearestTraining:
    """What the memorisation plot draws; not written to JSON."""

    generated: np.ndarray  # (n,) distance of each generated sample to its nearest training image
    held_out: np.ndarray  # (n,) the same for real images of half B, each left out of the training set
    generated_images: torch.Tensor  # (n, C, H, W) in [-1, 1]
    nearest_images: torch.Tensor  # (n, C, H, W): the training image nearest to each generated one


@dataclass(frozen=True)
class ImageEvaluation:
    checkpoint: str
    step: int
    ema: bool
    samples: int
    real_images: int
    seed: int
    features: FeatureSummary
    class_accuracy: Figure | None  # None for unconditional models
    class_coverage: CoverageFigure | None  # None when the feature network learned rotations, not classes
    frechet_distance: Figure
    kid: KidFigure
    precision: Figure
    recall: Figure
    k: int
    memorisation: Memorisation
    nearest: NearestTraining = field(repr=False)

    def as_dict(self) -> dict[str, object]:
        names = ("class_accuracy", "class_coverage", "frechet_distance", "kid")
        figures = {name: getattr(self, name) for name in names}
        figures |= {"precision": self.precision, "recall": self.recall}
        return {
            "checkpoint": self.checkpoint,
            "step": self.step,
            "generator": "ema" if self.ema else "live",
            "samples": self.samples,
            "real_images": self.real_images,
            "seed": self.seed,
            "features": asdict(self.features),
            **{name: asdict(value) if value is not None else None for name, value in figures.items()},
            "k": self.k,
            "memorisation": self.memorisation.as_dict(),
        }


def evaluate_checkpoint(
    path: Path,
    samples: int = DEFAULT_SAMPLES,
    ema: bool | None = None,
    cache_dir: Path | None = None,
    seed: int = 0,
    k: int = NEAREST_K,
) -> ImageEvaluation:
    """Load the generator (`ema` as in load_generator), its real data and feature network; evaluate."""
    loaded = load_generator(path, ema)
    dataset = load_dataset(loaded.config.data)
    features = feature_network(loaded.config.data, cache_dir)
    return evaluate(loaded, dataset, features, samples, seed, k, checkpoint=str(path))


def evaluate(
    loaded: LoadedGenerator,
    dataset: ImageDataset,
    features: FeatureNetwork,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    k: int = NEAREST_K,
    checkpoint: str = "",
) -> ImageEvaluation:
    """Every figure of `loaded`'s samples against `dataset`, each beside its floor (see the module docstring)."""
    half_a, half_b = real_halves(len(dataset), samples, seed, k)
    labels = dataset.labels[half_b]
    generated = generate(loaded, labels, seed)
    real_a, real_b = features.embed(dataset.images[half_a]), features.embed(dataset.images[half_b])
    fake = features.embed(generated)
    kept, floor = precision_recall(real_a, fake, k), precision_recall(real_a, real_b, k)
    nearest = nearest_training(generated, dataset.images, half_b)
    return ImageEvaluation(
        checkpoint=checkpoint,
        step=loaded.step,
        ema=loaded.ema,
        samples=len(half_a),
        real_images=len(dataset),
        seed=seed,
        features=FeatureSummary(
            features.objective, features.held_out_accuracy, str(features.cache_file) if features.cache_file else None
        ),
        class_accuracy=generated_class_accuracy(loaded, features, generated, labels),
        class_coverage=generated_class_coverage(features, generated, dataset.images[half_b], labels),
        frechet_distance=Figure(frechet_distance(fake, real_a), frechet_distance(real_b, real_a)),
        kid=KidFigure(
            kernel_inception_distance(fake, real_a, seed=seed), kernel_inception_distance(real_b, real_a, seed=seed)
        ),
        precision=Figure(kept.precision, floor.precision),
        recall=Figure(kept.recall, floor.recall),
        k=k,
        memorisation=memorisation(nearest.generated, nearest.held_out),
        nearest=nearest,
    )


def real_halves(count: int, samples: int, seed: int, k: int = NEAREST_K) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint, seeded random sets of min(samples, count // 2) indices into the real images."""
    n = min(samples, count // 2)
    if n < max(k + 1, 2):
        raise ValueError(
            f"samples: comparing with real data needs at least {max(k + 1, 2)} generated samples and twice as "
            f"many real images; got --samples {samples} and {count} real images"
        )
    order = torch.from_numpy(np.random.default_rng(seed).permutation(count))
    return order[:n], order[n : 2 * n]


@torch.no_grad()
def generate(loaded: LoadedGenerator, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """One sample per label (labels are ignored by unconditional generators): (N, C, H, W) in [-1, 1]."""
    latent = torch.randn(len(labels), loaded.latent_dim, generator=torch.Generator().manual_seed(seed))
    chunks = [
        loaded.generator(latent[i : i + GENERATE_CHUNK], labels[i : i + GENERATE_CHUNK])
        for i in range(0, len(labels), GENERATE_CHUNK)
    ]
    return torch.cat(chunks).clamp(-1.0, 1.0)


def generated_class_accuracy(
    loaded: LoadedGenerator, features: FeatureNetwork, generated: torch.Tensor, labels: torch.Tensor
) -> Figure | None:
    """Share of samples classified as the label they were generated for; None when there are no classes to check."""
    if not loaded.class_names or features.objective != "classes" or features.class_names != loaded.class_names:
        return None
    return Figure(class_accuracy(features.classify(generated), labels.numpy()), features.held_out_accuracy)


def generated_class_coverage(
    features: FeatureNetwork, generated: torch.Tensor, real: torch.Tensor, labels: torch.Tensor
) -> CoverageFigure | None:
    """The classes found among generated and among real images, against the real images' own labels."""
    if features.objective != "classes":
        return None
    classes, reference = len(features.class_names), labels.numpy()
    return CoverageFigure(
        class_coverage(features.classify(generated), reference, classes),
        class_coverage(features.classify(real), reference, classes),
    )


def nearest_training(generated: torch.Tensor, training: torch.Tensor, held_out: torch.Tensor) -> NearestTraining:
    """Pixel-space distances to the nearest training image, of generated and of held-out real images."""
    train_pixels = training.flatten(1).double().numpy()
    distances, nearest = nearest_distances(generated.flatten(1).double().numpy(), train_pixels)
    return NearestTraining(
        generated=distances,
        held_out=leave_one_out_distances(train_pixels, held_out.numpy()),
        generated_images=generated,
        nearest_images=training[torch.from_numpy(nearest)],
    )


def report_table(evaluation: ImageEvaluation) -> str:
    """A table of every figure beside its floor, and the memorisation check."""
    e = evaluation
    lines = [
        f"{e.checkpoint} (step {e.step}, {'EMA' if e.ema else 'live'} generator): "
        f"{e.samples} generated samples against {e.samples} of {e.real_images} real images",
        f"feature network: {e.features.objective}, held-out accuracy {e.features.held_out_accuracy:.1%}",
        "",
        f"{'figure':<24}{'generated':>20}{'floor (real vs real)':>24}",
    ]
    if e.class_accuracy is not None:
        lines.append(_row("class accuracy", f"{e.class_accuracy.generated:.1%}", f"{e.class_accuracy.floor:.1%}"))
    if e.class_coverage is not None:
        generated, floor = e.class_coverage.generated, e.class_coverage.floor
        lines.append(_row("classes found", _found(generated), _found(floor)))
        lines.append(_row("class mix KL", f"{generated.kl:.3f}", f"{floor.kl:.3f}"))
    lines += [
        _row("Fréchet distance", f"{e.frechet_distance.generated:.3f}", f"{e.frechet_distance.floor:.3f}"),
        _row("KID x 1000", _kid(e.kid.generated), _kid(e.kid.floor)),
        _row(f"precision (k={e.k})", f"{e.precision.generated:.3f}", f"{e.precision.floor:.3f}"),
        _row(f"recall (k={e.k})", f"{e.recall.generated:.3f}", f"{e.recall.floor:.3f}"),
    ]
    m = e.memorisation
    lines += [
        _row("nearest-train median", f"{m.generated_quantiles['q50']:.3f}", f"{m.held_out_quantiles['q50']:.3f}"),
        _row(f"share <= {m.threshold:.3f}", f"{m.copy_share:.1%}", f"{m.expected_share:.1%}"),
        "",
        f"memorisation: {m.copy_share:.1%} of generated samples are closer to a training image than 99 % of "
        f"held-out real images are; {'SUSPICIOUS: look for copies' if m.suspicious else 'no sign of copying'}",
    ]
    return "\n".join(lines)


def _row(name: str, generated: str, floor: str) -> str:
    return f"{name:<24}{generated:>20}{floor:>24}"


def _found(coverage: ClassCoverage) -> str:
    return f"{coverage.found} of {coverage.classes}"


def _kid(kid: Kid) -> str:
    return f"{1000 * kid.mean:.2f} ± {1000 * kid.std:.2f}"
