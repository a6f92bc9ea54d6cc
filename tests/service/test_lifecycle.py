"""gan-serve as a process: start-up errors, graceful drain on SIGTERM, exit code 0."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from service.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def ready_port(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = re.search(r"ready on port (\d+)", line)
        if match:
            return int(match.group(1))
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"gan-serve did not start: {process.stderr.read() if process.stderr else ''}")


def test_sigterm_answers_accepted_requests_then_exits_zero(model_repository: Path) -> None:
    # A long queue delay keeps the requests queued when SIGTERM arrives.
    process = start(
        "--model-repository",
        str(model_repository),
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
        env={"GAN_MAX_QUEUE_DELAY_MS": "1500", "GAN_MAX_BATCH_SIZE": "1024"},
    )
    port = ready_port(process)
    stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    request = pb.GenerateRequest(model="noise", count=2, seed=1)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(stub.Generate, request, timeout=30) for _ in range(8)]
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        replies = [f.result() for f in futures]
    assert all(len(r.tensor) == 2 * 16 * 16 * 4 for r in replies)
    assert process.wait(timeout=30) == 0
    with pytest.raises(grpc.RpcError) as raised:
        stub.Generate(request, timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_bad_setting_names_the_variable() -> None:
    process = start(env={"GAN_GRPC_PORT": "not-a-port"})
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "grpc_port" in err and "GAN_GRPC_PORT" in err


def test_a_bad_value_names_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAN_INLINE_RUN_MS", "soon")  # a setting with no flag: only its variable is named
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "GAN_INLINE_RUN_MS" in str(caught.value) and "--inline-run-ms" not in str(caught.value)
    monkeypatch.delenv("GAN_INLINE_RUN_MS")
    with pytest.raises(SettingsError, match="flag --grpc-port"):
        load_settings(grpc_port=-1)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("GAN_MAX_CONCURRENT_CALLS", "0", "max_concurrent_calls (GAN_MAX_CONCURRENT_CALLS)"),  # would refuse every call
        ("GAN_REPOSITORY_POLL_S", "0", "repository_poll_s (GAN_REPOSITORY_POLL_S)"),  # would rescan without a pause
    ],
)
def test_a_setting_that_would_stop_the_service_working_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=re.escape(words)):
        load_settings()


@pytest.mark.parametrize("flag, variable", [("--grpc-port", "GAN_GRPC_PORT"), ("--metrics-port", "GAN_METRICS_PORT")])
def test_a_port_in_use_is_named_without_a_traceback(model_repository: Path, flag: str, variable: str) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # a server that would share its port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = {"--grpc-port": "0", "--metrics-port": "0", flag: str(taken.getsockname()[1])}
        process = start("--model-repository", str(model_repository), *(x for pair in ports.items() for x in pair))
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert variable in err and "in use" in err and "Traceback" not in err


def test_missing_repository_says_what_to_do(tmp_path: Path) -> None:
    process = start("--model-repository", str(tmp_path / "nowhere"), "--grpc-port", "0", "--metrics-port", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "nowhere does not exist" in err and "make serve" in err


def test_an_empty_repository_says_what_to_do(tmp_path: Path) -> None:
    process = start("--model-repository", str(tmp_path), "--grpc-port", "0", "--metrics-port", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "holds no model folders" in err and "gan-export" in err


def test_calls_in_flight_when_the_server_stops_are_answered_not_refused(model_repository: Path) -> None:
    """Stopping with calls in flight: each gets its samples or UNAVAILABLE, never NOT_FOUND."""
    from tests.conftest import ServerThread

    running = ServerThread(model_repository=model_repository, drain_refuse_s=1.0).__enter__()
    with grpc.insecure_channel(running.target) as channel:
        stub = pb_grpc.GeneratorServiceStub(channel)
        stub.Generate(pb.GenerateRequest(model="digits", count=1, seed=0), timeout=30)
        calls = [
            stub.Generate.future(pb.GenerateRequest(model="digits", count=8, seed=seed), timeout=30)
            for seed in range(400)
        ]
        running.__exit__(None, None, None)  # drains with a 5 s grace while the calls arrive
        codes = Counter(call.code() for call in calls)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes[grpc.StatusCode.OK] > 0


def test_while_draining_probes_see_not_serving_and_new_calls_get_unavailable(model_repository: Path) -> None:
    """During the drain (drain_refuse_s) the port stays open: health answers NOT_SERVING, /metrics
    gan_server_ready 0, and a new call UNAVAILABLE at once, so balancers and clients go elsewhere."""
    from tests.conftest import ServerThread, scrape

    running = ServerThread(model_repository=model_repository, drain_refuse_s=3.0).__enter__()
    stopping = threading.Thread(target=running.__exit__, args=(None, None, None))
    with grpc.insecure_channel(running.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = pb_grpc.GeneratorServiceStub(channel)
        request = pb.GenerateRequest(model="noise", count=1, seed=1)
        stub.Generate(request, timeout=30)
        stopping.start()

        def status() -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status

        deadline = time.monotonic() + 2
        while status() == health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
            time.sleep(0.02)
        assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert scrape(running)["gan_server_ready"] == 0
        with pytest.raises(grpc.RpcError) as raised:
            stub.Generate(request, timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in (raised.value.details() or "")
    stopping.join(timeout=30)
