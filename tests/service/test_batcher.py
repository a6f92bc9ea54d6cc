"""The batcher on its own: plain coroutines, a fake model, no gRPC."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import numpy as np
import pytest

from service.batcher import Batcher, BatchPolicy
from service.errors import DeadlineExceeded, InferenceFailed, Overloaded, Unavailable


class FakeModel:
    """Doubles its input and records the size of every run."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.runs: list[int] = []
        self.fail_on = fail_on

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        x = inputs["x"]
        self.runs.append(len(x))
        if self.fail_on is not None and len(self.runs) == self.fail_on:
            raise RuntimeError("device lost")
        return x * 2


def batcher(model: FakeModel, max_batch: int = 8, delay: float = 0.05, queue: int = 100) -> Batcher:
    b = Batcher("fake", model, BatchPolicy(max_batch_size=max_batch, max_queue_delay_s=delay, max_queue_size=queue))
    b.start()
    return b


def rows(start: int, count: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + count, dtype=np.float32)}


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_concurrent_requests_share_one_run() -> None:
    async def scenario() -> list[np.ndarray]:
        model = FakeModel()
        b = batcher(model)
        results = await asyncio.gather(*(b.submit(rows(i, 1)) for i in range(6)))
        await b.close()
        assert model.runs == [6]
        return list(results)

    results = run(scenario())
    assert [float(r[0]) for r in results] == [0, 2, 4, 6, 8, 10]  # type: ignore[union-attr]


def test_large_request_is_split_and_reassembled_in_order() -> None:
    async def scenario() -> None:
        model = FakeModel()
        b = batcher(model, max_batch=4, delay=0)
        result = await b.submit(rows(0, 10))
        await b.close()
        assert model.runs == [4, 4, 2]
        np.testing.assert_array_equal(result, np.arange(10) * 2)

    run(scenario())


def test_full_queue_is_refused_at_once() -> None:
    async def scenario() -> None:
        b = batcher(FakeModel(), delay=1.0, queue=5)
        first = asyncio.ensure_future(b.submit(rows(0, 4)))
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(Overloaded, match="max_queue_size"):
            await b.submit(rows(0, 2))
        assert time.monotonic() - started < 0.1
        await b.close()
        await first

    run(scenario())


def test_expired_request_is_dropped_before_it_runs() -> None:
    async def scenario() -> None:
        model = FakeModel()
        b = batcher(model, delay=0.1)
        with pytest.raises(DeadlineExceeded, match="deadline"):
            await b.submit(rows(0, 3), deadline=time.monotonic() + 0.01)
        await b.close()
        assert model.runs == []

    run(scenario())


def test_failed_run_fails_only_its_batch() -> None:
    async def scenario() -> None:
        model = FakeModel(fail_on=1)
        b = batcher(model, delay=0)
        with pytest.raises(InferenceFailed, match="device lost"):
            await b.submit(rows(0, 2))
        np.testing.assert_array_equal(await b.submit(rows(5, 1)), [10])
        await b.close()

    run(scenario())


def test_close_finishes_queued_work_and_refuses_new() -> None:
    async def scenario() -> None:
        model = FakeModel()
        b = batcher(model, delay=0.2)
        queued = asyncio.ensure_future(b.submit(rows(0, 3)))
        await asyncio.sleep(0)
        await b.close()
        np.testing.assert_array_equal(await queued, [0, 2, 4])
        with pytest.raises(Unavailable):
            await b.submit(rows(0, 1))

    run(scenario())


def test_cancelled_request_leaves_the_queue() -> None:
    async def scenario() -> None:
        model = FakeModel()
        b = batcher(model, delay=0.1)
        cancelled = asyncio.ensure_future(b.submit(rows(0, 5)))
        await asyncio.sleep(0)
        cancelled.cancel()
        kept = await b.submit(rows(7, 1))
        await b.close()
        np.testing.assert_array_equal(kept, [14])
        assert model.runs == [1]

    run(scenario())
