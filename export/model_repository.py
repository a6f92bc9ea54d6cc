"""Writing versions into a model repository without ever exposing a half-written one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.layout import CONFIG_FILE, MODEL_FILE, MODEL_NAME_RULE, is_model_name, version_dirs
from service.model_config import ModelConfig
from training.file_modes import plain_dir_mode

# Batching keys left out here fall back to the service's settings (GAN_MAX_QUEUE_DELAY_MS, ...).
DEFAULT_MODEL_CONFIG: dict[str, Any] = {"platform": "onnxruntime_onnx", "max_batch_size": 64}


class RepositoryError(ValueError):
    """The repository, name or version cannot take this export; the message says why."""


def check_name(name: str) -> str:
    if not is_model_name(name):
        raise RepositoryError(f"--name {name!r} is not a valid model name: {MODEL_NAME_RULE}")
    return name


def next_version(model_dir: Path) -> int:
    return max(version_dirs(model_dir), default=0) + 1


@contextmanager
def staged_version(repository: Path, name: str) -> Iterator[Path]:
    """A scratch folder inside the model's folder; publish it with `publish_version`.

    It lives on the same filesystem as the final version so the publish is one rename,
    and it is removed if the block fails. `publish_version` gives it the mode mkdir would have
    (mkdtemp's is 0700), so a server running as another user can read the published version.
    """
    model_dir = repository / check_name(name)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_publishable(
    repository: Path,
    name: str,
    version: int | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    config_defaults: Mapping[str, Any] | None = None,
) -> None:
    """RepositoryError now, before any exporting, for what would make `publish_version` fail later."""
    model_dir = repository / check_name(name)
    if version is not None:
        _check_version(model_dir, version)
    model_config_content(model_dir, name, config_overrides or {}, config_defaults)


def publish_version(
    staging: Path,
    version: int | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    config_defaults: Mapping[str, Any] | None = None,
) -> tuple[int, Path]:
    """Write the model's config.json (see `write_model_config`), then rename the staged folder to its
    version number; returns (version, folder).

    config.json comes first so that a server polling the repository never sees the new version
    without its batching settings, and an invalid config never leaves a published version behind.
    """
    model_dir = staging.parent
    if not (staging / MODEL_FILE).is_file():
        raise RepositoryError(f"{staging} holds no {MODEL_FILE}; nothing to publish")
    chosen = next_version(model_dir) if version is None else version
    target = _check_version(model_dir, chosen)
    write_model_config(model_dir, model_dir.name, config_overrides or {}, config_defaults)
    staging.chmod(plain_dir_mode())  # only now: a umask without the owner's write bit would bar the exporter
    os.rename(staging, target)
    return chosen, target


def _check_version(model_dir: Path, version: int) -> Path:
    if version < 1:
        raise RepositoryError(f"--version must be a positive integer, got {version}")
    target = model_dir / str(version)
    if target.exists():
        raise RepositoryError(f"{target} already exists; versions are immutable, pick another --version")
    return target


def write_model_config(
    model_dir: Path, name: str, overrides: Mapping[str, Any], new_defaults: Mapping[str, Any] | None = None
) -> Path:
    """Create config.json (defaults, then `new_defaults`), or update only the given keys of an existing one."""
    path = model_dir / CONFIG_FILE
    _write_atomic(path, json.dumps(model_config_content(model_dir, name, overrides, new_defaults), indent=2) + "\n")
    return path


def model_config_content(
    model_dir: Path, name: str, overrides: Mapping[str, Any], new_defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What `write_model_config` would write, checked as the service checks it; RepositoryError if invalid."""
    path = model_dir / CONFIG_FILE
    if path.exists():
        config = _read_model_config(path)
    else:
        config = {"name": name, **DEFAULT_MODEL_CONFIG, **(new_defaults or {})}
    config.update({key: value for key, value in overrides.items() if value is not None})
    try:
        ModelConfig.model_validate(config)  # the same checks the service applies when it loads the model
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        raise RepositoryError(f"{path}: the model config would be invalid: {problems}") from None
    return dict(config)


def _read_model_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RepositoryError(f"{path}: cannot read the model config ({exc}); fix or remove it") from None
    if not isinstance(config, dict):
        raise RepositoryError(f"{path}: the model config must be a JSON object; fix or remove it")
    return config


def write_json(path: Path, content: dict[str, Any]) -> None:
    _write_atomic(path, json.dumps(content, indent=2) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
