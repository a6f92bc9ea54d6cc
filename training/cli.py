"""`gan-train [--config FILE] [--resume CKPT] [key=value ...]`, or under `torchrun -m training.cli` on several ranks."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from training.checkpoint import CheckpointError, resume_config
from training.config import ConfigError, load_config
from training.data import DataError
from training.distributed import SINGLE_PROCESS, DistributedError, process_group, world_from_environment
from training.train import TrainingDiverged, train


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gan-train",
        description="Train a GAN generator. Settings come from --config, then key=value overrides "
        "(nested keys with dots: model.latent_dim=128 data.path=/images).",
    )
    parser.add_argument("--config", type=Path, help="YAML config, e.g. training/configs/digits.yaml")
    parser.add_argument(
        "--resume",
        type=Path,
        help="continue from this checkpoint.pt with the config it records; --config and key=value may change "
        "only steps, batch_size, where and how it runs and logs, and the learning rates and penalties",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    world = SINGLE_PROCESS
    try:
        if args.resume is not None:
            config = resume_config(args.resume, args.config, args.overrides)
        else:
            config = load_config(args.config, args.overrides)
        world = world_from_environment(os.environ)  # what torchrun set; one process when it did not
        with process_group(world, config.device):
            result = train(config, resume=args.resume, progress=not args.no_progress, world=world)
    except (ConfigError, DataError, CheckpointError, DistributedError) as exc:
        print(f"gan-train: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"gan-train: error: {exc}", file=sys.stderr)
        return 1
    if world.is_main:
        print(f"gan-train: step {result.step}, checkpoint {result.checkpoint}")
    return 0


def leave(code: int) -> None:
    """Exit with `code`. Under torchrun (RANK set), skip interpreter finalisation: gloo's background
    threads can abort a rank (SIGABRT) while Python tears down after the other rank has closed its
    sockets; the process group is gone and every output is written by now."""
    if "RANK" not in os.environ:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    leave(main())
