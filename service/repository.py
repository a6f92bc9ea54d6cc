"""The live model repository: <root>/<model>/config.json and <root>/<model>/<version>/model.onnx.

This is the layout Triton users know. Each model's version policy (config.json) picks the
versions to serve among those on disk. How the served set follows the disk depends on
the control mode: `none` loads at start only, `poll` rescans every few seconds, and
`explicit` changes only on RepositoryModelLoad / RepositoryModelUnload.

A (re)load never interrupts service: the new version is loaded and warmed in a worker
thread, then swapped in; a version it replaces or drops is retired afterwards, its queue
drained and its running batches finished. Requests that run several rounds on one version
(rejection sampling of rows, a row stream, a decode between lookup and run) hold it
(`holding`), and it closes only when the last of them is done. A load that fails (a bad
file or config.json, or a version policy that selects nothing on disk) leaves whatever was
serving in place and is reported (RepositoryIndex, ModelReady, gan_model_load_failures_total).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service import collector
from service.batcher import Batcher, BatcherClosed, BatchPolicy, Inputs, Outputs, Priority
from service.errors import InvalidInput, ModelLoadError, ModelNotFound, ModelUnavailable
from service.layout import CONFIG_FILE, MODEL_FILE, MODEL_NAME_RULE, is_model_name, version_dirs
from service.metrics import Metrics, VersionObserver
from service.model_config import ModelConfig, read_model_config
from service.runtime import CPU, ONNXRUNTIME_ERRORS, Runtime, load_runtime
from service.settings import Settings
from service.statistics import VersionStats
from service.tensors import TensorSpec
from service.translator_signature import SOURCE_INPUT

log = logging.getLogger(__name__)

READY = "READY"
LOADING = "LOADING"
UNAVAILABLE = "UNAVAILABLE"
UNLOADING = "UNLOADING"
Fingerprint = tuple[int, ...]


@dataclass(eq=False)
class ModelVersion:
    """One loaded, servable version of a model."""

    name: str
    version: int
    runtime: Runtime
    batcher: Batcher
    config: ModelConfig
    stats: VersionStats
    fingerprint: Fingerprint
    observer: VersionObserver
    holders: int = 0  # requests running several rounds on this version (Repository.holding)
    retired: bool = False  # no longer served; its batcher closes once no request holds it


@dataclass(frozen=True)
class VersionState:
    """A row of RepositoryIndex: a version's state and, when not ready, why."""

    name: str
    version: int  # 0 for a problem with the model as a whole (e.g. its config.json)
    state: str
    reason: str = ""


def model_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ModelLoadError(
            f"model repository {root} does not exist; run `make serve` to create the default one "
            "or point GAN_MODEL_REPOSITORY / --model-repository at a folder of <model>/<version>/model.onnx"
        )
    return sorted(child for child in root.iterdir() if child.is_dir() and is_model_name(child.name))


def _fingerprint(model_dir: Path, version: int) -> Fingerprint:
    """Changes when the version's model file or the model's config.json changes."""
    return _file_fingerprint(model_dir / str(version) / MODEL_FILE) + _file_fingerprint(model_dir / CONFIG_FILE)


def _file_fingerprint(path: Path) -> Fingerprint:
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


def _selects_nothing(name: str, config: ModelConfig, on_disk: list[int]) -> VersionState:
    policy = config.version_policy.describe()
    versions = ", ".join(map(str, on_disk))
    reason = f"{name}/{CONFIG_FILE}: version_policy {policy} selects none of the versions on disk ({versions})"
    return VersionState(name, 0, UNAVAILABLE, reason)


def warm_up(runtime: Runtime, policy: BatchPolicy) -> None:
    """Run every allowed batch size once on every instance, so no request pays for a cold shape."""
    sizes = policy.warm_up_sizes() if policy.merge else (1,)
    for size in sizes:
        feeds = {spec.name: np.zeros(_warm_up_shape(spec, size, runtime), dtype=spec.dtype) for spec in runtime.inputs}
        for session in runtime.sessions:
            try:
                session.run(feeds)
            except ONNXRUNTIME_ERRORS as exc:
                raise ModelLoadError(f"{runtime.path}: warm-up at batch size {size} failed: {exc}") from None


def _warm_up_shape(spec: TensorSpec, batch: int, runtime: Runtime) -> tuple[int, ...]:
    """The batch axis at `batch`; a translator's dynamic height and width at its train_size, other dynamic axes 1."""
    shape = spec.shape
    if not shape:
        return ()
    head = batch if shape[0] == -1 else shape[0]
    rest = [dim if dim >= 0 else 1 for dim in shape[1:]]
    translator = runtime.translator
    if translator is not None and spec.name == SOURCE_INPUT:
        rest = [translator.input_channels, *translator.train_size]
    return (head, *rest)


class Repository:
    """The served models; lookups never touch the filesystem."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._root = settings.model_repository
        self._metrics = metrics
        self._models: dict[str, list[ModelVersion]] = {}  # serving versions, newest first
        self._states: dict[str, dict[int, VersionState]] = {}
        self._failed: dict[tuple[str, int], Fingerprint] = {}  # versions whose load failed, as they were
        self._held_retired: set[ModelVersion] = set()  # retired, but a request still holds them
        self._wanted: set[str] = set()  # models that must be ready for the server to be ready
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._started = False
        self._loaded_since_settled = False  # a version was loaded since the collector last settled
        self.on_change: Callable[[], None] | None = None  # called after the served set may have changed

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every model on disk; in poll mode, then follow the disk."""
        dirs = model_dirs(self._root)
        if not dirs:
            raise ModelLoadError(f"model repository {self._root} holds no model folders; export one with gan-export")
        for model_dir in dirs:
            await self.load_model(model_dir.name)
        problems = [s for s in self.index() if s.state != READY]
        if problems and self._settings.exit_on_error:
            await self.close()
            raise ModelLoadError("; ".join(s.reason for s in problems))
        if not self._models:
            await self.close()
            raise ModelLoadError(f"model repository {self._root} holds no loadable model")
        self._started = True
        self._loaded_since_settled = False  # start_server settles the collector once everything is up
        if self._settings.model_control_mode == "poll":
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="repository-poll")

    async def close(self) -> None:
        """Stop polling, stop accepting, and finish everything queued on every version."""
        if self._poller is not None:
            self._poller.cancel()
        versions = self.all_versions() + list(self._held_retired)  # a held one would close only when released
        self._models = {}
        await asyncio.gather(*(version.batcher.close() for version in versions), *self._retiring)
        while self._retiring:  # closes started meanwhile (a holder released during the gather)
            await asyncio.gather(*list(self._retiring))

    # --- control ---------------------------------------------------------------------------

    async def load_model(self, name: str) -> None:
        """Bring `name` in line with the disk: load new or changed versions, retire dropped ones."""
        check_model_name(name)
        async with self._lock:
            await self._sync(name, retry_failed=True)
        self._changed()

    async def unload_model(self, name: str) -> None:
        check_model_name(name)
        async with self._lock:
            self._wanted.discard(name)  # not loaded: nothing to do (as in Triton, so retried unloads succeed)
            self._retire(name, self._models.pop(name, []))
            self._states.pop(name, None)
        self._changed()

    async def rescan(self) -> None:
        """One poll: every model on disk is synced, models gone from disk are unloaded."""
        on_disk = {d.name for d in model_dirs(self._root)}
        for name in sorted(on_disk | set(self._models) | set(self._states)):
            async with self._lock:
                await self._sync(name)
        self._changed()

    def _changed(self) -> None:
        if self._loaded_since_settled and self._started:
            self._settle_collector()
        if self.on_change is not None:
            self.on_change()

    def _settle_collector(self, *_: object) -> None:
        """After a model change, and once retired versions are released (service/collector.py)."""
        self._loaded_since_settled = False
        collector.settle()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._settings.repository_poll_s)
            try:
                await self.rescan()
            except ModelLoadError as exc:
                log.warning("repository poll: %s", exc)
            except Exception:
                log.exception("repository poll failed")

    # --- lookups ---------------------------------------------------------------------------

    def ready(self) -> bool:
        """Strict readiness: started, and every model that should be served has a ready version."""
        return self._started and all(name in self._models for name in self._wanted)

    def has(self, name: str) -> bool:
        return name in self._models or name in self._states

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelVersion]:
        """Serving versions of `name`, newest first."""
        if name not in self._models:
            self._raise_missing(name)
        return self._models[name]

    def get(self, name: str, version: int = 0) -> ModelVersion:
        """The given version of `name`, or its newest when `version` is 0."""
        loaded = self.versions(name)
        if version == 0:
            return loaded[0]
        for candidate in loaded:
            if candidate.version == version:
                return candidate
        state = self._states.get(name, {}).get(version)
        if state is not None and state.reason:
            raise ModelUnavailable(f"model {name!r} version {version} is {state.state}: {state.reason}")
        available = ", ".join(str(v.version) for v in loaded)
        raise ModelNotFound(f"model {name!r} has no loaded version {version}; loaded versions: {available}")

    async def submit(
        self, model: ModelVersion, inputs: Inputs, deadline: float | None, priority: Priority, pinned: bool
    ) -> tuple[ModelVersion, Outputs]:
        """Run `inputs` on `model`; if it was retired meanwhile and no version was pinned, on its successor."""
        try:
            return model, await model.batcher.submit(inputs, deadline, priority)
        except BatcherClosed:
            successor = None if pinned or model.name not in self._models else self._models[model.name][0]
            if successor is None or successor is model or successor.runtime.inputs != model.runtime.inputs:
                raise
            return successor, await successor.batcher.submit(inputs, deadline, priority)

    def all_versions(self) -> list[ModelVersion]:
        return [version for name in self.names() for version in self._models[name]]

    def index(self) -> list[VersionState]:
        """Every model and version the repository knows, with its state."""
        return [state for name in sorted(self._states) for _, state in sorted(self._states[name].items())]

    def load_problems(self, name: str) -> list[str]:
        """Why versions of `name` the disk and policy ask for did not load, including those whose
        previous copy keeps serving (READY, yet the new files failed)."""
        states = self._states.get(name, {}).values()
        return [s.reason for s in states if s.state != READY or (name, s.version) in self._failed]

    def on_disk(self) -> list[str]:
        try:
            return [d.name for d in model_dirs(self._root)]
        except ModelLoadError:
            return []

    def _raise_missing(self, name: str) -> None:
        reasons = [s.reason for s in self._states.get(name, {}).values() if s.reason]
        if reasons:
            raise ModelUnavailable(f"model {name!r} has no ready version: {'; '.join(reasons)}")
        known = ", ".join(self.names()) or "none"
        raise ModelNotFound(f"model {name!r} is not loaded; loaded models: {known}")

    # --- loading ---------------------------------------------------------------------------

    async def _sync(self, name: str, retry_failed: bool = False) -> None:
        """Load what the disk and the version policy ask for; a version that failed to load is
        retried when its files change, or on an explicit load (`retry_failed`)."""
        model_dir = self._root / name
        on_disk = sorted(version_dirs(model_dir))
        if not on_disk:
            self._forget(name, f"{model_dir} holds no <version>/{MODEL_FILE}")
            return
        self._wanted.add(name)
        self._metrics.load_failures.labels(name)  # at 0 from the start, so the first failure is an increase
        states = self._states.setdefault(name, {})
        states.pop(0, None)
        try:
            config = read_model_config(model_dir)
        except ModelLoadError as exc:
            self._config_failed(name, str(exc))
            return
        self._failed.pop((name, 0), None)
        current = {mv.version: mv for mv in self._models.get(name, [])}
        selected = config.version_policy.select(on_disk)
        if not selected:  # a failed load, like a bad config: whatever serves keeps serving
            states[0] = _selects_nothing(name, config, on_disk)
            return
        serving: list[ModelVersion] = []
        for version in selected:
            loaded = await self._load_or_keep(name, version, config, current.get(version), retry_failed)
            if loaded is not None:
                serving.append(loaded)
        stand_ins = self._stand_ins(current, serving, len(selected) - len(serving))
        for version in [v for v in states if v not in selected]:
            del states[version]  # dropped by the policy or gone from disk
        for mv in stand_ins:
            states[mv.version] = VersionState(name, mv.version, READY, "kept serving until a newer version loads")
        self._swap(name, serving + stand_ins, current)

    def _config_failed(self, name: str, reason: str) -> None:
        """A config.json that does not load: in the index always; counted and logged once per change
        of the file (a poll every few seconds would count the same failure again and again)."""
        self._states[name][0] = VersionState(name, 0, UNAVAILABLE, self._within_repository(reason))
        fingerprint = _file_fingerprint(self._root / name / CONFIG_FILE)
        if self._failed.get((name, 0)) == fingerprint:
            return
        self._failed[(name, 0)] = fingerprint
        self._metrics.load_failures.labels(name).inc()
        log.error("%s", reason)

    def _within_repository(self, reason: str) -> str:
        """A reason as clients see it (RepositoryIndex, ModelReady, errors): paths relative to the repository,
        so the server's directory layout stays private. The log keeps the full paths. The root goes only where a
        path starts with it: a relative root (`models`) inside another name (`old-models/`) stays."""
        root = re.escape(f"{self._root}{os.sep}")
        return re.sub(rf"(?<![\w.~/\\-]){root}", "", reason)

    @staticmethod
    def _stand_ins(current: dict[int, ModelVersion], serving: list[ModelVersion], missing: int) -> list[ModelVersion]:
        """Versions the policy drops but that keep serving in place of selected versions that failed to load."""
        if missing <= 0:
            return []
        spare = sorted((mv for mv in current.values() if mv not in serving), key=lambda mv: mv.version, reverse=True)
        return spare[:missing]

    async def _load_or_keep(
        self, name: str, version: int, config: ModelConfig, old: ModelVersion | None, retry_failed: bool
    ) -> ModelVersion | None:
        model_dir = self._root / name
        fingerprint = _fingerprint(model_dir, version)
        if old is not None and old.fingerprint == fingerprint:
            return old
        if not retry_failed and self._failed.get((name, version)) == fingerprint:
            return old  # failed before and unchanged on disk: its state keeps the reason
        states = self._states[name]
        states[version] = VersionState(name, version, READY if old else LOADING)
        started = time.perf_counter()
        try:
            loaded = await asyncio.to_thread(self._load_version, name, version, config, fingerprint)
        except ModelLoadError as exc:
            self._failed[(name, version)] = fingerprint  # polling retries it only once the file changes
            self._metrics.load_failures.labels(name).inc()
            keeps = " (the previously loaded copy keeps serving)" if old else ""
            reason = self._within_repository(f"{exc}{keeps}")
            states[version] = VersionState(name, version, READY if old else UNAVAILABLE, reason)
            log.error("loading %s version %d failed: %s%s", name, version, exc, keeps)
            return old
        self._failed.pop((name, version), None)
        self._metrics.load_duration.labels(name).observe(time.perf_counter() - started)
        loaded.batcher.start()
        self._loaded_since_settled = True
        states[version] = VersionState(name, version, READY)
        log.info("loaded %s version %d from %s on %s", name, version, loaded.runtime.path, loaded.runtime.provider)
        return loaded

    def _load_version(self, name: str, version: int, config: ModelConfig, fingerprint: Fingerprint) -> ModelVersion:
        """In a worker thread: open the sessions, warm every allowed batch size."""
        instances = config.sessions(self._settings)
        path = self._root / name / str(version) / MODEL_FILE
        runtime = load_runtime(path, self._settings, instances, config.intra_op_threads)
        policy = config.batch_policy(self._settings, merge=runtime.batched, on_cpu=runtime.provider == CPU)
        warm_up(runtime, policy)
        stats = VersionStats()
        observer = self._metrics.observer(name, version, stats, policy.max_queue_size)
        batcher = Batcher(
            name=f"{name}/{version}",
            runners=[session.run for session in runtime.sessions],
            policy=policy,
            observer=observer,
        )
        return ModelVersion(name, version, runtime, batcher, config, stats, fingerprint, observer)

    def _swap(self, name: str, serving: list[ModelVersion], current: dict[int, ModelVersion]) -> None:
        serving.sort(key=lambda mv: mv.version, reverse=True)
        if serving:
            self._models[name] = serving
        else:
            self._models.pop(name, None)
        self._retire(name, [mv for mv in current.values() if mv not in serving], still_served=serving)
        for mv in serving:
            self._metrics.model_ready.labels(name, str(mv.version), mv.runtime.provider).set(1)

    def _forget(self, name: str, why: str) -> None:
        """The model left the disk: stop serving it."""
        if name in self._models or name in self._states:
            log.info("unloading %s: %s", name, why)
        self._wanted.discard(name)
        self._states.pop(name, None)
        self._retire(name, self._models.pop(name, []))

    def _retire(self, name: str, versions: list[ModelVersion], still_served: Sequence[ModelVersion] = ()) -> None:
        """Stop serving `versions`: drain and release each once no request holds it, in the background.
        The gauges of a version number still served (a copy reloaded in place) stay: they are its successor's,
        and its queue depth is the successor's from now on (the retired copy's last value would stay)."""
        served = {mv.version: mv for mv in still_served}
        for mv in versions:
            mv.retired = True
            mv.observer.detach()
            successor = served.get(mv.version)
            if successor is None:
                self._metrics.retire(name, mv.version, mv.runtime.provider)
            else:
                successor.observer.on_queue_depth(successor.batcher.queued_samples)
            log.info("retiring %s version %d", name, mv.version)
            if mv.holders == 0:
                self._close(mv)
            else:
                self._held_retired.add(mv)

    def _close(self, mv: ModelVersion) -> None:
        task = asyncio.get_running_loop().create_task(mv.batcher.close(), name=f"retire-{mv.name}-{mv.version}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        if self._started:
            task.add_done_callback(self._settle_collector)

    @contextlib.contextmanager
    def holding(self, model: ModelVersion) -> Iterator[ModelVersion]:
        """Keep `model` open while a request runs several rounds on it (rejection sampling, a row
        stream, a decode between lookup and submit): a reload retires it only when they are done."""
        model.holders += 1
        try:
            yield model
        finally:
            model.holders -= 1
            if model.holders == 0 and model.retired:
                self._held_retired.discard(model)
                self._close(model)


def check_model_name(name: str) -> str:
    """`name` if it can name a model folder; never a path that leaves the repository."""
    if not is_model_name(name):
        raise InvalidInput(f"model_name: {name!r} is not a model name ({MODEL_NAME_RULE})")
    return name
