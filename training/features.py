"""A small CNN trained on a dataset's own real images: the feature space of the image metrics.

No Inception weights can be downloaded here, and Inception features of 16-pixel digits would say
little anyway. So each dataset gets its own network; its penultimate layer (FEATURES wide) is
the embedding for Fréchet distance, KID and precision/recall, and its head is the classifier
that checks the class of generated samples.

Objective, chosen by what the data offers:
- `classes` when the images carry class labels: the digits (always: their labels are known even
  when the generator is unconditional) or a folder with one subfolder per class. Like Inception
  on ImageNet, features trained to tell classes apart measure what distinguishes real images.
- `rotation` otherwise (a folder of unlabelled images): predict which of 0, 90, 180 or 270
  degrees an image was turned by (Gidaris et al. 2018). Solving it needs the shapes and layout of
  the objects, not just pixel statistics, which an auto-encoder's code mostly keeps; and it gives a
  held-out accuracy (chance: 25 %) that says whether the features learnt anything.

Training is seeded and takes seconds on CPU for the digits; the result is cached in a file keyed
by this file's code, the data config and the images themselves, so evaluations do not retrain.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.checkpoint import atomic_save
from training.config import DataConfig
from training.data import DataError, ImageDataset, load_dataset

Objective = Literal["classes", "rotation"]

FEATURES = 64  # width of the embedding
EPOCHS = 15
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
HELD_OUT_SHARE = 0.2
ROTATIONS = 4
EMBED_CHUNK = 512


class FeatureNet(nn.Module):
    """(N, C, H, W) images in [-1, 1] -> (N, FEATURES) embedding -> (N, outputs) logits.

    `embed` rescales the embedding by one fixed factor, set after training so that real images'
    features have a mean square of 1 per dimension: KID's kernel (x.y / D + 1)^3 assumes
    features of about that size, and Fréchet distances then read alike across datasets.
    """

    scale: torch.Tensor

    def __init__(self, channels: int, image_size: int, outputs: int):
        super().__init__()
        blocks = int(math.log2(image_size // 4))  # halve the map down to 4x4
        widths = [min(32 * 2**i, 128) for i in range(blocks)]
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.embedding = nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[-1] * 16, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, outputs)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(images) * self.scale

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor) -> None:
        """Set `scale` so the features of `images` (real, in eval mode) have a mean square of 1."""
        features = torch.cat([self.embedding(images[i : i + EMBED_CHUNK]) for i in range(0, len(images), EMBED_CHUNK)])
        self.scale.fill_(features.square().mean().clamp_min(1e-12).rsqrt().item())


@dataclass(frozen=True)
class FeatureNetwork:
    net: FeatureNet  # eval mode
    objective: Objective
    class_names: list[str]  # what the head predicts when the objective is `classes`
    held_out_accuracy: float  # on HELD_OUT_SHARE of the real images, never trained on
    cache_file: Path | None
    trained: bool  # False when it came from the cache

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) in [-1, 1] -> (N, FEATURES) float64."""
        chunks = [self.net.embed(images[i : i + EMBED_CHUNK]) for i in range(0, len(images), EMBED_CHUNK)]
        return torch.cat(chunks).double().numpy()

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) in [-1, 1] -> (N,) predicted class indices into `class_names`."""
        if self.objective != "classes":
            raise ValueError("classify: this feature network predicts rotations, not classes (the data has none)")
        chunks = [self.net(images[i : i + EMBED_CHUNK]).argmax(1) for i in range(0, len(images), EMBED_CHUNK)]
        return torch.cat(chunks).numpy()


def labelled_images(data: DataConfig) -> tuple[DataConfig, ImageDataset]:
    """The real images, with their class labels when the data has any (see the module docstring).

    Returns the data config that loaded them: conditional unless the folder has no class folders.
    """
    labelled = data.model_copy(update={"conditional": True})
    try:
        return labelled, load_dataset(labelled)
    except DataError:
        if data.source != "folder" or data.conditional:
            raise
        return data, load_dataset(data)  # no class folders: unlabelled images


def objective_of(dataset: ImageDataset) -> Objective:
    return "classes" if len(dataset.class_names) >= 2 else "rotation"


def feature_network(
    data: DataConfig, cache_dir: Path | None = None, seed: int = 0, epochs: int = EPOCHS
) -> FeatureNetwork:
    """The feature network of `data`: from `cache_dir` when trained before, else trained (and cached)."""
    loaded_as, dataset = labelled_images(data)  # conditional and unconditional runs on one dataset share a network
    return images_feature_network(dataset, loaded_as.model_dump(mode="json"), cache_dir, seed, epochs)


def images_feature_network(
    dataset: ImageDataset,
    description: dict[str, object],
    cache_dir: Path | None = None,
    seed: int = 0,
    epochs: int = EPOCHS,
) -> FeatureNetwork:
    """The feature network of any in-memory images (square, side 8..128 a power of two), cached like
    `feature_network`; `description` (JSON-able) says where the images came from and joins the cache key."""
    objective = objective_of(dataset)
    key = cache_key(description, dataset, objective, seed, epochs)
    cache_file = cache_dir / f"features-{key[:16]}.pt" if cache_dir is not None else None
    cached = _read_cache(cache_file, key) if cache_file is not None else None
    if cached is not None:
        return cached
    net, accuracy = train_feature_net(dataset, objective, seed, epochs)
    names = dataset.class_names if objective == "classes" else []
    if cache_file is not None:
        atomic_save(cache_file, _cache_content(net, key, objective, names, accuracy, dataset))
    return FeatureNetwork(net, objective, names, accuracy, cache_file, trained=True)


def cache_key(
    description: dict[str, object], dataset: ImageDataset, objective: Objective, seed: int, epochs: int
) -> str:
    """sha256 of this module's code, the data's description, the training settings and the images themselves."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    settings = {"data": description, "objective": objective, "seed": seed, "epochs": epochs}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(json.dumps(dataset.class_names).encode())
    digest.update(dataset.images.numpy().tobytes())
    digest.update(dataset.labels.numpy().tobytes())
    return digest.hexdigest()


def train_feature_net(
    dataset: ImageDataset, objective: Objective, seed: int, epochs: int = EPOCHS
) -> tuple[FeatureNet, float]:
    """Train on a seeded (1 - HELD_OUT_SHARE) of the images; returns the net and its held-out accuracy."""
    images, labels = dataset.images, dataset.labels
    outputs = len(dataset.class_names) if objective == "classes" else ROTATIONS
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state as it was
        torch.manual_seed(seed)
        order = torch.randperm(len(images))
        cut = max(1, int(HELD_OUT_SHARE * len(images)))
        held_out, train = order[:cut], order[cut:]
        net = FeatureNet(images.shape[1], images.shape[-1], outputs)
        optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        net.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(train)).split(BATCH_SIZE):
                inputs, targets = _examples(images[train[batch]], labels[train[batch]], objective)
                loss = F.cross_entropy(net(inputs), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    net.eval()
    net.calibrate(images[train])
    return net, _accuracy(net, *_examples(images[held_out], labels[held_out], objective))


def _examples(images: torch.Tensor, labels: torch.Tensor, objective: Objective) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets: the images and their classes, or each image turned four ways and the turn."""
    if objective == "classes":
        return images, labels
    turned = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(ROTATIONS)])
    return turned, torch.arange(ROTATIONS).repeat_interleave(len(images))


@torch.no_grad()
def _accuracy(net: FeatureNet, images: torch.Tensor, targets: torch.Tensor) -> float:
    predicted = torch.cat([net(images[i : i + EMBED_CHUNK]).argmax(1) for i in range(0, len(images), EMBED_CHUNK)])
    return float((predicted == targets).double().mean())


def _cache_content(
    net: FeatureNet, key: str, objective: Objective, names: list[str], accuracy: float, dataset: ImageDataset
) -> dict[str, object]:
    return {
        "key": key,
        "state_dict": net.state_dict(),
        "objective": objective,
        "class_names": names,
        "held_out_accuracy": accuracy,
        "channels": dataset.images.shape[1],
        "image_size": dataset.images.shape[-1],
    }


def _read_cache(path: Path, key: str) -> FeatureNetwork | None:
    """The cached network, or None when absent, unreadable or for other data (then it is retrained)."""
    if not zipfile.is_zipfile(path):  # absent, or not what torch.save writes: garbage unpickles unpredictably
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError):
        return None
    if not isinstance(content, dict) or content.get("key") != key:
        return None
    objective: Objective = content["objective"]
    outputs = len(content["class_names"]) if objective == "classes" else ROTATIONS
    net = FeatureNet(content["channels"], content["image_size"], outputs)
    net.load_state_dict(content["state_dict"])
    net.eval()
    return FeatureNetwork(
        net, objective, list(content["class_names"]), float(content["held_out_accuracy"]), path, trained=False
    )
