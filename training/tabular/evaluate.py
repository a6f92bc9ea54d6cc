"""How close a synthetic table is to the real one, in the four ways that matter for tabular data.

- column shapes: each column's distribution. 1 - Kolmogorov-Smirnov statistic for numbers,
  1 - total variation distance of the category shares otherwise (missing counts as a category).
- pair trends: each pair of columns. 1 - |Pearson correlation difference| / 2 for two numbers;
  1 - total variation distance of the joint shares otherwise, numbers cut into 10 quantile bins
  of the real column (contingency similarity).
- machine-learning efficacy: a random forest trained on synthetic rows and tested on held-out
  real rows, next to the same forest trained on the real training rows (macro F1 for a
  categorical target, R^2 for a number).
- privacy: each synthetic row's distance to its closest real training row, compared with the
  same distance for held-out real rows: a synthesizer that copies rows has far more
  synthetic rows closer than the held-out rows' 5th percentile than the expected 5 %.

All scores except efficacy lie in [0, 1], 1 being identical.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from training.tabular.schema import ColumnSpec

BINS = 10
CLOSE_QUANTILE = 0.05


@dataclass(frozen=True)
class TableScores:
    column_shapes: float
    pair_trends: float
    efficacy_synthetic: float  # F1 (macro) or R^2 of a model trained on synthetic rows, on held-out real rows
    efficacy_real: float  # the same model trained on the real training rows
    efficacy_metric: str
    dcr_ratio: float  # median distance to the closest training row: synthetic / held-out real
    close_share: float  # synthetic rows closer than the held-out rows' 5th percentile (expected 0.05)
    per_column: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate_table(
    train: pd.DataFrame,
    test: pd.DataFrame,
    synthetic: pd.DataFrame,
    specs: list[ColumnSpec],
    target: str,
    seed: int = 0,
) -> TableScores:
    per_column = {spec.name: column_shape(train[spec.name], synthetic[spec.name], spec) for spec in specs}
    efficacy_synthetic, metric = efficacy(synthetic, test, specs, target, seed)
    efficacy_real, _ = efficacy(train, test, specs, target, seed)
    ratio, close = privacy(train, test, synthetic, specs)
    return TableScores(
        column_shapes=float(np.mean(list(per_column.values()))),
        pair_trends=pair_trends(train, synthetic, specs),
        efficacy_synthetic=efficacy_synthetic,
        efficacy_real=efficacy_real,
        efficacy_metric=metric,
        dcr_ratio=ratio,
        close_share=close,
        per_column=per_column,
    )


def independent_columns(table: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """The floor: every column resampled on its own (marginals kept, every relationship destroyed)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({name: table[name].to_numpy()[rng.integers(0, len(table), rows)] for name in table.columns})


def column_shape(real: pd.Series, synthetic: pd.Series, spec: ColumnSpec) -> float:
    if spec.discrete:
        return 1.0 - total_variation(_labels(real), _labels(synthetic))
    from scipy.stats import ks_2samp

    a, b = real.dropna().to_numpy(dtype=float), synthetic.dropna().to_numpy(dtype=float)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    return float(1.0 - ks_2samp(a, b).statistic)


def pair_trends(real: pd.DataFrame, synthetic: pd.DataFrame, specs: list[ColumnSpec]) -> float:
    scores = [_pair_score(real, synthetic, a, b) for a, b in itertools.combinations(specs, 2)]
    return float(np.mean(scores)) if scores else 1.0


def _pair_score(real: pd.DataFrame, synthetic: pd.DataFrame, a: ColumnSpec, b: ColumnSpec) -> float:
    if not a.discrete and not b.discrete:
        rho_real = _correlation(real[a.name], real[b.name])
        rho_synthetic = _correlation(synthetic[a.name], synthetic[b.name])
        return 1.0 - abs(rho_real - rho_synthetic) / 2.0
    real_a, synthetic_a = _binned(real[a.name], synthetic[a.name], a)
    real_b, synthetic_b = _binned(real[b.name], synthetic[b.name], b)
    return 1.0 - total_variation(real_a + "|" + real_b, synthetic_a + "|" + synthetic_b)


def _correlation(x: pd.Series, y: pd.Series) -> float:
    both = pd.concat([x, y], axis=1).dropna().to_numpy(dtype=float)
    if len(both) < 2 or both[:, 0].std() == 0 or both[:, 1].std() == 0:
        return 0.0
    return float(np.corrcoef(both[:, 0], both[:, 1])[0, 1])


def _binned(real: pd.Series, synthetic: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, pd.Series]:
    if spec.discrete:
        return _labels(real), _labels(synthetic)
    edges = np.unique(np.nanquantile(real.to_numpy(dtype=float), np.linspace(0, 1, BINS + 1)[1:-1]))

    def cut(values: pd.Series) -> pd.Series:
        numbers = values.to_numpy(dtype=float)
        labels = np.searchsorted(edges, numbers).astype(str)
        return pd.Series(np.where(np.isnan(numbers), "missing", labels), index=values.index)

    return cut(real), cut(synthetic)


def _labels(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "missing").astype(str)


def total_variation(a: pd.Series, b: pd.Series) -> float:
    shares_a = a.value_counts(normalize=True)
    shares_b = b.value_counts(normalize=True)
    union = shares_a.index.union(shares_b.index)
    return float(0.5 * np.abs(shares_a.reindex(union, fill_value=0) - shares_b.reindex(union, fill_value=0)).sum())


def features(table: pd.DataFrame, specs: list[ColumnSpec], reference: pd.DataFrame) -> np.ndarray:
    """Numbers standardised by `reference` (missing -> its median), categories one-hot on its categories."""
    parts = []
    for spec in specs:
        if spec.discrete:
            categories = sorted(_labels(reference[spec.name]).unique())
            labels = _labels(table[spec.name]).to_numpy()
            parts.append(np.stack([(labels == c).astype(float) for c in categories], axis=1))
        else:
            numbers = reference[spec.name].to_numpy(dtype=float)
            centre, spread = np.nanmedian(numbers), np.nanstd(numbers) or 1.0
            values = table[spec.name].to_numpy(dtype=float)
            parts.append(((np.where(np.isnan(values), centre, values) - np.nanmean(numbers)) / spread)[:, None])
    return np.concatenate(parts, axis=1)


def efficacy(
    train: pd.DataFrame, test: pd.DataFrame, specs: list[ColumnSpec], target: str, seed: int
) -> tuple[float, str]:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.metrics import f1_score, r2_score

    inputs = [spec for spec in specs if spec.name != target]
    target_spec = next(spec for spec in specs if spec.name == target)
    x_train, x_test = features(train, inputs, train), features(test, inputs, train)
    if target_spec.discrete:
        y_train, y_test = _labels(train[target]).to_numpy(), _labels(test[target]).to_numpy()
        if len(set(y_train)) < 2:
            return 0.0, "f1_macro"  # a synthesizer that produced one class teaches nothing
        model = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1).fit(x_train, y_train)
        return float(f1_score(y_test, model.predict(x_test), average="macro")), "f1_macro"
    keep = train[target].notna().to_numpy()
    regressor = RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1)
    regressor.fit(x_train[keep], train[target].to_numpy(dtype=float)[keep])
    known = test[target].notna().to_numpy()
    return float(r2_score(test[target].to_numpy(dtype=float)[known], regressor.predict(x_test[known]))), "r2"


def privacy(
    train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame, specs: list[ColumnSpec]
) -> tuple[float, float]:
    from sklearn.neighbors import NearestNeighbors

    reference = features(train, specs, train)
    index = NearestNeighbors(n_neighbors=1).fit(reference)
    synthetic_distance = index.kneighbors(features(synthetic, specs, train))[0][:, 0]
    held_out_distance = index.kneighbors(features(test, specs, train))[0][:, 0]
    close = float(np.mean(synthetic_distance < np.quantile(held_out_distance, CLOSE_QUANTILE)))
    ratio = float(np.median(synthetic_distance) / max(np.median(held_out_distance), 1e-12))
    return ratio, close
