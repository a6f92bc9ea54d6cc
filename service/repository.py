"""The model repository: <root>/<model>/config.json and <root>/<model>/<version>/model.onnx.

This is the layout Triton users know. Versions are positive integers; the newest version
of every model is loaded at start. A model that cannot be loaded stops start-up with a
message naming the file, rather than serving a partial repository silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.batcher import Batcher, BatchObserver, BatchPolicy
from service.errors import ModelLoadError, ModelNotFound
from service.layout import CONFIG_FILE, MODEL_FILE, is_model_name, version_dirs
from service.runtime import Runtime, load_runtime
from service.settings import Settings
from service.signature import LABEL_INPUT, LATENT_INPUT

log = logging.getLogger(__name__)

ObserverFactory = Callable[[str], BatchObserver]  # model name -> its metrics observer


class ModelConfig(BaseModel):
    """The per-model config.json; unset batching fields fall back to the service settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    platform: str = "onnxruntime_onnx"
    max_batch_size: int | None = Field(None, ge=1, le=65536)
    max_queue_delay_ms: float | None = Field(None, ge=0, le=10_000)
    max_queue_size: int | None = Field(None, ge=1)

    def batch_policy(self, settings: Settings) -> BatchPolicy:
        delay_ms = self.max_queue_delay_ms if self.max_queue_delay_ms is not None else settings.max_queue_delay_ms
        return BatchPolicy(
            max_batch_size=self.max_batch_size or settings.max_batch_size,
            max_queue_delay_s=delay_ms / 1000.0,
            max_queue_size=self.max_queue_size or settings.max_queue_size,
        )


@dataclass
class ModelVersion:
    """One loaded, servable version of a model."""

    name: str
    version: int
    runtime: Runtime
    batcher: Batcher


def read_model_config(model_dir: Path) -> ModelConfig:
    path = model_dir / CONFIG_FILE
    if not path.exists():
        return ModelConfig()
    try:
        config = ModelConfig.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a valid model config: {exc}") from None
    if config.name not in (None, model_dir.name):
        raise ModelLoadError(f"{path}: name {config.name!r} does not match its folder {model_dir.name!r}")
    return config


def model_versions(model_dir: Path) -> list[int]:
    """Version numbers present on disk, newest first."""
    return sorted(version_dirs(model_dir), reverse=True)


def model_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ModelLoadError(
            f"model repository {root} does not exist; run `make serve` to create the default one "
            "or point GAN_MODEL_REPOSITORY / --model-repository at a folder of <model>/<version>/model.onnx"
        )
    dirs = sorted(child for child in root.iterdir() if child.is_dir() and is_model_name(child.name))
    if not dirs:
        raise ModelLoadError(f"model repository {root} holds no model folders; export one with gan-export")
    return dirs


class Repository:
    """The loaded models; lookups never touch the filesystem."""

    def __init__(self, models: dict[str, list[ModelVersion]]) -> None:
        self._models = models

    @classmethod
    def load(cls, settings: Settings, observer_for: ObserverFactory) -> Repository:
        models: dict[str, list[ModelVersion]] = {}
        for model_dir in model_dirs(settings.model_repository):
            versions = model_versions(model_dir)
            if not versions:
                log.warning("%s: no <version>/%s inside; skipped", model_dir, MODEL_FILE)
                continue
            models[model_dir.name] = [_load_version(model_dir, versions[0], settings, observer_for)]
        if not models:
            raise ModelLoadError(f"model repository {settings.model_repository} holds no loadable model")
        return cls(models)

    def has(self, name: str) -> bool:
        return name in self._models

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelVersion]:
        """Loaded versions of `name`, newest first."""
        if name not in self._models:
            known = ", ".join(self.names())
            raise ModelNotFound(f"model {name!r} is not loaded; loaded models: {known}")
        return self._models[name]

    def get(self, name: str, version: int = 0) -> ModelVersion:
        """The given version of `name`, or its newest when `version` is 0."""
        loaded = self.versions(name)
        if version == 0:
            return loaded[0]
        for candidate in loaded:
            if candidate.version == version:
                return candidate
        available = ", ".join(str(v.version) for v in loaded)
        raise ModelNotFound(f"model {name!r} has no loaded version {version}; loaded versions: {available}")

    def all_versions(self) -> list[ModelVersion]:
        return [version for name in self.names() for version in self._models[name]]

    def start(self) -> None:
        for version in self.all_versions():
            version.batcher.start()

    async def close(self) -> None:
        for version in self.all_versions():
            await version.batcher.close()


def _load_version(model_dir: Path, version: int, settings: Settings, observer_for: ObserverFactory) -> ModelVersion:
    config = read_model_config(model_dir)
    runtime = load_runtime(model_dir / str(version) / MODEL_FILE, settings)
    policy = config.batch_policy(settings)
    warm_up(runtime, policy)
    batcher = Batcher(
        name=model_dir.name,
        run_batch=lambda inputs: runtime.run(inputs[LATENT_INPUT], inputs.get(LABEL_INPUT)),
        policy=policy,
        observer=observer_for(model_dir.name),
    )
    log.info("loaded %s version %d from %s", model_dir.name, version, runtime.path)
    return ModelVersion(name=model_dir.name, version=version, runtime=runtime, batcher=batcher)


def warm_up(runtime: Runtime, policy: BatchPolicy) -> None:
    """Run the smallest and largest batch once, so the first requests do not pay for it."""
    signature = runtime.signature
    for size in sorted({1, policy.max_batch_size}):
        latent = np.zeros((size, signature.latent_dim), dtype=np.float32)
        label = np.zeros(size, dtype=np.int64) if signature.conditional else None
        try:
            runtime.run(latent, label)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise ModelLoadError(f"{runtime.path}: warm-up at batch size {size} failed: {exc}") from None
