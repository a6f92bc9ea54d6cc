"""A PNG report: for every column, the real and synthetic distributions side by side (Pillow only).

Numbers: a 20-bin histogram on the real column's range; categories: the shares of the 12 most
frequent real categories. Real in blue, synthetic in orange; each panel is titled with the column
name and its column-shape score.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from training.tabular.schema import ColumnSpec

PANEL_W, PANEL_H, COLUMNS, BINS, TOP = 320, 200, 3, 20, 12
REAL, SYNTHETIC = (40, 90, 200), (230, 130, 30)


def plot_columns(
    real: pd.DataFrame, synthetic: pd.DataFrame, specs: list[ColumnSpec], scores: dict[str, float], path: Path
) -> None:
    rows = math.ceil(len(specs) / COLUMNS)
    image = Image.new("RGB", (PANEL_W * COLUMNS, PANEL_H * rows + 24), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), "real (blue) vs synthetic (orange)", fill="black")
    for index, spec in enumerate(specs):
        left, top = (index % COLUMNS) * PANEL_W, 24 + (index // COLUMNS) * PANEL_H
        a, b = _shares(real[spec.name], synthetic[spec.name], spec)
        _panel(draw, left, top, a, b, f"{spec.name} ({spec.kind}) shape {scores.get(spec.name, float('nan')):.2f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _shares(real: pd.Series, synthetic: pd.Series, spec: ColumnSpec) -> tuple[np.ndarray, np.ndarray]:
    if spec.discrete:
        labels = real.astype(str).value_counts().index[:TOP]
        return (
            real.astype(str).value_counts(normalize=True).reindex(labels, fill_value=0).to_numpy(),
            synthetic.astype(str).value_counts(normalize=True).reindex(labels, fill_value=0).to_numpy(),
        )
    values = real.dropna().to_numpy(dtype=float)
    edges = np.linspace(values.min(), values.max() + 1e-12, BINS + 1)
    a = np.histogram(values, edges)[0] / max(len(values), 1)
    other = synthetic.dropna().to_numpy(dtype=float)
    b = np.histogram(np.clip(other, edges[0], edges[-1]), edges)[0] / max(len(other), 1)
    return a, b


def _panel(draw: ImageDraw.ImageDraw, left: int, top: int, a: np.ndarray, b: np.ndarray, title: str) -> None:
    draw.text((left + 8, top + 4), title[:48], fill="black")
    base, height = top + PANEL_H - 12, PANEL_H - 40
    high = max(float(a.max(initial=0)), float(b.max(initial=0)), 1e-12)
    width = (PANEL_W - 24) / max(len(a), 1)
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        x0 = left + 12 + k * width
        draw.rectangle((x0, base - x / high * height, x0 + width / 2 - 1, base), fill=REAL)
        draw.rectangle((x0 + width / 2, base - y / high * height, x0 + width - 1, base), fill=SYNTHETIC)
    draw.line((left + 12, base, left + PANEL_W - 12, base), fill="black")
