"""`gan-translate`: train an image-to-image translator (pix2pix or CycleGAN) from a YAML config.

gan-translate train --config training/configs/sr.yaml [out_dir=runs/sr] [key=value ...]
gan-translate train --config training/configs/sr.yaml --resume runs/sr/checkpoint.pt
gan-translate train --config training/configs/colourise.yaml data.folder=~/photos out_dir=runs/mine

Then: gan-eval translation --checkpoint runs/sr/checkpoint.pt, and gan-export runs/sr/checkpoint.pt --name sr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from training.checkpoint import CheckpointError
from training.config import ConfigError, load_settings_model
from training.data import DataError
from training.train import TrainingDiverged
from training.translation.config import TranslationConfig
from training.translation.train import train_translation


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gan-translate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train from a config (training/configs/sr.yaml, ...)")
    train.add_argument("--config", type=Path, required=True, help="YAML with TranslationConfig keys")
    train.add_argument("--resume", type=Path, help="continue from this checkpoint.pt")
    train.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("overrides", nargs="*", metavar="key=value")
    return parser.parse_args(argv)


def translation_config(path: Path | None, overrides: Sequence[str]) -> TranslationConfig:
    """Like gan-train's: defaults, the YAML file, then key=value overrides (data.folder=..., steps=...)."""
    return load_settings_model(TranslationConfig, path, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ConfigError(f"--threads: must be at least 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        config = translation_config(args.config, args.overrides)
        result = train_translation(config, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"gan-translate: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"gan-translate: error: {exc}", file=sys.stderr)
        return 1
    print(f"gan-translate: trained {result.step} steps, checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
