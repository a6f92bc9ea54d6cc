"""Prometheus collectors, registered on a registry the caller owns (tests use a fresh one).

Units follow Prometheus conventions: seconds, samples, `_total` counters. The model label
only ever takes names of loaded models (or "unknown"), so label sets stay bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "gan_requests_total",
            "gRPC requests by method, model and status code.",
            ["method", "model", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "gan_request_duration_seconds",
            "Time from receiving a request to its reply.",
            ["method", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "gan_queue_wait_seconds",
            "Time a request waited in the batcher before its first run.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            "gan_inference_duration_seconds",
            "Time of one onnxruntime session run.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "gan_batch_size_samples",
            "Samples per onnxruntime session run.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.samples = Counter(
            "gan_samples_generated_total",
            "Samples returned to clients.",
            ["model"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "gan_queue_depth_samples",
            "Samples waiting in the batcher.",
            ["model"],
            registry=registry,
        )
        self.model_ready = Gauge(
            "gan_model_ready",
            "1 for every model version that is loaded and serving.",
            ["model", "version", "provider"],
            registry=registry,
        )

    def observer(self, model: str) -> ModelObserver:
        """The batcher-side view of these metrics for one model."""
        return ModelObserver(self, model)


class ModelObserver:
    """Implements service.batcher.BatchObserver for one model."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._wait = metrics.queue_wait.labels(model)
        self._inference = metrics.inference_duration.labels(model)
        self._batch = metrics.batch_size.labels(model)
        self._depth = metrics.queue_depth.labels(model)

    def on_batch(self, size: int, queue_waits: list[float], run_seconds: float) -> None:
        self._batch.observe(size)
        self._inference.observe(run_seconds)
        for wait in queue_waits:
            self._wait.observe(wait)

    def on_queue_depth(self, samples: int) -> None:
        self._depth.set(samples)
