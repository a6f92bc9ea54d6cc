"""Latent vectors and labels drawn from a request seed, with numpy only.

Each seed owns two independent streams (latents, labels), so sample i depends only on
the seed and i: the same seed gives the same samples whatever the count, the batch or
the server that runs it.
"""

from __future__ import annotations

import os

import numpy as np

_LATENT_STREAM = 0
_LABEL_STREAM = 1


def latents_from_seed(seed: int, count: int, latent_dim: int) -> np.ndarray:
    """(count, latent_dim) float32 standard normal latents."""
    rng = np.random.default_rng([seed, _LATENT_STREAM])
    return rng.standard_normal((count, latent_dim), dtype=np.float32)


def labels_from_seed(seed: int, count: int, num_classes: int) -> np.ndarray:
    """(count,) int64 labels drawn uniformly from [0, num_classes)."""
    rng = np.random.default_rng([seed, _LABEL_STREAM])
    return rng.integers(0, num_classes, size=count, dtype=np.int64)


def random_seed() -> int:
    """A fresh seed in [0, 2**63) for requests that give none; returned to the client for reproducibility.
    From the OS's entropy (new numpy generator per call would cost ~15 us of the event loop)."""
    return int.from_bytes(os.urandom(8), "little") >> 1
