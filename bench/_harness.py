"""What bench/overload.py, bench/faults.py and bench/soak.py share.

- the digits repository (built with serve_bench.build_repository) with a chosen config.json;
- gan-serve in a subprocess with any GAN_* environment, on a chosen or free port, its log in a file;
- the server's memory from /proc/<pid>/status, once or sampled in a thread;
- a load generator in a spawned process (so it does not share a GIL with the measuring
  process): open loop (calls issued at a fixed rate whatever the replies) or closed loop
  (N clients, each sending its next call when the last one is answered), over a mix of
  gan.v1 Generate and V2 ModelInfer calls of several sizes; every call has a deadline and
  its outcome (status code, latency, the version that answered) is recorded.

A call is *lost* when it got no reply at all (neither a result nor a status) before the
load generator gave up waiting for it, `drain_s` after it stopped issuing.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import multiprocessing
import os
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from serve_bench import ROOT, build_repository, describe

MODEL = "digits"
OK = "OK"
Kind = tuple[str, int]  # (api, samples): ("gan.v1", 16) is a Generate of count 16, ("v2", 8) a ModelInfer of batch 8
Call = Callable[[int], Awaitable[str]]


# --- the model repository ----------------------------------------------------------------------


def build_model(
    workdir: Path, model_config: Mapping[str, object] | None = None, name: str = MODEL
) -> tuple[Path, dict[str, object]]:
    """models/<name>/1/model.onnx (one training step; speed does not depend on the weights) and its description.

    `name` is one of serve_bench.MODELS: digits (16x16 grey, conditional) or dcgan64 (64x64 RGB, 3.6 M parameters).
    """
    repository = workdir / "models"
    print(f"building the model repository in {repository} ...", flush=True)
    build_repository(repository, [name])
    if model_config is not None:
        write_model_config(repository, name, model_config)
    return repository, describe(repository / name / "1" / "model.onnx")


def write_model_config(repository: Path, name: str, config: Mapping[str, object]) -> None:
    (repository / name / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n")


# --- the server --------------------------------------------------------------------------------


@dataclass
class Server:
    """gan-serve running in a subprocess."""

    process: subprocess.Popen[str]
    port: int
    metrics_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rss_mib(self) -> float | None:
        return status_mib(self.pid, "VmRSS")

    def peak_rss_mib(self) -> float | None:
        return status_mib(self.pid, "VmHWM")

    def metrics(self) -> dict[str, float]:
        """Every sample of the server's /metrics as {'name{labels}': value}; empty if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as reply:
                text = reply.read().decode()
        except OSError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples

    def log_lines(self, pattern: str) -> list[str]:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [line for line in text.splitlines() if re.search(pattern, line)]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit within `timeout`. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def launch_server(
    repository: Path,
    log_path: Path,
    *,
    port: int = 0,
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = 120,
) -> Server:
    """Start gan-serve on `port` (0: a free one) and wait until it prints that it is ready."""
    environment = {**os.environ, "GAN_PROVIDER": "cpu", "GAN_LOG_LEVEL": "INFO", **(env or {})}
    command = [sys.executable, "-m", "service", "--model-repository", str(repository)]
    command += ["--host", "127.0.0.1", "--grpc-port", str(port), "--metrics-port", "0"]
    log = log_path.open("a")
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    _launched.append(process)
    ports = _wait_for_ready_line(process, start_timeout_s)
    if ports is None:
        process.kill()
        raise SystemExit(f"gan-serve did not start within {start_timeout_s:.0f} s; its log is {log_path}")
    return Server(process, ports[0], ports[1], log_path)


_launched: list[subprocess.Popen[str]] = []


@atexit.register
def _kill_leftover_servers() -> None:
    """A benchmark that fails half-way must not leave gan-serve running."""
    for process in _launched:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_for_ready_line(process: subprocess.Popen[str], timeout_s: float) -> tuple[int, int] | None:
    """The ports from gan-serve's 'ready on port N (metrics on M)'; None if it exits or stays silent for `timeout_s`."""
    found: list[tuple[int, int]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.search(r"ready on port (\d+) \(metrics on (\d+)\)", line)
            if match:
                found.append((int(match.group(1)), int(match.group(2))))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    return found[0] if found else None


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def status_mib(pid: int, field_name: str) -> float | None:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM) in MiB, summed with its children's (gan-serve's
    workers; their VmHWM sum bounds the peak of the total); None once the process is gone."""
    values = [_status_kib(p, field_name) for p in process_tree(pid)]
    known = [v for v in values if v is not None]
    return sum(known) / 1024 if values[0] is not None else None


def _status_kib(pid: int, field_name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def process_tree(pid: int) -> list[int]:
    """`pid` and its direct children (a gan-serve supervisor's workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


class OtherCpu:
    """The share of the machine's CPU that processes other than `pids` used since the last reading.

    The benchmarks share two cores with whatever else runs on the machine (a test suite, say);
    this tells a slow period caused by them from one caused by the server.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self._last = self._snapshot()

    def read(self) -> float:
        """0.0 (nothing else ran) to 1.0 (others used every core) since the previous read."""
        now = self._snapshot()
        (busy0, ours0, at0), (busy1, ours1, at1) = self._last, now
        self._last = now
        elapsed = (at1 - at0) * (os.cpu_count() or 1)
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / elapsed if elapsed > 0 else float("nan")

    def _snapshot(self) -> tuple[float, float, float]:
        return _machine_busy_s(), sum(cpu_seconds(pid) for pid in self.pids), time.monotonic()


class CoresUsed:
    """How many cores each of `pids` kept busy, on average, from construction to `read()`."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self._start = [cpu_seconds(pid) for pid in self.pids]
        self._started_at = time.monotonic()

    def read(self) -> list[float]:
        elapsed = time.monotonic() - self._started_at
        return [(cpu_seconds(pid) - start) / elapsed for pid, start in zip(self.pids, self._start, strict=True)]


def _machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) process `pid` and its children used; 0 once it is gone."""
    return sum(_cpu_seconds(p) for p in process_tree(pid))


def _cpu_seconds(pid: int) -> float:
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process's VmRSS every `interval_s` in a background thread: [(seconds since start, MiB)]."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = status_mib(self.pid, "VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic() - self._started, rss))
            self._stop.wait(self.interval_s)

    def peak(self) -> float:
        return max((rss for _, rss in self.samples), default=float("nan"))


# --- the load generator ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """What the load process sends. `rate` > 0: open loop at that many calls/s; else closed loop."""

    target: str
    info: dict[str, object]  # describe() of the model: latent_dim, conditional
    mix: tuple[Kind, ...]  # calls cycle through these kinds
    deadline_s: float
    seconds: float | None = None  # None: until the stop event is set
    rate: float = 0.0
    concurrency: int = 32
    drain_s: float = 5.0  # after the last call is issued, how long to wait for replies before calling them lost
    pause_after_error_s: float = 0.01  # closed loop: a client that got an error waits this long before its next call
    model: str = MODEL
    channel_options: tuple[tuple[str, Any], ...] = ()
    channels: int = 1  # connections the calls are spread over


def requests_by_code(metrics: Mapping[str, float], method: str) -> Counter[str]:
    """gan_requests_total of one RPC method, by status code: the calls that reached the service's handlers."""
    counts: Counter[str] = Counter()
    for key, value in metrics.items():
        match = re.match(r'gan_requests_total\{code="(\w+)",method="(\w+)"', key)
        if match and match.group(2) == method:
            counts[match.group(1)] += int(value)
    return counts


class Outcome(NamedTuple):
    sent_at: float  # time.monotonic() in the load process (the same clock as the parent's on Linux)
    latency_s: float
    code: str  # "OK", a grpc.StatusCode name, or "CLIENT:<exception type>"
    kind: int  # index into LoadSpec.mix
    detail: str  # OK: the version that answered; else the status message (first 160 characters)


@dataclass
class LoadResult:
    outcomes: list[Outcome]  # one per call that got a reply (a result or a status)
    lost_sent_at: list[float]  # when each lost call was sent
    issued: int
    started_at: float
    elapsed_s: float  # from the start to the last call issued
    issue_lag_s: list[float]  # open loop: how late the loop was against its schedule, once per turn

    @property
    def lost(self) -> int:
        return len(self.lost_sent_at)

    def tally(self, since: float = float("-inf"), until: float = float("inf")) -> Tally:
        """Calls sent in [since, until)."""
        lost = sum(1 for t in self.lost_sent_at if since <= t < until)
        return Tally.of([o for o in self.outcomes if since <= o.sent_at < until], lost)


@dataclass
class Tally:
    """Sent, answered OK, failed by status code; lost is what got no reply at all."""

    sent: int
    ok: int
    failed: Counter[str] = field(default_factory=Counter)
    lost: int = 0

    @classmethod
    def of(cls, outcomes: Iterable[Outcome], lost: int = 0) -> Tally:
        codes = Counter(o.code for o in outcomes)
        ok = codes.pop(OK, 0)
        return cls(ok + sum(codes.values()) + lost, ok, codes, lost)

    @property
    def unaccounted(self) -> int:
        """sent - answered - failed: must be 0; it equals `lost`."""
        return self.sent - self.ok - sum(self.failed.values())

    def describe(self) -> str:
        failed = ", ".join(f"{code} {n}" for code, n in self.failed.most_common()) or "none"
        return f"sent {self.sent}, ok {self.ok}, failed {sum(self.failed.values())} ({failed}), lost {self.unaccounted}"


class LoadProcess:
    """A load generator in a spawned process; `result()` waits for it (after `stop()` for open-ended runs)."""

    def __init__(self, spec: LoadSpec) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._started = context.Event()
        self._queue: Any = context.Queue()
        arguments = (spec, self._started, self._stop, self._queue)
        self._process = context.Process(target=_load_main, args=arguments, daemon=True)

    def __enter__(self) -> LoadProcess:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=10)

    def wait_started(self, timeout_s: float = 60) -> None:
        """Block until the load process sends its first call (starting a spawned Python takes a second or two)."""
        if not self._started.wait(timeout_s):
            raise SystemExit(f"the load process did not start within {timeout_s:.0f} s")

    @property
    def pid(self) -> int:
        return self._process.pid or 0

    def stop(self) -> None:
        self._stop.set()

    def result(self, timeout_s: float = 900) -> LoadResult:
        """The load's outcomes; raises SystemExit if the load process dies or hangs."""
        gives_up = time.monotonic() + timeout_s
        while time.monotonic() < gives_up:
            try:
                result: LoadResult = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._process.is_alive():
                    raise SystemExit(f"the load process died (exit code {self._process.exitcode})") from None
                continue
            self._process.join(timeout=30)
            return result
        raise SystemExit(f"the load process gave no result within {timeout_s:.0f} s")


def run_load(spec: LoadSpec) -> LoadResult:
    """Run a fixed-length load (spec.seconds) to the end and return what it saw."""
    if spec.seconds is None:
        raise ValueError("run_load needs spec.seconds; use LoadProcess and stop() for an open-ended load")
    with LoadProcess(spec) as load:
        return load.result(timeout_s=spec.seconds + spec.drain_s + 120)


def _load_main(spec: LoadSpec, started: Any, stop: Any, queue: Any) -> None:
    queue.put(asyncio.run(_load(spec, started, stop)))


async def _load(spec: LoadSpec, started_event: Any, stop: Any) -> LoadResult:
    import grpc

    # Each channel its own subchannel pool, so its own connection (gan-serve's workers take connections).
    options = [*spec.channel_options, ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(spec.target, options=options) for _ in range(spec.channels)]
    calls = [
        spread([make_call(channel, spec.model, spec.info, api, samples, spec.deadline_s) for channel in channels])
        for api, samples in spec.mix
    ]
    started = time.monotonic()
    ends_at = started + spec.seconds if spec.seconds is not None else float("inf")

    def running() -> bool:
        return time.monotonic() < ends_at and not stop.is_set()

    started_event.set()
    result = await drive_calls(calls, running, spec.rate, spec.concurrency, spec.drain_s, spec.pause_after_error_s)
    await asyncio.gather(*(channel.close() for channel in channels))
    return result


def spread(per_channel: list[Call]) -> Call:
    """One kind of call, sent over the channels in turn (call i of a kind: channel i % channels)."""
    if len(per_channel) == 1:
        return per_channel[0]
    turn = itertools.count()

    async def call(index: int) -> str:
        return await per_channel[next(turn) % len(per_channel)](index)

    return call


async def drive_calls(
    calls: Sequence[Call],
    running: Callable[[], bool],
    rate: float = 0.0,
    concurrency: int = 8,
    drain_s: float = 5.0,
    pause_after_error_s: float = 0.01,
) -> LoadResult:
    """Send `calls` (call i is calls[i % len(calls)]) while `running()`: open loop at `rate`/s, or closed loop.

    For a load in the current process (bench/faults.py drives a model of its own this way); the
    calls must raise grpc.aio.AioRpcError for a status other than OK.
    """
    recorder = _Recorder(list(calls), pause_after_error_s)
    lags: list[float] = []
    started = time.monotonic()
    if rate > 0:
        driver = asyncio.ensure_future(_open_loop(recorder, rate, running, lags))
    else:
        driver = asyncio.ensure_future(_closed_loop(recorder, concurrency, running))
    while running() and not driver.done():
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    await recorder.drain(drain_s)
    driver.cancel()  # closed-loop clients whose call drain() gave up on
    await asyncio.gather(driver, return_exceptions=True)
    return LoadResult(recorder.outcomes, recorder.lost_sent_at, recorder.issued, started, elapsed, lags)


class _Recorder:
    """Issues calls as tasks and records their outcomes."""

    def __init__(self, calls: list[Call], pause_after_error_s: float) -> None:
        self.calls = calls
        self.pause_after_error_s = pause_after_error_s
        self.outcomes: list[Outcome] = []
        self.lost_sent_at: list[float] = []
        self.pending: set[asyncio.Task[str]] = set()
        self.issued = 0

    def launch(self) -> asyncio.Task[str]:
        task = asyncio.ensure_future(self.one(self.issued))
        self.issued += 1
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task

    async def one(self, index: int) -> str:
        """Send call `index` and record its outcome; returns its status code name."""
        import grpc

        kind = index % len(self.calls)
        sent_at = time.monotonic()
        try:
            detail = await self.calls[kind](index)
            code = OK
        except grpc.aio.AioRpcError as exc:
            code, detail = exc.code().name, exc.details() or ""
        except (OSError, RuntimeError, ValueError) as exc:  # the client library itself failed: report it as such
            code, detail = f"CLIENT:{type(exc).__name__}", str(exc)
        except asyncio.CancelledError:  # only drain() cancels: the call never got a reply
            self.lost_sent_at.append(sent_at)
            raise
        self.outcomes.append(Outcome(sent_at, time.monotonic() - sent_at, code, kind, detail[:160]))
        return code

    async def drain(self, seconds: float) -> None:
        """Wait up to `seconds` for the calls in flight; the ones still without a reply are lost."""
        if self.pending:
            await asyncio.wait(set(self.pending), timeout=seconds)
        unanswered = list(self.pending)
        for task in unanswered:
            task.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)


async def _open_loop(recorder: _Recorder, rate: float, running: Callable[[], bool], lags: list[float]) -> None:
    """Issue calls on a fixed schedule (`rate` per second) whatever the replies; catch up in bursts when late."""
    started = time.monotonic()
    burst = max(1, int(rate / 100))  # at most 10 ms worth of calls per turn of the loop, so replies get handled
    while running():
        now = time.monotonic()
        lags.append(max(0.0, now - (started + recorder.issued / rate)))
        due = int((now - started) * rate) + 1 - recorder.issued
        for _ in range(min(due, burst)):
            recorder.launch()
        next_at = started + recorder.issued / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def _closed_loop(recorder: _Recorder, concurrency: int, running: Callable[[], bool]) -> None:
    async def client() -> None:
        while running():
            if await recorder.launch() != OK:
                await asyncio.sleep(recorder.pause_after_error_s)  # don't spin on a server that is down

    await asyncio.gather(*(client() for _ in range(concurrency)))


def make_call(channel: Any, model: str, info: dict[str, object], api: str, samples: int, deadline_s: float) -> Call:
    """A coroutine function that sends one call of `samples` samples and returns the version that answered."""
    if api == "gan.v1":
        return _generate_call(channel, model, samples, deadline_s)
    if api == "v2":
        return _infer_call(channel, model, info, samples, deadline_s)
    raise ValueError(f"api: {api!r} is not 'gan.v1' or 'v2'")


def _generate_call(channel: Any, model: str, samples: int, deadline_s: float) -> Call:
    from gan.v1 import generator_pb2 as pb
    from gan.v1 import generator_pb2_grpc as pb_grpc

    stub = pb_grpc.GeneratorServiceStub(channel)

    async def call(seed: int) -> str:
        reply = await stub.Generate(pb.GenerateRequest(model=model, count=samples, seed=seed), timeout=deadline_s)
        return str(reply.version)

    return call


def _infer_call(channel: Any, model: str, info: dict[str, object], samples: int, deadline_s: float) -> Call:
    """V2 ModelInfer with raw inputs: latent (samples, latent_dim) FP32 and, if conditional, one-hot
    class_weights (samples, 10) FP32 (or label (samples,) INT64 for exports from before class weights)."""
    from inference import grpc_service_pb2 as v2
    from inference import grpc_service_pb2_grpc as v2_grpc

    stub = v2_grpc.GRPCInferenceServiceStub(channel)
    latent_dim = int(str(info["latent_dim"]))
    conditional = bool(info["conditional"])
    rng = np.random.default_rng(samples)
    latents = [rng.standard_normal((samples, latent_dim)).astype(np.float32).tobytes() for _ in range(16)]
    by_weights = info.get("label_input", "class_weights") == "class_weights"
    classes = np.arange(samples, dtype=np.int64) % 10
    labels = (np.eye(10, dtype=np.float32)[classes] if by_weights else classes).tobytes()
    label_input = ("class_weights", "FP32", [samples, 10]) if by_weights else ("label", "INT64", [samples])

    async def call(seed: int) -> str:
        request = v2.ModelInferRequest(model_name=model)
        request.inputs.add(name="latent", datatype="FP32", shape=[samples, latent_dim])
        request.raw_input_contents.append(latents[seed % len(latents)])
        if conditional:
            request.inputs.add(name=label_input[0], datatype=label_input[1], shape=label_input[2])
            request.raw_input_contents.append(labels)
        reply = await stub.ModelInfer(request, timeout=deadline_s)
        return str(reply.model_version)

    return call


# --- figures -----------------------------------------------------------------------------------


def percentile_ms(latencies_s: Sequence[float], q: float) -> float:
    return float(np.percentile(latencies_s, q)) * 1000 if latencies_s else float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def describe_mix(mix: Sequence[Kind]) -> str:
    return ", ".join(f"{api} x{samples}" for api, samples in mix)
