"""Shared fixtures: a tiny trained-and-exported model repository, and a real server on free ports."""

from __future__ import annotations

import asyncio
import gc
import os
import stat
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TINY = ["steps=2", "batch_size=8", "sample_every=1000", "checkpoint_every=1000", "model.width=8", "model.latent_dim=8"]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block under this (process-wide) umask, then put the previous one back."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(*paths: Path) -> dict[str, int]:
    """The permission bits of each path, by name: {"model.onnx": 0o644, ...}."""
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in paths}


def train_tiny(out_dir: Path, *extra: str) -> Path:
    """Train a tiny generator for two steps; returns its checkpoint."""
    from training.config import load_config
    from training.train import train

    config = load_config(None, [*TINY, f"out_dir={out_dir}", *extra])
    return train(config, progress=False).checkpoint


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A conditional and an unconditional tiny checkpoint."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "conditional": train_tiny(root / "conditional"),
        "unconditional": train_tiny(root / "unconditional", "data.conditional=false"),
    }


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path]) -> Path:
    """models/digits (conditional, max_batch_size 64) and models/noise (unconditional)."""
    from export.cli import export_checkpoint

    repository = tmp_path_factory.mktemp("models")
    export_checkpoint(checkpoints["conditional"], repository, "digits", model_config={"max_queue_delay_ms": 5.0})
    export_checkpoint(checkpoints["unconditional"], repository, "noise")
    return repository


class ServerThread:
    """The real service on its own event loop in a background thread, on free ports."""

    def __init__(self, **settings: Any) -> None:
        from service.settings import load_settings

        # drain_refuse_s 0: tests stop servers at once unless they test the drain itself.
        defaults = {"host": "127.0.0.1", "grpc_port": 0, "metrics_port": 0, "drain_refuse_s": 0.0}
        self.settings = load_settings(**{**defaults, **settings})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: Any = None

    def __enter__(self) -> ServerThread:
        from service.server import start_server

        self.thread.start()
        self.server = self._call(start_server(self.settings))
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self.server.stop(grace=5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        gc.unfreeze()  # the server froze the whole test process's objects (service/collector.py)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.server.metrics_port}/metrics"

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=60)


def scrape(server: ServerThread) -> dict[str, float]:
    """Every sample of /metrics as {'name{labels}': value}."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


@pytest.fixture(scope="module")
def server(model_repository: Path) -> Iterator[ServerThread]:
    with ServerThread(model_repository=model_repository, max_count=256) as running:
        yield running
