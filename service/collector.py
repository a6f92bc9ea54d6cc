"""Python's cyclic garbage collector, kept off the request path.

A full (generation 2) collection walks every object the collector tracks. In this server
that is mostly what lives as long as the process: onnx, numpy, protobuf and grpc modules,
and the loaded models. Under load such a collection ran every couple of seconds and took
20-25 ms on the 2-core development machine, and every call in flight waited for it (it was
the largest single source of tail latency in bench/overload.py).

`settle()` moves everything alive at that moment out of the collector's reach (gc.freeze),
so later collections only walk what requests create. It runs after start-up and again once
a model change has settled (a version loaded or released): it first unfreezes and collects,
so the cycles of a released model are freed rather than kept forever, then freezes again.
One full collection per model change replaces one every few seconds.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def settle() -> None:
    """Collect everything collectable now, then freeze what survives (see the module docstring)."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.debug("collector settled: %d objects frozen in %.1f ms", gc.get_freeze_count(), _ms_since(started))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
