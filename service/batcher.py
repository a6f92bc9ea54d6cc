"""The dynamic batcher: merges queued requests into session runs, by samples.

A request of n samples is queued whole; a free instance takes samples from the head of
the queues (high priority first) until its batch holds `max_batch_size` samples, so many
small requests share a run and a large one is split across runs and reassembled in order.
A batch smaller than an allowed batch size is padded up to the nearest one, so only the
shapes warmed at load ever run. Only requests whose inputs share their non-batch shapes
can share a run (images of one size, for a model with dynamic height and width): the first
request in line decides the shape of a run, and requests of other shapes keep their place
in the queue for a later run.

How long to wait for company adapts to the traffic: a model that has been idle for longer
than `max_queue_delay_s` runs a lone request at once (no added latency for a single
client); right after a run of k samples it waits up to `max_queue_delay_s`, counted from
the oldest queued request, for about k samples to gather again (the clients it just
answered coming back), so closed-loop traffic settles into full batches.

Runs execute in worker threads so the event loop keeps serving gRPC, except runs that
have been measured to take less than `inline_run_s` at their batch size and input shapes:
handing those to a thread and back costs about as much as the run itself, so they run on the
loop. A lone request on an idle model (it came while the worker waited for work, and nothing
else is queued or running) also runs on the loop when its run has been measured under
`inline_alone_run_s`: with nothing to overlap, the hand-off would only add its latency (about
0.15 ms on 2 CPU cores). A request already waiting when a run ends is not alone, even if no
other is queued: more calls may be waiting unread in gRPC, and a run on the loop would keep
them unread (under overload with a tiny queue, back-to-back runs on the loop took two thirds
of its time and calls expired before they were read).

There is no gRPC here: callers await `submit` and get arrays back or a ServiceError.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import numpy as np

from service.clock import Clock, MonotonicClock
from service.errors import (
    DeadlineExceeded,
    InferenceFailed,
    InvalidInput,
    OutOfMemory,
    Overloaded,
    ServiceError,
    Unavailable,
)

log = logging.getLogger(__name__)

Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
RunBatch = Callable[[Inputs], Outputs]


class Priority(IntEnum):
    """Two levels, as in the V2 `priority` parameter: 1 runs before 2."""

    HIGH = 1
    NORMAL = 2


@dataclass(frozen=True)
class BatchTimings:
    """Where one session run spent its time, in seconds."""

    input_s: float  # gathering and padding the inputs
    infer_s: float  # the onnxruntime run
    output_s: float  # slicing the outputs back to their requests


class BatchObserver(Protocol):
    """Receives one call per session run (for metrics and statistics)."""

    def on_batch(self, samples: int, padded: int, queue_waits: list[float], timings: BatchTimings) -> None: ...

    def on_queue_depth(self, samples: int) -> None: ...


class BatcherClosed(Unavailable):
    """The batcher was closed (shutdown or a retired model version) before the request was queued."""


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_queue_delay_s: float
    max_queue_size: int
    allowed_batch_sizes: tuple[int, ...] = ()  # sorted; empty: any size up to max_batch_size
    merge: bool = True  # False for models without a batch axis: every request runs alone, as sent
    inline_run_s: float = 0.0  # runs measured faster than this run on the event loop; 0: always in a thread
    inline_alone_run_s: float = 0.0  # a lone request on an idle model, measured faster than this: on the loop

    def padded_size(self, samples: int) -> int:
        """The allowed batch size a batch of `samples` runs at."""
        for size in self.allowed_batch_sizes:
            if size >= samples:
                return size
        return samples

    def warm_up_sizes(self) -> tuple[int, ...]:
        """The batch sizes to run once at load so none runs cold later."""
        if self.allowed_batch_sizes:
            return self.allowed_batch_sizes
        return tuple(sorted({1, self.max_batch_size}))


ShapeKey = tuple[tuple[str, tuple[int, ...]], ...]  # (input name, shape without the batch axis), sorted


def shape_key(inputs: Inputs) -> ShapeKey:
    """What requests must share to be stacked into one run: every input's non-batch shape."""
    key = [(name, array.shape[1:]) for name, array in inputs.items()]
    key.sort()
    return tuple(key)


@dataclass(eq=False)
class _Pending:
    inputs: Inputs
    count: int
    future: asyncio.Future[Outputs]
    enqueued_at: float
    deadline: float | None
    priority: Priority
    key: ShapeKey
    scheduled: int = 0  # samples already cut into batches
    parts: dict[int, Outputs] | None = None  # offset -> output rows, for a request split across runs
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
    """The queues of one model version, served by one worker per instance.

    `runners` holds one callable per instance (an onnxruntime session each); they run in
    worker threads, so the event loop keeps serving gRPC while a batch computes. Instances
    spill over: the first takes every batch it can, instance k only while instances 0..k-1
    are all running one. Under light load every run goes to the first instance, whose
    weights stay in the CPU's caches; under load the others fill the gaps between its runs.
    """

    def __init__(
        self,
        name: str,
        runners: Sequence[RunBatch],
        policy: BatchPolicy,
        observer: BatchObserver | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not runners:
            raise ValueError("a batcher needs at least one runner")
        self.name = name
        self.policy = policy
        self._runners = list(runners)
        self._observer = observer
        self._clock = clock or MonotonicClock()
        self._queues: dict[Priority, deque[_Pending]] = {level: deque() for level in Priority}
        self._queued_samples = 0
        self._wakeup = asyncio.Event()
        self._wake_at = 1  # queued samples that wake a waiting worker: 1, or the company it waits for
        self._closing = False
        self._workers: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(max_workers=len(self._runners), thread_name_prefix=f"run-{name}")
        self._last_batch = 0
        self._last_finished_at = float("-inf")
        self._run_seconds: dict[tuple[int, ShapeKey], float] = {}  # (padded size, shapes) -> average run time
        self._sample_seconds: float | None = None  # the cheapest of those runs per sample: the wait estimate
        self._busy = [False] * len(self._runners)  # per instance: running a batch, on the loop or in a thread

    @property
    def queued_samples(self) -> int:
        return self._queued_samples

    def start(self) -> None:
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [
                loop.create_task(self._work(index, runner), name=f"batcher-{self.name}-{index}")
                for index, runner in enumerate(self._runners)
            ]

    async def submit(
        self, inputs: Inputs, deadline: float | None = None, priority: Priority = Priority.NORMAL
    ) -> Outputs:
        """Queue `inputs` (arrays sharing a leading batch axis) and await the outputs in order."""
        if self._closing:
            raise BatcherClosed(f"model {self.name} is shutting down; retry on another replica")
        count = _batch_length(inputs) if self.policy.merge else 1
        self.check_room(count)
        if deadline is not None:
            self._check_deadline(count, deadline, priority)
        loop = asyncio.get_running_loop()
        key = shape_key(inputs)  # what may share a run, and what a run time is remembered for
        pending = _Pending(inputs, count, loop.create_future(), self._clock.now(), deadline, priority, key)
        self._queues[priority].append(pending)
        self._queued_samples += count
        self._report_depth()
        if self._queued_samples >= self._wake_at:
            self._wakeup.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._forget(pending)  # a cancelled call leaves the queue at once
            raise

    def check_room(self, count: int) -> None:
        """Raise InvalidInput when `count` samples could never fit the queue, Overloaded when they
        would overfill it now."""
        if count > self.policy.max_queue_size:
            raise InvalidInput(
                f"count: {count} samples is more than model {self.name}'s queue holds ({self.policy.max_queue_size}, "
                "its max_queue_size); send at most that many per request, or raise max_queue_size in its config.json"
            )
        if self._queued_samples + count > self.policy.max_queue_size:
            raise Overloaded(
                f"model {self.name} has {self._queued_samples} samples queued and a limit of "
                f"{self.policy.max_queue_size} (max_queue_size); retry later with backoff"
            )

    def _check_deadline(self, count: int, deadline: float, priority: Priority) -> None:
        """Raise Overloaded when the samples queued ahead, and these, would take longer to run than
        the time left before `deadline`, even at the cheapest per-sample cost seen so far: such a
        request would only wait in the queue to expire, holding a place others could use. With
        nothing ahead (or no time left), DeadlineExceeded: a retry with the same deadline cannot help."""
        if self._sample_seconds is None:
            return  # nothing has run yet: no estimate
        ahead = self._queued_samples
        if priority is Priority.HIGH:
            ahead = sum(pending.waiting for pending in self._queues[Priority.HIGH])
        needed = (ahead + count) * self._sample_seconds / len(self._runners)
        left = deadline - self._clock.now()
        if needed > left and (ahead == 0 or left <= 0):  # no retry could help: the deadline is too short
            raise DeadlineExceeded(
                f"deadline: {max(left, 0.0) * 1000:.1f} ms away, and these {count} samples need at least "
                f"{needed * 1000:.1f} ms to run; give the call a longer deadline or ask for fewer samples"
            )
        if needed > left:
            raise Overloaded(
                f"model {self.name}: the {ahead} samples queued ahead and these {count} need at least "
                f"{needed * 1000:.0f} ms to run, and the call's deadline is {max(left, 0.0) * 1000:.0f} ms away; "
                "retry with backoff, with a longer deadline, or on another replica"
            )

    async def close(self) -> None:
        """Stop accepting, finish everything already queued, then stop the workers."""
        self._closing = True
        self._wakeup.set()
        if self._workers:
            await asyncio.gather(*self._workers)
        self._executor.shutdown(wait=True)

    def _forget(self, pending: _Pending) -> None:
        queue = self._queues[pending.priority]
        if pending in queue:
            queue.remove(pending)
            self._queued_samples -= pending.waiting
            self._report_depth()

    def _has_work(self) -> bool:
        return any(self._queues.values())

    def _oldest(self) -> _Pending:
        return min((queue[0] for queue in self._queues.values() if queue), key=lambda p: p.enqueued_at)

    async def _work(self, index: int, runner: RunBatch) -> None:
        while True:
            waited = await self._wait_for_work(index)
            if not self._has_work() and self._closing:
                self._wakeup.set()  # let the other workers see the end too
                return
            await self._wait_for_company()
            batch = self._cut_batch()
            if not batch:
                continue
            self._busy[index] = True
            self._wake_at = 1  # no one waits for company now: any arrival may go to a free instance
            if self._has_work():
                self._wakeup.set()  # the next instance may take what is left
            try:
                inline = await self._run(runner, batch, waited)
            finally:
                self._busy[index] = False
            if inline:
                await _let_arrivals_queue()  # an inline run held the loop: let requests that came meanwhile in

    async def _wait_for_work(self, index: int) -> bool:
        """Return once this worker may take work; True when it had to wait for it (it was idle)."""
        waited = False
        while not (self._has_work() and all(self._busy[:index])) and not self._closing:
            self._wakeup.clear()
            self._wake_at = 1
            waited = True
            await self._wakeup.wait()
        return waited

    def _company_target(self, now: float) -> int:
        """Samples worth waiting for: what the last run served, unless the model went idle."""
        if now - self._last_finished_at > self.policy.max_queue_delay_s:
            return 1
        return min(self.policy.max_batch_size, self._last_batch)

    async def _wait_for_company(self) -> None:
        if not self.policy.merge:
            return
        while self._has_work() and not self._closing:
            now = self._clock.now()
            if self._queued_samples >= self._company_target(now):
                return
            remaining = self._oldest().enqueued_at + self.policy.max_queue_delay_s - now
            if remaining <= 0:
                return
            self._wakeup.clear()
            self._wake_at = self._company_target(now)
            if not await self._clock.wait(self._wakeup, remaining):
                return

    def _cut_batch(self) -> list[_Slice]:
        """Take up to max_batch_size samples of one input shape, high priority first, dropping dead requests."""
        batch: list[_Slice] = []
        room = self.policy.max_batch_size if self.policy.merge else 1
        now = self._clock.now()
        key: ShapeKey | None = None  # the first live request in line decides the run's shapes
        for queue in self._queues.values():
            passed: list[_Pending] = []  # other shapes: they keep their place for a later run
            while queue and room > 0:
                pending = queue[0]
                if self._drop_if_dead(queue, pending, now):
                    continue
                if key is not None and pending.key != key:
                    passed.append(queue.popleft())
                    continue
                key = pending.key
                take = min(room, pending.waiting)
                batch.append(_Slice(pending, pending.scheduled, pending.scheduled + take))
                pending.scheduled += take
                self._queued_samples -= take
                room -= take
                if pending.waiting == 0:
                    queue.popleft()
            queue.extendleft(reversed(passed))
        self._report_depth()
        return batch

    def _drop_if_dead(self, queue: deque[_Pending], pending: _Pending, now: float) -> bool:
        """Remove a cancelled or expired request from the head of `queue`."""
        expired = pending.deadline is not None and now >= pending.deadline
        if not (pending.future.done() or expired):
            return False
        queue.popleft()
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

    async def _run(self, runner: RunBatch, batch: list[_Slice], arrived_idle: bool) -> bool:
        """Run one batch and deliver its rows; True when it ran on the event loop. `arrived_idle`:
        the worker was waiting for work when this batch's request came."""
        started = self._clock.now()
        waits = [started - piece.pending.enqueued_at for piece in batch if piece.start == 0]
        samples = sum(piece.stop - piece.start for piece in batch)
        padded = self.policy.padded_size(samples) if self.policy.merge else samples
        others_running = self._busy.count(True) > 1  # this worker's own instance is marked busy
        alone = arrived_idle and len(batch) == 1 and self._queued_samples == 0 and not others_running
        inline = self._runs_inline(padded, batch[0].pending.key, alone)
        try:
            result = await self._execute(runner, batch, samples, padded, inline)
        except Exception as exc:  # noqa: BLE001 - whatever the runner raises, only this batch fails
            log.error("model %s: a batch of %d samples failed: %s", self.name, samples, exc)
            await self._isolate_failure(runner, batch, exc, started)
            return inline
        finally:
            self._last_finished_at = self._clock.now()
            self._last_batch = samples
        self._deliver_run(batch, samples, padded, waits, result)
        return inline

    def _deliver_run(
        self, batch: list[_Slice], samples: int, padded: int, waits: list[float], result: tuple[Outputs, float, float]
    ) -> None:
        """Hand every request its rows, and report the run to the observer."""
        outputs, input_s, infer_s = result
        delivered_at = time.perf_counter()
        _deliver(batch, outputs)
        timings = BatchTimings(input_s, infer_s, time.perf_counter() - delivered_at)
        if self._observer is not None:
            self._observer.on_batch(samples, padded, waits, timings)

    async def _isolate_failure(self, runner: RunBatch, batch: list[_Slice], exc: Exception, started: float) -> None:
        """A failed run of several requests: run each alone, so one bad request fails only itself.
        Each run that succeeds is reported like any run (its samples reach a client)."""
        if len({id(piece.pending) for piece in batch}) == 1:
            _fail(batch, _inference_failed(self.name, exc, sum(piece.stop - piece.start for piece in batch)))
            return
        for piece in batch:
            if piece.pending.future.done():
                continue
            size = piece.stop - piece.start
            padded = self.policy.padded_size(size)
            alone = [piece]
            try:
                result = await self._execute(runner, alone, size, padded, False)
            except Exception as alone_exc:  # noqa: BLE001 - this request is the bad one
                _fail(alone, _inference_failed(self.name, alone_exc, size))
            else:
                waits = [started - piece.pending.enqueued_at] if piece.start == 0 else []
                self._deliver_run(alone, size, padded, waits, result)

    async def _execute(
        self, runner: RunBatch, batch: list[_Slice], samples: int, padded: int, inline: bool
    ) -> tuple[Outputs, float, float]:
        """Run one batch on the loop (`inline`, when it is known to be quick) or in a worker thread."""
        if inline:
            result = _execute(runner, batch, samples, padded, self.policy.merge)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self._executor, _execute, runner, batch, samples, padded, self.policy.merge
            )
        self._remember_run((padded, batch[0].pending.key), result[1] + result[2])
        return result

    def _runs_inline(self, padded: int, key: ShapeKey, alone: bool) -> bool:
        """On the loop: runs known to be quick, and a lone request's run known to be short enough."""
        expected = self._run_seconds.get((padded, key))  # unmeasured (a new size or shape): in a thread
        if expected is None:
            return False
        return expected < self.policy.inline_run_s or (alone and expected < self.policy.inline_alone_run_s)

    def _remember_run(self, run: tuple[int, ShapeKey], seconds: float) -> None:
        previous = self._run_seconds.get(run)
        self._run_seconds[run] = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        self._sample_seconds = min(average / padded for (padded, _), average in self._run_seconds.items())

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.on_queue_depth(self._queued_samples)


async def _let_arrivals_queue(turns: int = 4) -> None:
    """Give the event loop a few turns: enough for gRPC to read waiting calls and submit them."""
    for _ in range(turns):
        await asyncio.sleep(0)


def _batch_length(inputs: Inputs) -> int:
    lengths = {len(array) if array.ndim else 0 for array in inputs.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise InvalidInput(f"inputs must share one non-zero batch length, got {sorted(lengths)}")
    return lengths.pop()


def _execute(
    runner: RunBatch, batch: list[_Slice], samples: int, padded: int, merge: bool
) -> tuple[Outputs, float, float]:
    """In a worker thread: gather (and pad) the inputs, run the session, trim the padding."""
    started = time.perf_counter()
    inputs = _gather(batch, samples, padded) if merge else dict(batch[0].pending.inputs)
    gathered = time.perf_counter()
    outputs = runner(inputs)
    finished = time.perf_counter()
    if padded != samples:
        outputs = {name: array[:samples] for name, array in outputs.items()}
    return outputs, gathered - started, finished - gathered


def _gather(batch: list[_Slice], samples: int, padded: int) -> dict[str, np.ndarray]:
    names = batch[0].pending.inputs.keys()
    if len(batch) == 1 and padded == samples:
        piece = batch[0]
        return {name: piece.pending.inputs[name][piece.start : piece.stop] for name in names}
    gathered = {}
    for name in names:
        parts = [piece.pending.inputs[name][piece.start : piece.stop] for piece in batch]
        if padded > samples:  # repeat the last row: valid input, and its outputs are dropped
            parts.append(np.repeat(parts[-1][-1:], padded - samples, axis=0))
        gathered[name] = np.concatenate(parts)
    return gathered


def _deliver(batch: list[_Slice], outputs: Outputs) -> None:
    offset = 0
    for piece in batch:
        pending = piece.pending
        size = piece.stop - piece.start
        whole = piece.start == 0 and piece.stop == pending.count
        rows = outputs if len(batch) == 1 else {name: array[offset : offset + size] for name, array in outputs.items()}
        offset += size
        if pending.future.done():
            continue
        if whole:
            pending.future.set_result(rows)
            continue
        if pending.parts is None:
            pending.parts = {}
        pending.parts[piece.start] = rows
        pending.done += size
        if pending.done == pending.count:
            ordered = [pending.parts[k] for k in sorted(pending.parts)]
            pending.future.set_result({name: np.concatenate([part[name] for part in ordered]) for name in outputs})


# what onnxruntime (its CPU and CUDA arenas, the latter also at its gpu_mem_limit), CUDA libraries and numpy say
# when memory runs out
_OUT_OF_MEMORY_SIGNS = (
    "Failed to allocate memory",
    "out of memory",
    "STATUS_ALLOC_FAILED",
    "is smaller than requested bytes",
)


def _inference_failed(name: str, exc: Exception, samples: int) -> ServiceError:
    """The error the requests of a failed run get: RESOURCE_EXHAUSTED if memory ran out, else INTERNAL."""
    if isinstance(exc, MemoryError) or any(sign in str(exc) for sign in _OUT_OF_MEMORY_SIGNS):
        size = re.search(r"(?:buffer of size|requested bytes of) (\d+)", str(exc))
        needed = f" (it asked for {int(size[1]):,} bytes more)" if size else ""
        return OutOfMemory(
            f"model {name}: a run of {samples} samples ran out of memory{needed}: "
            "send fewer samples or smaller inputs per request, or retry when the server is less busy"
        )
    return InferenceFailed(f"model {name}: inference failed: {type(exc).__name__}: {exc}")


def _fail(batch: list[_Slice], error: Exception) -> None:
    for piece in batch:
        if not piece.pending.future.done():
            piece.pending.future.set_exception(error)
