"""Latent vectors and labels drawn from a request seed, with numpy only.

Each seed owns two independent streams (latents, labels): Philox, the counter-based bit
generator, keyed by (seed, stream) with its counter at zero. Sample i depends only on the
seed and i: the same seed gives the same samples whatever the count, the batch or the
server that runs it. Keying one Philox per thread costs ~3 us; building a seeded generator
per call (default_rng) cost ~9 us, two per Generate, on the event loop.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

_LATENT_STREAM = 0
_LABEL_STREAM = 1
_UINT64 = 2**64


class _Streams(threading.local):
    def __init__(self) -> None:
        self.bits = np.random.Philox(key=0)
        self.generator = np.random.Generator(self.bits)
        self.key = np.zeros(2, np.uint64)
        self.start: Any = {  # Philox's state at the start of a stream; the state setter copies it
            "bit_generator": "Philox",
            "state": {"counter": np.zeros(4, np.uint64), "key": self.key},
            "buffer": np.zeros(4, np.uint64),
            "buffer_pos": 4,
            "has_uint32": 0,
            "uinteger": 0,
        }


_streams = _Streams()


def stream(seed: int, stream_id: int) -> np.random.Generator:
    """This thread's generator, set to the start of stream `stream_id` of `seed` (any integer, taken mod 2**64)."""
    streams = _streams
    streams.key[0] = seed % _UINT64
    streams.key[1] = stream_id
    streams.bits.state = streams.start
    return streams.generator


def latents_from_seed(seed: int, count: int, latent_dim: int) -> np.ndarray:
    """(count, latent_dim) float32 standard normal latents."""
    return stream(seed, _LATENT_STREAM).standard_normal((count, latent_dim), dtype=np.float32)


def labels_from_seed(seed: int, count: int, num_classes: int) -> np.ndarray:
    """(count,) int64 labels drawn uniformly from [0, num_classes) (floor of a uniform float64 times
    num_classes: a third of Generator.integers' cost, with a bias below num_classes / 2**53)."""
    return (stream(seed, _LABEL_STREAM).random(count) * num_classes).astype(np.int64)


def chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk `index` of a stream or a split request: chunk 0 keeps `seed`, so a stream of
    one chunk matches a single call; chunk k > 0 takes the first 64-bit word of
    numpy.random.SeedSequence([seed, k]), so streams from nearby seeds share no chunk (with
    seed + k, seeds 1 and 2 shared all but one). gan_client's CLI splits Generate the same way."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed % _UINT64, index]).generate_state(1, np.uint64)[0])


def random_seed() -> int:
    """A fresh seed in [0, 2**63) for requests that give none; returned to the client for reproducibility.
    From the OS's entropy (new numpy generator per call would cost ~15 us of the event loop)."""
    return int.from_bytes(os.urandom(8), "little") >> 1
