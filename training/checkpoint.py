"""Complete, atomic, self-describing checkpoints, and loading a generator back for export."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from training.config import ConfigError, TrainConfig, check_resumable, config_digest, load_config
from training.file_modes import plain_file_mode
from training.models import build_generator

FORMAT = "gan-serving-checkpoint/1"


def global_rng_state() -> dict[str, Any]:
    """The process-wide random states a training run draws from (torch, CUDA, numpy, Python), picklable."""
    numpy_state: tuple[Any, ...] = tuple(np.random.get_state())
    _, keys, position, has_gauss, cached = numpy_state
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [keys.tolist(), int(position), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def restore_global_rng(rng: dict[str, Any], cuda: bool) -> None:
    """Put back what `global_rng_state` saved; the CUDA states only when the run uses CUDA."""
    torch.set_rng_state(rng["torch"])
    if cuda and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(("MT19937", np.asarray(rng["numpy"][0], dtype=np.uint32), *rng["numpy"][1:]))
    random.setstate(_as_tuples(rng["python"]))


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


class CheckpointError(ValueError):
    """The checkpoint is missing, truncated or not one of ours; the message names the path."""


@dataclass(frozen=True)
class LoadedGenerator:
    generator: nn.Module  # eval mode, CPU; EMA or live weights, see `ema`
    config: TrainConfig
    class_names: list[str]
    latent_dim: int
    channels: int
    image_size: int
    config_digest: str
    step: int
    ema: bool  # whether `generator` holds the moving-average weights


@contextlib.contextmanager
def refusing_misfits(path: Path, problem: str, advice: str) -> Iterator[None]:
    """Loading a checkpoint's state into a run: a misfit (size mismatch, missing keys, other parameter
    groups) is a CheckpointError naming the file, the problem and what to do, not a traceback."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"{path}: {problem} ({detail[:300]}). {advice}") from None


def code_version() -> str:
    """The package version, plus the git commit when the code runs from a checkout."""
    try:
        version = metadata.version("gan-serving")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state`, marked as one of our checkpoints, atomically (see `atomic_save`)."""
    atomic_save(path, {"format": FORMAT, **state})


def atomic_save(path: Path, content: dict[str, Any]) -> None:
    """torch.save `content` to a temporary file beside `path`, flush it to disk, then rename over `path`.

    A crash at any moment leaves either the previous file or the new one, never half of one. The file
    gets the mode open() would give it (mkstemp's is 0600), so a server running as another user can read it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(handle, plain_file_mode())
        with os.fdopen(handle, "wb") as file:
            torch.save(content, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; train one with gan-train")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gan-train checkpoint (no {FORMAT!r} marker)")
    return state


def recorded_config(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """The config a checkpoint's run was trained with, as it was written (it may predate today's checks)."""
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: records no training config, so it cannot be resumed; start a new run")
    return config


def resume_config(checkpoint: Path, path: Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config `gan-train --resume` continues with: the checkpoint's own, then the YAML file at `path`
    and the overrides, which may change only what training.config.RESUME_CHANGEABLE lists."""
    recorded = recorded_config(load_checkpoint(checkpoint), checkpoint)
    try:
        config = load_config(path, overrides, base=recorded)
    except ConfigError as exc:
        raise ConfigError(f"resuming {checkpoint}: {exc}") from None
    check_resume(recorded, config, checkpoint)
    return config


def check_resume(recorded: dict[str, Any], config: TrainConfig, checkpoint: Path) -> None:
    """ConfigError, naming the checkpoint, when `config` changes what the run at `checkpoint` cannot follow."""
    try:
        check_resumable(recorded, config)
    except ConfigError as exc:
        raise ConfigError(f"resuming {checkpoint}: {exc}") from None


def load_generator(path: Path, ema: bool | None = None) -> LoadedGenerator:
    """The generator of a checkpoint, in eval mode on CPU.

    `ema`: None takes the moving-average weights when the run kept them (what gets exported),
    else the live ones; True insists on the average; False takes the live generator.
    """
    state = load_checkpoint(path)
    try:
        config = TrainConfig.model_validate(state["config"])
    except ValidationError as exc:
        raise CheckpointError(f"{path}: its config no longer validates: {exc}") from None
    use_ema = state["ema_generator"] is not None if ema is None else ema
    if use_ema and state["ema_generator"] is None:
        raise CheckpointError(
            f"{path}: holds no EMA generator (trained with optim.ema_decay=0); evaluate the live one instead"
        )
    class_names = list(state["class_names"])
    generator = build_generator(config, len(class_names))
    generator.load_state_dict(state["ema_generator"] if use_ema else state["generator"])
    generator.eval()
    return LoadedGenerator(
        generator=generator,
        config=config,
        class_names=class_names,
        latent_dim=config.model.latent_dim,
        channels=config.data.channels,
        image_size=config.data.image_size,
        config_digest=config_digest(config),
        step=int(state["step"]),
        ema=use_ema,
    )
