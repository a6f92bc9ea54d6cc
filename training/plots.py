"""Pictures drawn with Pillow (no plotting library needed): loss curves, and 2-D samples over their modes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.mode_coverage import HQ_STDS, Mixture

SERIES = {"d_loss": (200, 40, 40), "g_loss": (40, 90, 200)}  # red: discriminator, blue: generator
WIDTH, HEIGHT, MARGIN = 640, 360, 40


def read_losses(path: Path) -> tuple[list[int], dict[str, list[float]]]:
    steps: list[int] = []
    values: dict[str, list[float]] = {name: [] for name in SERIES}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            steps.append(int(row["step"]))
            for name in SERIES:
                values[name].append(float(row[name]))
    return steps, values


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """Both losses against the step, with the axis ranges written in the corners."""
    steps, values = read_losses(csv_path)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN), outline=(120, 120, 120))
    if len(steps) >= 2:
        low = min(min(series) for series in values.values())
        high = max(max(series) for series in values.values())
        span_y = (high - low) or 1.0
        span_x = (steps[-1] - steps[0]) or 1

        def point(step: int, value: float) -> tuple[float, float]:
            x = MARGIN + (step - steps[0]) / span_x * (WIDTH - 2 * MARGIN)
            y = HEIGHT - MARGIN - (value - low) / span_y * (HEIGHT - 2 * MARGIN)
            return x, y

        for name, colour in SERIES.items():
            draw.line([point(s, v) for s, v in zip(steps, values[name], strict=True)], fill=colour, width=2)
        draw.text((4, MARGIN - 12), f"{high:.3g}", fill="black")
        draw.text((4, HEIGHT - MARGIN), f"{low:.3g}", fill="black")
        draw.text((MARGIN, HEIGHT - MARGIN + 14), f"step {steps[0]}", fill="black")
        draw.text((WIDTH - MARGIN - 70, HEIGHT - MARGIN + 14), f"step {steps[-1]}", fill="black")
    for index, (name, colour) in enumerate(SERIES.items()):
        draw.text((MARGIN + 10 + 120 * index, 12), name, fill=colour)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(png_path)


def plot_points(samples: np.ndarray, mixture: Mixture, path: Path, size: int = 480) -> None:
    """Samples as dots (green within 3 std of a mode, red otherwise) over circles of 3 std at the modes."""
    extent = float(np.abs(mixture.centres).max()) * 1.5 + 10 * mixture.std
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)

    def pixel(x: float, y: float) -> tuple[float, float]:
        return (x + extent) / (2 * extent) * size, (extent - y) / (2 * extent) * size

    radius = max(2.0, HQ_STDS * mixture.std / (2 * extent) * size)
    for cx, cy in mixture.centres:
        px, py = pixel(cx, cy)
        draw.ellipse((px - radius, py - radius, px + radius, py + radius), outline="black")
    distances = np.linalg.norm(samples[:, None, :] - mixture.centres[None], axis=2).min(axis=1)
    for (x, y), distance in zip(samples, distances, strict=True):
        px, py = pixel(float(x), float(y))
        draw.point((px, py), fill="green" if distance < HQ_STDS * mixture.std else "red")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
