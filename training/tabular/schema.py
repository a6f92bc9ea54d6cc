"""What each column of a table is: continuous, integer, categorical or boolean, and whether it has gaps.

Inferred from a pandas DataFrame and overridable by name (`columns: {age: integer, zip: categorical}`):

- boolean: a bool column, or one whose only values are True/False;
- categorical: strings, pandas categories, or numbers with at most `max_categories` distinct values
  (a class label stored as 0/1/2 is a category, not a quantity);
- integer: whole numbers with more distinct values than that (decoded by rounding);
- continuous: every other number.

Missing values (NaN, None) are allowed in every kind; the schema records which columns have them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["continuous", "integer", "categorical", "boolean"]
KINDS: tuple[Kind, ...] = ("continuous", "integer", "categorical", "boolean")
MAX_CATEGORIES = 10  # numbers with at most this many distinct values are categories


class SchemaError(ValueError):
    """The table or an override cannot be used; the message names the column."""


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    has_missing: bool

    @property
    def discrete(self) -> bool:
        return self.kind in ("categorical", "boolean")


def infer_schema(
    table: pd.DataFrame, overrides: Mapping[str, str] | None = None, max_categories: int = MAX_CATEGORIES
) -> list[ColumnSpec]:
    """One ColumnSpec per column of `table`, in order; `overrides` maps column names to kinds."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(table.columns))
    if unknown:
        raise SchemaError(f"columns: {unknown} are not in the table (its columns: {list(table.columns)})")
    if table.empty:
        raise SchemaError("the table has no rows; training needs at least a few hundred")
    specs = []
    for name in table.columns:
        column = table[name]
        kind = overrides.get(str(name)) or infer_kind(column, max_categories)
        if kind not in KINDS:
            raise SchemaError(f"columns.{name}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        if kind in ("continuous", "integer") and not _numeric(column):
            raise SchemaError(f"columns.{name}: {kind} needs numbers, but the column holds {column.dtype} values")
        if column.isna().all():
            raise SchemaError(f"column {name}: every value is missing; drop the column")
        specs.append(ColumnSpec(str(name), kind, bool(column.isna().any())))
    return specs


def infer_kind(column: pd.Series, max_categories: int = MAX_CATEGORIES) -> Kind:
    values = column.dropna()
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if not _numeric(column) and len(values) and all(isinstance(v, bool | np.bool_) for v in values.unique()):
        return "boolean"  # an object column of True/False with gaps
    if not _numeric(column):
        return "categorical"
    if values.nunique() <= max_categories:
        return "categorical"
    numbers = values.to_numpy(dtype=np.float64)
    return "integer" if np.all(numbers == np.round(numbers)) else "continuous"


def _numeric(column: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column)) and not pd.api.types.is_bool_dtype(column)
