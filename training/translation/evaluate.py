"""Judge a translator on held-out data, each figure beside its plain baseline (and the floor).

Paired tasks: PSNR and SSIM (training/translation/metrics.py) of the outputs against the held-out
targets, and the same for the plain baseline: bicubic upscaling for super-resolution, the masked
input itself for inpainting, the grey input replicated to RGB for colourisation, the input itself
for a folder of pairs.

Both kinds: the Fréchet distance in the feature space of training/features.py, a small CNN trained
on the target domain's *training* images (rotation prediction for photo patches, digit classes for
the digits), between translated held-out inputs and real held-out targets. Beside it: the baseline
translated the same way, and the floor, real held-out targets against the same reference.

The split that keeps the three distances comparable: the held-out targets are divided into two
interleaved halves, a reference R and a half E of the same size. The model and the baseline
translate E's inputs (paired) or the held-out domain-a images (unpaired); the floor is E's real
targets (or, unpaired, the other half of the held-out domain-b images). All three sets are compared
with R at the same size, so their small-sample bias is the same. Held-out photo patches overlap
their neighbours by half (stride patch/2), so R and E share some pixels: the floor is a little
optimistic, for the model and the baseline alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from training.data import ImageDataset
from training.features import EPOCHS, images_feature_network
from training.image_metrics import frechet_distance
from training.translation.checkpoint import Direction, LoadedTranslator, load_translator
from training.translation.config import TranslationConfig
from training.translation.data import PairedData, UnpairedData
from training.translation.metrics import psnr, ssim
from training.translation.models import upsample
from training.translation.pictures import save_rows
from training.translation.train import load_data

CHUNK = 256
EXAMPLES = 8
FEATURE_SIZES = (8, 16, 32, 64)  # the feature network wants a power-of-two side; larger images are area-averaged


@dataclass(frozen=True)
class PixelScores:
    psnr_model: float  # dB, over the whole held-out set (metrics.py)
    psnr_baseline: float
    ssim_model: float
    ssim_baseline: float


@dataclass(frozen=True)
class FeatureDistance:
    model: float
    baseline: float
    floor: float
    samples: int  # per set
    objective: str  # what the feature network learnt (classes or rotation)
    held_out_accuracy: float  # of the feature network on its own held-out training images


@dataclass(frozen=True)
class TranslationEvaluation:
    checkpoint: str
    task: str
    architecture: str
    baseline: str  # what the plain baseline is
    step: int
    ema: bool
    held_out: int  # held-out examples scored
    pixels: PixelScores | None  # paired tasks only
    features: FeatureDistance | None  # None when too few held-out images

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def baseline_name(config: TranslationConfig) -> str:
    return {
        "super-resolution": "bicubic x4",
        "inpainting": "masked input",
        "colourisation": "grey replicated to RGB",
        "paired": "input itself",
        "unpaired": "input itself",
    }[config.task]


def plain_baseline(config: TranslationConfig, sources: torch.Tensor) -> torch.Tensor:
    """The answer with no learning: (N, C_in, h, w) -> (N, C_out, H, W) in [-1, 1]."""
    images = sources
    if config.input_format == "rgb+mask":
        images = sources[:, :3] * sources[:, 3:]
    if config.scale > 1:
        images = upsample(images, config.scale)
    if images.shape[1] != config.output_channels:
        images = images[:, :1].expand(-1, config.output_channels, -1, -1)
    return images.clamp(-1.0, 1.0)


@torch.no_grad()
def translate(generator: torch.nn.Module, sources: torch.Tensor) -> torch.Tensor:
    return torch.cat([generator(sources[i : i + CHUNK]) for i in range(0, len(sources), CHUNK)])


def evaluate_translation(
    checkpoint: Path,
    cache_dir: Path | None = None,
    pictures: Path | None = None,
    direction: Direction = "a2b",
    ema: bool | None = None,
    feature_epochs: int = EPOCHS,
) -> TranslationEvaluation:
    """Score `checkpoint` on its config's held-out data; write example rows to `pictures` if given.

    `feature_epochs`: training epochs of the feature network (fewer only to make tests fast)."""
    loaded = load_translator(checkpoint, direction, ema)
    config = loaded.config
    data = load_data(config)
    if direction == "b2a" and isinstance(data, UnpairedData):
        data = data.reversed()
    if isinstance(data, PairedData):
        pixels, features, held_out = _paired(loaded, data, cache_dir, pictures, feature_epochs)
    else:
        pixels, features, held_out = None, *_unpaired(loaded, data, cache_dir, pictures, feature_epochs)
    return TranslationEvaluation(
        str(checkpoint),
        config.task,
        config.architecture,
        baseline_name(config),
        loaded.step,
        loaded.ema,
        held_out,
        pixels,
        features,
    )


def _paired(
    loaded: LoadedTranslator, data: PairedData, cache_dir: Path | None, pictures: Path | None, epochs: int
) -> tuple[PixelScores, FeatureDistance | None, int]:
    sources, targets = data.held_out
    outputs = translate(loaded.generator, sources)
    baseline = plain_baseline(loaded.config, sources)
    pixels = PixelScores(
        psnr(outputs, targets), psnr(baseline, targets), ssim(outputs, targets), ssim(baseline, targets)
    )
    reference, half = torch.arange(1, len(targets), 2), torch.arange(0, len(targets) - 1, 2)  # interleaved halves
    features = _distances(
        data.train_targets,
        None,
        {"targets": loaded.config.data.model_dump(mode="json", exclude={"hole_min", "hole_max"})},
        reference=targets[reference],
        model=outputs[half],
        baseline=baseline[half],
        floor=targets[half],
        cache_dir=cache_dir,
        epochs=epochs,
    )
    if pictures is not None:
        shown = _spread(len(sources))
        save_rows([sources[shown], baseline[shown], outputs[shown], targets[shown]], pictures)
    return pixels, features, len(targets)


def _unpaired(
    loaded: LoadedTranslator, data: UnpairedData, cache_dir: Path | None, pictures: Path | None, epochs: int
) -> tuple[FeatureDistance | None, int]:
    sources = data.held_out_a
    outputs = translate(loaded.generator, sources)
    count = min(len(sources), len(data.held_out_b) // 2)
    reference, floor = data.held_out_b[:count], data.held_out_b[count : 2 * count]
    description: dict[str, object] = {
        "task": loaded.config.task,
        "data": loaded.config.data.model_dump(mode="json"),
        "direction": loaded.direction,
    }
    features = _distances(
        data.train_b,
        data.labels_b,
        description,
        reference=reference,
        model=outputs[:count],
        baseline=plain_baseline(loaded.config, sources[:count]),
        floor=floor,
        cache_dir=cache_dir,
        epochs=epochs,
    )
    if pictures is not None:
        shown = _spread(len(sources))
        save_rows([sources[shown], outputs[shown]], pictures)
    return features, len(sources)


def _distances(
    train_targets: torch.Tensor,
    labels: torch.Tensor | None,
    description: dict[str, object],
    *,
    reference: torch.Tensor,
    model: torch.Tensor,
    baseline: torch.Tensor,
    floor: torch.Tensor,
    cache_dir: Path | None,
    epochs: int,
) -> FeatureDistance | None:
    count = min(len(reference), len(model), len(floor))
    if count < 2:
        return None
    size = feature_size(train_targets.shape[-1])
    names = [str(label) for label in sorted(set(labels.tolist()))] if labels is not None else []
    dataset = ImageDataset(
        resize(train_targets, size),
        labels if labels is not None else torch.zeros(len(train_targets), dtype=torch.int64),
        names,
    )
    network = images_feature_network(dataset, {**description, "feature_size": size}, cache_dir, epochs=epochs)

    def embed(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(network.embed(resize(images[:count], size)))

    real = embed(reference).numpy()
    return FeatureDistance(
        model=frechet_distance(embed(model).numpy(), real),
        baseline=frechet_distance(embed(baseline).numpy(), real),
        floor=frechet_distance(embed(floor).numpy(), real),
        samples=count,
        objective=network.objective,
        held_out_accuracy=network.held_out_accuracy,
    )


def feature_size(side: int) -> int:
    """The largest of FEATURE_SIZES that is at most `side` (the smallest if none is)."""
    fitting = [size for size in FEATURE_SIZES if size <= side]
    return fitting[-1] if fitting else FEATURE_SIZES[0]


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size) by area averaging (or bilinear when enlarging)."""
    if images.shape[-2:] == (size, size):
        return images
    mode = "area" if images.shape[-1] >= size else "bilinear"
    return F.interpolate(images, size=(size, size), mode=mode)


def _spread(count: int) -> torch.Tensor:
    return torch.linspace(0, count - 1, min(EXAMPLES, count)).round().long()


def report(result: TranslationEvaluation) -> str:
    lines = [f"{result.task} ({result.architecture}, step {result.step}, {result.held_out} held-out examples)"]
    if result.pixels is not None:
        p = result.pixels
        lines.append(f"PSNR {p.psnr_model:.2f} dB (baseline {result.baseline}: {p.psnr_baseline:.2f} dB)")
        lines.append(f"SSIM {p.ssim_model:.4f} (baseline: {p.ssim_baseline:.4f})")
    if result.features is not None:
        f = result.features
        lines.append(
            f"feature Fréchet distance {f.model:.3f} (baseline {f.baseline:.3f}, floor {f.floor:.3f}; "
            f"{f.samples} images a set, {f.objective} features, held-out accuracy {100 * f.held_out_accuracy:.0f} %)"
        )
    return "\n".join(lines)


def improved(result: TranslationEvaluation) -> bool:
    """Better than the plain baseline: on PSNR and SSIM for paired tasks, on feature distance otherwise."""
    if result.pixels is not None:
        return result.pixels.psnr_model > result.pixels.psnr_baseline and (
            result.pixels.ssim_model > result.pixels.ssim_baseline
        )
    return (
        result.features is not None
        and result.features.model < result.features.baseline
        and math.isfinite(result.features.model)
    )
