"""`gan-client`: list models, describe one, generate samples into PNGs or a .npy array,
translate images with an image-to-image model, and walk between latents into a GIF.

Errors print the server's status and message (which names the field), never a traceback.
`--json` prints machine-readable output for scripts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict
from tqdm import tqdm

from gan.v1 import generator_pb2 as pb
from gan_client.channel import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, TLSConfig
from gan_client.client import Endpoint, GeneratorClient, Samples, chunk_seed, columns_of
from gan_client.grid import save_each, save_gif, save_grid


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default_target = f"localhost:{os.environ.get('GAN_GRPC_PORT', '8001')}"
    parser = argparse.ArgumentParser(prog="gan-client", description="Call a gan-serve service.")
    parser.add_argument("--target", default=default_target, help=f"host:port of the service ({default_target})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="deadline per call, seconds (30)")
    retries = f"retries of UNAVAILABLE, RESOURCE_EXHAUSTED and the server's CANCELLED, with backoff ({DEFAULT_RETRIES})"
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES, choices=range(5), metavar="0-4", help=retries)
    parser.add_argument("--wait-for-ready", action="store_true", help="wait (within --timeout) for a server to be up")
    parser.add_argument("--tls", action="store_true", help="use TLS with the system's root certificates")
    parser.add_argument("--tls-ca", type=Path, help="PEM CA that signed the server certificate (implies --tls)")
    parser.add_argument("--tls-cert", type=Path, help="PEM client certificate for mutual TLS (implies --tls)")
    parser.add_argument("--tls-key", type=Path, help="PEM key of --tls-cert")
    parser.add_argument("--tls-server-name", help="name to check the server certificate against (implies --tls)")
    parser.add_argument("--token-file", type=Path, help="bearer token file: its first line not blank or a # comment")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text (info always prints JSON)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the models the service has loaded")
    info = commands.add_parser("info", help="one model's signature, as JSON")
    info.add_argument("model")
    info.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    generate = commands.add_parser(
        "generate", help="generate samples into a PNG grid (.png), one PNG each (a folder), or an array (.npy)"
    )
    generate.add_argument("--model", required=True)
    generate.add_argument("--count", type=int, default=16)
    generate.add_argument("--label", type=int, action="append", default=[],
                          help="class label: once for all samples, or --count times (one per sample)")  # fmt: skip
    generate.add_argument("--seed", type=int, help="seed for reproducible samples (default: server picks one)")
    generate.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    generate.add_argument("--scale", type=int, default=4, help="PNG upscaling factor, for small images")
    generate.add_argument("--truncation", type=float, help="truncation psi in [0, 1]: lower is more typical (1: none)")
    out = "file.png (a grid), file.npy (float32 array), or a folder (one PNG per sample)"
    generate.add_argument("--out", type=Path, required=True, help=out)
    generate.add_argument("--no-progress", action="store_true", help="no progress bar for large counts")
    add_rows_parser(commands)
    add_translate_parser(commands)
    add_interpolate_parser(commands)
    return parser.parse_args(argv)


def add_translate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    translate = commands.add_parser("translate", help="run an image-to-image model on PNG or JPEG files")
    translate.add_argument("images", type=Path, nargs="+", help="input images (PNG or JPEG) of one size")
    translate.add_argument("--model", required=True)
    translate.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    out = "OUT.png for one input; a folder for several (one PNG each, named after its input)"
    translate.add_argument("--out", type=Path, required=True, help=out)


def add_interpolate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    walk = commands.add_parser("interpolate", help="a walk between two latents: an animated .gif or a .png grid")
    walk.add_argument("--model", required=True)
    walk.add_argument("--from-seed", type=int, required=True, help="first sample: Generate's sample of this seed")
    walk.add_argument("--to-seed", type=int, required=True, help="last sample: Generate's sample of this seed")
    walk.add_argument("--from-label", type=int, help="class at the start (default: the seed's)")
    walk.add_argument("--to-label", type=int, help="class at the end (default: the seed's)")
    walk.add_argument("--steps", type=int, default=16, help="samples, both ends included (16)")
    walk.add_argument("--method", choices=("linear", "spherical"), default="spherical")
    walk.add_argument("--truncation", type=float, help="truncation psi in [0, 1] (1: none)")
    walk.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    walk.add_argument("--scale", type=int, default=4, help="upscaling factor, for small images")
    walk.add_argument("--frame-ms", type=int, default=120, help="GIF: milliseconds per frame")
    walk.add_argument("--out", type=Path, required=True, help="walk.gif (animated) or walk.png (a grid)")


def add_rows_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rows = commands.add_parser("rows", help="rows of a tabular model, written to a CSV (or Parquet) file")
    rows.add_argument("--model", required=True)
    rows.add_argument("--count", type=int, required=True)
    rows.add_argument("--seed", type=int, help="seed for reproducible rows (default: server picks one)")
    rows.add_argument("--condition", action="append", default=[], metavar="column=value",
                      help="every row takes this value; repeat for several columns")  # fmt: skip
    rows.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    rows.add_argument("--chunk-rows", type=int, default=0, help="rows per streamed message (default: max_count)")
    rows.add_argument("--out", type=Path, required=True, help=".csv, or .parquet with pyarrow installed")
    rows.add_argument("--no-progress", action="store_true", help="no progress bar")


def tls_config(args: argparse.Namespace) -> TLSConfig | None:
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    return TLSConfig(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)


def read_token(path: Path | None) -> str | None:
    """The first token of a token file in the server's format: blank lines and # comments skipped."""
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--token-file: cannot read {path}: {exc}") from None
    tokens = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not tokens:
        raise ValueError(f"--token-file: {path} holds no token; put the token on a line of its own")
    return tokens[0]


def run(args: argparse.Namespace, client: GeneratorClient) -> None:
    if args.command == "list":
        list_models(client, args.json)
    elif args.command == "info":
        print(json.dumps(MessageToDict(client.get_model(args.model, args.version)), indent=2))
    elif args.command == "rows":
        write_rows(args, client)
    elif args.command == "translate":
        translate(args, client)
    elif args.command == "interpolate":
        interpolate(args, client)
    else:
        generate(args, client)


def list_models(client: GeneratorClient, as_json: bool) -> None:
    models = client.list_models()
    if as_json:
        print(json.dumps([MessageToDict(model) for model in models], indent=2))
        return
    for model in models:
        print(f"{model.name}\tversion {model.version}\t{describe(model)}")


def describe(model: pb.ModelInfo) -> str:
    """One line on what a model makes: images from latents, images from images, or table rows."""
    if model.HasField("translator"):
        spec = model.translator
        return f"image-to-image ({spec.task}, {spec.input_channels} to {spec.output_channels} channels, x{spec.scale})"
    if model.columns:
        return f"tabular, {len(model.columns)} columns\tlatent {model.latent_dim}"
    kind = f"{len(model.class_names)} classes" if model.class_names else "unconditional"
    shape = "x".join(str(d) for d in model.sample_shape)
    return f"{shape}\tlatent {model.latent_dim}\t{kind}"


@dataclass(frozen=True)
class Chunk:
    """One Generate call of a large request: samples [start, start + count) with their own seed."""

    index: int
    start: int
    count: int
    labels: list[int]


def chunks(count: int, per_call: int, labels: Sequence[int]) -> Iterator[Chunk]:
    """Split `count` samples into calls of at most `per_call` (the server's max_count)."""
    if count < 1:
        raise SystemExit(f"gan-client: error: --count must be at least 1, got {count}")
    if len(labels) not in (0, 1, count):
        raise SystemExit(f"gan-client: error: give --label once (for all) or {count} times, got {len(labels)}")
    for index, start in enumerate(range(0, count, per_call)):
        size = min(per_call, count - start)
        part = list(labels) if len(labels) <= 1 else list(labels[start : start + size])
        yield Chunk(index, start, size, part)


def output_kind(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix in (".png", ".npy"):
        return suffix[1:]
    if suffix and not out.is_dir():
        raise SystemExit(f"gan-client: error: --out must end in .png or .npy, or be a folder, got {out}")
    return "folder"


def check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed < 2**64:
        raise SystemExit(f"gan-client: error: --seed must be between 0 and 2**64 - 1, got {seed}")


def generate(args: argparse.Namespace, client: GeneratorClient) -> None:
    kind = output_kind(args.out)
    check_seed(args.seed)
    per_call = max(1, client.get_model(args.model, args.version).max_count)
    parts = list(chunks(args.count, per_call, args.label))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    seed: int | None = args.seed
    arrays: list[np.ndarray] = []
    first: Samples | None = None
    bar = tqdm(total=args.count, unit="sample", disable=args.no_progress or len(parts) == 1, file=sys.stderr)
    for part in parts:
        # The whole run is reproducible from the one seed printed at the end (chunk_seed says how).
        part_seed = None if seed is None else chunk_seed(seed, part.index)
        samples = client.generate(
            args.model, part.count, seed=part_seed, labels=part.labels, version=args.version, uint8=kind != "npy",
            truncation=args.truncation,
        )  # fmt: skip
        if first is None:
            first, seed = samples, samples.seed
            args.version = samples.version  # every chunk from the version that answered the first
        if kind == "folder":
            save_each(samples.array, args.out, args.scale, first_index=part.start)
        else:
            arrays.append(samples.array)
        bar.update(part.count)
    bar.close()
    assert first is not None
    if kind == "png":
        save_grid(np.concatenate(arrays), args.out, scale=args.scale)
    elif kind == "npy":
        np.save(args.out, np.concatenate(arrays))
    report = {"model": first.model, "version": first.version, "count": args.count, "seed": seed, "out": str(args.out),
              "calls": len(parts)}  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {args.count} samples of {first.model} version {first.version} to {args.out} (seed {seed})")


def translate(args: argparse.Namespace, client: GeneratorClient) -> None:
    """One output PNG per input: --out is the file for one input, a folder for several."""
    single = len(args.images) == 1 and args.out.suffix.lower() == ".png"
    if len(args.images) > 1 and args.out.suffix:
        raise SystemExit(f"gan-client: error: --out must be a folder for {len(args.images)} inputs, got {args.out}")
    if len(args.images) == 1 and not single and args.out.suffix:
        raise SystemExit(f"gan-client: error: --out must end in .png or be a folder, got {args.out}")
    names = [path.stem for path in args.images]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if not single and repeated:
        raise SystemExit(
            f"gan-client: error: inputs named {', '.join(repeated)} would write the same output file; "
            "translate them in separate runs or rename them"
        )
    try:
        sources = [path.read_bytes() for path in args.images]
    except OSError as exc:
        raise SystemExit(f"gan-client: error: cannot read {exc.filename}: {exc.strerror}") from None
    result = client.translate(args.model, sources, output="png", version=args.version)
    targets = [args.out] if single else [args.out / f"{path.stem}.png" for path in args.images]
    (args.out.parent if single else args.out).mkdir(parents=True, exist_ok=True)
    for target, png in zip(targets, result.pngs, strict=True):
        target.write_bytes(png)
    report = {"model": result.model, "version": result.version, "out": [str(t) for t in targets]}
    if args.json:
        print(json.dumps(report))
    else:
        noun = "image" if len(targets) == 1 else "images"
        print(f"wrote {len(targets)} {noun} of {result.model} version {result.version} to {args.out}")


def interpolate(args: argparse.Namespace, client: GeneratorClient) -> None:
    suffix = args.out.suffix.lower()
    if suffix not in (".gif", ".png"):
        raise SystemExit(f"gan-client: error: --out must end in .gif (animated) or .png (a grid), got {args.out}")
    start = Endpoint(seed=args.from_seed, label=args.from_label)
    end = Endpoint(seed=args.to_seed, label=args.to_label)
    result = client.interpolate(
        args.model, start, end, args.steps, spherical=args.method == "spherical", truncation=args.truncation,
        output="uint8", version=args.version,
    )  # fmt: skip
    assert result.array is not None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        save_gif(result.array, args.out, scale=args.scale, frame_ms=args.frame_ms)
    else:
        save_grid(result.array, args.out, scale=args.scale, columns=len(result.array))
    report = {"model": result.model, "version": result.version, "steps": len(result.array), "out": str(args.out)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote a walk of {len(result.array)} samples of {result.model} version {result.version} to {args.out}")


def conditions_from(pairs: Sequence[str]) -> dict[str, str]:
    conditions = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"gan-client: error: --condition {pair!r}: expected column=value")
        conditions[name] = value
    return conditions


def write_rows(args: argparse.Namespace, client: GeneratorClient) -> None:
    """Stream the rows into a CSV file as they come (Parquet: gathered, then written with pyarrow)."""
    suffix = args.out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise SystemExit(f"gan-client: error: --out must end in .csv or .parquet, got {args.out}")
    if args.count < 1:
        raise SystemExit(f"gan-client: error: --count must be at least 1, got {args.count}")
    check_seed(args.seed)
    # before the stream: without pyarrow, say so before any rows are made
    write_parquet = parquet_writer() if suffix == ".parquet" else None
    conditions = conditions_from(args.condition)
    replies = client.rows(
        args.model, args.count, seed=args.seed, conditions=conditions, version=args.version, chunk_rows=args.chunk_rows
    )
    bar = tqdm(total=args.count, unit="row", disable=args.no_progress, file=sys.stderr)
    gathered: dict[str, list[object]] = {}
    seed = None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(f".{args.out.name}.partial")  # renamed over --out only when complete
    try:
        with partial.open("w", newline="") as file:
            writer = csv.writer(file)
            for reply in replies:
                table = columns_of(reply)
                if seed is None:
                    seed = reply.seed
                    if suffix == ".csv":
                        writer.writerow(table)
                if suffix == ".csv":
                    writer.writerows(zip(*table.values(), strict=True))
                else:
                    for name, values in table.items():
                        gathered.setdefault(name, []).extend(values)
                bar.update(reply.rows)
        bar.close()
        if write_parquet is not None:
            write_parquet(gathered, partial)
        partial.replace(args.out)
    except BaseException:
        partial.unlink(missing_ok=True)  # an error leaves no half-written file and the old --out untouched
        raise
    report = {"model": args.model, "count": args.count, "seed": seed, "out": str(args.out)}
    print(json.dumps(report) if args.json else f"wrote {args.count} rows of {args.model} to {args.out} (seed {seed})")


def parquet_writer() -> Callable[[dict[str, list[object]], Path], None]:
    """pyarrow's table writer, or a clear exit when pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("gan-client: error: .parquet needs pyarrow (pip install pyarrow); or write .csv") from None

    def write(table: dict[str, list[object]], out: Path) -> None:
        pq.write_table(pa.table(table), out)

    return write


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = {"retries": args.retries, "tls": tls_config(args), "wait_for_ready": args.wait_for_ready}
        with GeneratorClient(args.target, args.timeout, **options, token=read_token(args.token_file)) as client:
            run(args, client)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"gan-client: {code}: {details}{_hint(code, args)}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad client options: a deadline, TLS files
        print(f"gan-client: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output that cannot be written
        print(f"gan-client: error: cannot write {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _hint(code: str, args: argparse.Namespace) -> str:
    """What to check when the server could not be reached at all."""
    if code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return ""
    tls = (
        "it serves TLS: --tls-ca, and --tls-cert/--tls-key for mutual TLS"
        if tls_config(args) is None
        else (
            "the TLS files: --tls-ca must have signed the server's certificate, --tls-cert/--tls-key are needed "
            "when it asks for client certificates"
        )
    )
    return f"\n  check that the server is up at {args.target}, and whether {tls}"


if __name__ == "__main__":
    sys.exit(main())
