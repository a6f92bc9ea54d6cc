"""Several server processes on one gRPC port (`GAN_WORKERS` > 1): the supervisor.

One Python process answers at most a few thousand calls a second, whatever the hardware: its
event loop runs gRPC's per-call work one call at a time (on an H100 the single process served
~2,000 one-sample calls/s while onnxruntime could compute 67,000 samples/s). With `workers` N,
`gan-serve` becomes a supervisor that starts N complete servers (`python -m service` with
`worker_index` set). They bind the same port with SO_REUSEPORT, so the kernel spreads client
*connections* across them: a client with one channel talks to one worker, many clients (or a
client with several channels) use them all. What the supervisor does:

- checks that the port is free before any worker binds it (SO_REUSEPORT would otherwise let a
  stale server share it silently);
- serves /metrics for all workers: they write their metrics into a shared folder
  (prometheus_client's multiprocess mode) and counters and histograms are summed;
- prints its ready line once every worker is ready;
- restarts a worker that dies, after a pause;
- on SIGTERM or SIGINT passes SIGTERM on: every worker drains (new calls UNAVAILABLE, accepted
  ones answered) and the supervisor exits 0 when all of them did.

Each worker loads every model itself (memory and, on a GPU, a CUDA context per worker) and
batches only its own calls. Explicit model control is refused with several workers (a load
request would reach one of them); poll mode keeps them all in step with the disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from types import FrameType
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from service.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR_PID_ENV = "GAN_SUPERVISOR_PID"  # set in each worker: it exits if its supervisor is gone
READY_PREFIX = "gan-serve worker"
RESTART_PAUSE_S = 1.0  # before restarting a worker; doubled (up to MAX_RESTART_PAUSE_S) while they die young
MAX_RESTART_PAUSE_S = 30.0
YOUNG_S = 10.0  # a worker that dies sooner than this after its start did not get going
START_TIMEOUT_S = 600.0  # loading and warming every model; a worker that takes longer is stopped


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[str]
    ready: threading.Event = field(default_factory=threading.Event)
    started_at: float = field(default_factory=time.monotonic)
    restart_pause_s: float = RESTART_PAUSE_S  # how long this slot waits before a restart if this worker dies
    restart_at: float | None = None  # set when it died: when its replacement starts
    died_young: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    def __init__(self, settings: Settings, argv: list[str]) -> None:
        self.settings = settings
        self._argv = argv
        self._port = 0
        self._metrics_dir, self._own_metrics_dir = metrics_folder()
        self._workers: list[Worker] = []
        self._stopping = threading.Event()

    def run(self) -> int:
        """Serve /metrics, start the workers, supervise until SIGTERM; the exit code."""
        try:
            self._port = reserve_port(self.settings.host, self.settings.grpc_port)
            metrics_port = serve_metrics(self._metrics_dir, self.settings.host, self.settings.metrics_port)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
            self._workers = [self._start(index) for index in range(self.settings.workers)]
            if not self._wait_until_ready():
                code = self._stop_workers()
                return code if self._stopping.is_set() else 1
            print(f"gan-serve: ready on port {self._port} (metrics on {metrics_port})", flush=True)
            log.info("%d workers serving gRPC on %s:%d", len(self._workers), self.settings.host, self._port)
            self._supervise()
            return self._stop_workers()
        finally:
            if self._own_metrics_dir:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping.is_set():  # a second Ctrl-C or SIGTERM: do not wait for the drain
            log.warning("second stop signal: killing the workers")
            for worker in self._workers:
                if worker.process.poll() is None:
                    worker.process.kill()
        self._stopping.set()

    def _start(self, index: int) -> Worker:
        command = [sys.executable, "-m", "service", *self._argv, "--grpc-port", str(self._port)]
        env = {**os.environ, METRICS_DIR_ENV: str(self._metrics_dir), "GAN_WORKER_INDEX": str(index)}
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
        worker = Worker(index, process)
        threading.Thread(target=_follow_output, args=(worker,), daemon=True, name=f"worker-{index}-out").start()
        log.info("started worker %d (pid %d)", index, process.pid)
        return worker

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(worker.ready.is_set() for worker in self._workers):
            failed = [w for w in self._workers if w.process.poll() is not None]
            if self._stopping.is_set():
                print("gan-serve: stopped before the workers were ready", file=sys.stderr)
                return False
            if failed or time.monotonic() > deadline:
                why = f"worker {failed[0].index} exited with code {failed[0].process.returncode}" if failed else ""
                print(f"gan-serve: error: the workers did not all start; {why or 'timed out'}", file=sys.stderr)
                return False
            time.sleep(0.05)
        return True

    def _supervise(self) -> None:
        """Until a stop signal: notice workers that die at once, replace each after its slot's pause."""
        while not self._stopping.wait(0.2):
            self._check_workers(time.monotonic())

    def _check_workers(self, now: float) -> None:
        """Bury each worker found dead; start its replacement once its slot's pause is over."""
        for position, worker in enumerate(self._workers):
            if worker.process.poll() is None:
                continue
            if worker.restart_at is None:
                self._buried(worker, now)
            elif now >= worker.restart_at:
                self._workers[position] = self._replace(worker)

    def _buried(self, worker: Worker, now: float) -> None:
        code = worker.process.returncode
        log.error("worker %d (pid %d) exited with code %s; restarting it", worker.index, worker.pid, code)
        mark_dead(self._metrics_dir, worker.pid)  # its in-flight, queue and ready gauges leave /metrics now
        worker.died_young = now - worker.started_at < YOUNG_S
        worker.restart_at = now + worker.restart_pause_s

    def _replace(self, dead: Worker) -> Worker:
        replacement = self._start(dead.index)
        if dead.died_young:  # crashing at start (a bad model, say): back off instead of spinning
            replacement.restart_pause_s = min(2 * dead.restart_pause_s, MAX_RESTART_PAUSE_S)
        return replacement

    def _stop_workers(self) -> int:
        """SIGTERM every running worker, wait out its drain; 0 when every one stopped cleanly."""
        running = [w for w in self._workers if w.process.poll() is None]
        for worker in running:
            worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace_period_s + self.settings.drain_refuse_s + 10
        codes = []
        for worker in running:
            try:
                code = worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid %d) did not stop in time; killing it", worker.index, worker.pid)
                worker.process.kill()
                code = worker.process.wait()
            # One still loading has no handler yet, so SIGTERM ends it at once: that is a clean stop too.
            codes.append(0 if code == -signal.SIGTERM and not worker.ready.is_set() else code)
        log.info("all workers stopped (exit codes %s)", codes)
        return 0 if all(code == 0 for code in codes) else 1


def metrics_folder() -> tuple[Path, bool]:
    """Where the workers write their metrics, and whether it is ours to delete at exit.

    PROMETHEUS_MULTIPROC_DIR when the operator set it (a folder for this server alone: its old
    files are removed, they would be added to the new counts), else a new temporary folder.
    """
    given = os.environ.get(METRICS_DIR_ENV)
    if not given:
        return Path(tempfile.mkdtemp(prefix="gan-metrics-")), True
    folder = Path(given)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    except OSError as exc:
        raise OSError(f"{METRICS_DIR_ENV}={given}: cannot use it for the workers' metrics: {exc}") from None
    return folder, False


def reserve_port(host: str, port: int) -> int:
    """The port the workers will share: `port`, checked free, or a free one when it is 0.

    Raises OSError naming the setting when it is taken: the workers bind with SO_REUSEPORT,
    which would let them share a port with another server of the same user without a word.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As servers do: a port whose old connections linger in TIME_WAIT (a restart) is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot bind gRPC port {host}:{port}; is it in use? (GAN_GRPC_PORT): {exc}") from None
        return int(probe.getsockname()[1])


def serve_metrics(folder: Path, host: str, port: int) -> int:
    """/metrics summing every worker's metrics; the port it listens on."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    server, _ = start_metrics_http(registry, host, port)
    return int(server.server_port)


def start_metrics_http(registry: CollectorRegistry, host: str, port: int) -> tuple[WSGIServer, Thread]:
    """prometheus_client's /metrics server and its thread; an error that names the port's setting."""
    from prometheus_client import start_http_server

    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(f"cannot serve /metrics on {host}:{port}; is it in use? (GAN_METRICS_PORT): {exc}") from None


def mark_dead(folder: Path, pid: int) -> None:
    """Drop a dead worker's live gauges (in flight, queue depth, readiness) from /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(folder))


def exit_with_parent() -> None:
    """In a worker, first thing: get SIGTERM (and so drain) if the supervisor dies, even by SIGKILL;
    exit at once if it is already gone (it died before this ran)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor and os.getppid() != int(supervisor):
        sys.exit(1)


def _follow_output(worker: Worker) -> None:
    """A worker's stdout: its ready line sets `ready`; anything else is passed through."""
    assert worker.process.stdout is not None
    for line in worker.process.stdout:
        if line.startswith(READY_PREFIX):
            worker.ready.set()
        else:
            sys.stdout.write(line)
