"""`gan-tabular`: train a tabular GAN on a CSV file and sample typed rows from it.

gan-tabular train --csv people.csv --out runs/people/model.pt [steps=3000] [columns.zip=categorical]
gan-tabular sample --model runs/people/model.pt --count 10000 --out rows.csv [--condition sex=F] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from training.checkpoint import CheckpointError
from training.config import load_settings_model
from training.tabular.schema import SchemaError
from training.tabular.synthesizer import TabularConfig, load_synthesizer, train_table
from training.train import TrainingDiverged


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gan-tabular", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train on a CSV file")
    train.add_argument("--csv", type=Path, required=True)
    train.add_argument("--out", type=Path, required=True, help="where the model is written (.pt)")
    train.add_argument("--config", type=Path, help="YAML with TabularConfig keys (training/tabular/synthesizer.py)")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("overrides", nargs="*", metavar="key=value")
    sample = commands.add_parser("sample", help="sample rows from a trained model")
    sample.add_argument("--model", type=Path, required=True)
    sample.add_argument("--count", type=int, required=True)
    sample.add_argument("--out", type=Path, required=True, help=".csv")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--condition", action="append", default=[], metavar="column=value")
    return parser.parse_args(argv)


def tabular_config(path: Path | None, overrides: Sequence[str]) -> TabularConfig:
    """Like gan-train's: defaults, the YAML file, then key=value overrides (columns.age=integer)."""
    return load_settings_model(TabularConfig, path, overrides)


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it as CSV: {exc}") from None


def conditions_of(pairs: Sequence[str]) -> dict[str, str]:
    conditions = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--condition {pair!r}: expected column=value")
        conditions[name] = value
    return conditions


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "train":
            config = tabular_config(args.config, args.overrides)
            synthesizer = train_table(read_csv(args.csv), config, progress=not args.no_progress)
            synthesizer.save(args.out)
            print(f"gan-tabular: trained {config.steps} steps, model {args.out}")
        else:
            if args.count < 1:
                raise ValueError(f"--count: must be at least 1, got {args.count}")
            rows = load_synthesizer(args.model).sample(args.count, args.seed, conditions_of(args.condition))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            rows.to_csv(args.out, index=False)
            print(f"gan-tabular: {len(rows)} rows written to {args.out}")
    except (ValueError, SchemaError, CheckpointError, TrainingDiverged) as exc:
        print(f"gan-tabular: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
