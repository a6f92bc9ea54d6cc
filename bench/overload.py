"""Overload: open-loop traffic at a multiple of capacity against the real server's admission control.

    .venv/bin/python bench/overload.py [--seconds 10] [--factor 4] [--deadline 1.0] [--max-queue-size 256]
                                       [--model digits] [--count 1] [--workers 1] [--channels 1] [--provider cpu]

It builds the model (serve_bench.build_repository), gives it a config.json with a bounded
queue (max_queue_size samples; beyond it a call gets RESOURCE_EXHAUSTED at once), and
serves it with gan-serve in its own process. Admission control runs on the event loop: when
onnxruntime's threads take every core, the loop that reads and refuses calls gets only a share
of one and refusals wait behind it, so the model gets one onnxruntime thread fewer than the
cores (--intra-op-threads; the server's own default sets a core aside only from 4 cores up;
docs/operations.md, sizing item 4). Then:

1. capacity: closed-loop gan.v1 Generate calls of --count samples at --concurrency for
   --capacity-seconds;
2. overload: open-loop Generate calls (issued on a fixed schedule whatever the replies, each
   with a --deadline) at --factor times that capacity for --seconds, while the server's RSS
   is sampled every 100 ms;
3. refusal floor: the same rate of calls that each ask for more samples than the queue holds,
   so that every one is refused before any compute (INVALID_ARGUMENT: such a call could never
   fit, by the same check that answers RESOURCE_EXHAUSTED to calls that do not fit now): the
   rejection latency of Python gRPC (server and load client) on these cores with nothing else
   running, from the same run.

It prints the offered and achieved issue rates, admitted (OK), rejected
(RESOURCE_EXHAUSTED) and other outcomes per second, their latencies, the share of
admitted calls answered within their deadline, how many calls reached the service's
handlers (its gan_requests_total), and the server's memory; then PASS/FAIL for the targets.

The load generator shares the machine's cores with the server: when it cannot issue the
offered rate, the achieved rate is what the server saw, and how late the generator ran
against its schedule is printed too (latencies then include the client's own backlog).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from _harness import (
    OK,
    CoresUsed,
    LoadProcess,
    LoadResult,
    LoadSpec,
    OtherCpu,
    RssSampler,
    Server,
    build_model,
    launch_server,
    percentile_ms,
    requests_by_code,
    run_load,
    verdict,
)
from serve_bench import MODELS

REJECTED = "RESOURCE_EXHAUSTED"
MAX_COUNT = 1024  # the server's default GAN_MAX_COUNT: larger Generate calls are INVALID_ARGUMENT


@dataclass(frozen=True)
class Memory:
    before_mib: float
    peak_sampled_mib: float
    after_mib: float
    hwm_mib: float  # VmHWM: the process's peak since it started (includes start-up and the capacity run)


@dataclass(frozen=True)
class Overload:
    result: LoadResult
    memory: Memory
    reached_handlers: Counter[str]  # gan_requests_total{method="Generate"} during the overload, by code
    other_cpu: float  # share of the machine's CPU used by processes other than the server and the load
    cores: tuple[float, float]  # cores busy on average during the overload: (server, load generator)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="overload-"))
    config = {
        "max_batch_size": args.max_batch_size or MODELS[args.model][1]["max_batch_size"],
        "max_queue_delay_ms": 2,
        "max_queue_size": args.max_queue_size,
        "intra_op_threads": args.intra_op_threads,
    }
    repository, info = build_model(workdir, config, args.model)
    print(f"{args.model}/config.json: {config}", flush=True)
    print(f"gan-serve with {args.workers} worker(s); load over {args.channels} connection(s)", flush=True)
    env = {"GAN_LOG_LEVEL": "WARNING", "GAN_WORKERS": str(args.workers), "GAN_PROVIDER": args.provider}
    server = launch_server(repository, workdir / "server.log", env=env)
    try:
        capacity = measure_capacity(server, info, args)
        run = overload(server, info, capacity * args.factor, args)
        recovered = measure(server, info, args, concurrency=8, seconds=2.0)
        floor = refusal_floor(server, info, capacity * args.factor, args) if floor_possible(args) else None
    finally:
        exit_code = server.stop()
    failed = report(run, capacity, args)
    print(f"\nafter the overload: closed loop c=8 for 2 s: {recovered.tally().describe()}")
    if floor is not None:
        print_floor(floor, run.result)
    print(f"server exit code {exit_code}; server log: {server.log_path}")
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from service.runtime import usable_cores  # after serve_bench put the project on sys.path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the open-loop overload")
    parser.add_argument("--factor", type=float, default=4.0, help="offered rate as a multiple of capacity")
    parser.add_argument("--deadline", type=float, default=1.0, help="deadline of every overload call, seconds")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="closed-loop clients for the capacity run (at most queue / count)"
    )
    parser.add_argument("--capacity-seconds", type=float, default=4.0, help="measured seconds of the capacity run")
    parser.add_argument("--model", choices=sorted(MODELS), default="digits")
    parser.add_argument("--provider", choices=["cpu", "cuda", "auto"], default="cpu", help="the server's GAN_PROVIDER")
    parser.add_argument("--count", type=int, default=1, help="samples per Generate call")
    parser.add_argument("--max-queue-size", type=int, default=256, help="the model's queue bound, in samples")
    parser.add_argument(
        "--max-batch-size", type=int, help="default: serve_bench's for the model (64 for digits, 16 for dcgan64)"
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        help="the model's onnxruntime threads in each worker (default: one fewer than a worker's share of the "
        "cores, leaving one to its event loop)",
    )
    parser.add_argument("--workers", type=int, default=1, help="gan-serve --workers: server processes on the port")
    parser.add_argument("--channels", type=int, default=1, help="connections the load is spread over")
    parser.add_argument("--rejection-p99-ms", type=float, default=5.0, help="target for rejected calls' p99")
    parser.add_argument(
        "--rss-growth-mib", type=float, default=100.0, help="target: peak RSS under load <= RSS before + this"
    )
    args = parser.parse_args(argv)
    if args.intra_op_threads is None:
        args.intra_op_threads = loop_sparing_threads(usable_cores(), args.workers)
    return args


def loop_sparing_threads(cores: int, workers: int) -> int:
    """onnxruntime threads per worker that leave each worker's event loop a core of its own."""
    return max(1, cores // workers - 1)


def measure(
    server: Server, info: dict[str, object], args: argparse.Namespace, concurrency: int, seconds: float
) -> LoadResult:
    """Closed-loop Generate calls of args.count samples (deadline 30 s) for `seconds`."""
    mix = (("gan.v1", args.count),)
    spec = LoadSpec(server.target, info, mix, 30.0, seconds=seconds, concurrency=concurrency, model=args.model)
    spec = replace(spec, channels=args.channels)
    return run_load(spec)


def measure_capacity(server: Server, info: dict[str, object], args: argparse.Namespace) -> float:
    concurrency = capacity_concurrency(args)
    what = f"gan.v1 Generate count {args.count}, c={concurrency}, 1 s warm-up + {args.capacity_seconds:g} s"
    print(f"capacity: closed loop, {what} ...", flush=True)
    measure(server, info, args, concurrency, 1.0)
    load = measure(server, info, args, concurrency, args.capacity_seconds)
    ok = [o.latency_s for o in load.outcomes if o.code == OK]
    capacity = len(ok) / load.elapsed_s
    rates = f"{capacity:.0f} calls/s ({capacity * args.count:.0f} samples/s)"
    print(f"  {rates}, {latencies(ok)}; {load.tally().describe()}", flush=True)
    return capacity


def capacity_concurrency(args: argparse.Namespace) -> int:
    """--concurrency, or fewer clients if that many calls of --count samples would overflow the queue."""
    return max(1, min(args.concurrency, args.max_queue_size // args.count))


def overload(server: Server, info: dict[str, object], rate: float, args: argparse.Namespace) -> Overload:
    what = f"open loop at {rate:.0f} calls/s for {args.seconds:g} s, deadline {args.deadline:g} s"
    print(f"overload: {what} ...", flush=True)
    spec = open_loop(server, info, args.count, rate, args.seconds, args)
    handled_before = requests_by_code(server.metrics(), "Generate")
    before = server.rss_mib() or float("nan")
    with RssSampler(server.pid, 0.1) as sampler, LoadProcess(spec) as load:
        load.wait_started()
        others = OtherCpu([server.pid, load.pid, os.getpid()])
        ours = CoresUsed([server.pid, load.pid])
        time.sleep(max(0.0, args.seconds - 0.5))
        other_share = others.read()  # while the load process still runs: its CPU is not 'other'
        server_cores, load_cores = ours.read()
        result = load.result()
    memory = Memory(before, sampler.peak(), server.rss_mib() or float("nan"), server.peak_rss_mib() or float("nan"))
    handled = requests_by_code(server.metrics(), "Generate")
    handled.subtract(handled_before)
    return Overload(result, memory, +handled, other_share, (server_cores, load_cores))


def floor_possible(args: argparse.Namespace) -> bool:
    """The floor's calls ask for one sample more than the queue holds, within GAN_MAX_COUNT (1024)."""
    if args.max_queue_size < MAX_COUNT:
        return True
    print(f"refusal floor skipped: --max-queue-size {args.max_queue_size} + 1 is above GAN_MAX_COUNT ({MAX_COUNT})")
    return False


def refusal_floor(server: Server, info: dict[str, object], rate: float, args: argparse.Namespace) -> LoadResult:
    """The same open-loop rate of calls that are all refused before any compute (each asks for
    more samples than the queue holds): what rejections cost on these cores with nothing running."""
    samples = args.max_queue_size + 1
    print(f"refusal floor: open loop at {rate:.0f} calls/s of {samples} samples each (all refused) ...", flush=True)
    return run_load(open_loop(server, info, samples, rate, min(args.seconds, 5.0), args))


def open_loop(
    server: Server, info: dict[str, object], samples: int, rate: float, seconds: float, args: argparse.Namespace
) -> LoadSpec:
    """gan.v1 Generate calls of `samples` issued at `rate` per second for `seconds`, each with --deadline."""
    return LoadSpec(
        server.target,
        info,
        (("gan.v1", samples),),
        args.deadline,
        seconds=seconds,
        rate=rate,
        drain_s=args.deadline + 5,
        model=args.model,
        channels=args.channels,
    )


def print_floor(floor: LoadResult, during: LoadResult) -> None:
    refused = [o.latency_s for o in floor.outcomes if o.code != OK]  # INVALID_ARGUMENT: they could never fit
    rejected = [o.latency_s for o in during.outcomes if o.code == REJECTED]
    rate = floor.issued / floor.elapsed_s
    print(f"refusal floor: {rate:.0f} calls/s all refused, no compute running: {floor.tally().describe()}")
    print(f"  rejected latency: {latencies(refused)}  (during the overload: {latencies(rejected)})")
    print("  the floor is Python gRPC (server and load client) on these cores; the rest is sharing them with compute")


def report(run: Overload, capacity: float, args: argparse.Namespace) -> bool:
    """Print the figures and the targets; True when a target was missed."""
    result = run.result
    seconds = result.elapsed_s
    ok = [o.latency_s for o in result.outcomes if o.code == OK]
    rejected = [o.latency_s for o in result.outcomes if o.code == REJECTED]
    admitted = [o.latency_s for o in result.outcomes if o.code != REJECTED]  # let into the queue: any other reply
    others = result.tally().failed
    others.pop(REJECTED, None)
    print("\nfigures (latencies measured by the client, from issuing a call to its reply):")
    print_rates(result, capacity, args)
    print(f"  {'admitted (OK)':<34} {len(ok) / seconds:9.1f} calls/s  ({len(ok)})")
    print(f"  {'rejected (RESOURCE_EXHAUSTED)':<34} {len(rejected) / seconds:9.1f} calls/s  ({len(rejected)})")
    for code, count in others.most_common():
        print(f"  {'other: ' + code:<34} {count / seconds:9.1f} calls/s  ({count})")
    print(f"  {'lost (no reply at all)':<34} {result.lost:9d}")
    print(f"  OK latency:       {latencies(ok)}")
    print(f"  rejected latency: {latencies(rejected)}")
    print(f"  admitted latency: {latencies(admitted)}  (the {len(admitted)} calls not rejected, to any reply)")
    in_time = sum(1 for latency in ok if latency <= args.deadline)
    share = in_time / len(admitted) if admitted else float("nan")
    print(f"  admitted calls answered OK within their {args.deadline:g} s deadline: {in_time} = {share:.1%}")
    handled = ", ".join(f"{code} {n}" for code, n in run.reached_handlers.most_common()) or "none"
    print(
        f"  calls that reached the service's handlers (gan_requests_total): {run.reached_handlers.total()} ({handled})"
    )
    print_unseen(result, run.reached_handlers)
    server_cores, load_cores = run.cores
    cpu = f"server {server_cores:.2f} cores, load generator {load_cores:.2f} cores"
    print(f"  CPU during the overload: {cpu}, other processes {run.other_cpu:.0%} of the machine")
    memory = run.memory
    print(
        f"  server RSS: before {memory.before_mib:.1f} MiB, peak during load {memory.peak_sampled_mib:.1f} MiB "
        f"(sampled every 100 ms), after {memory.after_mib:.1f} MiB, VmHWM {memory.hwm_mib:.1f} MiB"
    )
    return targets(result, memory, percentile_ms(rejected, 99), percentile_ms(admitted, 99), args)


def print_rates(result: LoadResult, capacity: float, args: argparse.Namespace) -> None:
    offered = capacity * args.factor
    achieved = result.issued / result.elapsed_s
    print(f"  {f'capacity (closed loop c={capacity_concurrency(args)})':<34} {capacity:9.1f} calls/s")
    print(f"  {f'offered ({args.factor:g} x capacity)':<34} {offered:9.1f} calls/s")
    print(f"  {'achieved issue rate':<34} {achieved:9.1f} calls/s  ({result.issued} in {result.elapsed_s:.1f} s)")
    lag_p50, lag_max = percentile_ms(result.issue_lag_s, 50), percentile_ms(result.issue_lag_s, 100)
    print(f"  {'client behind its schedule':<34} p50 {lag_p50:.1f} ms, max {lag_max:.1f} ms")
    if achieved < 0.95 * offered:
        print(f"  the client issued only {achieved / capacity:.2f} x capacity on these cores, not {args.factor:g} x")
    if achieved < 0.95 * offered or lag_max > 100:
        print("  warning: the load generator itself was saturated; client latencies include its own backlog")


def print_unseen(result: LoadResult, reached: Counter[str]) -> None:
    """Calls with a status the service's handlers never gave: gRPC itself answered them."""
    unseen = len(result.outcomes) - reached.total()
    cancelled = result.tally().failed.get("CANCELLED", 0)
    if unseen > 0:
        print(f"  calls answered without reaching a handler: {unseen}; of the client's statuses, CANCELLED {cancelled}")
    if cancelled:
        print(
            "  note: CANCELLED (message 'CANCELLED') is gRPC core dropping calls the server application has not yet "
            "picked up (more than grpc.server.max_pending_requests, default 1000, waiting): the event loop is a "
            "bottleneck before the batcher's admission control (max_queue_size) is reached"
        )


def latencies(values: list[float]) -> str:
    return f"p50 {percentile_ms(values, 50):8.2f} ms  p99 {percentile_ms(values, 99):8.2f} ms"


def targets(
    result: LoadResult, memory: Memory, rejected_p99_ms: float, admitted_p99_ms: float, args: argparse.Namespace
) -> bool:
    rss_bound = memory.before_mib + args.rss_growth_mib
    deadline_ms = args.deadline * 1000
    checks = [
        (
            f"rejected calls p99 {rejected_p99_ms:.2f} ms <= {args.rejection_p99_ms:g} ms",
            rejected_p99_ms <= args.rejection_p99_ms,
        ),
        (
            f"admitted calls p99 {admitted_p99_ms:.1f} ms <= deadline {deadline_ms:.0f} ms",
            admitted_p99_ms <= deadline_ms,
        ),
        (
            f"peak RSS {memory.peak_sampled_mib:.1f} MiB <= before + {args.rss_growth_mib:g} = {rss_bound:.1f} MiB",
            memory.peak_sampled_mib <= rss_bound,
        ),
        (f"no call lost ({result.lost})", result.lost == 0),
    ]
    if not any(o.code == REJECTED for o in result.outcomes):
        print("\nnote: no call was rejected with RESOURCE_EXHAUSTED: the rejection target cannot pass")
    print("\ntargets:")
    for label, ok in checks:
        print(f"  {verdict(ok)}  {label}")
    return not all(ok for _, ok in checks)


if __name__ == "__main__":
    sys.exit(main())
