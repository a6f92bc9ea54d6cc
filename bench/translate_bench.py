"""Translate throughput: the real server against onnxruntime in-process on the same translator.

    .venv/bin/python bench/translate_bench.py [--checkpoint runs/sr/checkpoint.pt] [--size 32] [--seconds 4]

It exports the super-resolution model (the checkpoint given, or one training step of
training/configs/sr.yaml: speed does not depend on the weights) through gan-export's own
step, serves it with gan-serve in its own process, and drives Translate with closed-loop
gRPC clients (one image of `--size` x `--size` per request) at concurrency 1 and 16, raw
uint8 in and out, and once more at 16 with PNG in and out (what a typical client sends).
In the same run it measures onnxruntime called in-process on the same file with the
server's session options at batch sizes 1 and 16, and prints the ratios: server images/s
at concurrency c over in-process images/s at batch c, and the latency the server adds at
concurrency 1. The client, server and reference share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from serve_bench import (
    ROOT,
    Call,
    Load,
    closed_loop,
    median_run_ms,
    model_instances,
    open_session,
    side_by_side,
    start_server,
)

MODEL = "sr"
CONCURRENCY = (1, 16)


@dataclass(frozen=True)
class Case:
    concurrency: int
    encoding: str  # "raw" (uint8 tensor in and out) or "png" (PNG in and out)


def build_repository(repository: Path, checkpoint: Path | None, config: Path) -> Path:
    """models/sr/1/model.onnx from `checkpoint`, or from one training step of `config`."""
    from export.translation import export_translation
    from training.config import load_settings_model
    from training.translation.config import TranslationConfig
    from training.translation.train import train_translation

    if checkpoint is None:
        run = Path(tempfile.mkdtemp(prefix="translate-bench-run-"))
        overrides = ["steps=1", "batch_size=2", f"out_dir={run}", "sample_every=1000", "checkpoint_every=1000"]
        settings = load_settings_model(TranslationConfig, config, overrides)
        checkpoint = train_translation(settings, progress=False).checkpoint
    model_config = {"max_batch_size": 16, "max_queue_delay_ms": 5}
    return export_translation(checkpoint, repository, MODEL, model_config=model_config).path


def source_image(channels: int, size: int) -> np.ndarray:
    """(C, H, W) uint8: a smooth picture with some texture, the same in every run."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = (ramp[None, :, None] + ramp[None, None, :]) / 2 + rng.normal(0, 20, (channels, size, size))
    return np.clip(base, 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- the reference -----------------------------------------------------------------------------


def ort_reference(path: Path, provider: str, image: np.ndarray, seconds: float) -> tuple[dict[int, float], float]:
    """In-process onnxruntime: images/s at each batch size of CONCURRENCY (as many sessions side by side
    as the server has instances of the model), and the batch-1 p50 in ms of one session."""
    sessions = [open_session(path, provider) for _ in range(model_instances(path))]
    source = (image.astype(np.float32) / 127.5 - 1.0)[None]
    rates = {
        batch: side_by_side(sessions, {"source": np.repeat(source, batch, axis=0)}, batch, seconds)
        for batch in CONCURRENCY
    }
    return rates, median_run_ms(sessions[0], {"source": source}, 200)


# --- the load client ---------------------------------------------------------------------------


def drive(target: str, case: Case, image: np.ndarray, seconds: float) -> Load:
    """In a separate process, so the client does not share the measuring process's GIL."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: Load = pool.apply(_drive, (target, case, image, seconds))
    return result


def _drive(target: str, case: Case, image: np.ndarray, seconds: float) -> Load:
    def make_call(channel: Any) -> Call:
        return _translate_call(channel, case, image)

    return asyncio.run(closed_loop(target, make_call, case.concurrency, seconds))


def _translate_call(channel: Any, case: Case, image: np.ndarray) -> Call:
    from gan.v1 import generator_pb2 as pb
    from gan.v1 import generator_pb2_grpc as pb_grpc

    stub = pb_grpc.GeneratorServiceStub(channel)
    request = pb.TranslateRequest(model=MODEL)
    if case.encoding == "png":
        request.images.add(encoded=png_bytes(image))
        request.output_format = pb.OUTPUT_FORMAT_PNG
    else:
        raw = pb.RawImage(shape=list(image.shape), pixel_type=pb.PIXEL_TYPE_UINT8, data=image.tobytes())
        request.images.add(raw=raw)
        request.output_format = pb.OUTPUT_FORMAT_UINT8

    async def call(seed: int) -> None:
        await stub.Translate(request, timeout=30)

    return call


# --- report ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a gan-translate super-resolution checkpoint")
    parser.add_argument("--config", type=Path, default=ROOT / "training" / "configs" / "sr.yaml")
    parser.add_argument("--size", type=int, default=32, help="input height and width (output: size x scale)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per row (after 1 s warm-up)")
    parser.add_argument("--provider", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="translate-bench-"))
    path = build_repository(workdir / "models", args.checkpoint, args.config)
    channels = _input_channels(path)
    image = source_image(channels, args.size)
    rates, ort_p50 = ort_reference(path, args.provider, image, min(args.seconds, 3))
    server, port = start_server(workdir / "models", args.provider)
    try:
        cases = [Case(c, "raw") for c in CONCURRENCY] + [Case(16, "png")]
        loads = {case: drive(f"127.0.0.1:{port}", case, image, args.seconds) for case in cases}
    finally:
        server.terminate()
        server.wait(timeout=30)
    report(args, channels, rates, ort_p50, loads)
    return 0


def _input_channels(path: Path) -> int:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return int(session.get_inputs()[0].shape[1])


def report(
    args: argparse.Namespace, channels: int, rates: dict[int, float], ort_p50: float, loads: dict[Case, Load]
) -> None:
    print(f"\nTranslate on {MODEL}: {channels}x{args.size}x{args.size} in, one image per request, {args.provider}")
    batches = ", ".join(f"batch {b}: {v:.1f} images/s" for b, v in rates.items())
    print(f"in-process onnxruntime (same file, the server's session options): {batches}; batch-1 p50 {ort_p50:.2f} ms")
    for case, load in loads.items():
        ratio = load.rate / rates[case.concurrency]
        print(
            f"  c={case.concurrency:<3} {case.encoding:>3} {load.rate:8.1f} images/s  "
            f"p50 {load.percentile(50):7.2f} ms  p99 {load.percentile(99):7.2f} ms  "
            f"x in-process batch {case.concurrency}: {ratio:.2f}  errors {load.errors}"
        )
    c1 = loads[Case(1, "raw")]
    print(f"added latency at c=1 (server p50 - in-process batch-1 p50): {c1.percentile(50) - ort_p50:+.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
