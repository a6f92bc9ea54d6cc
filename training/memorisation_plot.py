"""The memorisation picture, drawn with Pillow: two distance histograms and the closest pairs.

Top: histograms of the distance to the nearest training image, of generated samples (red) and
of held-out real images (blue), with the copy threshold (the held-out 1st percentile) in black.
Bottom: the generated samples nearest to the training set (upper row) above their nearest
training images (lower row): copies show as identical pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gan_client.grid import tile

GENERATED, HELD_OUT, THRESHOLD = (200, 40, 40), (40, 90, 200), (0, 0, 0)
WIDTH, HISTOGRAM_HEIGHT, MARGIN = 640, 300, 40
BINS = 40
PAIRS = 8
PAIR_SIZE = 64  # pixels each image of a pair is drawn at


def plot_memorisation(
    generated: np.ndarray,
    held_out: np.ndarray,
    threshold: float,
    generated_images: torch.Tensor,
    nearest_images: torch.Tensor,
    path: Path,
) -> None:
    """Write the picture to `path` (PNG). Distances are (N,); images (N, C, H, W) in [-1, 1]."""
    pairs = closest_pairs(generated, generated_images, nearest_images)
    strip = Image.fromarray(pairs[:, :, 0] if pairs.shape[2] == 1 else pairs).convert("RGB")
    scale = max(1, PAIR_SIZE // generated_images.shape[-1])
    strip = strip.resize((strip.width * scale, strip.height * scale), Image.Resampling.NEAREST)
    image = Image.new("RGB", (max(WIDTH, strip.width + 2 * MARGIN), HISTOGRAM_HEIGHT + strip.height + 30), "white")
    draw = ImageDraw.Draw(image)
    draw_histograms(draw, generated, held_out, threshold)
    caption = "the generated samples nearest to the training set (top) and their nearest training images (bottom)"
    draw.text((MARGIN, HISTOGRAM_HEIGHT + 4), caption, fill="black")
    image.paste(strip, (MARGIN, HISTOGRAM_HEIGHT + 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def closest_pairs(distances: np.ndarray, generated: torch.Tensor, nearest: torch.Tensor) -> np.ndarray:
    """The PAIRS generated samples nearest to the training set above their nearest training images, tiled."""
    order = torch.from_numpy(np.argsort(distances, kind="stable")[:PAIRS])
    both = torch.cat([generated[order], nearest[order]])  # (2P, C, H, W): upper row, then lower row
    pixels = ((both + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    return tile(pixels, columns=len(order))


def draw_histograms(draw: ImageDraw.ImageDraw, generated: np.ndarray, held_out: np.ndarray, threshold: float) -> None:
    high = float(max(generated.max(), held_out.max(), threshold)) or 1.0
    edges = np.linspace(0.0, high, BINS + 1)
    densities = {
        colour: np.histogram(d, edges)[0] / len(d) for colour, d in ((GENERATED, generated), (HELD_OUT, held_out))
    }
    tallest = max(float(d.max()) for d in densities.values()) or 1.0
    left, right, top, bottom = MARGIN, WIDTH - MARGIN, MARGIN, HISTOGRAM_HEIGHT - MARGIN
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))

    def x(distance: float) -> float:
        return left + distance / high * (right - left)

    def y(share: float) -> float:
        return bottom - share / tallest * (bottom - top)

    for colour, density in densities.items():
        steps = [
            ((x(float(edges[i])), y(float(s))), (x(float(edges[i + 1])), y(float(s)))) for i, s in enumerate(density)
        ]
        draw.line([point for step in steps for point in step], fill=colour, width=2)
    draw.line((x(threshold), top, x(threshold), bottom), fill=THRESHOLD, width=1)
    draw.text((left, 12), "generated", fill=GENERATED)
    draw.text((left + 100, 12), "held-out real", fill=HELD_OUT)
    draw.text((left + 230, 12), f"copy threshold {threshold:.3g}", fill=THRESHOLD)
    draw.text((left, bottom + 6), "0", fill="black")
    draw.text((right - 40, bottom + 6), f"{high:.3g}", fill="black")
    draw.text(((left + right) // 2 - 130, bottom + 6), "pixel distance to the nearest training image", fill="black")
