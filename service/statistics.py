"""Per-version counters behind the V2 ModelStatistics call (Prometheus has the histograms)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)


@dataclass
class BatchStats:
    input: Duration = field(default_factory=Duration)
    infer: Duration = field(default_factory=Duration)
    output: Duration = field(default_factory=Duration)


@dataclass
class VersionStats:
    """What one model version has done since it was loaded."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0  # samples run (padding excluded)
    execution_count: int = 0  # session runs
    last_inference_ms: int = 0
    batches: dict[int, BatchStats] = field(default_factory=dict)  # by executed (padded) batch size

    def record_batch(self, samples: int, padded: int, input_s: float, infer_s: float, output_s: float) -> None:
        self.inference_count += samples
        self.execution_count += 1
        self.last_inference_ms = int(time.time() * 1000)
        self.compute_input.add(input_s)
        self.compute_infer.add(infer_s)
        self.compute_output.add(output_s)
        stats = self.batches.setdefault(padded, BatchStats())
        stats.input.add(input_s)
        stats.infer.add(infer_s)
        stats.output.add(output_s)

    def record_request(self, ok: bool, seconds: float) -> None:
        (self.success if ok else self.fail).add(seconds)
