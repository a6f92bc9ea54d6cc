"""The networks: DCGAN for square images of 16 to 128 pixels (optionally conditional), MLP for 2-D points."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from training.config import TrainConfig

BASE = 4  # the generator starts from a 4x4 feature map


def _upsamplings(image_size: int) -> int:
    return int(math.log2(image_size // BASE))


class Generator(nn.Module):
    """(N, latent_dim) latents [+ (N,) labels] -> (N, C, H, W) images in [-1, 1]."""

    def __init__(self, latent_dim: int, width: int, channels: int, image_size: int, num_classes: int, embed_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        steps = _upsamplings(image_size)
        widths = [width * 2 ** (steps - 1 - i) for i in range(steps)]  # e.g. 128, 64 for 16 px
        inputs = latent_dim + (embed_dim if num_classes else 0)
        self.project = nn.Sequential(
            nn.Linear(inputs, widths[0] * BASE * BASE, bias=False),
            nn.Unflatten(1, (widths[0], BASE, BASE)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for wide, narrow in itertools.pairwise(widths):
            layers += [nn.ConvTranspose2d(wide, narrow, 4, 2, 1, bias=False), nn.BatchNorm2d(narrow), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            latent = torch.cat([latent, self.embed(label)], dim=1)
        return self.body(self.project(latent))

    def from_class_weights(self, latent: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        """Like forward, with (N, num_classes) class weights for labels: a one-hot row is that class
        (the same image as its label), a convex mix blends the class embeddings."""
        assert self.embed is not None, "an unconditional generator takes no classes"
        return self.body(self.project(torch.cat([latent, class_weights @ self.embed.weight], dim=1)))


class MinibatchStd(nn.Module):
    """Appends the batch's mean feature standard deviation as one channel (ProGAN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = x.std(dim=0, unbiased=False).mean().expand(x.shape[0], 1, x.shape[2], x.shape[3])
        return torch.cat([x, std], dim=1)


class Discriminator(nn.Module):
    """(N, C, H, W) images [+ (N,) labels] -> (N,) logits; conditional by projection (Miyato & Koyama)."""

    def __init__(
        self, width: int, channels: int, image_size: int, num_classes: int, minibatch_std: bool, batch_norm: bool = True
    ):
        super().__init__()
        steps = _upsamplings(image_size)
        widths = [width * 2**i for i in range(steps)]  # e.g. 64, 128 for 16 px
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for narrow, wide in itertools.pairwise(widths):
            if batch_norm:
                layers += [nn.Conv2d(narrow, wide, 4, 2, 1, bias=False), nn.BatchNorm2d(wide)]
            else:
                layers.append(nn.Conv2d(narrow, wide, 4, 2, 1))
            layers.append(nn.LeakyReLU(0.2, True))
        if minibatch_std:
            layers.append(MinibatchStd())
        self.body = nn.Sequential(*layers)
        features = widths[-1] + (1 if minibatch_std else 0)
        self.features = nn.Sequential(nn.Conv2d(features, widths[-1], 3, 1, 1), nn.LeakyReLU(0.2, True), nn.Flatten())
        self.head = nn.Linear(widths[-1] * BASE * BASE, 1)
        self.project = nn.Embedding(num_classes, widths[-1] * BASE * BASE) if num_classes else None

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        features = self.features(self.body(image))  # (N, F)
        logits = self.head(features).squeeze(1)
        if self.project is not None:
            logits = logits + (self.project(label) * features).sum(dim=1)
        return logits


class MLPGenerator(nn.Module):
    """(N, latent_dim) latents -> (N, dim) points: `depth` hidden layers of `width` units, unbounded output."""

    def __init__(self, latent_dim: int, width: int, depth: int, dim: int, batch_norm: bool):
        super().__init__()
        self.num_classes = 0
        layers: list[nn.Module] = []
        inputs = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(inputs, width, bias=not batch_norm)]
            layers += [nn.BatchNorm1d(width)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            inputs = width
        layers.append(nn.Linear(inputs, dim))
        self.body = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.body(latent)


class VectorMinibatchStd(nn.Module):
    """Appends the batch's mean feature standard deviation as one feature."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = x.std(dim=0, unbiased=False).mean().expand(x.shape[0], 1)
        return torch.cat([x, std], dim=1)


class Maxout(nn.Module):
    """A linear layer whose `width` units each output the largest of `pieces` affine maps (Goodfellow et al. 2013)."""

    def __init__(self, inputs: int, width: int, pieces: int):
        super().__init__()
        self.width, self.pieces = width, pieces
        self.linear = nn.Linear(inputs, width * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.width, self.pieces).amax(dim=2)


class MLPDiscriminator(nn.Module):
    """(N, dim) points -> (N,) logits: `depth` hidden layers of `width` leaky-ReLU or maxout (`maxout` pieces) units."""

    def __init__(self, dim: int, width: int, depth: int, minibatch_std: bool, batch_norm: bool, maxout: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        inputs = dim
        for index in range(depth):
            if minibatch_std and index == depth - 1:  # batch statistics before the last hidden layer
                layers.append(VectorMinibatchStd())
                inputs += 1
            layers += [Maxout(inputs, width, maxout) if maxout > 1 else nn.Linear(inputs, width)]
            layers += [nn.BatchNorm1d(width)] if batch_norm and index > 0 else []
            layers += [] if maxout > 1 else [nn.LeakyReLU(0.2, inplace=True)]  # maxout units are their own activation
            inputs = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(inputs, 1)

    def forward(self, points: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(points)).squeeze(1)


POINT_DIM = 2  # ring8 and grid25 are 2-D


def build_generator(config: TrainConfig, num_classes: int) -> nn.Module:
    if config.model.arch == "mlp":
        model = config.model
        return MLPGenerator(model.latent_dim, model.width, model.depth, POINT_DIM, model.g_batch_norm)
    return Generator(
        latent_dim=config.model.latent_dim,
        width=config.model.width,
        channels=config.data.channels,
        image_size=config.data.image_size,
        num_classes=num_classes,
        embed_dim=config.model.embed_dim,
    )


def build_discriminator(config: TrainConfig, num_classes: int) -> nn.Module:
    model = config.model
    width = model.d_width or model.width
    if model.arch == "mlp":
        dim = POINT_DIM * model.pack  # PacGAN: packed points concatenated
        depth = model.d_depth or model.depth
        return MLPDiscriminator(dim, width, depth, model.minibatch_std, model.d_batch_norm, model.d_maxout)
    return Discriminator(
        width=width,
        channels=config.data.channels * config.model.pack,  # PacGAN: packed samples side by side as channels
        image_size=config.data.image_size,
        num_classes=num_classes,
        minibatch_std=config.model.minibatch_std,
        batch_norm=config.model.d_batch_norm,
    )


def pack(samples: torch.Tensor, size: int) -> torch.Tensor:
    """PacGAN: (B, C, ...) -> (B/size, size*C, ...), each row holding `size` consecutive samples."""
    if size == 1:
        return samples
    return samples.reshape(samples.shape[0] // size, size * samples.shape[1], *samples.shape[2:])


def with_spectral_norm(discriminator: nn.Module) -> nn.Module:
    """Spectral normalisation of every weight of `discriminator` (after init_weights)."""
    for module in list(discriminator.modules()):
        if isinstance(module, nn.Conv2d | nn.Linear | nn.Embedding):
            nn.utils.parametrizations.spectral_norm(module)
    return discriminator


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
