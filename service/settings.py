"""The service's settings: one frozen object, from defaults, environment (GAN_*) and flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A setting has a value the service cannot start with; the message names it."""


class Settings(BaseSettings):
    """Every knob of `gan-serve`. Environment variables are the field names, upper-cased,
    with the prefix GAN_ (GAN_MODEL_REPOSITORY, GAN_GRPC_PORT, GAN_METRICS_PORT, ...)."""

    model_config = SettingsConfigDict(env_prefix="GAN_", frozen=True, extra="forbid")

    model_repository: Path = Field(Path("models"), description="Folder of <model>/<version>/model.onnx")
    host: str = Field("0.0.0.0", description="Address the gRPC and metrics servers bind to")
    grpc_port: int = Field(8001, ge=0, le=65535, description="gRPC port; 0 picks a free one")
    metrics_port: int = Field(8002, ge=0, le=65535, description="Prometheus /metrics port; 0 picks a free one")

    provider: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto: CUDA when onnxruntime can use it, else CPU"
    )
    cuda_device_id: int = Field(0, ge=0)
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads; 0 = its default")

    max_batch_size: int = Field(64, ge=1, le=65536, description="Default samples per session run")
    max_queue_delay_ms: float = Field(2.0, ge=0, le=10_000, description="Default wait for company")
    max_queue_size: int = Field(4096, ge=1, description="Default queued samples before RESOURCE_EXHAUSTED")
    max_count: int = Field(1024, ge=1, description="Largest count one Generate may ask for")
    grace_period_s: float = Field(10.0, ge=0, description="How long SIGTERM waits for accepted work")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, with `overrides` (e.g. flags) on top.

    Overrides whose value is None are ignored, so unset flags fall back to the environment.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "settings"
        env = f"GAN_{field.upper()}"
        parts.append(f"{field} (flag --{field.replace('_', '-')} or {env}): {error['msg']}")
    return "; ".join(parts)
