"""The batcher on its own: plain coroutines, a fake model and a fake clock, no gRPC."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping

import numpy as np
import pytest

from service.batcher import Batcher, BatchPolicy, BatchTimings, Outputs, Priority, _inference_failed
from service.errors import DeadlineExceeded, InferenceFailed, InvalidInput, OutOfMemory, Overloaded, Unavailable

DELAY = 0.05


class FakeClock:
    """Time stands still until the test advances it."""

    def __init__(self) -> None:
        self.time = 100.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.time

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        alarm: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.time + timeout, alarm))
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.wait({waiter, alarm}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        return event.is_set()

    def advance(self, seconds: float) -> None:
        self.time += seconds
        for when, alarm in self._sleepers:
            if when <= self.time and not alarm.done():
                alarm.set_result(None)
        self._sleepers = [(w, a) for w, a in self._sleepers if not a.done()]


class FakeModel:
    """Doubles `x`, returns `x` as `y` too, and records every run; `gate` holds runs until opened."""

    def __init__(self, fail_on: int | None = None, gated: bool = False) -> None:
        self.runs: list[list[float]] = []
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        if not gated:
            self.gate.set()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Outputs:
        x = inputs["x"]
        self.runs.append(x.tolist())
        self.entered.release()
        self.gate.wait(timeout=10)
        if self.fail_on is not None and len(self.runs) == self.fail_on:
            raise RuntimeError("device lost")
        return {"double": x * 2, "same": x.copy()}

    @property
    def sizes(self) -> list[int]:
        return [len(run) for run in self.runs]


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []

    def on_batch(self, samples: int, padded: int, queue_waits: list[float], timings: BatchTimings) -> None:
        self.batches.append((samples, padded))

    def on_queue_depth(self, samples: int) -> None:
        pass


def rows(start: int, count: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + count, dtype=np.float32)}


async def settle() -> None:
    """Let queued coroutines and worker threads make progress (the fake clock does not move)."""
    for _ in range(5):
        await asyncio.sleep(0.01)


Scenario = Callable[[Batcher, FakeModel, FakeClock], Awaitable[None]]


def scenario(
    body: Scenario,
    model: FakeModel | None = None,
    instances: int = 1,
    observer: Recorder | None = None,
    **policy: object,
) -> None:
    """Run `body` against a started batcher, then close it."""
    settings: dict[str, object] = {"max_batch_size": 8, "max_queue_delay_s": DELAY, "max_queue_size": 100}
    settings.update(policy)

    async def main() -> None:
        fake = model or FakeModel()
        clock = FakeClock()
        batcher = Batcher("fake", [fake] * instances, BatchPolicy(**settings), observer, clock)  # type: ignore[arg-type]
        batcher.start()
        try:
            await body(batcher, fake, clock)
        finally:
            fake.gate.set()
            await batcher.close()

    asyncio.run(main())


def test_an_idle_model_runs_a_lone_request_at_once() -> None:
    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        result = await asyncio.wait_for(batcher.submit(rows(3, 1)), timeout=5)  # the clock never moves
        np.testing.assert_array_equal(result["double"], [6])

    scenario(body)


def test_concurrent_requests_share_one_run_and_get_their_own_rows() -> None:
    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        results = await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(6)))
        assert model.sizes == [6]
        assert [float(r["double"][0]) for r in results] == [0, 2, 4, 6, 8, 10]
        assert [float(r["same"][0]) for r in results] == [0, 1, 2, 3, 4, 5]

    scenario(body)


def test_after_a_busy_run_it_waits_for_company_until_the_delay() -> None:
    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(4)))  # a run of 4: expect 4 back
        lone = asyncio.ensure_future(batcher.submit(rows(10, 1)))
        await settle()
        assert model.sizes == [4], "it should wait for the other clients to come back"
        clock.advance(DELAY)
        await asyncio.wait_for(lone, timeout=5)
        assert model.sizes == [4, 1]

    scenario(body)


def test_waiting_ends_as_soon_as_the_expected_company_arrives() -> None:
    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(3)))
        first = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await settle()
        others = [asyncio.ensure_future(batcher.submit(rows(i, 1))) for i in (1, 2)]
        await asyncio.wait_for(asyncio.gather(first, *others), timeout=5)  # no clock advance needed
        assert model.sizes == [3, 3]

    scenario(body)


def test_a_large_request_is_split_and_reassembled_in_order() -> None:
    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        result = await batcher.submit(rows(0, 10))
        assert model.sizes == [4, 4, 2]
        np.testing.assert_array_equal(result["double"], np.arange(10) * 2)
        np.testing.assert_array_equal(result["same"], np.arange(10))

    scenario(body, max_batch_size=4, max_queue_delay_s=0.0)


def test_batches_are_padded_to_the_nearest_allowed_size_and_trimmed() -> None:
    recorder = Recorder()

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        results = await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(3)))
        assert model.sizes == [4], "3 samples run at the allowed size 4"
        assert [len(r["double"]) for r in results] == [1, 1, 1]
        five = await batcher.submit(rows(0, 5))
        assert model.sizes == [4, 8]
        assert len(five["double"]) == 5
        four = asyncio.ensure_future(batcher.submit(rows(0, 4)))
        await settle()
        clock.advance(DELAY)  # after a run of 5 it waits for 5; 4 run when the delay is up
        await four
        assert model.sizes == [4, 8, 4], "a batch of an allowed size runs as it is"

    scenario(body, observer=recorder, allowed_batch_sizes=(1, 2, 4, 8))
    assert recorder.batches == [(3, 4), (5, 8), (4, 4)]


def test_high_priority_requests_run_first() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        blocker = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await asyncio.to_thread(model.entered.acquire)  # the only instance is busy now
        normal = asyncio.ensure_future(batcher.submit(rows(1, 1), priority=Priority.NORMAL))
        high = asyncio.ensure_future(batcher.submit(rows(2, 1), priority=Priority.HIGH))
        await settle()
        model.gate.set()
        await asyncio.gather(blocker, normal, high)
        assert model.runs == [[0], [2], [1]]

    scenario(body, model=model, max_batch_size=1)


def test_a_full_queue_is_refused_at_once() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        running = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await asyncio.to_thread(model.entered.acquire)
        queued = asyncio.ensure_future(batcher.submit(rows(0, 4)))
        await settle()
        with pytest.raises(Overloaded, match="max_queue_size"):
            await batcher.submit(rows(0, 2))
        filling = asyncio.ensure_future(batcher.submit(rows(0, 1)))  # 5 of 5: the queue holds max_queue_size
        model.gate.set()
        await asyncio.gather(running, queued, filling)

    scenario(body, model=model, max_queue_size=5)


def test_a_request_of_exactly_max_queue_size_samples_is_served() -> None:
    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        result = await batcher.submit(rows(0, 5))
        np.testing.assert_array_equal(result["double"], np.arange(5) * 2)

    scenario(body, max_queue_size=5)


def test_a_request_larger_than_the_queue_is_invalid_not_overloaded() -> None:
    """Retrying it would never help: the answer says so (INVALID_ARGUMENT), not "retry later"."""

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        with pytest.raises(InvalidInput, match=r"count: 6 samples is more than .* queue holds \(5"):
            await batcher.submit(rows(0, 6))
        assert model.runs == []

    scenario(body, max_queue_size=5)


def test_a_request_whose_deadline_passes_in_the_queue_never_runs() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        running = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await asyncio.to_thread(model.entered.acquire)
        doomed = asyncio.ensure_future(batcher.submit(rows(5, 3), deadline=clock.now() + 0.01))
        await settle()
        clock.advance(0.02)
        model.gate.set()
        with pytest.raises(DeadlineExceeded, match="deadline passed"):
            await doomed
        await running
        assert model.runs == [[0]]

    scenario(body, model=model)


def test_a_cancelled_request_leaves_the_queue_at_once() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        running = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await asyncio.to_thread(model.entered.acquire)
        cancelled = asyncio.ensure_future(batcher.submit(rows(0, 5)))
        await settle()
        assert batcher.queued_samples == 5
        cancelled.cancel()
        await settle()
        assert batcher.queued_samples == 0
        kept = asyncio.ensure_future(batcher.submit(rows(7, 5)))  # would not fit if the cancelled one stayed
        model.gate.set()
        np.testing.assert_array_equal((await kept)["double"], np.arange(7, 12) * 2)
        await running
        assert model.runs == [[0], [7, 8, 9, 10, 11]]

    scenario(body, model=model, max_queue_size=6)


def test_a_failed_run_fails_only_its_batch() -> None:
    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        with pytest.raises(InferenceFailed, match="device lost"):
            await batcher.submit(rows(0, 2))
        np.testing.assert_array_equal((await batcher.submit(rows(5, 1)))["double"], [10])

    scenario(body, model=FakeModel(fail_on=1), max_queue_delay_s=0.0)


def test_instances_run_batches_side_by_side() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        first = asyncio.ensure_future(batcher.submit(rows(0, 2)))
        await asyncio.to_thread(model.entered.acquire)
        second = asyncio.ensure_future(batcher.submit(rows(2, 2)))
        assert await asyncio.to_thread(model.entered.acquire, True, 5), "the second instance did not start"
        model.gate.set()
        await asyncio.gather(first, second)
        assert model.sizes == [2, 2]

    scenario(body, model=model, instances=2)


def test_the_first_instance_takes_every_run_it_can_and_the_second_only_while_it_is_busy() -> None:
    async def main() -> None:
        first, second = FakeModel(gated=True), FakeModel()
        batcher = Batcher("fake", [first, second], BatchPolicy(8, 0.0, 100), clock=FakeClock())
        batcher.start()
        first.gate.set()
        for start in range(0, 6, 2):  # one after another: the first instance is always free
            await batcher.submit(rows(start, 2))
        assert (first.sizes, second.sizes) == ([2, 2, 2], [])
        for _ in range(3):
            first.entered.acquire()  # released by those three runs
        first.gate.clear()
        held = asyncio.ensure_future(batcher.submit(rows(6, 1)))
        await asyncio.to_thread(first.entered.acquire)  # the first instance is running it now
        assert (await batcher.submit(rows(7, 3)))["double"].tolist() == [14, 16, 18]
        assert second.sizes == [3], "the second instance should take the run the busy first one cannot"
        first.gate.set()
        await held
        await batcher.close()

    asyncio.run(main())


def test_without_merging_each_request_runs_alone_as_sent() -> None:
    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        results = await asyncio.gather(batcher.submit(rows(0, 3)), batcher.submit(rows(3, 2)))
        assert sorted(model.sizes) == [2, 3]
        np.testing.assert_array_equal(results[1]["double"], [6, 8])

    scenario(body, merge=False)


def test_close_finishes_queued_work_and_refuses_new() -> None:
    async def main() -> None:
        model = FakeModel()
        clock = FakeClock()
        batcher = Batcher("fake", [model], BatchPolicy(8, DELAY, 100), clock=clock)
        batcher.start()
        await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(4)))  # makes the next one wait
        queued = asyncio.ensure_future(batcher.submit(rows(0, 3)))
        await settle()
        await asyncio.wait_for(batcher.close(), timeout=5)  # no clock advance: close flushes the queue
        np.testing.assert_array_equal((await queued)["double"], [0, 2, 4])
        with pytest.raises(Unavailable):
            await batcher.submit(rows(0, 1))

    asyncio.run(main())


class ThreadRecorder:
    """Notes the thread of every run; runs of `slow_size` samples take 0.2 s, `fail_value` raises."""

    def __init__(self, slow_size: int, fail_value: float) -> None:
        self.threads: list[str] = []
        self.slow_size = slow_size
        self.fail_value = fail_value

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Outputs:
        x = inputs["x"]
        self.threads.append(threading.current_thread().name)
        if len(x) == self.slow_size:
            time.sleep(0.2)
        if self.fail_value in x:
            raise RuntimeError("bad row")
        return {"double": x * 2, "same": x.copy()}


def test_runs_known_to_be_quick_run_on_the_loop_and_slow_ones_in_a_thread() -> None:
    async def main() -> None:
        model = ThreadRecorder(slow_size=2, fail_value=99.0)
        policy = BatchPolicy(8, 0.0, 100, inline_run_s=0.1)
        batcher = Batcher("fake", [model], policy, clock=FakeClock())
        batcher.start()
        loop_thread = threading.current_thread().name
        try:
            for start in range(3):  # 1 sample: quick once measured
                np.testing.assert_array_equal((await batcher.submit(rows(start, 1)))["double"], [2 * start])
            for _ in range(2):  # 2 samples: slow, so never on the loop
                await batcher.submit(rows(0, 2))
            with pytest.raises(InferenceFailed, match="bad row"):  # a quick run that fails, on the loop
                await batcher.submit(rows(99, 1))
            np.testing.assert_array_equal((await batcher.submit(rows(4, 1)))["double"], [8])
        finally:
            await batcher.close()
        on_loop = [name == loop_thread for name in model.threads]
        assert on_loop == [False, True, True, False, False, True, True]

    asyncio.run(main())


def test_a_lone_request_on_an_idle_model_runs_on_the_loop_once_its_run_is_known_to_be_short() -> None:
    async def main() -> None:
        model = ThreadRecorder(slow_size=-1, fail_value=99.0)
        policy = BatchPolicy(1, 0.0, 100, inline_alone_run_s=0.1)
        batcher = Batcher("fake", [model], policy, clock=FakeClock())
        batcher.start()
        loop_thread = threading.current_thread().name
        try:
            await batcher.submit(rows(0, 1))  # not measured yet: a thread
            await batcher.submit(rows(1, 1))  # alone and known to be short: the loop
            together = await asyncio.gather(batcher.submit(rows(2, 1)), batcher.submit(rows(3, 1)))
            assert [float(r["double"][0]) for r in together] == [4.0, 6.0]
            await batcher.submit(images(1.0, 1, 4))  # a new input shape is not measured yet: a thread
            await batcher.submit(images(1.0, 1, 4))
        finally:
            await batcher.close()
        on_loop = [name == loop_thread for name in model.threads]
        # of the two together, the first runs in a thread (another request waits) and so does the
        # second: it was already waiting when the first run ended, so the model was never idle
        assert on_loop == [False, True, False, False, False, True]

    asyncio.run(main())


def test_a_request_that_came_during_a_run_is_not_alone_even_with_nothing_else_queued() -> None:
    """Under overload with a tiny queue, calls read during a run are either queued or refused,
    so the queue never shows more than one; running each on the loop would keep the rest unread."""

    async def main() -> None:
        model = ThreadRecorder(slow_size=2, fail_value=99.0)  # 2-sample runs take 0.2 s, in a thread
        batcher = Batcher("fake", [model], BatchPolicy(2, 0.0, 100, inline_alone_run_s=0.1), clock=FakeClock())
        batcher.start()
        loop_thread = threading.current_thread().name
        try:
            await batcher.submit(rows(0, 1))  # measured: a thread
            slow = asyncio.create_task(batcher.submit(rows(1, 2)))
            await asyncio.sleep(0.05)  # the slow run has started
            during = await batcher.submit(rows(3, 1))  # came while it ran: a thread, though alone in the queue
            await slow
            assert float(during["double"][0]) == 6.0
            await batcher.submit(rows(4, 1))  # came to an idle model: the loop
        finally:
            await batcher.close()
        assert [name == loop_thread for name in model.threads] == [False, False, False, True]

    asyncio.run(main())


def test_a_lone_request_whose_run_is_known_to_be_long_still_runs_in_a_thread() -> None:
    async def main() -> None:
        model = ThreadRecorder(slow_size=2, fail_value=99.0)  # 2-sample runs take 0.2 s
        batcher = Batcher("fake", [model], BatchPolicy(2, 0.0, 100, inline_alone_run_s=0.1), clock=FakeClock())
        batcher.start()
        loop_thread = threading.current_thread().name
        try:
            for _ in range(3):
                await batcher.submit(rows(0, 2))
        finally:
            await batcher.close()
        assert all(name != loop_thread for name in model.threads) and len(model.threads) == 3

    asyncio.run(main())


def test_a_bad_request_fails_alone_not_the_requests_batched_with_it() -> None:
    async def main() -> None:
        model = ThreadRecorder(slow_size=-1, fail_value=99.0)
        batcher = Batcher("fake", [model], BatchPolicy(8, 0.0, 100), clock=FakeClock())
        batcher.start()
        try:
            results = await asyncio.gather(
                *(batcher.submit(rows(start, 1)) for start in (1, 99, 2)), return_exceptions=True
            )
        finally:
            await batcher.close()
        assert len(model.threads) == 4  # the batch of 3, then each request alone
        ok = [r for r in results if not isinstance(r, BaseException)]
        failed = [r for r in results if isinstance(r, BaseException)]
        assert [float(r["double"][0]) for r in ok] == [2.0, 4.0]
        assert len(failed) == 1 and isinstance(failed[0], InferenceFailed) and "bad row" in str(failed[0])

    asyncio.run(main())


def test_the_runs_that_isolate_a_bad_request_are_reported_like_any_run() -> None:
    # The metrics' numbers must add up: samples in runs = samples answered, one queue wait per request.
    class WaitRecorder(Recorder):
        waits = 0

        def on_batch(self, samples: int, padded: int, queue_waits: list[float], timings: BatchTimings) -> None:
            super().on_batch(samples, padded, queue_waits, timings)
            self.waits += len(queue_waits)

    async def main() -> None:
        recorder = WaitRecorder()
        policy = BatchPolicy(8, 0.0, 100, allowed_batch_sizes=(4, 8))
        batcher = Batcher("fake", [ThreadRecorder(slow_size=-1, fail_value=99.0)], policy, recorder, FakeClock())
        batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(rows(start, 1)) for start in (1, 99, 2)), return_exceptions=True)
        finally:
            await batcher.close()
        assert recorder.batches == [(1, 4), (1, 4)]  # the failed run of 3 and the bad request's run: none
        assert recorder.waits == 2

    asyncio.run(main())


def images(value: float, count: int, side: int) -> dict[str, np.ndarray]:
    """`count` rows of (side, side) pixels, all `value`: requests of one side can share a run."""
    return {"x": np.full((count, side, side), value, dtype=np.float32)}


async def after_the_delay(clock: FakeClock, *calls: Awaitable[Outputs]) -> list[Outputs]:
    """Await `calls`, moving the clock past the wait for company a request left in line may get."""
    together = asyncio.gather(*calls)
    for _ in range(4):
        await settle()
        clock.advance(DELAY)
    return await together


def run_shapes(model: FakeModel) -> list[tuple[int, ...]]:
    return [np.asarray(run).shape for run in model.runs]


def test_only_requests_of_one_shape_share_a_run_and_others_keep_their_place() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        running = asyncio.ensure_future(batcher.submit(images(0, 1, 2)))
        await asyncio.to_thread(model.entered.acquire)
        small = [asyncio.ensure_future(batcher.submit(images(1, 1, 2))) for _ in range(2)]
        large = asyncio.ensure_future(batcher.submit(images(2, 2, 3)))
        small.append(asyncio.ensure_future(batcher.submit(images(3, 1, 2))))
        await settle()
        model.gate.set()
        results = await after_the_delay(clock, running, *small, large)
        assert run_shapes(model) == [(1, 2, 2), (3, 2, 2), (2, 3, 3)]
        assert [float(r["double"][0, 0, 0]) for r in results] == [0, 2, 2, 6, 4]
        assert results[-1]["double"].shape == (2, 3, 3)
        assert batcher.queued_samples == 0

    scenario(body, model=model)


def test_a_high_priority_request_decides_the_shape_of_the_next_run() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        running = asyncio.ensure_future(batcher.submit(images(0, 1, 2)))
        await asyncio.to_thread(model.entered.acquire)
        normal = asyncio.ensure_future(batcher.submit(images(1, 1, 2), priority=Priority.NORMAL))
        high = asyncio.ensure_future(batcher.submit(images(2, 1, 3), priority=Priority.HIGH))
        later = asyncio.ensure_future(batcher.submit(images(3, 1, 3), priority=Priority.NORMAL))
        await settle()
        model.gate.set()
        await after_the_delay(clock, running, normal, high, later)
        # the high one leads and takes the normal request of its own shape along; the other waits
        assert run_shapes(model) == [(1, 2, 2), (2, 3, 3), (1, 2, 2)]
        assert [row[0][0] for row in model.runs[1]] == [2, 3]

    scenario(body, model=model)


def test_a_passed_over_request_whose_deadline_expires_is_dropped_not_run() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        running = asyncio.ensure_future(batcher.submit(images(0, 1, 2)))
        await asyncio.to_thread(model.entered.acquire)
        head = asyncio.ensure_future(batcher.submit(images(1, 1, 2)))
        doomed = asyncio.ensure_future(batcher.submit(images(2, 1, 3), deadline=clock.now() + 0.01))
        await settle()
        clock.advance(0.02)
        model.gate.set()
        with pytest.raises(DeadlineExceeded, match="deadline passed"):
            await doomed
        await after_the_delay(clock, running, head)
        assert run_shapes(model) == [(1, 2, 2), (1, 2, 2)]
        assert batcher.queued_samples == 0

    scenario(body, model=model)


def test_a_large_request_split_across_runs_still_lets_other_shapes_wait_their_turn() -> None:
    model = FakeModel(gated=True)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        running = asyncio.ensure_future(batcher.submit(images(0, 1, 2)))
        await asyncio.to_thread(model.entered.acquire)
        big = asyncio.ensure_future(batcher.submit(images(1, 5, 2)))
        other = asyncio.ensure_future(batcher.submit(images(2, 1, 3)))
        await settle()
        model.gate.set()
        results = await after_the_delay(clock, running, big, other)
        assert run_shapes(model) == [(1, 2, 2), (4, 2, 2), (1, 2, 2), (1, 3, 3)]
        assert results[1]["double"].shape == (5, 2, 2)

    scenario(body, model=model, max_batch_size=4)


def test_a_request_that_cannot_run_before_its_deadline_is_refused_at_once() -> None:
    class SlowModel(FakeModel):
        """Takes 20 ms a sample, in real time (what the batcher measures), once opened."""

        def __call__(self, inputs: Mapping[str, np.ndarray]) -> Outputs:
            time.sleep(0.02 * len(inputs["x"]))
            return super().__call__(inputs)

    async def body(batcher: Batcher, model: FakeModel, clock: FakeClock) -> None:
        model.gate.set()
        await batcher.submit(rows(0, 1))  # measured: at least 20 ms a sample
        with pytest.raises(DeadlineExceeded, match=r"deadline: 5.0 ms away, and these 1 samples need at least"):
            await batcher.submit(rows(1, 1), deadline=clock.now() + 0.005)  # alone: retrying cannot help
        model.gate.clear()
        held = asyncio.ensure_future(batcher.submit(rows(2, 1)))
        await asyncio.to_thread(model.entered.acquire)
        await asyncio.to_thread(model.entered.acquire)  # the second run holds the only instance
        queued = [asyncio.ensure_future(batcher.submit(rows(3 + i, 1))) for i in range(10)]
        await settle()
        with pytest.raises(Overloaded, match="the 10 samples queued ahead and these 1"):
            await batcher.submit(rows(20, 1), deadline=clock.now() + 0.1)
        urgent = asyncio.ensure_future(batcher.submit(rows(21, 1), deadline=clock.now() + 0.1, priority=Priority.HIGH))
        patient = asyncio.ensure_future(batcher.submit(rows(22, 1), deadline=clock.now() + 10))
        await settle()
        assert not urgent.done() and not patient.done(), "both fit their deadlines: they wait their turn"
        model.gate.set()
        await asyncio.gather(held, *queued, urgent, patient)

    scenario(body, model=SlowModel(gated=True), max_queue_delay_s=0.0)


def test_a_free_instance_takes_a_new_request_while_the_first_runs_the_batch_it_waited_for() -> None:
    async def main() -> None:
        first, second = FakeModel(), FakeModel()
        clock = FakeClock()
        batcher = Batcher("fake", [first, second], BatchPolicy(8, DELAY, 100), clock=clock)
        batcher.start()
        await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(4)))  # the last run served 4
        first.entered.acquire()  # released by that run
        first.gate.clear()
        waiting = [asyncio.ensure_future(batcher.submit(rows(10 + i, 1))) for i in range(4)]
        await asyncio.to_thread(first.entered.acquire)  # the first instance waited for 4 and runs them
        assert first.sizes == [4, 4]
        late = asyncio.ensure_future(batcher.submit(rows(20, 1)))
        await settle()
        clock.advance(DELAY)  # the second instance waits as long as any for company, then runs it alone
        assert (await asyncio.wait_for(late, 5))["double"].tolist() == [40]
        assert second.sizes == [1] and first.sizes == [4, 4]
        first.gate.set()
        await asyncio.gather(*waiting)
        await batcher.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("message", "asked"),
    [
        # the CPU arena, and the CUDA arena at its gpu_mem_limit (as onnxruntime-gpu 1.31 said on an H100)
        ("Failed to allocate memory for requested buffer of size 17592186044416", "17,592,186,044,416"),
        ("bfc_arena.cc:360 Available memory of 1072693248 is smaller than requested bytes of 68719476992", "68,719,"),
        ("CUDA failure 2: out of memory ; GPU=0", ""),
    ],
)
def test_a_run_out_of_memory_is_overloaded_with_what_it_asked_for(message: str, asked: str) -> None:
    error = _inference_failed("hog", RuntimeError(message), samples=4)
    assert isinstance(error, OutOfMemory) and "a run of 4 samples ran out of memory" in str(error)
    assert asked in str(error) and ("asked for" in str(error)) == bool(asked)


def test_any_other_run_failure_is_an_inference_failure_with_its_cause() -> None:
    error = _inference_failed("doubler", RuntimeError("Non-zero status code returned while running Mul node"), 1)
    assert isinstance(error, InferenceFailed) and "Mul node" in str(error)
