"""Soak: a long mixed load at 70 % of capacity with a model reload every minute; memory must stay flat.

    .venv/bin/python bench/soak.py [--seconds 600] [--load 0.7] [--reload-every 60]

It builds the digits model (serve_bench.build_repository) and serves it with gan-serve in
its own process in poll mode (GAN_MODEL_CONTROL_MODE=poll, GAN_REPOSITORY_POLL_S=1). Then:

1. capacity: closed-loop calls of the mix below at --concurrency for --capacity-seconds;
2. soak: open-loop calls of the same mix at --load x that rate for --seconds. Every
   --reload-every seconds the newest version folder is copied to the next version number
   (staged under another name, then renamed, so the server never sees half a file); the server
   loads it, swaps it in and retires the old one (version policy latest 1). The server's RSS is
   sampled every --sample-every seconds.

The mix cycles through gan.v1 Generate of 1, 4, 16 and 64 samples and V2 ModelInfer of
batch 1 and 8. It prints RSS over time with the traffic of each period, the growth after
warm-up (median RSS of the last minute against the median of the minute after --warmup),
errors by status code and latencies per kind of call; then PASS/FAIL for the targets:
growth <= 5 %, no error and no lost call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _harness import (
    MODEL,
    OK,
    LoadProcess,
    LoadResult,
    LoadSpec,
    OtherCpu,
    Server,
    build_model,
    describe_mix,
    launch_server,
    median,
    percentile_ms,
    run_load,
    verdict,
)

MIX = (("gan.v1", 1), ("gan.v1", 4), ("gan.v1", 16), ("gan.v1", 64), ("v2", 1), ("v2", 8))
POLL = {"GAN_MODEL_CONTROL_MODE": "poll", "GAN_REPOSITORY_POLL_S": "1", "GAN_LOG_LEVEL": "INFO"}


@dataclass
class Timeline:
    """What the parent saw during the soak, in seconds since `started` (time.monotonic, as the load's sent_at)."""

    started: float = 0.0
    rss: list[tuple[float, float]] = field(default_factory=list)  # (t, MiB)
    other_cpu: list[tuple[float, float]] = field(default_factory=list)  # (t, share of the machine used by others)
    reloads: list[tuple[float, int]] = field(default_factory=list)  # (t, new version)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    repository, info = build_model(workdir, {"max_batch_size": 64, "max_queue_delay_ms": 2})
    server = launch_server(repository, workdir / "server.log", env=POLL)
    try:
        capacity = measure_capacity(server, info, args)
        rss_before = server.rss_mib() or float("nan")
        result, timeline = soak(server, repository, info, capacity * args.load, args)
        hwm = server.peak_rss_mib() or float("nan")
    finally:
        exit_code = server.stop()
    print(f"\nserver RSS before the soak {rss_before:.1f} MiB, VmHWM {hwm:.1f} MiB; exit code {exit_code}")
    print_reloads(server, timeline)
    print_rss_table(result, timeline, args)
    print_calls(result, capacity * args.load)
    growth = rss_growth(timeline, args)
    failed = targets(result, growth)
    print(f"server log: {server.log_path}")
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the soak")
    parser.add_argument("--load", type=float, default=0.7, help="offered rate as a share of capacity")
    parser.add_argument("--reload-every", type=float, default=60.0, help="seconds between model reloads")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the growth baseline starts")
    parser.add_argument("--deadline", type=float, default=5.0, help="deadline of every call, seconds")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients for the capacity run")
    parser.add_argument("--capacity-seconds", type=float, default=4.0)
    parser.add_argument("--table-every", type=float, default=30.0, help="seconds per row of the RSS table")
    return parser.parse_args(argv)


def measure_capacity(server: Server, info: dict[str, object], args: argparse.Namespace) -> float:
    what = f"closed loop c={args.concurrency}, mix {describe_mix(MIX)}, 1 s warm-up + {args.capacity_seconds:g} s"
    print(f"capacity: {what} ...", flush=True)
    run_load(LoadSpec(server.target, info, MIX, 30.0, seconds=1.0, concurrency=args.concurrency))
    spec = LoadSpec(server.target, info, MIX, 30.0, seconds=args.capacity_seconds, concurrency=args.concurrency)
    result = run_load(spec)
    capacity = result.tally().ok / result.elapsed_s
    print(f"  {capacity:.1f} calls/s of the mix; {result.tally().describe()}", flush=True)
    return capacity


def soak(
    server: Server, repository: Path, info: dict[str, object], rate: float, args: argparse.Namespace
) -> tuple[LoadResult, Timeline]:
    what = f"open loop at {rate:.1f} calls/s ({args.load:g} x capacity) for {args.seconds:g} s"
    print(f"soak: {what}, a reload every {args.reload_every:g} s ...", flush=True)
    spec = LoadSpec(server.target, info, MIX, args.deadline, seconds=args.seconds, rate=rate, drain_s=args.deadline + 5)
    timeline = Timeline()
    version = 1
    with LoadProcess(spec) as load:
        load.wait_started()
        others = OtherCpu([server.pid, load.pid, os.getpid()])
        started = time.monotonic()  # the load process's clock too: time.monotonic is one clock on Linux
        next_sample, next_reload = 0.0, args.reload_every
        while (now := time.monotonic() - started) < args.seconds:
            if now >= next_reload:
                version = reload(repository, version)
                timeline.reloads.append((now, version))
                next_reload += args.reload_every
            if now >= next_sample:
                timeline.rss.append((now, server.rss_mib() or float("nan")))
                timeline.other_cpu.append((now, others.read()))
                next_sample += args.sample_every
                if len(timeline.rss) % 12 == 0:
                    print(f"  {now:6.0f} s  RSS {timeline.rss[-1][1]:.1f} MiB", flush=True)
            time.sleep(max(0.0, min(next_sample, next_reload) - (time.monotonic() - started)))
        timeline.rss.append((time.monotonic() - started, server.rss_mib() or float("nan")))
        result = load.result()
    timeline.started = started
    return result, timeline


def reload(repository: Path, version: int) -> int:
    """Copy version `version` to `version + 1`, staged under a non-numeric name and renamed at once."""
    model_dir = repository / MODEL
    staging = model_dir / f"staging-{version + 1}"
    shutil.copytree(model_dir / str(version), staging)
    staging.rename(model_dir / str(version + 1))
    return version + 1


# --- report ------------------------------------------------------------------------------------


def print_reloads(server: Server, timeline: Timeline) -> None:
    loaded = server.log_lines(rf"loaded {MODEL} version \d+")
    retired = server.log_lines(rf"retiring {MODEL} version \d+")
    failed = server.log_lines(r"failed")
    written = ", ".join(f"v{v} at {t:.0f} s" for t, v in timeline.reloads) or "none"
    print(f"reloads: {len(timeline.reloads)} new versions written ({written})")
    print(
        f"  server log: {len(loaded)} versions loaded (the first included), {len(retired)} retired, "
        f"{len(failed)} lines with 'failed'"
    )


def print_rss_table(result: LoadResult, timeline: Timeline, args: argparse.Namespace) -> None:
    print(f"\nRSS (MiB, every {args.sample_every:g} s), the calls sent in each period, and the share of the CPU")
    print("that processes other than the server and the load generator used (others):")
    print(f"{'period (s)':>12}  {'RSS samples':<48} {'calls/s':>8} {'errors':>6} {'p99 ms':>8} {'others':>6}  versions")
    start = 0.0
    while start < args.seconds:
        end = start + args.table_every
        samples = " ".join(f"{m:.1f}" for t, m in timeline.rss if start <= t < end)
        window = [o for o in result.outcomes if start <= o.sent_at - timeline.started < end]
        ok = [o for o in window if o.code == OK]
        errors = len(window) - len(ok)
        versions = "/".join(sorted({o.detail for o in ok}, key=int)) or "-"
        p99 = percentile_ms([o.latency_s for o in ok], 99)
        period = f"{start:.0f}-{end:.0f}"
        rate = len(window) / args.table_every
        others = median([share for t, share in timeline.other_cpu if start < t <= end])
        print(f"{period:>12}  {samples:<48} {rate:8.1f} {errors:>6} {p99:8.1f} {others:6.0%}  {versions}")
        start = end


def print_calls(result: LoadResult, rate: float) -> None:
    tally = result.tally()
    print(f"\ncalls: offered {rate:.1f}/s, issued {result.issued / result.elapsed_s:.1f}/s; {tally.describe()}")
    errors = Counter((o.code, o.detail) for o in result.outcomes if o.code != OK)
    for (code, detail), count in errors.most_common(5):
        print(f"  {count} x {code}: {detail!r}")
    print("latency of OK calls by kind:")
    for kind, (api, samples) in enumerate(MIX):
        ok = [o.latency_s for o in result.outcomes if o.kind == kind and o.code == OK]
        p50, p99, top = (percentile_ms(ok, q) for q in (50, 99, 100))
        print(f"  {api:>6} x{samples:<3} {len(ok):8d} OK  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  max {top:8.2f} ms")


@dataclass(frozen=True)
class Growth:
    early: tuple[float, float]  # the window after warm-up, seconds
    late: tuple[float, float]  # the last window
    early_mib: float
    late_mib: float

    @property
    def ratio(self) -> float:
        return self.late_mib / self.early_mib - 1


def rss_growth(timeline: Timeline, args: argparse.Namespace) -> Growth:
    """Median RSS of the last window against the window after warm-up (windows of 60 s, shorter for short runs)."""
    window = min(60.0, max(args.sample_every, (args.seconds - args.warmup) / 2))
    warmup = min(args.warmup, max(0.0, args.seconds - 2 * window))
    early = (warmup, warmup + window)
    late = (args.seconds - window, args.seconds + args.sample_every)
    early_mib = median([m for t, m in timeline.rss if early[0] <= t < early[1]])
    late_mib = median([m for t, m in timeline.rss if late[0] <= t < late[1]])
    growth = Growth(early, late, early_mib, late_mib)
    late_text = f"{late_mib:.1f} MiB over {late[0]:.0f}-{args.seconds:.0f} s"
    early_text = f"{early_mib:.1f} MiB over {early[0]:.0f}-{early[1]:.0f} s"
    print(f"\nRSS growth: median {late_text} against {early_text}: {growth.ratio:+.2%}")
    if warmup < args.warmup:
        print(f"  (the run is too short for a {args.warmup:g} s warm-up and two {window:g} s windows)")
    return growth


def targets(result: LoadResult, growth: Growth) -> bool:
    tally = result.tally()
    errors = sum(tally.failed.values())
    checks = [
        (f"RSS growth after warm-up {growth.ratio:+.2%} <= 5 %", growth.ratio <= 0.05),
        (f"no error ({errors})", errors == 0),
        (f"no lost call ({tally.unaccounted})", tally.unaccounted == 0),
    ]
    print("\ntargets:")
    for label, ok in checks:
        print(f"  {verdict(ok)}  {label}")
    return not all(ok for _, ok in checks)


if __name__ == "__main__":
    sys.exit(main())
