"""The per-model config.json: batching, instances and which versions to serve.

Every field is optional; unset batching fields fall back to the service settings.

    {
      "max_batch_size": 64,               # samples per session run
      "max_queue_delay_ms": 2.0,          # longest wait for company
      "allowed_batch_sizes": [1, 8, 64],  # pad up to these; warmed at load (largest = max_batch_size)
      "max_queue_size": 4096,             # queued samples before RESOURCE_EXHAUSTED
      "default_priority": 2,              # 1 (high) or 2 (normal) for requests that give none
      "instances": 1,                     # onnxruntime sessions running batches side by side
      "intra_op_threads": 0,              # threads of each session; 0 = the server's default
      "version_policy": {"latest": 1}     # or {"all": true} or {"specific": [1, 3]}
    }
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.batcher import BatchPolicy, Priority
from service.errors import ModelLoadError
from service.layout import CONFIG_FILE
from service.settings import CPU_INLINE_RUN_MS, Settings


class VersionPolicy(BaseModel):
    """Exactly one of: the newest N versions, all versions, or the listed ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latest: int | None = Field(None, ge=1)
    all: bool = False
    specific: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _one_choice(self) -> VersionPolicy:
        chosen = [self.latest is not None, self.all, self.specific is not None]
        if sum(chosen) > 1:
            raise ValueError("give one of latest, all, specific")
        if self.specific is not None and (not self.specific or min(self.specific) < 1):
            raise ValueError("specific must list positive version numbers")
        return self

    def select(self, on_disk: list[int]) -> list[int]:
        """The versions to serve among those on disk, newest first."""
        newest_first = sorted(on_disk, reverse=True)
        if self.all:
            return newest_first
        if self.specific is not None:
            return [v for v in newest_first if v in self.specific]
        return newest_first[: self.latest or 1]

    def describe(self) -> str:
        if self.all:
            return "all"
        if self.specific is not None:
            return f"specific {list(self.specific)}"
        return f"latest {self.latest or 1}"


class ModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    platform: str = "onnxruntime_onnx"
    max_batch_size: int | None = Field(None, ge=1, le=65536)
    max_queue_delay_ms: float | None = Field(None, ge=0, le=10_000)
    allowed_batch_sizes: tuple[int, ...] | None = None
    max_queue_size: int | None = Field(None, ge=1)
    default_priority: Literal[1, 2] = 2
    instances: int | None = Field(None, ge=1, le=64)
    intra_op_threads: int | None = Field(None, ge=0, le=256)
    version_policy: VersionPolicy = VersionPolicy()

    @model_validator(mode="after")
    def _sizes_agree(self) -> ModelConfig:
        sizes = self.allowed_batch_sizes
        if sizes is None:
            return self
        if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
            raise ValueError("allowed_batch_sizes must list distinct positive sizes")
        if self.max_batch_size is not None and max(sizes) != self.max_batch_size:
            raise ValueError(f"the largest allowed_batch_sizes ({max(sizes)}) must equal max_batch_size")
        return self

    def batch_policy(self, settings: Settings, merge: bool = True, on_cpu: bool = True) -> BatchPolicy:
        """The batcher's policy: this config over the service settings. `on_cpu`: the sessions
        run on the CPU provider, where quick runs go on the event loop unless set otherwise."""
        delay_ms = self.max_queue_delay_ms if self.max_queue_delay_ms is not None else settings.max_queue_delay_ms
        sizes = tuple(sorted(self.allowed_batch_sizes or ()))
        max_batch = self.max_batch_size or (sizes[-1] if sizes else settings.max_batch_size)
        return BatchPolicy(
            max_batch_size=max_batch,
            max_queue_delay_s=delay_ms / 1000.0,
            max_queue_size=self.max_queue_size or settings.max_queue_size,
            allowed_batch_sizes=sizes,
            merge=merge,
            inline_run_s=_inline_run_ms(settings, on_cpu) / 1000.0,
            inline_alone_run_s=settings.inline_alone_run_ms / 1000.0,
        )

    def sessions(self, settings: Settings) -> int:
        """onnxruntime sessions (instances) of each version: this config's, else GAN_INSTANCES."""
        return self.instances or settings.instances

    @property
    def priority(self) -> Priority:
        return Priority(self.default_priority)


def _inline_run_ms(settings: Settings, on_cpu: bool) -> float:
    if settings.inline_run_ms is not None:
        return settings.inline_run_ms
    return CPU_INLINE_RUN_MS if on_cpu else 0.0


def read_model_config(model_dir: Path) -> ModelConfig:
    """The model's config.json, or the defaults when there is none."""
    path = model_dir / CONFIG_FILE
    if not path.exists():
        return ModelConfig()
    try:
        config = ModelConfig.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError, UnicodeDecodeError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a valid model config: {_first_line(exc)}") from None
    if config.name not in (None, model_dir.name):
        raise ModelLoadError(f"{path}: name {config.name!r} does not match its folder {model_dir.name!r}")
    return config


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
    return str(exc)
