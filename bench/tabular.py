"""Synthetic tables: our tabular GAN against ctgan at 1,500 epochs, on tables that ship offline.

    make bench-tabular           # creates .venv-bench (torch CPU, ctgan, sdmetrics) and runs this

    PYTHONPATH=. .venv-bench/bin/python bench/tabular.py --seeds 0 1 2 --tables student_placements [--no-ctgan]

Tables: scikit-learn's iris, wine, breast cancer and diabetes loaders, and the student
placements demo bundled inside sdmetrics (several categorical columns). Each is split 70/30 with
a fixed seed; both synthesizers train on the 70 % with the same seed, sample as many rows, and are
scored by training/tabular/evaluate.py against the real training rows (column shapes, pair
trends), the held-out 30 % (machine-learning efficacy, privacy). Two references are printed:
the held-out real rows themselves (the ceiling) and the independent-columns floor (every column
resampled on its own; pair trends above it are relationships learned).

With several seeds (the same split for all) every seed's rows are printed, then their means; the
targets are judged on the means, and the worst seed of each is printed beside it, since tables
of a few hundred rows make one seed a noisy estimate.
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
    seed: int | None  # None: the mean over seeds
    scores: TableScores
    seconds: float


def mean_row(rows: list[Row]) -> Row:
    """The mean of one table's and synthesizer's rows over seeds (every score, per column too)."""
    first = rows[0].scores
    floats = {
        name: float(np.mean([getattr(row.scores, name) for row in rows]))
        for name in ("column_shapes", "pair_trends", "efficacy_synthetic", "efficacy_real", "dcr_ratio", "close_share")
    }
    per_column = {name: float(np.mean([row.scores.per_column[name] for row in rows])) for name in first.per_column}
    scores = replace(first, **floats, per_column=per_column)
    return Row(rows[0].table, rows[0].who, None, scores, float(np.mean([row.seconds for row in rows])))


def run_ours(train: pd.DataFrame, seed: int, steps: int, device: str) -> tuple[pd.DataFrame, float]:
    started = time.perf_counter()
    synthesizer = train_table(train, TabularConfig(steps=steps, seed=seed, device=device))
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
    seed = "mean" if row.seed is None else f"seed {row.seed}"
    return (
        f"{row.table:>18} {row.who:>13} {seed:>7}  shapes {s.column_shapes:.3f}  trends {s.pair_trends:.3f}  "
        f"{s.efficacy_metric} {s.efficacy_synthetic:6.3f} (real {s.efficacy_real:6.3f})  "
        f"close {100 * s.close_share:5.1f} %  DCR ratio {s.dcr_ratio:5.2f}  {row.seconds:7.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", help="a subset of the tables")
    parser.add_argument(
        "--seeds", "--seed", nargs="+", type=int, default=[0], help="training seeds (one or several; same split)"
    )
    parser.add_argument("--steps", type=int, default=TabularConfig().steps, help="our training steps")
    parser.add_argument("--ctgan-epochs", type=int, default=CTGAN_EPOCHS)
    parser.add_argument("--no-ctgan", action="store_true", help="ours only (the targets against ctgan are skipped)")
    parser.add_argument(
        "--device", default="cpu", help="where ours trains (default cpu, one thread, as ctgan here; cuda on a GPU)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # both synthesizers on one thread: fair, and immune to oversubscribed cores
    ctgan = None if args.no_ctgan else f"ctgan-{args.ctgan_epochs}"
    rows: list[Row] = []
    for name, (table, target) in load_tables().items():
        if args.tables and name not in args.tables:
            continue
        train, test = split(table)
        specs = infer_schema(train)
        print(f"{name}: {len(train)} training rows, {len(test)} held out, {len(specs)} columns, target {target}")
        table_rows = [row for seed in args.seeds for row in run_seed(name, train, test, specs, target, seed, args)]
        means = [mean_row([r for r in table_rows if r.who == who]) for who in dict.fromkeys(r.who for r in table_rows)]
        if len(args.seeds) > 1:
            for row in means:
                print(format_row(row), flush=True)
        rows += table_rows + means
    failures = report(rows, ctgan, multiple_seeds=len(args.seeds) > 1)
    if args.json:
        args.json.write_text(
            json.dumps([{**r.scores.as_dict(), "table": r.table, "who": r.who, "seed": r.seed} for r in rows])
        )
    return 1 if failures else 0


def run_seed(
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    specs: list[ColumnSpec],
    target: str,
    seed: int,
    args: argparse.Namespace,
) -> list[Row]:
    """One seed of one table: ours, ctgan (unless --no-ctgan) and the two references, scored and printed."""
    ours, our_seconds = run_ours(train, seed, args.steps, args.device)
    candidates = [("ours", ours, our_seconds)]
    if not args.no_ctgan:
        theirs, their_seconds = run_ctgan(train, specs, seed, args.ctgan_epochs)
        candidates.append((f"ctgan-{args.ctgan_epochs}", theirs, their_seconds))
    candidates += [("real held-out", test, 0.0), ("independent", independent_columns(train, len(train), seed), 0.0)]
    rows = []
    for who, synthetic, seconds in candidates:
        scores = evaluate_table(train, test, synthetic, specs, target, seed)
        if who == "real held-out":  # its efficacy is the real training rows' (not the held-out rows' own)
            scores = replace(scores, efficacy_synthetic=scores.efficacy_real)
        row = Row(name, who, seed, scores, seconds)
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


@dataclass(frozen=True)
class Check:
    """A target: `margin` > 0 (or >= 0 when not `strict`) passes."""

    label: str
    margin: float
    strict: bool = False

    @property
    def passed(self) -> bool:
        return self.margin > 0 if self.strict else self.margin >= 0


def checks(ours: Row, theirs: Row | None, floor: Row) -> list[Check]:
    """The targets of one table for one seed (or for the means)."""
    s = ours.scores
    found = [Check("pair trends > independent floor", s.pair_trends - floor.scores.pair_trends, strict=True)]
    if theirs is not None:
        found = [
            Check("column shapes >= ctgan", s.column_shapes - theirs.scores.column_shapes),
            Check("pair trends >= ctgan", s.pair_trends - theirs.scores.pair_trends),
            *found,
            Check("less training time than ctgan", theirs.seconds - ours.seconds, strict=True),
        ]
    if s.efficacy_metric == "f1_macro":
        found.append(Check("efficacy within 0.05 of real", 0.05 - (s.efficacy_real - s.efficacy_synthetic)))
    return found


def report(rows: list[Row], ctgan: str | None, multiple_seeds: bool = False) -> list[str]:
    """Print every target as PASS or FAIL on the means over seeds (with the worst seed beside it);
    returns the failures."""

    def get(table: str, who: str, seed: int | None) -> Row:
        return next(r for r in rows if (r.table, r.who, r.seed) == (table, who, seed))

    def judged(table: str, seed: int | None) -> list[Check]:
        theirs = get(table, ctgan, seed) if ctgan else None
        return checks(get(table, "ours", seed), theirs, get(table, "independent", seed))

    failures: list[str] = []
    tables = sorted({r.table for r in rows})
    seeds = sorted({r.seed for r in rows if r.seed is not None})
    print("\ntargets" + (f" (on the means over seeds {seeds}; worst seed in brackets)" if multiple_seeds else "") + ":")
    for table in tables:
        per_seed = {seed: judged(table, seed) for seed in seeds}
        for index, check in enumerate(judged(table, None)):
            worst_seed = min(seeds, key=lambda seed: per_seed[seed][index].margin)
            worst = per_seed[worst_seed][index]
            detail = f" [worst seed {worst_seed}: {worst.margin:+.3f} {'pass' if worst.passed else 'FAIL'}]"
            print(
                f"  {'PASS' if check.passed else 'FAIL'}  {table}: {check.label} (margin {check.margin:+.3f})"
                + (detail if multiple_seeds else "")
            )
            failures += [] if check.passed else [f"{table}: {check.label}"]
    if ctgan is None:
        return failures
    for metric in ("column_shapes", "pair_trends"):
        mine = np.mean([getattr(get(t, "ours", None).scores, metric) for t in tables])
        theirs_mean = np.mean([getattr(get(t, ctgan, None).scores, metric) for t in tables])
        ok = mine > theirs_mean
        print(f"  {'PASS' if ok else 'FAIL'}  mean {metric}: ours {mine:.3f} vs ctgan {theirs_mean:.3f}")
        failures += [] if ok else [f"mean {metric}"]
    return failures


if __name__ == "__main__":
    sys.exit(main())
