"""The dynamic batcher: merges queued requests into session runs, by samples.

A request of n samples is queued whole; the worker takes samples from the head of the
queue until a batch holds `max_batch_size` samples, so many small requests share a run
and a large one is split across runs and reassembled in order. Before a batch is cut it
waits up to `max_queue_delay_s` (counted from the oldest queued request) for company.

There is no gRPC here: callers await `submit` and get arrays back or a ServiceError.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.errors import DeadlineExceeded, InferenceFailed, InvalidInput, Overloaded, Unavailable

Inputs = Mapping[str, np.ndarray]
RunBatch = Callable[[Inputs], np.ndarray]


class BatchObserver(Protocol):
    """Receives one call per session run (for metrics)."""

    def on_batch(self, size: int, queue_waits: list[float], run_seconds: float) -> None: ...

    def on_queue_depth(self, samples: int) -> None: ...


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_queue_delay_s: float
    max_queue_size: int


@dataclass(eq=False)
class _Pending:
    inputs: Inputs
    count: int
    future: asyncio.Future[np.ndarray]
    enqueued_at: float
    deadline: float | None
    scheduled: int = 0  # samples already cut into batches
    parts: dict[int, np.ndarray] = field(default_factory=dict)  # offset -> output rows
    done: int = 0

    @property
    def waiting(self) -> int:
        return self.count - self.scheduled


@dataclass(frozen=True)
class _Slice:
    pending: _Pending
    start: int
    stop: int


class Batcher:
    """One queue and one worker per model version; `run_batch` runs in a worker thread."""

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        policy: BatchPolicy,
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self._policy = policy
        self._observer = observer
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._queued_samples = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"run-{name}")

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"batcher-{self.name}")

    async def submit(self, inputs: Inputs, deadline: float | None = None) -> np.ndarray:
        """Queue `inputs` (arrays sharing a leading batch axis) and await the outputs in order."""
        if self._closing:
            raise Unavailable(f"model {self.name} is shutting down; retry on another replica")
        count = _batch_length(inputs)
        if self._queued_samples + count > self._policy.max_queue_size:
            raise Overloaded(
                f"model {self.name} has {self._queued_samples} samples queued and a limit of "
                f"{self._policy.max_queue_size} (max_queue_size); retry later with backoff"
            )
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, count, loop.create_future(), self._clock(), deadline)
        self._queue.append(pending)
        self._queued_samples += count
        self._report_depth()
        self._wakeup.set()
        return await pending.future  # cancelling the caller cancels the future: the worker skips it

    async def close(self) -> None:
        """Stop accepting, finish everything already queued, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=True)

    async def _work(self) -> None:
        while True:
            await self._wait_for_work()
            if not self._queue and self._closing:
                return
            await self._wait_for_company()
            batch = self._cut_batch()
            if batch:
                await self._run(batch)

    async def _wait_for_work(self) -> None:
        while not self._queue and not self._closing:
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _wait_for_company(self) -> None:
        """Give concurrent requests `max_queue_delay_s` (from the oldest) to join the batch."""
        while self._queue and self._queued_samples < self._policy.max_batch_size and not self._closing:
            remaining = self._queue[0].enqueued_at + self._policy.max_queue_delay_s - self._clock()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _cut_batch(self) -> list[_Slice]:
        """Take up to max_batch_size samples from the head of the queue, dropping dead requests."""
        batch: list[_Slice] = []
        room = self._policy.max_batch_size
        now = self._clock()
        while self._queue and room > 0:
            pending = self._queue[0]
            if self._drop_if_dead(pending, now):
                continue
            take = min(room, pending.waiting)
            batch.append(_Slice(pending, pending.scheduled, pending.scheduled + take))
            pending.scheduled += take
            self._queued_samples -= take
            room -= take
            if pending.waiting == 0:
                self._queue.popleft()
        self._report_depth()
        return batch

    def _drop_if_dead(self, pending: _Pending, now: float) -> bool:
        """Remove a cancelled, failed or expired request from the head of the queue."""
        expired = pending.deadline is not None and now >= pending.deadline
        if not (pending.future.done() or expired):
            return False
        self._queue.popleft()
        self._queued_samples -= pending.waiting
        if not pending.future.done():
            waited = now - pending.enqueued_at
            pending.future.set_exception(
                DeadlineExceeded(
                    f"model {self.name}: the request's deadline passed after {waited * 1000:.1f} ms "
                    "in the queue; raise the deadline or send fewer samples"
                )
            )
        return True

    async def _run(self, batch: list[_Slice]) -> None:
        inputs = _concatenate(batch)
        started = self._clock()
        waits = [started - piece.pending.enqueued_at for piece in batch if piece.start == 0]
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._run_batch, inputs)
        except (RuntimeError, ValueError, MemoryError) as exc:  # onnxruntime's errors: fail this batch only
            _fail(batch, InferenceFailed(f"model {self.name}: inference failed: {exc}"))
            return
        if self._observer is not None:
            self._observer.on_batch(len(outputs), waits, self._clock() - started)
        _deliver(batch, outputs)

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.on_queue_depth(self._queued_samples)


def _batch_length(inputs: Inputs) -> int:
    lengths = {len(array) for array in inputs.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise InvalidInput(f"inputs must share one non-zero batch length, got {sorted(lengths)}")
    return lengths.pop()


def _concatenate(batch: list[_Slice]) -> dict[str, np.ndarray]:
    names = batch[0].pending.inputs.keys()
    return {
        name: np.concatenate([piece.pending.inputs[name][piece.start : piece.stop] for piece in batch])
        for name in names
    }


def _deliver(batch: list[_Slice], outputs: np.ndarray) -> None:
    offset = 0
    for piece in batch:
        size = piece.stop - piece.start
        pending = piece.pending
        rows = outputs[offset : offset + size]
        offset += size
        if pending.future.done():
            continue
        if piece.start == 0 and size == pending.count:
            pending.future.set_result(rows)
            continue
        pending.parts[piece.start] = rows
        pending.done += size
        if pending.done == pending.count:
            pending.future.set_result(np.concatenate([pending.parts[k] for k in sorted(pending.parts)]))


def _fail(batch: list[_Slice], error: Exception) -> None:
    for piece in batch:
        if not piece.pending.future.done():
            piece.pending.future.set_exception(error)
