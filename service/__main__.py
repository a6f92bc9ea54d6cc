"""`gan-serve`: run the service in the foreground until SIGTERM or SIGINT, then drain and exit 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from service.errors import ModelLoadError
from service.settings import Settings, SettingsError, load_settings
from service.workers import METRICS_DIR_ENV, READY_PREFIX, SUPERVISOR_PID_ENV, Supervisor, exit_with_parent

log = logging.getLogger("service")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gan-serve",
        description="Serve the ONNX generators of a model repository over gRPC. "
        "Every flag can also be set by an environment variable GAN_<FLAG> (e.g. GAN_GRPC_PORT).",
    )
    parser.add_argument("--model-repository", type=Path, help="folder of <model>/<version>/model.onnx (models)")
    parser.add_argument("--grpc-port", type=int, help="gRPC port (8001)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (8002)")
    parser.add_argument("--host", help="bind address (0.0.0.0)")
    parser.add_argument("--tls-cert-file", type=Path, help="PEM certificate chain: serve TLS (with --tls-key-file)")
    parser.add_argument("--tls-key-file", type=Path, help="PEM private key of --tls-cert-file")
    parser.add_argument("--tls-client-ca-file", type=Path, help="PEM CA: require client certificates (mutual TLS)")
    parser.add_argument("--auth-token-file", type=Path, help="bearer tokens, one per line: required on every call")
    parser.add_argument("--admin-token-file", type=Path, help="bearer tokens allowed to load and unload models")
    parser.add_argument(
        "--provider", choices=["auto", "cuda", "tensorrt", "cpu"], help="onnxruntime execution provider (auto)"
    )
    parser.add_argument(
        "--model-control-mode",
        choices=["none", "poll", "explicit"],
        help="none: load at start; poll: follow the repository; explicit: Load/Unload RPCs (none)",
    )
    parser.add_argument("--repository-poll-s", type=float, help="seconds between repository scans in poll mode (5)")
    parser.add_argument("--instances", type=int, help="default onnxruntime sessions per model version (1)")
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        help="default onnxruntime threads per session (0: a worker's cores, less one from 4 up, shared by instances)",
    )
    parser.add_argument("--max-batch-size", type=int, help="default samples per session run (64)")
    parser.add_argument("--max-queue-delay-ms", type=float, help="default wait for a fuller batch (2.0)")
    parser.add_argument("--workers", type=int, help="server processes sharing the gRPC port (1)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


async def run(settings: Settings) -> None:
    from service.server import start_server  # onnxruntime and grpc: after a worker's parent-death signal is set

    server = await start_server(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if settings.worker_index is None:
        print(f"gan-serve: ready on port {server.grpc_port} (metrics on {server.metrics_port})", flush=True)
    else:
        print(f"{READY_PREFIX} {settings.worker_index}: ready on port {server.grpc_port}", flush=True)
    await stopping.wait()
    log.info("shutting down: finishing accepted requests within %.1f s", settings.grace_period_s)
    await server.stop()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    if os.environ.get(SUPERVISOR_PID_ENV):
        exit_with_parent()  # before anything slow: a worker must not outlive its supervisor
    args = parse_args(argv)
    try:
        settings = load_settings(**{key: value for key, value in vars(args).items()})
    except SettingsError as exc:
        print(f"gan-serve: error: {exc}", file=sys.stderr)
        return 2
    worker = "" if settings.worker_index is None else f"worker {settings.worker_index} "
    logging.basicConfig(level=settings.log_level, format=f"%(asctime)s %(levelname)s {worker}%(name)s: %(message)s")
    if settings.workers > 1 and settings.worker_index is None:
        try:
            return Supervisor(settings, list(sys.argv[1:] if argv is None else argv)).run()
        except OSError as exc:
            print(f"gan-serve: error: {exc}", file=sys.stderr)
            return 1
    if settings.worker_index is None and os.environ.get(METRICS_DIR_ENV):
        print(
            f"gan-serve: error: {METRICS_DIR_ENV} is set; gan-serve sets it for its own workers (GAN_WORKERS > 1). "
            "Unset it: a single server process serves its own /metrics",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(run(settings))
    except (ModelLoadError, OSError) as exc:
        print(f"gan-serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
