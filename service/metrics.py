"""Prometheus collectors, registered on a registry the caller owns (tests use a fresh one).

With several workers (service/workers.py) every worker writes these into prometheus_client's
multiprocess folder and the supervisor serves their sum; gauges say how they combine
(in flight and queues: summed over live workers; server and model ready: the least ready
worker). Without workers the mode is ignored.

Units follow Prometheus conventions: seconds, samples, `_total` counters. Label values
are bounded: `model` only takes names of models in the repository, "unknown" (a name that
is not), or "" (calls refused before any model is read: the concurrency cap, the drain, tokens,
undecodable requests, and calls that name no model),
`method` the RPC names, `reason` the fixed set in REASONS, `phase` input/infer/output.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.batcher import BatchTimings
from service.statistics import VersionStats
from service.workers import METRICS_DIR_ENV

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)  # up to max_batch_size's limit
# loads: a TensorRT engine build takes minutes
_LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# gRPC status code name -> failure reason label
REASONS = {
    "INVALID_ARGUMENT": "invalid_argument",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "overloaded",
    "DEADLINE_EXCEEDED": "deadline_exceeded",
    "UNAVAILABLE": "unavailable",
    "FAILED_PRECONDITION": "failed_precondition",
    "CANCELLED": "cancelled",
    "INTERNAL": "internal",
    "UNIMPLEMENTED": "unimplemented",
    "UNAUTHENTICATED": "unauthenticated",
    "PERMISSION_DENIED": "permission_denied",
}


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "gan_requests_total",
            "gRPC requests answered, by method, model and status code.",
            ["method", "model", "code"],
            registry=registry,
        )
        self.failures = Counter(
            "gan_request_failures_total",
            "gRPC requests that failed, by method, model and reason.",
            ["method", "model", "reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "gan_requests_in_flight",
            "gRPC requests being handled now.",
            ["method"],
            multiprocess_mode="livesum",
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
        self.compute_duration = Histogram(
            "gan_compute_duration_seconds",
            "Time of one batch, by phase: input (gather, pad), infer (onnxruntime), output (split, deliver).",
            ["model", "phase"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "gan_batch_size_samples",
            "Request samples per onnxruntime session run (padding excluded).",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.padding = Counter(
            "gan_batch_padding_samples_total",
            "Samples added to reach an allowed batch size.",
            ["model"],
            registry=registry,
        )
        self.samples = Counter(
            "gan_samples_generated_total",
            "Samples returned to clients, through either API.",
            ["model"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "gan_queue_depth_samples",
            "Samples waiting in the batcher of each model version.",
            ["model", "version"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.queue_capacity = Gauge(
            "gan_queue_capacity_samples",
            "Samples the batcher of each model version may queue (max_queue_size) before refusing requests.",
            ["model", "version"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.tls_certificate_expiry = Gauge(
            "gan_tls_certificate_expiry_timestamp_seconds",
            "When the server's TLS certificate (GAN_TLS_CERT_FILE, read at start) stops being valid, Unix time.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.server_ready = Gauge(
            "gan_server_ready",
            "1 while every model the repository should serve has a ready version (strict readiness), else 0.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.model_ready = Gauge(
            "gan_model_ready",
            "1 for every model version that is loaded and serving, with the provider it runs on.",
            ["model", "version", "provider"],
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.load_duration = Histogram(
            "gan_model_load_duration_seconds",
            "Time to load and warm up one model version.",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=registry,
        )
        self.load_failures = Counter(
            "gan_model_load_failures_total",
            "Model version loads that failed (the serving version, if any, stays).",
            ["model"],
            registry=registry,
        )

        # Label children per (method, model, code): labels() validates and locks on every call,
        # which adds up at thousands of requests per second. The label sets are bounded.
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        self._sample_children: dict[str, Any] = {}

    def retire(self, model: str, version: int, provider: str) -> None:
        """A version left service: its readiness and queue gauges go to 0, and their series away.

        With workers (prometheus_client's multiprocess mode) a series cannot be removed, only
        zeroed: /metrics would otherwise keep the worker's last value for a version it dropped.
        """
        labels = (model, str(version))
        series = ((self.model_ready, (*labels, provider)), (self.queue_depth, labels), (self.queue_capacity, labels))
        multiprocess = bool(os.environ.get(METRICS_DIR_ENV))
        for gauge, values in series:
            if multiprocess:
                gauge.labels(*values).set(0)
            else:
                with contextlib.suppress(KeyError):
                    gauge.remove(*values)

    def observer(self, model: str, version: int, stats: VersionStats, queue_capacity: int) -> VersionObserver:
        """The batcher-side view of these metrics for one model version."""
        self.queue_capacity.labels(model, str(version)).set(queue_capacity)
        return VersionObserver(self, model, version, stats)

    def count_samples(self, model: str, samples: int) -> None:
        """Samples returned to clients of `model` (the labelled counter looked up once per model)."""
        child = self._sample_children.get(model)
        if child is None:
            child = self._sample_children[model] = self.samples.labels(model)
        child.inc(samples)

    def count_request(self, method: str, model: str, code: str, seconds: float) -> None:
        key = (method, model, code)
        children = self._request_children.get(key)
        if children is None:
            failure = None if code == "OK" else self.failures.labels(method, model, REASONS.get(code, "other"))
            children = (self.requests.labels(*key), self.request_duration.labels(method, model), failure)
            self._request_children[key] = children
        requests, duration, failures = children
        requests.inc()
        duration.observe(seconds)
        if failures is not None:
            failures.inc()


class VersionObserver:
    """Implements service.batcher.BatchObserver: Prometheus plus the V2 statistics."""

    def __init__(self, metrics: Metrics, model: str, version: int, stats: VersionStats) -> None:
        self._stats = stats
        self._wait = metrics.queue_wait.labels(model)
        self._phases = [metrics.compute_duration.labels(model, phase) for phase in ("input", "infer", "output")]
        self._batch = metrics.batch_size.labels(model)
        self._padding = metrics.padding.labels(model)
        self._depth: Gauge | None = metrics.queue_depth.labels(model, str(version))

    def on_batch(self, samples: int, padded: int, queue_waits: list[float], timings: BatchTimings) -> None:
        self._batch.observe(samples)
        if padded > samples:
            self._padding.inc(padded - samples)
        for histogram, seconds in zip(self._phases, (timings.input_s, timings.infer_s, timings.output_s), strict=True):
            histogram.observe(seconds)
        for wait in queue_waits:
            self._wait.observe(wait)
            self._stats.queue.add(wait)
        self._stats.record_batch(samples, padded, timings.input_s, timings.infer_s, timings.output_s)

    def on_queue_depth(self, samples: int) -> None:
        if self._depth is not None:
            self._depth.set(samples)

    def detach(self) -> None:
        """The version was retired: its queue depth is no longer the served version's (a copy
        reloaded in place shares the series)."""
        self._depth = None
