"""The garbage collector is kept off the request path without pinning released models."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from service import collector
from tests.conftest import ServerThread
from tests.service.test_repository_live import POLL, add_version, fresh_repository, ready, v2_stub, wait_for


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> _Node:
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    return first


def test_settle_freezes_what_lives_and_frees_what_was_released_since() -> None:
    kept = _cycle()
    try:
        collector.settle()
        assert gc.get_freeze_count() > 0
        frozen_ref = weakref.ref(kept)
        del kept
        gc.collect()
        assert frozen_ref() is not None  # a frozen cycle survives ordinary collections...
        collector.settle()
        assert frozen_ref() is None  # ...until the next settle, which unfreezes before collecting
    finally:
        gc.unfreeze()


def test_the_server_freezes_start_up_objects_and_releases_retired_versions(
    model_repository: Path, tmp_path: Path
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    gc.unfreeze()
    with ServerThread(model_repository=root, **POLL) as server:
        assert gc.get_freeze_count() > 0
        stub = v2_stub(server)
        first = weakref.ref(server.server.repository.get("digits", 1))
        add_version(root / "digits" / "1" / "model.onnx", root / "digits", 2)
        wait_for(lambda: ready(stub, "digits", "2"), "version 2 to be ready")
        wait_for(lambda: not ready(stub, "digits", "1"), "version 1 to be retired (policy: latest 1)")
        wait_for(lambda: first() is None, "the retired version 1 to be freed")
