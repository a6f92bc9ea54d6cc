"""gan-serve --workers: several processes on one port, one /metrics, one drain, crashed workers replaced."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from service import workers as workers_module
from service.settings import Settings
from service.workers import MAX_RESTART_PAUSE_S, RESTART_PAUSE_S, YOUNG_S, Worker, metrics_folder
from service.workers import Supervisor as WorkerSupervisor
from tests.service.test_repository_live import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT workers: Linux")


@dataclass
class Supervisor:
    process: subprocess.Popen[str]
    port: int
    metrics_port: int
    metrics_dir: Path

    def workers(self) -> list[int]:
        """Pids of the worker processes running now."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def scrape(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read().decode()


def start(model_repository: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--model-repository", str(model_repository)]
    return subprocess.Popen(
        [*command, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GAN_PROVIDER": "cpu", **(env or {})},
    )


@contextmanager
def supervisor(model_repository: Path, tmp_path: Path, workers: int = 2) -> Iterator[Supervisor]:
    metrics_dir = tmp_path / "metrics"
    process = start(
        model_repository,
        *("--workers", str(workers), "--grpc-port", "0", "--metrics-port", "0"),
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "GAN_DRAIN_REFUSE_S": "0"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"ready on port (\d+) \(metrics on (\d+)\)", line)
        if match is None:
            process.kill()
            raise AssertionError(f"gan-serve --workers did not start: {line!r} {process.communicate()[1]}")
        yield Supervisor(process, int(match.group(1)), int(match.group(2)), metrics_dir)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped (pytest as PID 1 in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def generate_on_new_connections(port: int, connections: int, calls_each: int) -> int:
    """Generate calls over `connections` separate TCP connections; the number answered."""
    answered = 0
    for index in range(connections):
        # A channel of its own subchannel pool opens its own connection (grpc shares them otherwise).
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = pb_grpc.GeneratorServiceStub(channel)
            for seed in range(calls_each):
                stub.Generate(pb.GenerateRequest(model="noise", count=2, seed=index * 1000 + seed), timeout=30)
                answered += 1
    return answered


def generate_calls_counted(metrics_text: str) -> float:
    match = re.search(r'^gan_requests_total\{code="OK",method="Generate",model="noise"\} (\S+)$', metrics_text, re.M)
    return float(match.group(1)) if match else 0.0


def counted_by(pid: int, metrics_dir: Path, tmp_path: Path) -> float:
    """The Generate calls one worker counted: its own metric files, summed alone."""
    alone = Path(tempfile.mkdtemp(dir=tmp_path, prefix=f"worker-{pid}-"))
    for path in metrics_dir.glob(f"*_{pid}.db"):
        shutil.copy(path, alone / path.name)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return generate_calls_counted(generate_latest(registry).decode())


def queue_capacity(metrics_text: str) -> float:
    match = re.search(r'^gan_queue_capacity_samples\{model="noise",version="1"\} (\S+)$', metrics_text, re.M)
    assert match is not None
    return float(match.group(1))


def test_workers_share_the_port_and_their_metrics_add_up(model_repository: Path, tmp_path: Path) -> None:
    with supervisor(model_repository, tmp_path) as server:
        workers = server.workers()
        assert len(workers) == 2
        sent = generate_on_new_connections(server.port, connections=16, calls_each=10)
        per_worker = [counted_by(pid, server.metrics_dir, tmp_path) for pid in workers]
        metrics = server.scrape()
    assert sent == 160
    assert all(count > 0 for count in per_worker), per_worker  # the kernel spread the connections
    assert sum(per_worker) == sent
    assert generate_calls_counted(metrics) == sent  # one /metrics for all workers
    assert re.search(r"^gan_server_ready 1\.0$", metrics, re.M)
    ready_line = r'^gan_model_ready\{model="noise",provider="CPUExecutionProvider",version="1"\} 1\.0$'
    assert re.search(ready_line, metrics, re.M)


def test_a_worker_that_dies_is_replaced(model_repository: Path, tmp_path: Path) -> None:
    with supervisor(model_repository, tmp_path) as server:
        first, second = server.workers()
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: first not in server.workers() and len(server.workers()) == 2, "a replacement worker")
        replacement = next(pid for pid in server.workers() if pid != second)

        def replacement_serves() -> bool:
            assert generate_on_new_connections(server.port, connections=4, calls_each=1) == 4
            return counted_by(replacement, server.metrics_dir, tmp_path) > 0

        wait_for(replacement_serves, "the replacement worker to answer calls")
        # the dead worker's gauges left /metrics: the queue capacity is that of the two live workers
        assert queue_capacity(server.scrape()) == 2 * Settings().max_queue_size


def test_sigterm_drains_every_worker_and_exits_zero(model_repository: Path, tmp_path: Path) -> None:
    with supervisor(model_repository, tmp_path) as server:
        workers = server.workers()
        generate_on_new_connections(server.port, connections=4, calls_each=2)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        assert all(gone(pid) for pid in workers)


def test_workers_stop_when_the_supervisor_is_killed(model_repository: Path, tmp_path: Path) -> None:
    with supervisor(model_repository, tmp_path) as server:
        workers = server.workers()
        server.process.kill()
        wait_for(lambda: all(gone(pid) for pid in workers), "orphaned workers to exit")


def test_explicit_model_control_needs_one_worker(model_repository: Path) -> None:
    process = start(model_repository, "--workers", "2", "--model-control-mode", "explicit", "--grpc-port", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "GAN_WORKERS" in err and "GAN_MODEL_CONTROL_MODE" in err


def test_a_port_in_use_is_refused_before_any_worker_starts(model_repository: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start(model_repository, "--workers", "2", "--grpc-port", str(port), "--metrics-port", "0")
        _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "GAN_GRPC_PORT" in err and "in use" in err


def test_a_metrics_port_in_use_is_refused_before_any_worker_starts(model_repository: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start(model_repository, "--workers", "2", "--grpc-port", "0", "--metrics-port", str(port))
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "GAN_METRICS_PORT" in err and "started worker" not in err  # refused before any worker loads


def test_a_single_server_refuses_a_multiprocess_metrics_folder(model_repository: Path, tmp_path: Path) -> None:
    process = start(model_repository, "--grpc-port", "0", env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "PROMETHEUS_MULTIPROC_DIR" in err and "Unset it" in err


def test_a_worker_that_fails_to_start_makes_gan_serve_exit_1(model_repository: Path, tmp_path: Path) -> None:
    """A worker that exits while loading (here: a model that cannot load) stops the start: gan-serve
    exits 1, not 0, so an orchestrator sees a failed start."""
    repository = tmp_path / "models"
    shutil.copytree(model_repository / "noise", repository / "noise")
    (repository / "broken/1").mkdir(parents=True)
    (repository / "broken/1/model.onnx").write_bytes(b"not an onnx file")
    process = start(repository, "--workers", "2", "--grpc-port", "0", "--metrics-port", "0")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert "the workers did not all start" in err


class FakeProcess:
    """What the supervisor uses of a worker's Popen: a pid, a poll, SIGTERM, and the exit code of wait."""

    def __init__(self, code: int = 0) -> None:
        self.pid, self.code = 4242, code
        self.returncode: int | None = None
        self.killed = False

    def kill(self) -> None:
        self.killed, self.returncode = True, -signal.SIGKILL

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.returncode = self.code

    def wait(self, timeout: float | None = None) -> int:
        return self.code


@pytest.fixture
def quiet_supervisor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> WorkerSupervisor:
    """A Supervisor whose workers are FakeProcesses: its restart and stop decisions, without processes."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(workers_module, "mark_dead", lambda folder, pid: None)
    supervisor = WorkerSupervisor(Settings(workers=2), [])
    monkeypatch.setattr(supervisor, "_start", lambda index: Worker(index, FakeProcess()))  # type: ignore[arg-type]
    return supervisor


def test_a_worker_that_keeps_dying_at_start_is_restarted_ever_more_slowly(quiet_supervisor: WorkerSupervisor) -> None:
    worker, pauses = quiet_supervisor._start(0), []
    for _ in range(7):
        died = worker.started_at + 1.0  # a second after its start: it did not get going
        quiet_supervisor._buried(worker, died)
        assert worker.restart_at is not None
        pauses.append(worker.restart_at - died)
        worker = quiet_supervisor._replace(worker)
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, MAX_RESTART_PAUSE_S, MAX_RESTART_PAUSE_S]
    quiet_supervisor._buried(worker, worker.started_at + YOUNG_S + 1)  # this one ran a while
    worker = quiet_supervisor._replace(worker)
    quiet_supervisor._buried(worker, worker.started_at + 1.0)
    assert worker.restart_at == worker.started_at + 1.0 + RESTART_PAUSE_S, "a worker that got going resets the pause"


def test_gan_serve_exits_1_when_a_worker_does_not_stop_cleanly(quiet_supervisor: WorkerSupervisor) -> None:
    clean, failed = Worker(0, FakeProcess(0)), Worker(1, FakeProcess(1))  # type: ignore[arg-type]
    quiet_supervisor._workers = [clean, failed]
    assert quiet_supervisor._stop_workers() == 1
    quiet_supervisor._workers = [Worker(0, FakeProcess(0)), Worker(1, FakeProcess(0))]  # type: ignore[arg-type]
    assert quiet_supervisor._stop_workers() == 0
    loading, serving = Worker(0, FakeProcess(-signal.SIGTERM)), Worker(1, FakeProcess(-signal.SIGTERM))  # type: ignore[arg-type]
    quiet_supervisor._workers = [loading]
    assert quiet_supervisor._stop_workers() == 0, "one still loading has no handler yet: SIGTERM ends it, cleanly"
    serving.ready.set()
    quiet_supervisor._workers = [serving]
    assert quiet_supervisor._stop_workers() == 1, "a serving worker ended by the signal itself did not drain"


def test_a_dead_worker_is_replaced_only_once_its_slot_pause_is_over(quiet_supervisor: WorkerSupervisor) -> None:
    dead = quiet_supervisor._start(0)
    dead.process.returncode = 1
    quiet_supervisor._workers = [dead]
    died = dead.started_at + YOUNG_S + 1
    quiet_supervisor._check_workers(died)
    quiet_supervisor._check_workers(died + RESTART_PAUSE_S / 2)
    assert quiet_supervisor._workers == [dead]
    quiet_supervisor._check_workers(died + RESTART_PAUSE_S)
    assert quiet_supervisor._workers[0] is not dead and quiet_supervisor._workers[0].index == 0


def test_a_second_stop_signal_kills_the_workers_instead_of_waiting_for_their_drain(
    quiet_supervisor: WorkerSupervisor,
) -> None:
    quiet_supervisor._workers = [quiet_supervisor._start(index) for index in range(2)]
    quiet_supervisor._on_signal(signal.SIGTERM, None)
    assert not any(worker.process.killed for worker in quiet_supervisor._workers)  # type: ignore[attr-defined]
    quiet_supervisor._on_signal(signal.SIGINT, None)
    assert all(worker.process.killed for worker in quiet_supervisor._workers)  # type: ignore[attr-defined]


def test_the_ready_line_waits_for_every_worker_and_a_stop_signal_ends_the_wait(
    quiet_supervisor: WorkerSupervisor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(workers_module, "START_TIMEOUT_S", 0.2)
    quiet_supervisor._workers = [quiet_supervisor._start(index) for index in range(2)]
    quiet_supervisor._workers[0].ready.set()
    assert not quiet_supervisor._wait_until_ready()
    assert "the workers did not all start; timed out" in capsys.readouterr().err
    quiet_supervisor._stopping.set()
    assert not quiet_supervisor._wait_until_ready()
    assert "stopped before the workers were ready" in capsys.readouterr().err
    quiet_supervisor._stopping.clear()
    quiet_supervisor._workers[1].ready.set()
    assert quiet_supervisor._wait_until_ready()


def test_an_operators_metrics_folder_is_emptied_of_old_worker_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Files a previous run's workers left would be added to the new counts."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1234.db").write_bytes(b"old counts")
    (folder / "notes.txt").write_text("not a metrics file")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    assert metrics_folder() == (folder, False)
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]
