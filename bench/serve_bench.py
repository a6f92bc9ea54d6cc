"""Serving benchmark: the real server against in-process onnxruntime and a null V2 server.

    .venv/bin/python bench/serve_bench.py [--seconds 4] [--concurrency 1 8 32 64] [--provider auto]
                                          [--workers 1] [--channels 1] [--client raw|tritonclient|both]

It exports two generators through our own export step (weights from one training step;
speed does not depend on them): the standard 64x64 RGB DCGAN (ngf=64, about 3.6 M
parameters) and the default digits generator. It serves them with gan-serve in its own
process and drives them with closed-loop gRPC clients (one client process, N coroutines,
one sample per request) through gan.v1 Generate and V2 ModelInfer. In the same run it
measures two references and prints the ratios to them:

- onnxruntime called in-process on the same file with the same threads at each batch size,
  with as many sessions running side by side as the server has instances of the model (the
  compute ceiling);
- a null V2 server that answers ModelInfer at once with a fixed reply, driven by the same
  client (the ceiling of Python gRPC plus the load client on these cores).

The V2 rows and the null server can be driven by two clients (--client): `raw`, our own
grpc.aio stubs (the lightest Python client, so the harshest null reference), and
`tritonclient`, the stock tritonclient[grpc] asyncio client that Triton users run (from
.venv-tritonclient, built on first use; tests/tritonclient/drive.py load). The digits/null
ratio is taken between rows of the same client. gan.v1 rows always use the raw client, and
tritonclient keeps its clients on one connection (--channels applies to the raw client).

The client, server and references share the machine's cores, as the targets assume.
With --workers N the server runs N processes on its port (gan-serve --workers); they share
client connections, so give the client several (--channels, used for the null server too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Call = Callable[[int], Awaitable[None]]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {
    # name: (training overrides, config.json)
    "dcgan64": (
        ["data.image_size=64", "data.channels=3", "data.conditional=false", "model.width=64", "model.latent_dim=100"],
        # docs/operations.md, sizing items 1 and 5: on 2 CPU cores DCGAN-64 is flat from batch 8, and
        # larger batches only lengthen the tail; on a GPU raise max_batch_size (the H200 runs used 64)
        {"max_batch_size": 16, "max_queue_delay_ms": 5, "instances": 2},
    ),
    "digits": ([], {"max_batch_size": 64, "max_queue_delay_ms": 2, "intra_op_threads": 1}),  # sizing item 5
}


@dataclass(frozen=True)
class Load:
    """One closed-loop run: what the client saw."""

    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


# --- the model repository ----------------------------------------------------------------------


def build_repository(root: Path, names: Sequence[str]) -> None:
    from export.cli import export_checkpoint
    from training.config import load_config
    from training.train import train

    for name in names:
        overrides, model_config = MODELS[name]
        run = Path(tempfile.mkdtemp(prefix=f"serve-bench-run-{name}-"))
        base = ROOT / "training" / "configs" / "digits.yaml"
        config = load_config(base, [*overrides, "steps=1", "batch_size=8", f"out_dir={run}", "sample_every=1000"])
        checkpoint = train(config, progress=False).checkpoint
        export_checkpoint(checkpoint, root, name, model_config=dict(model_config))


def describe(path: Path) -> dict[str, object]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    # conditional exports take class_weights (N, classes) float32; older ones label (N,) int64
    label_input = next((name for name in ("class_weights", "label") if name in inputs), None)
    return {"latent_dim": int(inputs["latent"][1]), "conditional": label_input is not None, "label_input": label_input}


def class_feed(info: dict[str, object], labels: np.ndarray) -> tuple[str, str, np.ndarray]:
    """(input name, V2 datatype, array) that give a conditional model these labels (N,)."""
    if info.get("label_input", "class_weights") == "class_weights":
        return "class_weights", "FP32", np.eye(10, dtype=np.float32)[labels % 10]
    return "label", "INT64", labels.astype(np.int64)


# --- references --------------------------------------------------------------------------------


def ort_reference(
    path: Path, provider: str, batch_sizes: Sequence[int], seconds: float, workers: int = 1
) -> dict[int, float]:
    """Samples/s of onnxruntime in-process at each batch size, with the server's session options:
    as many sessions as the server's `workers` run instances of the model, each running back to
    back in its own thread (onnxruntime releases the GIL while it runs), as the server's do."""
    sessions = [open_session(path, provider, workers) for _ in range(model_instances(path) * workers)]
    where = f"{len(sessions)} session(s) on {sessions[0].get_providers()[0]}"
    print(f"in-process onnxruntime on {path.parent.parent.name}: {where}", flush=True)
    info = describe(path)
    return {batch: side_by_side(sessions, feeds_for(info, batch), batch, seconds) for batch in batch_sizes}


def side_by_side(sessions: Sequence[Any], feeds: dict[str, np.ndarray], batch: int, seconds: float) -> float:
    """Samples/s of `sessions` running `feeds` back to back at the same time, one thread each."""
    with ThreadPoolExecutor(len(sessions)) as pool:
        rates = [pool.submit(samples_per_second, session, feeds, batch, seconds) for session in sessions]
        return sum(rate.result() for rate in rates)


def samples_per_second(session: Any, feeds: dict[str, np.ndarray], batch: int, seconds: float) -> float:
    """How many samples `session` makes per second running `feeds` (of `batch` rows) back to back."""
    session.run(None, feeds)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feeds)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def ort_latency_ms(path: Path, provider: str, workers: int = 1, repeats: int = 300) -> float:
    session = open_session(path, provider, workers)
    return median_run_ms(session, feeds_for(describe(path), 1), repeats)


def median_run_ms(session: Any, feeds: dict[str, np.ndarray], repeats: int) -> float:
    """The median time of one `session.run` on `feeds`, after 20 warm-up runs."""
    for _ in range(20):
        session.run(None, feeds)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def open_session(path: Path, provider: str, workers: int = 1) -> Any:
    """A session with the options of a server of `workers` processes: threads (the model's
    config.json, else GAN_*, else the server's default for its workers and the model's
    instances), spinning and graph optimisation (GAN_*)."""
    import onnxruntime as ort

    from service.model_config import read_model_config
    from service.runtime import choose_providers, session_options, session_threads

    settings = _settings(provider, workers)
    config = read_model_config(path.parent.parent)
    options = session_options(settings, session_threads(settings, config.intra_op_threads, config.sessions(settings)))
    providers = choose_providers(settings).providers
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def model_instances(path: Path) -> int:
    """How many sessions the server opens for the model at `path` (its config.json, else GAN_INSTANCES)."""
    from service.model_config import read_model_config
    from service.settings import load_settings

    return read_model_config(path.parent.parent).sessions(load_settings())


def _settings(provider: str, workers: int) -> Any:
    from service.settings import load_settings

    return load_settings().model_copy(update={"provider": provider, "workers": workers})


def feeds_for(info: dict[str, object], batch: int) -> dict[str, np.ndarray]:
    latent_dim = int(str(info["latent_dim"]))
    feeds: dict[str, np.ndarray] = {
        "latent": np.random.default_rng(0).standard_normal((batch, latent_dim)).astype(np.float32)
    }
    if info["conditional"]:
        name, _, array = class_feed(info, np.arange(batch, dtype=np.int64) % 10)
        feeds[name] = array
    return feeds


def null_server(port_file: str) -> None:
    """A V2 server that answers every ModelInfer at once with the same small reply."""
    import grpc

    from inference import grpc_service_pb2 as v2
    from inference import grpc_service_pb2_grpc as v2_grpc

    reply = v2.ModelInferResponse(model_name="null", model_version="1")
    reply.outputs.add(name="image", datatype="FP32", shape=[1, 1, 16, 16])
    reply.raw_output_contents.append(bytes(4 * 256))

    class Null(v2_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request: v2.ModelInferRequest, context: object) -> v2.ModelInferResponse:
            return reply

    async def serve() -> None:
        server = grpc.aio.server()
        v2_grpc.add_GRPCInferenceServiceServicer_to_server(Null(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        Path(port_file).write_text(str(port))
        await server.wait_for_termination()

    asyncio.run(serve())


# --- the load client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """The load: `concurrency` closed-loop clients spread over `channels` connections."""

    concurrency: int
    channels: int = 1


def drive(target: str, api: str, model: str, info: dict[str, object], client: Client, seconds: float) -> Load:
    """In a separate process: the client's closed loops for `seconds` after a warm-up."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: Load = pool.apply(_drive, (target, api, model, info, client, seconds))
    return result


def _drive(target: str, api: str, model: str, info: dict[str, object], client: Client, seconds: float) -> Load:
    return asyncio.run(_closed_loop(target, api, model, info, client, seconds))


async def _closed_loop(
    target: str, api: str, model: str, info: dict[str, object], client: Client, seconds: float
) -> Load:
    def make_call(channel: Any) -> Call:
        return _generate_call(channel, model) if api == "gan.v1" else _infer_call(channel, model, info)

    return await closed_loop(target, make_call, client.concurrency, seconds, client.channels)


async def closed_loop(
    target: str, make_call: Callable[[Any], Call], concurrency: int, seconds: float, channels: int = 1
) -> Load:
    """`concurrency` clients, each sending its next call (`make_call(channel)(seed)`) when the last is answered.

    Client i uses connection i % `channels`: each channel has its own subchannel pool, so its own
    TCP connection (grpc would share one otherwise); gan-serve's workers each take connections.
    """
    import grpc

    limit = 64 * 1024 * 1024  # translation replies can be large
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    options.append(("grpc.use_local_subchannel_pool", 1))
    opened = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
    calls = [make_call(channel) for channel in opened]
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop = False

    async def client(index: int) -> None:
        nonlocal errors
        call = calls[index % channels]
        seed = index * 1_000_000
        while not stop:
            seed += 1
            started = time.perf_counter()
            try:
                await call(seed)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if measuring:
                latencies.append((time.perf_counter() - started) * 1000)

    tasks = [asyncio.ensure_future(client(i)) for i in range(concurrency)]
    await asyncio.sleep(1.0)  # warm-up
    measuring, started = True, time.perf_counter()
    await asyncio.sleep(seconds)
    measuring, elapsed = False, time.perf_counter() - started
    stop = True
    await asyncio.gather(*tasks)
    await asyncio.gather(*(channel.close() for channel in opened))
    return Load(len(latencies), elapsed, latencies, errors)


def _generate_call(channel: Any, model: str) -> Call:
    from gan.v1 import generator_pb2 as pb
    from gan.v1 import generator_pb2_grpc as pb_grpc

    stub = pb_grpc.GeneratorServiceStub(channel)

    async def call(seed: int) -> None:
        await stub.Generate(pb.GenerateRequest(model=model, count=1, seed=seed), timeout=30)

    return call


def _infer_call(channel: Any, model: str, info: dict[str, object]) -> Call:
    from inference import grpc_service_pb2 as v2
    from inference import grpc_service_pb2_grpc as v2_grpc

    stub = v2_grpc.GRPCInferenceServiceStub(channel)
    latent_dim = int(str(info["latent_dim"]))
    template = v2.ModelInferRequest(model_name=model)
    template.inputs.add(name="latent", datatype="FP32", shape=[1, latent_dim])
    name, datatype, sevens = class_feed(info, np.array([7]))
    if info["conditional"]:
        template.inputs.add(name=name, datatype=datatype, shape=list(sevens.shape))
    rng = np.random.default_rng(0)
    latents = [rng.standard_normal((1, latent_dim)).astype(np.float32).tobytes() for _ in range(64)]
    label = sevens.tobytes()

    async def call(seed: int) -> None:
        request = v2.ModelInferRequest()
        request.CopyFrom(template)
        request.raw_input_contents.append(latents[seed % 64])
        if info["conditional"]:
            request.raw_input_contents.append(label)
        await stub.ModelInfer(request, timeout=30)

    return call


# --- processes ---------------------------------------------------------------------------------


def start_server(repository: Path, provider: str, workers: int = 1) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "GAN_PROVIDER": provider, "GAN_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "service", "--model-repository", str(repository), "--workers", str(workers)]
    command += ["--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"ready on port (\d+)", line)
        if match:
            return process, int(match.group(1))
    raise SystemExit("gan-serve did not start; run it by hand to see why")


def start_null_server(workdir: Path) -> tuple[multiprocessing.process.BaseProcess, int]:
    port_file = workdir / "null.port"
    process = multiprocessing.get_context("spawn").Process(target=null_server, args=(str(port_file),), daemon=True)
    process.start()
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            raise SystemExit("the null server did not start")
        time.sleep(0.05)
    return process, int(port_file.read_text())


# --- report ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per row (after 1 s warm-up)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--provider", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["dcgan64", "digits"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--repository", type=Path, help="serve this model repository, exporting the models into it when missing"
    )
    parser.add_argument("--workers", type=int, default=1, help="gan-serve --workers: server processes on the port")
    parser.add_argument(
        "--channels", type=int, default=1, help="connections the load client spreads its clients over (null server too)"
    )
    parser.add_argument(
        "--client",
        choices=["raw", "tritonclient", "both"],
        default="raw",
        help="load client of the V2 and null rows: our grpc.aio stubs, the stock tritonclient, or both",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    repository = args.repository or workdir / "models"
    missing = [name for name in args.models if not (repository / name / "1" / "model.onnx").exists()]
    if missing:
        print(f"exporting {', '.join(missing)} into {repository} ...", flush=True)
        build_repository(repository, missing)
    infos = {name: describe(repository / name / "1" / "model.onnx") for name in args.models}

    print(f"gan-serve with {args.workers} worker(s); load client over {args.channels} connection(s)", flush=True)
    server, port = start_server(repository, args.provider, args.workers)
    null_process, null_port = start_null_server(workdir)
    try:
        rows, references = measure(args, repository, infos, f"127.0.0.1:{port}", f"127.0.0.1:{null_port}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        null_process.terminate()
    missed = report(rows, references)
    if args.json:
        figures = {"cpu_count": os.cpu_count(), "provider": args.provider, "rows": [r.as_dict() for r in rows]}
        figures["workers"], figures["channels"] = args.workers, args.channels
        figures["ort_samples_per_s"] = references.ort_samples_per_s
        figures["ort_batch1_p50_ms"] = references.ort_batch1_p50_ms
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if args.strict and missed else 0


@dataclass(frozen=True)
class Row:
    model: str
    api: str
    concurrency: int
    load: Load
    client: str = "raw"

    def as_dict(self) -> dict[str, object]:
        load = self.load
        return {"model": self.model, "api": self.api, "client": self.client, "concurrency": self.concurrency,
                "samples_per_s": load.rate, "p50_ms": load.percentile(50), "p99_ms": load.percentile(99),
                "errors": load.errors}  # fmt: skip


@dataclass
class References:
    ort_samples_per_s: dict[str, dict[int, float]]  # model -> batch size -> samples/s
    ort_batch1_p50_ms: dict[str, float]

    def ceiling(self, model: str) -> float | None:
        rates = self.ort_samples_per_s.get(model)
        return max(rates.values()) if rates else None


def measure(
    args: argparse.Namespace, repository: Path, infos: dict[str, dict[str, object]], target: str, null_target: str
) -> tuple[list[Row], References]:
    rows: list[Row] = []
    references = References({}, {})
    for name in args.models:
        path = repository / name / "1" / "model.onnx"
        rates = ort_reference(path, args.provider, [1, 8, 32, 64], min(args.seconds, 2), args.workers)
        references.ort_samples_per_s[name] = rates
        references.ort_batch1_p50_ms[name] = ort_latency_ms(path, args.provider, args.workers)
        for api, client in api_clients(args.client):
            for concurrency in args.concurrency:
                load = drive_with(
                    client, target, api, name, infos[name], Client(concurrency, args.channels), args.seconds
                )
                rows.append(Row(name, api, concurrency, load, client))
                print(format_row(rows[-1], references), flush=True)
    null_info: dict[str, object] = {"latent_dim": 64, "conditional": True}
    for client in clients(args.client):
        for concurrency in sorted({1, 64} & set(args.concurrency)):
            load = drive_with(
                client, null_target, "v2", "null", null_info, Client(concurrency, args.channels), args.seconds
            )
            rows.append(Row("null", "v2", concurrency, load, client))
            print(format_row(rows[-1], references), flush=True)
    return rows, references


def clients(choice: str) -> list[str]:
    return ["raw", "tritonclient"] if choice == "both" else [choice]


def api_clients(choice: str) -> list[tuple[str, str]]:
    """(api, client) pairs to drive: gan.v1 only speaks through our stubs; V2 through each chosen client."""
    return [("gan.v1", "raw"), *(("v2", client) for client in clients(choice))]


def drive_with(
    client_kind: str, target: str, api: str, model: str, info: dict[str, object], client: Client, seconds: float
) -> Load:
    if client_kind == "raw":
        return drive(target, api, model, info, client, seconds)
    return drive_tritonclient(target, model, info, client.concurrency, seconds)


def drive_tritonclient(target: str, model: str, info: dict[str, object], concurrency: int, seconds: float) -> Load:
    """The same closed loops with the stock tritonclient asyncio client, in its own virtualenv."""
    from tests.tritonclient import venv

    latent_dim = int(str(info["latent_dim"]))
    feeds = [{"name": "latent", "datatype": "FP32", "shape": [1, latent_dim], "data": [0.0] * latent_dim}]
    if info["conditional"]:
        name, datatype, sevens = class_feed(info, np.array([7]))
        feeds.append({"name": name, "datatype": datatype, "shape": list(sevens.shape), "data": sevens.ravel().tolist()})
    command = [str(venv.tritonclient_python()), str(venv.DRIVER), "load", target, model, str(concurrency)]
    done = subprocess.run([*command, str(seconds), json.dumps(feeds)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the tritonclient load client failed:\n{done.stderr[-3000:]}")
    seen = json.loads(done.stdout)
    return Load(seen["requests"], seen["seconds"], seen["latencies_ms"], seen["errors"])


def format_row(row: Row, references: References) -> str:
    ceiling = references.ceiling(row.model)
    ratio = f"{row.load.rate / ceiling:.2f}" if ceiling else "-"
    return (
        f"{row.model:>8} {row.api:>6} {row.client:>12} c={row.concurrency:<3} {row.load.rate:9.1f} samples/s  "
        f"p50 {row.load.percentile(50):7.2f} ms  p99 {row.load.percentile(99):7.2f} ms  "
        f"x ort-ceiling {ratio}  errors {row.load.errors}"
    )


Check = tuple[str, float, float, str]  # label, value, bound, ">=" or "<="


def target_checks(rows: list[Row], references: References) -> list[Check]:
    def find(model: str, api: str, client: str, concurrency: int) -> Load | None:
        key = (model, api, client, concurrency)
        return next((r.load for r in rows if (r.model, r.api, r.client, r.concurrency) == key), None)

    checks: list[Check] = []
    ceiling = references.ceiling("dcgan64")
    for api, client in sorted({(r.api, r.client) for r in rows if r.model != "null"}):
        null = find("null", "v2", client, 64)
        c32, c1, d64 = (
            find("dcgan64", api, client, 32),
            find("dcgan64", api, client, 1),
            find("digits", api, client, 64),
        )
        api = api if client == "raw" else f"{api} ({client})"
        if c32 and ceiling:
            checks.append((f"{api} dcgan64 c=32 samples/s / best in-process ort", c32.rate / ceiling, 0.75, ">="))
            checks.append((f"{api} dcgan64 c=32 p99 / p50", c32.percentile(99) / c32.percentile(50), 3.0, "<="))
        if c1 and "dcgan64" in references.ort_batch1_p50_ms:
            extra = c1.percentile(50) - references.ort_batch1_p50_ms["dcgan64"]
            checks.append((f"{api} dcgan64 c=1 p50 - in-process batch-1 p50 (ms)", extra, 1.0, "<="))
        if d64 and null:
            checks.append((f"{api} digits c=64 requests/s / null server's", d64.rate / null.rate, 0.6, ">="))
    return checks


def report(rows: list[Row], references: References) -> list[Check]:
    print("\nreferences (onnxruntime in-process, same file, the server's session options and instances side by side):")
    for model, rates in references.ort_samples_per_s.items():
        batches = ", ".join(f"batch {b}: {v:.1f}" for b, v in rates.items())
        print(f"  {model}: samples/s {batches}; batch-1 p50 {references.ort_batch1_p50_ms[model]:.3f} ms")
    checks = target_checks(rows, references)
    print("\ntargets:")
    for label, value, bound, sense in checks:
        ok = value >= bound if sense == ">=" else value <= bound
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {value:.2f} (target {sense} {bound})")
    return [c for c in checks if not (c[1] >= c[2] if c[3] == ">=" else c[1] <= c[2])]


if __name__ == "__main__":
    sys.exit(main())
