"""Tabular specs with numpy alone: conditions over categories and missing indicators, planning rounds,
and specs written before the indicators existed, which must plan and decode as they always did."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.tabular import (
    KEY_TABULAR,
    ConditionError,
    TabularSpec,
    generation_rounds,
    output_width,
    parse_conditions,
    plan_round,
    run_rounds,
)

# salary: a number with gaps (alpha, 2 modes, present/missing); placed: a boolean; city: 3 categories
LAYOUT = [
    {
        "name": "salary",
        "kind": "continuous",
        "missing": True,
        "means": [20_000.0, 40_000.0],
        "stds": [1_000.0, 2_000.0],
        "weights": [0.5, 0.5],
        "min": 15_000.0,
        "max": 50_000.0,
        "width": 5,
    },
    {"name": "placed", "kind": "boolean", "missing": False, "categories": [True, False], "width": 2},
    {"name": "city", "kind": "categorical", "missing": False, "categories": ["Oslo", "Rome", "Lima"], "width": 3},
]
INDICATOR = {"name": "salary", "size": 2, "frequencies": [70.0, 30.0], "indicator": "missing"}
PLACED = {"name": "placed", "size": 2, "frequencies": [70.0, 30.0]}
CITY = {"name": "city", "size": 3, "frequencies": [50.0, 30.0, 20.0]}


def with_indicator() -> TabularSpec:
    return TabularSpec(LAYOUT, [INDICATOR, PLACED, CITY], latent_dim=4)


def old_format() -> TabularSpec:
    """As exported before missing indicators: only the categorical and boolean columns condition."""
    metadata = {KEY_TABULAR: json.dumps({"layout": LAYOUT, "discrete": [PLACED, CITY], "latent_dim": 4})}
    return TabularSpec.from_metadata(metadata, "old.onnx")


def logits_for(rows: int, salary_missing: bool, city: int) -> np.ndarray:
    """Generator output that is sure of everything: salary 40,000 or missing, placed, the given city."""
    logits = np.full((rows, output_width(LAYOUT)), -30.0, dtype=np.float32)
    logits[:, 0] = 0.0  # alpha 0: the mode's mean
    logits[:, 2] = 30.0  # the 40,000 mode
    logits[:, 4 if salary_missing else 3] = 30.0
    logits[:, 5] = 30.0  # placed True
    logits[:, 7 + city] = 30.0
    return logits


def test_users_condition_on_categories_and_the_indicator_is_no_category() -> None:
    spec = with_indicator()
    assert spec.condition_dim == 7  # the indicator's pair is part of the condition vector
    assert parse_conditions(spec, {"city": "Lima", "placed": "False"}) == [(2, 2, "city"), (1, 1, "placed")]
    with pytest.raises(ConditionError, match="condition salary: only categorical and boolean columns"):
        parse_conditions(spec, {"salary": "missing"})
    with pytest.raises(ConditionError, match=r"city='Paris': unknown value; known: \['Oslo', 'Rome', 'Lima'\]"):
        parse_conditions(spec, {"city": "Paris"})


def test_a_condition_sets_its_own_block_behind_the_indicator() -> None:
    spec = with_indicator()
    _, vectors = plan_round(spec, 5, parse_conditions(spec, {"city": "Rome"}), np.random.default_rng(0))
    assert vectors.shape == (5, 7) and np.all(vectors[:, 2 + 2 + 1] == 1.0) and vectors.sum() == 5


def test_unconditioned_rounds_draw_every_block_with_its_training_frequencies() -> None:
    latent, vectors = plan_round(with_indicator(), 30_000, [], np.random.default_rng(1))
    assert latent.shape == (30_000, 4) and np.all(vectors.sum(axis=1) == 1.0)
    chosen = vectors[vectors[:, :2].sum(axis=1) == 1, :2]  # rows conditioned on the indicator
    assert len(chosen) == pytest.approx(10_000, rel=0.05)
    assert chosen[:, 1].mean() == pytest.approx(0.3, abs=0.02)  # salary missing, as often as in training


def test_rows_generated_with_an_indicator_spec_decode_gaps_and_keep_conditions() -> None:
    spec = with_indicator()
    rounds = generation_rounds(spec, 8, seed=3, conditions={"city": "Lima"})
    columns = run_rounds(rounds, lambda latent, condition: logits_for(len(latent), salary_missing=True, city=2))
    assert np.isnan(columns["salary"]).all() and list(columns["city"]) == ["Lima"] * 8


def test_a_spec_exported_before_the_indicators_still_plans_and_decodes() -> None:
    spec = old_format()
    assert spec.condition_dim == 5 and all("indicator" not in block for block in spec.discrete)
    assert parse_conditions(spec, {"city": "Rome"}) == [(1, 1, "city")]
    _, vectors = plan_round(spec, 4, parse_conditions(spec, {"city": "Rome"}), np.random.default_rng(0))
    assert vectors.shape == (4, 5) and np.all(vectors[:, 3] == 1.0)
    with pytest.raises(ConditionError, match="condition salary: only categorical and boolean columns"):
        parse_conditions(spec, {"salary": "1"})
    columns = run_rounds(
        generation_rounds(spec, 6, seed=1, conditions={}),
        lambda latent, condition: logits_for(len(latent), salary_missing=False, city=0),
    )
    assert columns["salary"].tolist() == [40_000.0] * 6 and list(columns["city"]) == ["Oslo"] * 6


def test_a_condition_the_model_never_meets_is_refused_not_answered_short() -> None:
    """After MAX_REJECTION_ROUNDS rounds without enough matching rows the call fails naming the
    conditions; it must not return fewer rows than asked for."""
    rounds = generation_rounds(with_indicator(), 8, seed=3, conditions={"city": "Lima"})
    with pytest.raises(ConditionError, match=r"conditions \{'city': 'Lima'\}: too rare for this model"):
        run_rounds(rounds, lambda latent, condition: logits_for(len(latent), salary_missing=False, city=0))
