"""Fault scenarios against the real server, each under load; every call must get a reply.

    .venv/bin/python bench/faults.py [--scenarios a b c d e] [--restarts 3]

  a  a truncated, then a garbage model.onnx appears as a new version while the server polls the
     repository (GAN_MODEL_CONTROL_MODE=poll, GAN_REPOSITORY_POLL_S=0.5): the serving version
     must keep serving, with no failed call
  b  the serving version's model.onnx is deleted while serving, once in control mode none and
     once in poll mode: the loaded session keeps serving, or calls fail with a clear status
  c  SIGTERM under load: calls sent before it are answered, later ones get UNAVAILABLE, and the
     process exits 0 within GAN_GRACE_PERIOD_S (10)
  d  SIGKILL and a restart on the same port, --restarts times, while the SDK client
     (GeneratorClient, timeout 30 s, wait_for_ready, gRPC retries) sends sequential calls
  e  a session run that raises: a plain ONNX model (Gather from a 10-row table by an INT64 input)
     that onnxruntime fails at run time for an out-of-range index; good and bad V2 calls are
     sent concurrently, so they share batches

For each it prints calls sent, answered OK, failed (by status code) and lost (sent - answered
- failed: calls that never got any reply before the test ended), what was expected and
whether it held. Loads a-c run in a spawned process: closed loop, gan.v1 Generate and V2
ModelInfer, each call with a deadline. It exits 1 if any scenario lost a call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from _harness import (
    MODEL,
    OK,
    Call,
    LoadProcess,
    LoadResult,
    LoadSpec,
    Outcome,
    Server,
    Tally,
    build_model,
    drive_calls,
    free_port,
    launch_server,
    verdict,
)

POLL = {"GAN_MODEL_CONTROL_MODE": "poll", "GAN_REPOSITORY_POLL_S": "0.5"}
MIX = (("gan.v1", 1), ("v2", 1), ("gan.v1", 16), ("v2", 8))
FRAGILE = "fragile"
FRAGILE_ROWS = 10  # rows of the table the fragile model gathers from: an index outside 0..9 fails its run


@dataclass
class Scenario:
    key: str
    title: str
    tally: Tally
    expected: str
    held: bool
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    base: Path  # the built repository, copied for each scenario
    info: dict[str, object]
    workdir: Path
    args: argparse.Namespace

    def repository(self, key: str) -> Path:
        """A fresh copy of the base repository for scenario `key`."""
        copy = self.workdir / key / "models"
        shutil.copytree(self.base, copy)
        return copy

    def log(self, key: str) -> Path:
        return self.workdir / key / "server.log"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="faults-"))
    base, info = build_model(workdir / "base", {"max_batch_size": 64, "max_queue_delay_ms": 2})
    context = Context(base, info, workdir, args)
    results: list[Scenario] = []
    for key in args.scenarios:
        for run in SCENARIOS[key]:
            print(f"\n--- scenario {key}: {run.__doc__}", flush=True)
            results.append(run(context))
            print_scenario(results[-1])
    print_table(results)
    print(f"\nworking files and server logs: {workdir}")
    return 1 if any(s.tally.unaccounted for s in results) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS))
    parser.add_argument("--restarts", type=int, default=3, help="scenario d: SIGKILL and restart this many times")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop clients of the loads a-c")
    parser.add_argument("--deadline", type=float, default=10.0, help="deadline of every load call, seconds")
    return parser.parse_args(argv)


# --- helpers -----------------------------------------------------------------------------------


def load_spec(server: Server, context: Context, concurrency: int | None = None) -> LoadSpec:
    """Closed-loop gan.v1 and V2 calls of 1-16 samples until stopped."""
    args = context.args
    return LoadSpec(
        server.target,
        context.info,
        MIX,
        args.deadline,
        concurrency=concurrency or args.concurrency,
        drain_s=args.deadline + 5,
    )


def versions_answering(result: LoadResult) -> str:
    versions = Counter(o.detail for o in result.outcomes if o.code == OK)
    return ", ".join(f"version {v}: {n}" for v, n in sorted(versions.items())) or "none"


def failure_messages(outcomes: Sequence[Outcome], limit: int = 3) -> list[str]:
    """The most common (status, message) pairs of failed calls."""
    counts = Counter((o.code, o.detail) for o in outcomes if o.code != OK)
    return [f"{n} x {code}: {detail!r}" for (code, detail), n in counts.most_common(limit)]


def repository_index(target: str) -> list[str]:
    """V2 RepositoryIndex: one 'name/version STATE reason' per row."""
    import grpc

    from inference import grpc_service_pb2 as v2
    from inference import grpc_service_pb2_grpc as v2_grpc

    with grpc.insecure_channel(target) as channel:
        reply = v2_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(v2.RepositoryIndexRequest(), timeout=10)
    return [f"{m.name}/{m.version or '-'} {m.state} {m.reason[:150]}".rstrip() for m in reply.models]


def readiness(target: str) -> str:
    """V2 ServerReady and ModelReady(digits), and the standard health service's overall status."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from inference import grpc_service_pb2 as v2
    from inference import grpc_service_pb2_grpc as v2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        server = stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready
        model = stub.ModelReady(v2.ModelReadyRequest(name=MODEL), timeout=10).ready
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
    return f"ServerReady {server}, ModelReady({MODEL}) {model}, health {status}"


def under_load(
    server: Server, spec: LoadSpec, fault: Callable[[], list[str]], before_s: float = 2.0, after_s: float = 3.0
) -> tuple[LoadResult, list[str]]:
    """Start the load, wait `before_s`, run `fault` (it returns notes), keep the load `after_s` longer."""
    with LoadProcess(spec) as load:
        load.wait_started()
        time.sleep(before_s)
        notes = fault()
        time.sleep(after_s)
        notes += [f"after the fault: {readiness(server.target)}"] if server.process.poll() is None else []
        load.stop()
        return load.result(), notes


# --- a: a corrupt new version ------------------------------------------------------------------


def corrupt_version(context: Context) -> Scenario:
    """a truncated, then a garbage model.onnx appear as versions 2 and 3 (poll mode) under load"""
    repository = context.repository("a")
    server = launch_server(repository, context.log("a"), env=POLL)
    model_file = repository / MODEL / "1" / "model.onnx"

    def fault() -> list[str]:
        data = model_file.read_bytes()
        write_version(repository, 2, data[: len(data) // 2])
        time.sleep(3)
        write_version(repository, 3, np.random.default_rng(0).bytes(len(data)))
        return [f"wrote version 2 ({len(data) // 2} of {len(data)} bytes) and, 3 s later, version 3 (random bytes)"]

    result, notes = under_load(server, load_spec(server, context), fault)
    notes += [f"RepositoryIndex: {row}" for row in repository_index(server.target)]
    attempts = server.log_lines(r"loading digits version \d+ failed")
    notes.append(f"server log: {len(attempts)} failed load attempts in ~6 s (it retries a broken version every poll)")
    notes.append(f"versions answering: {versions_answering(result)}")
    notes.append(f"server exit code {server.stop()}")
    tally = result.tally()
    only_v1 = {o.detail for o in result.outcomes if o.code == OK} == {"1"}
    held = not tally.failed and not tally.unaccounted and only_v1
    return Scenario(
        "a", "corrupt new version (poll)", tally, "no failed call; version 1 answers every call", held, notes
    )


def write_version(repository: Path, version: int, data: bytes) -> None:
    folder = repository / MODEL / str(version)
    folder.mkdir()
    (folder / "model.onnx").write_bytes(data)


# --- b: the serving model file deleted ----------------------------------------------------------


def deleted_file_none(context: Context) -> Scenario:
    """the serving model.onnx is deleted under load (control mode none)"""
    return deleted_file(context, "b-none", {})


def deleted_file_poll(context: Context) -> Scenario:
    """the serving model.onnx is deleted under load (poll mode, every 0.5 s)"""
    return deleted_file(context, "b-poll", POLL)


def deleted_file(context: Context, key: str, env: dict[str, str]) -> Scenario:
    repository = context.repository(key)
    server = launch_server(repository, context.log(key), env=env)
    model_file = repository / MODEL / "1" / "model.onnx"

    def fault() -> list[str]:
        model_file.unlink()
        return [f"deleted {model_file.relative_to(repository)}"]

    result, notes = under_load(server, load_spec(server, context), fault)
    failures = [o for o in result.outcomes if o.code != OK]
    tally = result.tally()
    if failures:
        first_failure = min(o.sent_at for o in failures)
        notes.append(f"calls sent from the first failure on: {result.tally(since=first_failure).describe()}")
        notes += failure_messages(failures)
        behaviour = "calls failed with a status and message" if not tally.unaccounted else "calls failed or were lost"
    else:
        behaviour = "the loaded session kept serving"
    notes.insert(0, f"behaviour: {behaviour}")
    notes.append(f"versions answering: {versions_answering(result)}")
    notes.append(f"server log: {' | '.join(server.log_lines('unloading|retiring')) or 'nothing about it'}")
    notes.append(f"server exit code {server.stop()}")
    expected = "keeps serving, or fails clearly (a status with a message); nothing lost"
    held = not tally.unaccounted and all(o.detail for o in failures)
    mode = env.get("GAN_MODEL_CONTROL_MODE", "none")
    return Scenario(key, f"serving model file deleted ({mode})", tally, expected, held, notes)


# --- c: SIGTERM under load ---------------------------------------------------------------------


def sigterm(context: Context) -> Scenario:
    """SIGTERM under load (c=64, up to 64 samples a call): drain, then exit 0 within the grace period"""
    repository = context.repository("c")
    grace = float(os.environ.get("GAN_GRACE_PERIOD_S", "10"))
    server = launch_server(repository, context.log("c"))
    heavy_mix = (("gan.v1", 64), ("v2", 8), ("gan.v1", 1))
    spec = replace(load_spec(server, context, concurrency=64), mix=heavy_mix)
    with LoadProcess(spec) as load:
        load.wait_started()
        time.sleep(3)
        signalled_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        exit_code = wait_exit(server, grace + 15)
        exit_s = time.monotonic() - signalled_at
        time.sleep(1)
        load.stop()
        result = load.result()
    before, after = result.tally(until=signalled_at), result.tally(since=signalled_at)
    unexpected_before = sum(n for code, n in before.failed.items() if code != "UNAVAILABLE")
    unexpected_after = sum(n for code, n in after.failed.items() if code != "UNAVAILABLE")
    in_flight = [o for o in result.outcomes if o.sent_at < signalled_at <= o.sent_at + o.latency_s]
    notes = [
        f"exit code {exit_code}, {exit_s:.2f} s after SIGTERM (grace period {grace:g} s)",
        f"sent before SIGTERM: {before.describe()}",
        f"  of which in flight at SIGTERM (answered after it): {Tally.of(in_flight).describe()}",
        f"sent after SIGTERM:  {after.describe()}",
        *failure_messages(result.outcomes, limit=4),
    ]
    held = exit_code == 0 and exit_s <= grace and not unexpected_before and not unexpected_after
    held = held and not result.tally().unaccounted
    expected = "calls sent before answered (or UNAVAILABLE if not yet accepted), later UNAVAILABLE, exit 0 in grace"
    return Scenario("c", "SIGTERM under load", result.tally(), expected, held, notes)


def wait_exit(server: Server, timeout_s: float) -> int | None:
    """The exit code, or None (after a SIGKILL) if the process did not exit within `timeout_s`."""
    try:
        return server.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        return None


# --- d: SIGKILL and restart with the SDK client ------------------------------------------------


class SequentialClient(threading.Thread):
    """GeneratorClient(timeout=30, wait_for_ready=True) sending one Generate after another until stopped."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.outcomes: list[Outcome] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        import grpc

        from gan_client.client import GeneratorClient

        with GeneratorClient(self.target, timeout=30, wait_for_ready=True) as client:
            seed = 0
            while not self.stopping.is_set():
                seed += 1
                sent_at = time.monotonic()
                try:
                    samples = client.generate(MODEL, 1, seed=seed)
                    code, detail = OK, str(samples.version)
                except grpc.RpcError as exc:
                    code, detail = exc.code().name, exc.details() or ""
                self.outcomes.append(Outcome(sent_at, time.monotonic() - sent_at, code, 0, detail[:160]))


def sigkill_restart(context: Context) -> Scenario:
    """SIGKILL and restart on the same port while the SDK client sends sequential calls"""
    repository = context.repository("d")
    port = free_port()
    server = launch_server(repository, context.log("d"), port=port)
    client = SequentialClient(server.target)
    client.start()
    notes = []
    for cycle in range(context.args.restarts):
        time.sleep(2)
        killed_at = time.monotonic()
        server.process.kill()
        server.process.wait()
        server = launch_server(repository, context.log("d"), port=port)
        restart_s = time.monotonic() - killed_at
        notes.append(f"restart {cycle + 1}: SIGKILL, then ready again on port {port} after {restart_s:.2f} s")
    time.sleep(2)
    client.stopping.set()
    client.join(timeout=40)
    lost = 1 if client.is_alive() else 0  # a call still waiting for its reply
    notes.append(f"longest wait between two answers: {longest_gap(client.outcomes):.2f} s")
    notes += failure_messages(client.outcomes)
    notes.append(f"server exit code {server.stop()}")
    tally = Tally.of(client.outcomes, lost)
    expected = "lost 0 (ideally failed 0): retries and wait_for_ready carry calls over the restarts"
    return Scenario("d", "SIGKILL + restart, SDK client", tally, expected, not tally.unaccounted, notes)


def longest_gap(outcomes: Sequence[Outcome]) -> float:
    answered = sorted(o.sent_at + o.latency_s for o in outcomes if o.code == OK)
    return max((b - a for a, b in pairwise(answered)), default=0.0)


# --- e: a session run that raises --------------------------------------------------------------


def failing_run(context: Context) -> Scenario:
    """a model whose session run raises for some inputs, good and bad calls sharing batches"""
    repository = context.workdir / "e" / "models"
    write_fragile_model(repository / FRAGILE)
    server = launch_server(repository, context.log("e"))
    result = asyncio.run(fragile_load(server.target, seconds=5.0, deadline_s=context.args.deadline))
    still_serving = asyncio.run(fragile_load(server.target, seconds=0.5, deadline_s=5, bad_every=0))
    batches = server.log_lines("a batch of .* samples failed")
    exit_code = server.stop()
    bad_kind = len(FRAGILE_CALLS) - 1
    bad = Tally.of(o for o in result.outcomes if o.kind == bad_kind)
    good = Tally.of(o for o in result.outcomes if o.kind != bad_kind)
    collateral = sum(good.failed.values())
    notes = [
        f"bad calls (index {FRAGILE_ROWS + 990}): {bad.describe()}",
        f"good calls: {good.describe()}",
        f"good calls failed only because a bad call shared their session run: {collateral} "
        f"({collateral / max(good.sent, 1):.1%} of good calls)",
        f"server log: {len(batches)} failed session runs",
        f"afterwards, good calls alone for 0.5 s: {still_serving.tally().describe()}",
        *failure_messages(result.outcomes, limit=2),
        f"server exit code {exit_code}",
    ]
    held = set(bad.failed) <= {"INTERNAL"} and bad.ok == 0 and not result.tally().unaccounted
    afterwards = still_serving.tally()
    held = held and afterwards.sent > 0 and afterwards.ok == afterwards.sent
    expected = "bad calls get INTERNAL with onnxruntime's message, nothing lost, the server keeps serving"
    return Scenario("e", "session run raises", result.tally(), expected, held, notes)


FRAGILE_CALLS = ("good", "good", "good", "good", "good", "good", "good", "bad")


def write_fragile_model(model_dir: Path) -> None:
    """y = table[index] + x; inputs x (N, 4) FP32 and index (N,) INT64; table is FRAGILE_ROWS x 4."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(FRAGILE_ROWS * 4, dtype=np.float32).reshape(FRAGILE_ROWS, 4), "table")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "index"], ["rows"], axis=0),
            helper.make_node("Add", ["rows", "x"], ["y"]),
        ],
        FRAGILE,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("index", TensorProto.INT64, ["N"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (model_dir / "1").mkdir(parents=True)
    onnx.save(model, str(model_dir / "1" / "model.onnx"))
    (model_dir / "config.json").write_text('{"max_batch_size": 64, "max_queue_delay_ms": 5}\n')


async def fragile_load(target: str, seconds: float, deadline_s: float, bad_every: int = 1) -> LoadResult:
    """16 closed-loop clients of V2 calls of 2 rows; the last kind of FRAGILE_CALLS asks for row 1000."""
    import grpc

    channel = grpc.aio.insecure_channel(target)
    kinds = FRAGILE_CALLS if bad_every else FRAGILE_CALLS[:-1]
    calls = [fragile_call(channel, kind == "bad", deadline_s) for kind in kinds]
    ends_at = time.monotonic() + seconds
    result = await drive_calls(calls, lambda: time.monotonic() < ends_at, concurrency=16, drain_s=deadline_s + 5)
    await channel.close()
    return result


def fragile_call(channel: Any, bad: bool, deadline_s: float) -> Call:
    from inference import grpc_service_pb2 as v2
    from inference import grpc_service_pb2_grpc as v2_grpc

    stub = v2_grpc.GRPCInferenceServiceStub(channel)
    index = np.array([1, FRAGILE_ROWS + 990 if bad else 2], dtype=np.int64)
    x = np.zeros((2, 4), dtype=np.float32)

    async def call(seed: int) -> str:
        request = v2.ModelInferRequest(model_name=FRAGILE)
        request.inputs.add(name="x", datatype="FP32", shape=[2, 4])
        request.inputs.add(name="index", datatype="INT64", shape=[2])
        request.raw_input_contents.extend([x.tobytes(), index.tobytes()])
        reply = await stub.ModelInfer(request, timeout=deadline_s)
        return str(reply.model_version)

    return call


# --- report ------------------------------------------------------------------------------------

SCENARIOS: dict[str, tuple[Callable[[Context], Scenario], ...]] = {
    "a": (corrupt_version,),
    "b": (deleted_file_none, deleted_file_poll),
    "c": (sigterm,),
    "d": (sigkill_restart,),
    "e": (failing_run,),
}


def print_scenario(scenario: Scenario) -> None:
    print(f"  {scenario.tally.describe()}")
    for note in scenario.notes:
        print(f"  {note}")
    print(f"  expected: {scenario.expected}: {verdict(scenario.held)}", flush=True)


def print_table(results: Sequence[Scenario]) -> None:
    print(f"\n{'scenario':<48} {'sent':>7} {'ok':>7} {'failed':>7} {'lost':>5}  expectation  failed by code")
    for s in results:
        tally = s.tally
        by_code = ", ".join(f"{code} {n}" for code, n in tally.failed.most_common()) or "-"
        counts = f"{tally.sent:>7} {tally.ok:>7} {sum(tally.failed.values()):>7} {tally.unaccounted:>5}"
        print(f"{s.key + ' ' + s.title:<48} {counts}  {verdict(s.held):<11}  {by_code}")


if __name__ == "__main__":
    sys.exit(main())
