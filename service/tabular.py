"""Tabular generators: their contract, conditions, sampling and decoding, with numpy alone.

Both the training side (gan-tabular sample) and the service (GenerateRows) draw rows through
these functions, so the same model, seed and conditions give the same rows in both.

A tabular generator's ONNX graph takes `latent` (N, latent_dim) float32 and `condition`
(N, condition_dim) float32 and returns `logits` (N, width); its metadata key `gan.tabular`
holds the JSON spec below. The layout, one entry per column, in order, names the slice of the
logits each column owns:

- continuous / integer: `alpha` (1 value in [-1, 1]) then `modes` (one logit per mixture
  component); the value is mean[k] + alpha * 4 * std[k] for the arg-max component k, clipped to
  the range seen in training, rounded for integers; with `missing`, 2 more logits (present, missing).
- categorical / boolean: one logit per category (the last one is "missing" when the column has gaps).

`discrete` lists the one-hot blocks of the condition vector, in order, each with its name, size
and training counts: a categorical or boolean column's categories, or, marked `"indicator":
"missing"`, a number column's (present, missing) pair. Models exported before the indicators
existed list categories only and are served unchanged. Users condition on categories alone: the
indicators steer training and keep the table's share of gaps when rows are drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InvalidInput, ModelLoadError

ALPHA_SCALE = 4.0  # a component's values are normalised by 4 standard deviations (as in CTGAN)
LATENT_INPUT = "latent"
CONDITION_INPUT = "condition"
LOGITS_OUTPUT = "logits"
KEY_TABULAR = "gan.tabular"
MAX_REJECTION_ROUNDS = 50

Layout = list[dict[str, Any]]


class ConditionError(InvalidInput, ValueError):
    """A condition names an unknown column or value, or one that cannot be conditioned on."""


@dataclass(frozen=True)
class Span:
    """A slice of the generator's output and how it is activated."""

    start: int
    size: int
    activation: str  # "tanh" (alpha) or "softmax" (a one-hot block)


@dataclass(frozen=True)
class TabularSpec:
    """Everything needed to turn a tabular generator's logits into rows."""

    layout: Layout
    discrete: list[dict[str, Any]]  # per condition block: name, size, frequencies (training counts)[, indicator]
    latent_dim: int

    @property
    def condition_dim(self) -> int:
        return sum(int(column["size"]) for column in self.discrete)

    @property
    def columns(self) -> list[str]:
        return [str(column["name"]) for column in self.layout]

    def to_metadata(self) -> dict[str, str]:
        return {
            KEY_TABULAR: json.dumps({"layout": self.layout, "discrete": self.discrete, "latent_dim": self.latent_dim})
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> TabularSpec:
        try:
            raw = json.loads(metadata[KEY_TABULAR])
            return cls(list(raw["layout"]), list(raw["discrete"]), int(raw["latent_dim"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{source}: metadata {KEY_TABULAR} is not a tabular spec: {exc}") from None


def spans(layout: Layout) -> list[Span]:
    found, start = [], 0
    for column in layout:
        if column["kind"] in ("continuous", "integer"):
            modes = len(column["means"])
            found += [Span(start, 1, "tanh"), Span(start + 1, modes, "softmax")]
            if column["missing"]:
                found.append(Span(start + 1 + modes, 2, "softmax"))
        else:
            found.append(Span(start, int(column["width"]), "softmax"))
        start += int(column["width"])
    return found


def parse_conditions(spec: TabularSpec, conditions: Mapping[str, Any]) -> list[tuple[int, int, str]]:
    """(discrete column index, category index, name) per condition; ConditionError naming what is wrong."""
    parsed = []
    kinds = {str(column["name"]): column for column in spec.layout}
    categorical = category_blocks(spec)
    for name, value in conditions.items():
        if name not in kinds:
            raise ConditionError(f"condition {name}: no such column; columns: {spec.columns}")
        if name not in categorical:
            raise ConditionError(f"condition {name}: only categorical and boolean columns can be conditioned on")
        labels = [str(category) for category in kinds[name]["categories"]]
        if str(value) not in labels:
            raise ConditionError(f"condition {name}={value!r}: unknown value; known: {labels}")
        parsed.append((categorical[name], labels.index(str(value)), name))
    return parsed


def category_blocks(spec: TabularSpec) -> dict[str, int]:
    """Column name -> index in `spec.discrete` of the block holding its categories. A number's
    missing indicator shares its column's name but is no category, so it is left out."""
    return {str(block["name"]): index for index, block in enumerate(spec.discrete) if "indicator" not in block}


def plan_round(
    spec: TabularSpec, count: int, conditions: list[tuple[int, int, str]], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Latents and condition vectors for `count` rows: the first condition asked for, else categories
    drawn with their training frequencies (which keeps the table's proportions)."""
    latent = rng.standard_normal((count, spec.latent_dim), dtype=np.float32)
    vectors = np.zeros((count, spec.condition_dim), dtype=np.float32)
    if not spec.discrete:
        return latent, vectors
    offsets = np.cumsum([0] + [int(column["size"]) for column in spec.discrete])
    if conditions:
        first, category, _ = conditions[0]
        vectors[:, offsets[first] + category] = 1.0
        return latent, vectors
    columns = rng.integers(0, len(spec.discrete), size=count)
    for index, column in enumerate(spec.discrete):
        chosen = np.flatnonzero(columns == index)
        shares = np.asarray(column["frequencies"], dtype=np.float64)
        categories = rng.choice(len(shares), size=len(chosen), p=shares / shares.sum())
        vectors[chosen, offsets[index] + categories] = 1.0
    return latent, vectors


def finish_round(
    spec: TabularSpec, logits: np.ndarray, conditions: list[tuple[int, int, str]], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Draw one value per block (Gumbel-max: a sample of its softmax), decode, keep rows meeting every condition."""
    columns = decode(draw(logits, spans(spec.layout), rng), spec.layout)
    if not conditions:
        return columns
    keep = np.ones(len(logits), dtype=bool)
    for _, category, name in conditions:
        wanted = next(c for c in spec.layout if c["name"] == name)["categories"][category]
        keep &= np.array([value == wanted for value in columns[name]])
    return {name: values[keep] for name, values in columns.items()}


def draw(logits: np.ndarray, layout_spans: list[Span], rng: np.random.Generator) -> np.ndarray:
    """tanh for alphas; one category per softmax block drawn from its softmax (an arg-max would never
    draw a category that is a minority everywhere)."""
    out = np.zeros_like(logits, dtype=np.float64)
    for span in layout_spans:
        block = logits[:, span.start : span.start + span.size].astype(np.float64)
        if span.activation == "tanh":
            out[:, span.start] = np.tanh(block[:, 0])
            continue
        gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0 - 1e-12, size=block.shape)))
        out[np.arange(len(block)), span.start + (block + gumbel).argmax(axis=1)] = 1.0
    return out


def concatenate(parts: list[dict[str, np.ndarray]], count: int) -> dict[str, np.ndarray]:
    """The first `count` rows of several rounds' columns."""
    return {name: np.concatenate([part[name] for part in parts])[:count] for name in parts[0]}


Columns = dict[str, np.ndarray]
Rounds = Generator[tuple[np.ndarray, np.ndarray], np.ndarray, Columns]


def generation_rounds(spec: TabularSpec, count: int, seed: int, conditions: Mapping[str, Any]) -> Rounds:
    """The whole sampling procedure as a generator: it yields (latent, condition) inputs, is sent the
    generator's logits for them, and returns the columns. A caller runs the network however it
    likes (PyTorch in gan-tabular, the batcher in the service) and gets the same rows."""
    rng = np.random.default_rng(seed)
    wanted = parse_conditions(spec, conditions)
    parts, kept = [], 0
    for _ in range(MAX_REJECTION_ROUNDS):
        latent, condition = plan_round(spec, count - kept, wanted, rng)
        logits = yield latent, condition
        part = finish_round(spec, logits, wanted, rng)
        parts.append(part)
        kept += len(next(iter(part.values())))
        if kept >= count:
            return concatenate(parts, count)
    raise ConditionError(f"conditions {dict(conditions)}: too rare for this model; fewer than {count} rows matched")


def run_rounds(rounds: Rounds, logits: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Columns:
    """Drive `generation_rounds` with a synchronous network."""
    inputs = next(rounds)
    while True:
        try:
            inputs = rounds.send(logits(*inputs))
        except StopIteration as finished:
            return finished.value


def output_width(layout: Layout) -> int:
    return sum(int(column["width"]) for column in layout)


def decode(matrix: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """(N, width) generator outputs -> {column name: (N,) values}: float64 for continuous, int64 for
    integer (float64 with NaN where values are missing), object arrays of the categories otherwise."""
    if matrix.ndim != 2 or matrix.shape[1] != output_width(layout):
        raise ValueError(f"generator output: expected (N, {output_width(layout)}), got {matrix.shape}")
    columns: dict[str, np.ndarray] = {}
    start = 0
    for column in layout:
        block = matrix[:, start : start + int(column["width"])]
        start += int(column["width"])
        if column["kind"] in ("continuous", "integer"):
            columns[column["name"]] = _decode_number(block, column)
        else:
            columns[column["name"]] = _decode_category(block, column)
    return columns


def _decode_number(block: np.ndarray, column: dict[str, Any]) -> np.ndarray:
    means, stds = np.asarray(column["means"]), np.asarray(column["stds"])
    modes = len(means)
    mode = block[:, 1 : 1 + modes].argmax(axis=1)
    alpha = np.clip(block[:, 0], -1.0, 1.0)
    values = means[mode] + alpha * ALPHA_SCALE * stds[mode]
    values = np.clip(values, column["min"], column["max"])
    if column["kind"] == "integer":
        values = np.round(values)
    if column["missing"]:
        missing = block[:, 1 + modes : 3 + modes].argmax(axis=1) == 1
        values = np.where(missing, np.nan, values)
    elif column["kind"] == "integer":
        return values.astype(np.int64)
    return values.astype(np.float64)


def _decode_category(block: np.ndarray, column: dict[str, Any]) -> np.ndarray:
    categories = np.asarray(list(column["categories"]) + ([None] if column["missing"] else []), dtype=object)
    return categories[block.argmax(axis=1)]
