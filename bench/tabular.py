"""Synthetic tables: our tabular GAN against ctgan at 1,500 epochs, on tables that ship offline.

    make bench-tabular           # creates .venv-bench (torch CPU, ctgan, sdmetrics) and runs this

Tables: scikit-learn's iris, wine, breast cancer and diabetes loaders, and the student
placements demo bundled inside sdmetrics (several categorical columns). Each is split 70/30 with
a fixed seed; both synthesizers train on the 70 % with the same seed, sample as many rows, and are
scored by training/tabular/evaluate.py against the real training rows (column shapes, pair
trends), the held-out 30 % (machine-learning efficacy, privacy). Two references are printed:
the held-out real rows themselves (the ceiling) and the independent-columns floor (every column
resampled on its own; pair trends above it are relationships learned).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.tabular.evaluate import TableScores, evaluate_table, independent_columns  # noqa: E402
from training.tabular.schema import ColumnSpec, infer_schema  # noqa: E402
from training.tabular.synthesizer import TabularConfig, train_table  # noqa: E402

SPLIT_SEED = 0
CTGAN_EPOCHS = 1500


def load_tables() -> dict[str, tuple[pd.DataFrame, str]]:
    """name -> (table, target column)."""
    from sklearn import datasets

    tables: dict[str, tuple[pd.DataFrame, str]] = {}
    for name, loader in (
        ("iris", datasets.load_iris),
        ("wine", datasets.load_wine),
        ("breast_cancer", datasets.load_breast_cancer),
    ):
        bunch = loader(as_frame=True)
        frame = bunch.frame.copy()
        frame["target"] = frame["target"].map(dict(enumerate(bunch.target_names))).astype(str)
        tables[name] = (frame, "target")
    tables["diabetes"] = (datasets.load_diabetes(as_frame=True, scaled=False).frame, "target")
    from sdmetrics.demos import load_single_table_demo

    placements = load_single_table_demo()[0]["student_placements"].drop(columns=["student_id"])
    for column in ("start_date", "end_date"):  # dates as day numbers (missing for students not placed)
        days = pd.to_datetime(placements[column]) - pd.Timestamp("2020-01-01")
        placements[column] = days.dt.days.astype(float)
    tables["student_placements"] = (placements, "placed")
    return tables


def split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(table))
    cut = round(0.7 * len(table))
    return table.iloc[order[:cut]].reset_index(drop=True), table.iloc[order[cut:]].reset_index(drop=True)


@dataclass(frozen=True)
class Row:
    table: str
    who: str
    scores: TableScores
    seconds: float


def run_ours(train: pd.DataFrame, seed: int, steps: int) -> tuple[pd.DataFrame, float]:
    started = time.perf_counter()
    synthesizer = train_table(train, TabularConfig(steps=steps, seed=seed))
    seconds = time.perf_counter() - started
    return synthesizer.sample(len(train), seed=seed + 1), seconds


def run_ctgan(train: pd.DataFrame, specs: list[ColumnSpec], seed: int, epochs: int) -> tuple[pd.DataFrame, float]:
    import torch
    from ctgan import CTGAN

    np.random.seed(seed)
    torch.manual_seed(seed)
    model = CTGAN(epochs=epochs)
    if hasattr(model, "set_random_state"):
        model.set_random_state(seed)
    filled, indicators = fill_missing_numbers(train, specs)
    started = time.perf_counter()
    model.fit(filled, discrete_columns=[spec.name for spec in specs if spec.discrete] + indicators)
    seconds = time.perf_counter() - started
    return restore_missing(model.sample(len(train)), indicators), seconds


def fill_missing_numbers(table: pd.DataFrame, specs: list[ColumnSpec]) -> tuple[pd.DataFrame, list[str]]:
    """ctgan refuses missing numbers: fill them with the median and add a `<column>__missing` flag,
    as SDV's own preprocessing (rdt) does for it; `restore_missing` undoes it on the samples."""
    filled, indicators = table.copy(), []
    for spec in specs:
        if not spec.discrete and spec.has_missing:
            flag = f"{spec.name}__missing"
            filled[flag] = table[spec.name].isna().astype(str)
            filled[spec.name] = table[spec.name].fillna(table[spec.name].median())
            indicators.append(flag)
    return filled, indicators


def restore_missing(samples: pd.DataFrame, indicators: list[str]) -> pd.DataFrame:
    for flag in indicators:
        column = flag.removesuffix("__missing")
        samples[column] = samples[column].where(samples[flag].astype(str) != "True")
    return samples.drop(columns=indicators)


def format_row(row: Row) -> str:
    s = row.scores
    return (
        f"{row.table:>18} {row.who:>12}  shapes {s.column_shapes:.3f}  trends {s.pair_trends:.3f}  "
        f"{s.efficacy_metric} {s.efficacy_synthetic:6.3f} (real {s.efficacy_real:6.3f})  "
        f"close {100 * s.close_share:5.1f} %  DCR ratio {s.dcr_ratio:5.2f}  {row.seconds:7.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", help="a subset of the tables")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=TabularConfig().steps, help="our training steps")
    parser.add_argument("--ctgan-epochs", type=int, default=CTGAN_EPOCHS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # both synthesizers on one thread: fair, and immune to oversubscribed cores
    rows: list[Row] = []
    for name, (table, target) in load_tables().items():
        if args.tables and name not in args.tables:
            continue
        train, test = split(table)
        specs = infer_schema(train)
        print(f"{name}: {len(train)} training rows, {len(test)} held out, {len(specs)} columns, target {target}")
        ours, our_seconds = run_ours(train, args.seed, args.steps)
        theirs, their_seconds = run_ctgan(train, specs, args.seed, args.ctgan_epochs)
        for who, synthetic, seconds in (
            ("ours", ours, our_seconds),
            (f"ctgan-{args.ctgan_epochs}", theirs, their_seconds),
            ("real held-out", test, 0.0),
            ("independent", independent_columns(train, len(train), args.seed), 0.0),
        ):
            scores = evaluate_table(train, test, synthetic, specs, target, args.seed)
            if who == "real held-out":  # its efficacy is the real training rows' (not the held-out rows' own)
                scores = replace(scores, efficacy_synthetic=scores.efficacy_real)
            row = Row(name, who, scores, seconds)
            rows.append(row)
            print(format_row(row), flush=True)
    failures = report(rows, args.ctgan_epochs)
    if args.json:
        args.json.write_text(json.dumps([{**r.scores.as_dict(), "table": r.table, "who": r.who} for r in rows]))
    return 1 if failures else 0


def report(rows: list[Row], epochs: int) -> list[str]:
    def get(table: str, who: str) -> Row:
        return next(r for r in rows if (r.table, r.who) == (table, who))

    failures: list[str] = []
    tables = sorted({r.table for r in rows})
    ctgan = f"ctgan-{epochs}"
    print("\ntargets:")
    for table in tables:
        ours, theirs, floor = get(table, "ours"), get(table, ctgan), get(table, "independent")
        checks = [
            ("column shapes >= ctgan", ours.scores.column_shapes >= theirs.scores.column_shapes),
            ("pair trends >= ctgan", ours.scores.pair_trends >= theirs.scores.pair_trends),
            ("pair trends > independent floor", ours.scores.pair_trends > floor.scores.pair_trends),
            ("less training time than ctgan", ours.seconds < theirs.seconds),
        ]
        if ours.scores.efficacy_metric == "f1_macro":
            gap = ours.scores.efficacy_real - ours.scores.efficacy_synthetic
            checks.append((f"efficacy within 0.05 of real (gap {gap:.3f})", gap <= 0.05))
        for label, ok in checks:
            print(f"  {'PASS' if ok else 'FAIL'}  {table}: {label}")
            failures += [] if ok else [f"{table}: {label}"]
    for metric in ("column_shapes", "pair_trends"):
        mine = np.mean([getattr(get(t, "ours").scores, metric) for t in tables])
        theirs_mean = np.mean([getattr(get(t, ctgan).scores, metric) for t in tables])
        ok = mine > theirs_mean
        print(f"  {'PASS' if ok else 'FAIL'}  mean {metric}: ours {mine:.3f} vs ctgan {theirs_mean:.3f}")
        failures += [] if ok else [f"mean {metric}"]
    return failures


if __name__ == "__main__":
    sys.exit(main())
