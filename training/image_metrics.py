"""Sample-quality figures on feature vectors: Fréchet distance, KID, precision/recall, memorisation.

Every function takes plain arrays, (N, D) float features or flattened images, and knows nothing
of networks or checkpoints (training/image_eval.py feeds them). Each figure is only meaningful
beside its floor, the same figure between two disjoint sets of real data of the same size:
small sample counts bias Fréchet distance upwards and precision/recall downwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
NEAREST_K = 3  # Kynkäänniemi et al. 2019: k=3 balances a tight manifold against holes in it
COPY_QUANTILE = 0.01  # a generated sample closer to the training set than 99 % of real held-out ones
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75)


def _as_matrix(name: str, x: np.ndarray) -> np.ndarray:
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise ValueError(f"{name}: expected an (N, D) array with N >= 2, got shape {matrix.shape}")
    return matrix


def _same_width(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features: both sets need the same width D, got {a.shape[1]} and {b.shape[1]}")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of (N, D) `a` and (M, D) `b`."""
    a, b = _as_matrix("a", a), _as_matrix("b", b)
    _same_width(a, b)
    return frechet_distance_gaussians(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def frechet_distance_gaussians(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2).

    The trace of the cross term equals tr((cov1 cov2)^1/2) but is computed from two symmetric
    eigen-decompositions, so it stays real and finite for singular covariances (dead features),
    where a general matrix square root returns complex noise.
    """
    cov1, cov2 = np.atleast_2d(cov1), np.atleast_2d(cov2)
    root1 = _psd_sqrt(cov1)
    cross = np.linalg.eigvalsh(_symmetric(root1 @ cov2 @ root1))
    trace_cross = np.sqrt(np.clip(cross, 0.0, None)).sum()
    shift = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    distance = shift @ shift + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_cross
    return float(max(distance, 0.0))


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return (matrix + matrix.T) / 2.0


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(_symmetric(matrix))
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


@dataclass(frozen=True)
class Kid:
    mean: float  # unbiased MMD^2 with the kernel (x.y / D + 1)^3, averaged over subsets
    std: float  # its spread over the subsets


def kernel_inception_distance(
    a: np.ndarray,
    b: np.ndarray,
    subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = 0,
) -> Kid:
    """KID (Bińkowski et al. 2018) between (N, D) `a` and (M, D) `b`.

    Each subset draws `subset_size` rows of each set without replacement; by default half the
    smaller set (at most 1,000), so that subsets differ and the spread means something.
    """
    a, b = _as_matrix("a", a), _as_matrix("b", b)
    _same_width(a, b)
    size = subset_size or min(KID_SUBSET_SIZE, max(2, min(len(a), len(b)) // 2))
    if not 2 <= size <= min(len(a), len(b)):
        raise ValueError(f"subset_size: must lie in 2..{min(len(a), len(b))} (the smaller set), got {size}")
    rng = np.random.default_rng(seed)
    values = [
        _unbiased_mmd2(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
        for _ in range(subsets)
    ]
    return Kid(mean=float(np.mean(values)), std=float(np.std(values)))


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    m, width = len(x), x.shape[1]

    def kernel(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return (p @ q.T / width + 1.0) ** 3

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) Euclidean distances between the rows of `a` and of `b`."""
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def kth_neighbour_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of `x` to its k-th nearest other row."""
    if not 1 <= k < len(x):
        raise ValueError(f"k: must lie in 1..{len(x) - 1} for {len(x)} samples, got {k}")
    distances = pairwise_distances(x, x)
    np.fill_diagonal(distances, np.inf)
    return np.partition(distances, k - 1, axis=1)[:, k - 1]


def manifold_coverage(manifold: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Share of `queries` inside the union of balls around `manifold`'s rows, each of k-NN radius."""
    radii = kth_neighbour_radii(manifold, k)
    inside = (pairwise_distances(queries, manifold) <= radii[None, :]).any(axis=1)
    return float(inside.mean())


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float  # share of generated samples that look real: inside the real manifold
    recall: float  # share of real samples the generator covers: inside the generated manifold


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = NEAREST_K) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds of (N, D) features."""
    real, generated = _as_matrix("real", real), _as_matrix("generated", generated)
    _same_width(real, generated)
    return PrecisionRecall(
        precision=manifold_coverage(real, generated, k),
        recall=manifold_coverage(generated, real, k),
    )


def class_accuracy(predicted: np.ndarray, intended: np.ndarray) -> float:
    """Share of generated samples that a classifier assigns to the label they were generated for."""
    predicted, intended = np.asarray(predicted), np.asarray(intended)
    if predicted.shape != intended.shape or predicted.ndim != 1 or len(predicted) == 0:
        raise ValueError(f"labels: expected two equal (N,) arrays, got {predicted.shape} and {intended.shape}")
    return float((predicted == intended).mean())


@dataclass(frozen=True)
class ClassCoverage:
    """Which classes a classifier finds among samples: the modes a collapsed generator drops."""

    found: int  # classes found at least once
    classes: int
    kl: float  # KL(found class mix || the real class mix) in nats: 0 when the mixes agree


def class_coverage(predicted: np.ndarray, reference: np.ndarray, classes: int) -> ClassCoverage:
    """The classes among `predicted` (N,) class indices, and how far their mix is from `reference`'s labels."""
    predicted, reference = np.asarray(predicted), np.asarray(reference)
    if predicted.ndim != 1 or reference.ndim != 1 or len(predicted) == 0 or len(reference) == 0:
        raise ValueError(f"labels: expected two non-empty (N,) arrays, got {predicted.shape} and {reference.shape}")
    found = np.bincount(predicted, minlength=classes) / len(predicted)
    expected = np.bincount(reference, minlength=classes) / len(reference)
    present = found > 0
    # a class the reference lacks counts as 1/(2N) there, so the divergence stays finite
    expected = np.maximum(expected, 0.5 / len(reference))
    kl = float(np.sum(found[present] * np.log(found[present] / expected[present])))
    return ClassCoverage(found=int(present.sum()), classes=classes, kl=max(kl, 0.0))


def nearest_distances(queries: np.ndarray, references: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: the distance to its nearest reference row, and that row's index."""
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        block = pairwise_distances(queries[start : start + chunk], references)
        nearest = block.argmin(axis=1)
        indices.append(nearest)
        distances.append(block[np.arange(len(block)), nearest])
    return np.concatenate(distances), np.concatenate(indices)


def leave_one_out_distances(train: np.ndarray, held_out: np.ndarray, chunk: int = 512) -> np.ndarray:
    """For each index in `held_out`: distance from that training row to its nearest *other* training row."""
    distances = []
    for start in range(0, len(held_out), chunk):
        rows = held_out[start : start + chunk]
        block = pairwise_distances(train[rows], train)
        block[np.arange(len(rows)), rows] = np.inf
        distances.append(block.min(axis=1))
    return np.concatenate(distances)


@dataclass(frozen=True)
class Memorisation:
    """Nearest-training-sample distances of generated samples against those of real held-out samples.

    A generator that copies its training set puts many samples closer to a training sample than
    almost any real image is to its nearest neighbour: `copy_share` well above `expected_share`.
    """

    threshold: float  # the 1st percentile of the held-out real distances
    copy_share: float  # share of generated samples at most `threshold` from a training sample
    expected_share: float  # the share a generator that does not copy shows: COPY_QUANTILE
    generated_quantiles: dict[str, float]  # "q01", "q05", ... "q75" of the generated distances
    held_out_quantiles: dict[str, float]  # the same for real held-out samples
    median_ratio: float  # median generated distance / median held-out distance; about 1 or more is healthy

    @property
    def suspicious(self) -> bool:
        """More than five times the expected share of near-copies."""
        return self.copy_share > 5 * self.expected_share

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "suspicious": self.suspicious}


def memorisation(generated: np.ndarray, held_out: np.ndarray, quantile: float = COPY_QUANTILE) -> Memorisation:
    """Compare two distributions of distances to the nearest training sample: generated vs held-out real."""
    generated, held_out = np.asarray(generated, np.float64), np.asarray(held_out, np.float64)
    if generated.ndim != 1 or held_out.ndim != 1 or not len(generated) or not len(held_out):
        raise ValueError("distances: expected two non-empty (N,) arrays of nearest-training-sample distances")
    threshold = float(np.quantile(held_out, quantile))
    median_held_out = float(np.median(held_out))
    return Memorisation(
        threshold=threshold,
        copy_share=float((generated <= threshold).mean()),
        expected_share=quantile,
        generated_quantiles=_quantiles(generated),
        held_out_quantiles=_quantiles(held_out),
        median_ratio=float(np.median(generated)) / median_held_out if median_held_out > 0 else float("inf"),
    )


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"q{round(100 * q):02d}": float(np.quantile(values, q)) for q in QUANTILES}
