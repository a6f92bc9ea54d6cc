"""What torchrun starts on each rank in test_distributed.py: gan-train, watched from outside.

`python -m tests.training.ddp_worker REPORT_DIR [gan-train arguments]` runs gan-train's main
and writes REPORT_DIR/rank_<RANK>.json: the digest of this rank's final generator,
discriminator and averaged generator (parameters and buffers), and every file or folder this
rank created, wrote, renamed or removed under out_dir (seen through Python's audit hooks).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGES = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.unlink"}


def state_digest(*states: Mapping[str, torch.Tensor] | None) -> str:
    """sha256 over every tensor of the state dicts, in order: equal digests mean equal bits."""
    digest = hashlib.sha256()
    for state in states:
        for name, tensor in (state or {}).items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def watch_writes(out_dir: Path, seen: list[str], active: list[bool]) -> None:
    """Record each path under `out_dir` that this process opens for writing, creates, renames or removes.

    Only while `active` holds True: audit hooks cannot be removed, and must not run during shutdown.
    """
    root = str(out_dir.resolve())

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not active[0] or not args or not isinstance(args[0], str | bytes | os.PathLike):
            return
        path = os.fsdecode(args[0])  # tensorboard opens its event files by bytes paths
        if not path.startswith(root):
            return
        if event == "open":
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or flags & WRITE_FLAGS:
                seen.append(f"open {path}")
        elif event in CHANGES:
            seen.append(f"{event} {path}")

    sys.addaudithook(hook)


def main(report_dir: Path, argv: list[str]) -> int:
    import training.train as loop
    from training.cli import main as gan_train

    out_dir = Path(next(arg.split("=", 1)[1] for arg in argv if arg.startswith("out_dir=")))
    runs: list[Any] = []
    real_step = loop.train_step

    def step(run: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        runs[:] = [run]
        return real_step(run, *args, **kwargs)

    loop.train_step = step  # type: ignore[assignment]
    writes: list[str] = []
    active = [True]
    watch_writes(out_dir, writes, active)
    code = gan_train(argv)
    active[0] = False
    run = runs[0]
    ema = run.ema.state_dict() if run.ema is not None else None
    report = {
        "digest": state_digest(run.generator.state_dict(), run.discriminator.state_dict(), ema),
        "writes": writes,
    }
    (report_dir / f"rank_{os.environ['RANK']}.json").write_text(json.dumps(report))
    return code


if __name__ == "__main__":
    from training.cli import leave

    leave(main(Path(sys.argv[1]), sys.argv[2:]))
