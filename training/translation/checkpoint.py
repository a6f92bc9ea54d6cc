"""Reading a translation checkpoint back: the whole state for resuming, or one generator for evaluation and export."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError
from torch import nn

from training.checkpoint import CheckpointError
from training.translation.config import TranslationConfig, translation_digest
from training.translation.models import build_generator

FORMAT = "gan-serving-translation/1"  # training/translation/train.py writes it
Direction = Literal["a2b", "b2a"]


@dataclass(frozen=True)
class LoadedTranslator:
    generator: nn.Module  # eval mode, CPU: source (N, C_in, H, W) -> image (N, C_out, H * scale, W * scale)
    config: TranslationConfig
    direction: Direction
    step: int
    ema: bool  # whether `generator` holds the moving-average weights
    config_digest: str


def read_state(path: Path) -> dict[str, Any] | None:
    """The checkpoint's content, or None when the file cannot be read by torch."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile):
        return None
    return state if isinstance(state, dict) else None


def is_translation_checkpoint(path: Path) -> bool:
    state = read_state(path)
    return state is not None and state.get("format") == FORMAT


def load_translation_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; train one with gan-translate train")
    state = read_state(path)
    if state is None:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?)")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gan-translate checkpoint (no {FORMAT!r} marker)")
    return state


def translation_config_of(state: dict[str, Any], path: Path) -> TranslationConfig:
    try:
        return TranslationConfig.model_validate(state["config"])
    except ValidationError as exc:
        raise CheckpointError(f"{path}: its config no longer validates: {exc}") from None


def load_translator(path: Path, direction: Direction = "a2b", ema: bool | None = None) -> LoadedTranslator:
    """One generator of a checkpoint in eval mode on CPU: the moving average when kept (ema=None), else live.

    `direction` b2a is only for CycleGAN checkpoints, which hold both generators.
    """
    state = load_translation_checkpoint(path)
    config = translation_config_of(state, path)
    if direction == "b2a" and config.is_paired:
        raise CheckpointError(f"{path}: --direction b2a: a {config.task} (pix2pix) model only translates a to b")
    use_ema = state["ema"] is not None if ema is None else ema
    if use_ema and state["ema"] is None:
        raise CheckpointError(f"{path}: holds no moving-average generator (trained with optim.ema_decay=0)")
    weights = state["ema"] if use_ema else state["generators"]
    prefix = f"{direction}."
    generator = build_generator(config)
    generator.load_state_dict({key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)})
    generator.eval()
    return LoadedTranslator(generator, config, direction, int(state["step"]), use_ema, translation_digest(config))
