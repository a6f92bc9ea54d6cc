"""The service's settings: one frozen object, from defaults, environment (GAN_*) and flags."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# On the CPU the hand-off of a run to a worker thread costs about as much as a run of a
# small model, and the loop would wait for the cores the run uses anyway; on a GPU the loop
# would sit idle while the device computes, so runs always go to a thread there.
CPU_INLINE_RUN_MS = 1.0


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

    tls_cert_file: Path | None = Field(None, description="PEM server certificate chain; with tls_key_file: serve TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)"
    )

    auth_token_file: Path | None = Field(
        None, description="Tokens (one per line): every call but health needs 'authorization: Bearer <token>'"
    )
    admin_token_file: Path | None = Field(
        None, description="Tokens (one per line) allowed to load and unload models through the V2 API"
    )

    provider: Literal["auto", "cuda", "tensorrt", "cpu"] = Field(
        "auto", description="auto: CUDA when onnxruntime can use it, else CPU; tensorrt: TensorRT, then CUDA"
    )
    cuda_device_id: int = Field(0, ge=0, description="GPU the CUDA and TensorRT providers run on")
    cuda_arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = Field(
        "kNextPowerOfTwo", description="How the CUDA memory arena grows"
    )
    cuda_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "HEURISTIC", description="cuDNN convolution algorithm search; EXHAUSTIVE is slow to warm up"
    )
    cuda_mem_limit_gib: float = Field(0.0, ge=0, description="CUDA arena limit in GiB; 0 = no limit")
    cuda_io_binding: bool = Field(True, description="Run CUDA sessions through I/O binding (outputs on the device)")
    tensorrt_fp16: bool = Field(False, description="Let TensorRT build FP16 engines")
    tensorrt_cache_dir: Path | None = Field(None, description="Where TensorRT caches built engines")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="onnxruntime graph optimisation level"
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="Default onnxruntime intra-op threads; 0 = the cores shared by workers, less one for "
        "each event loop from 4 cores a worker, shared by instances",
    )
    instances: int = Field(1, ge=1, le=64, description="Default onnxruntime sessions per model version")
    intra_op_spinning: bool = Field(
        False, description="Let onnxruntime's idle threads spin (lower latency alone, steals CPU from gRPC when busy)"
    )

    model_control_mode: Literal["none", "poll", "explicit"] = Field(
        "none",
        description="none: load at start; poll: follow the repository on disk; explicit: Load/Unload RPCs",
    )
    repository_poll_s: float = Field(5.0, gt=0, description="Seconds between repository scans in poll mode")
    exit_on_error: bool = Field(True, description="Refuse to start when a model in the repository fails to load")

    max_batch_size: int = Field(64, ge=1, le=65536, description="Default samples per session run")
    max_queue_delay_ms: float = Field(2.0, ge=0, le=10_000, description="Default wait for company")
    inline_run_ms: float | None = Field(
        None,
        ge=0,
        le=1000,
        description="Session runs measured faster than this run on the event loop (0: never); "
        f"unset: {CPU_INLINE_RUN_MS:g} ms on the CPU provider, never on a GPU",
    )
    inline_alone_run_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="A lone request on an idle model runs on the event loop when measured faster than this (0: never)",
    )
    max_queue_size: int = Field(4096, ge=1, description="Default queued samples before RESOURCE_EXHAUSTED")
    max_concurrent_calls: int = Field(
        1024, ge=1, le=1_000_000, description="Calls handled at once; more get RESOURCE_EXHAUSTED at once"
    )
    max_request_mib: int = Field(16, ge=1, le=2047, description="Largest request message; larger: RESOURCE_EXHAUSTED")
    max_reply_mib: int = Field(64, ge=1, le=2047, description="Largest reply message (raise it for huge counts)")
    max_count: int = Field(1024, ge=1, description="Largest count one Generate may ask for")
    translate_max_images: int = Field(16, ge=1, le=4096, description="Most images one Translate request may carry")
    translate_max_image_bytes: int = Field(
        8 * 1024 * 1024, ge=1, description="Largest encoded (PNG, JPEG) or raw image one Translate request may carry"
    )
    translate_max_pixels: int = Field(
        2048 * 2048,
        ge=1,
        description="Most pixels (H x W) of one Translate input image, and of a request's output images together "
        "(V2 too); checked before decoding. A run's memory grows with them: 2048x2048 of super-resolution "
        "output took about 5 GB on the CPU",
    )
    grace_period_s: float = Field(10.0, ge=0, description="How long SIGTERM waits for accepted work")
    drain_refuse_s: float = Field(
        1.0, ge=0, le=600, description="On SIGTERM, answer new calls UNAVAILABLE for at least this long, then close"
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes sharing the gRPC port (SO_REUSEPORT): each takes its own client connections",
    )
    worker_index: int | None = Field(
        None, ge=0, description="Set by gan-serve for each of its workers (not by hand): share the port, no /metrics"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _tls_files_agree(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: give both to serve TLS, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file: mutual TLS needs tls_cert_file and tls_key_file too")
        if self.workers > 1 and not sys.platform.startswith("linux"):
            raise ValueError("workers (GAN_WORKERS): several workers need Linux (SO_REUSEPORT, parent-death signal)")
        if self.workers > 1 and self.model_control_mode == "explicit":
            raise ValueError(
                "model_control_mode explicit needs workers 1 (GAN_MODEL_CONTROL_MODE, GAN_WORKERS): a load or unload "
                "request would reach one worker only; with several workers use poll"
            )
        return self


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, with `overrides` (e.g. flags) on top.

    Overrides whose value is None are ignored, so unset flags fall back to the environment.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, set(given))) from None


def _describe(exc: ValidationError, flags: set[str]) -> str:
    """Each error, naming where its value came from: the flag given, else the environment variable."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        if not field:  # a rule across fields: its message names them
            parts.append(error["msg"].removeprefix("Value error, "))
            continue
        source = f"flag --{field.replace('_', '-')}" if field in flags else f"GAN_{field.upper()}"
        parts.append(f"{field} ({source}): {error['msg']}")
    return "; ".join(parts)
