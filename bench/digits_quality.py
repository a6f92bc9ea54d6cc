"""Class accuracy and within-label diversity of the digits generator.

    python bench/digits_quality.py                      # the newest version in models/digits
    python bench/digits_quality.py --onnx models/digits/1/model.onnx
    python bench/digits_quality.py --checkpoint runs/digits/checkpoint.pt

Accuracy: the share of samples generated for each label that a digits classifier
(an SVM trained here on real 8x8 digits; its held-out accuracy is printed) assigns to
that label. Target >= 95 %.
Diversity: mean pairwise Euclidean distance among 64 samples of one label, downsampled to
the digits' native 8x8 and 0..16 range, divided by the same among 64 real digits of that
label; averaged over labels. Target >= 0.8. A generator that draws one perfect digit per
label scores 100 % accuracy and fails this.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

PER_LABEL = 64
ACCURACY_TARGET = 0.95
DIVERSITY_TARGET = 0.8
DIGITS_MAX = 16.0

Generate = Callable[[np.ndarray, np.ndarray], np.ndarray]  # latents, labels -> (N, 1, H, W) in [-1, 1]


def onnx_generator(path: Path) -> tuple[Generate, int]:
    """An exported generator, fed as the service feeds it: int64 labels, or one-hot class weights
    for the graphs gan-export writes today (its metadata says which)."""
    import onnxruntime as ort

    from service.generation import class_inputs
    from service.signature import IMAGE_OUTPUT, LATENT_INPUT, signature_from_metadata

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    signature = signature_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))

    def generate(latent: np.ndarray, label: np.ndarray) -> np.ndarray:
        feeds = {LATENT_INPUT: latent, **class_inputs(signature, label)}
        return np.asarray(session.run([IMAGE_OUTPUT], feeds)[0])

    return generate, signature.latent_dim


def checkpoint_generator(path: Path) -> tuple[Generate, int]:
    import torch

    from training.checkpoint import load_generator

    loaded = load_generator(path)

    def generate(latent: np.ndarray, label: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded.generator(torch.from_numpy(latent), torch.from_numpy(label)).numpy()

    return generate, loaded.latent_dim


def newest_onnx(repository: Path, name: str) -> Path:
    versions = [int(p.name) for p in (repository / name).iterdir() if p.name.isdigit()]
    if not versions:
        raise SystemExit(f"{repository / name} has no versions; run `make serve` or gan-export first")
    return repository / name / str(max(versions)) / "model.onnx"


def to_native(images: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) in [-1, 1] -> (N, 64): area-averaged to 8x8, scaled to 0..16 like sklearn's digits."""
    n, _, h, w = images.shape
    pooled = images[:, 0].reshape(n, 8, h // 8, 8, w // 8).mean(axis=(2, 4))
    return ((pooled + 1) / 2 * DIGITS_MAX).reshape(n, 64)


def mean_pairwise_distance(x: np.ndarray) -> float:
    squared = (x**2).sum(1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2 * x @ x.T, 0)
    n = len(x)
    return float(np.sqrt(d2)[~np.eye(n, dtype=bool)].mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--onnx", type=Path, help="exported model.onnx")
    source.add_argument("--checkpoint", type=Path, help="gan-train checkpoint.pt")
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    if args.checkpoint:
        generate, latent_dim = checkpoint_generator(args.checkpoint)
        print(f"generator: {args.checkpoint}")
    else:
        path = args.onnx or newest_onnx(args.repository, "digits")
        generate, latent_dim = onnx_generator(path)
        print(f"generator: {path}")

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.3, random_state=0, stratify=digits.target
    )
    classifier = SVC(gamma=0.001, C=10).fit(x_train, y_train)
    held_out = classifier.score(x_test, y_test)
    print(f"classifier held-out accuracy: {held_out:.2%} (needs >= 97%)")

    rng = np.random.default_rng(args.seed)
    print(f"\n{'label':>5} {'accuracy':>9} {'diversity':>10}")
    accuracies, ratios = [], []
    for label in range(10):
        latent = rng.standard_normal((PER_LABEL, latent_dim), dtype=np.float32)
        samples = to_native(generate(latent, np.full(PER_LABEL, label, dtype=np.int64)))
        real = digits.data[digits.target == label]
        real = real[rng.choice(len(real), PER_LABEL, replace=False)]
        accuracy = float((classifier.predict(samples) == label).mean())
        ratio = mean_pairwise_distance(samples) / mean_pairwise_distance(real)
        accuracies.append(accuracy)
        ratios.append(ratio)
        print(f"{label:>5} {accuracy:>9.1%} {ratio:>10.3f}")
    accuracy, diversity = float(np.mean(accuracies)), float(np.mean(ratios))
    print(f"\nclass accuracy:      {accuracy:.1%}  (target >= {ACCURACY_TARGET:.0%})")
    print(f"within-label diversity: {diversity:.3f}  (target >= {DIVERSITY_TARGET})")
    passed = held_out >= 0.97 and accuracy >= ACCURACY_TARGET and diversity >= DIVERSITY_TARGET
    print("PASS" if passed else "MISS")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
