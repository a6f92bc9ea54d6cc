"""`gan-client`: list models, describe one, generate samples into a PNG grid or a .npy file."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict

from gan_client.client import DEFAULT_TIMEOUT_S, GeneratorClient
from gan_client.grid import save_grid


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default_target = f"localhost:{os.environ.get('GAN_GRPC_PORT', '8001')}"
    parser = argparse.ArgumentParser(prog="gan-client", description="Call a gan-serve service.")
    parser.add_argument("--target", default=default_target, help=f"host:port of the service ({default_target})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="deadline per call, seconds")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the models the service has loaded")
    info = commands.add_parser("info", help="one model's signature")
    info.add_argument("model")
    generate = commands.add_parser("generate", help="generate samples into a PNG grid (.png) or an array (.npy)")
    generate.add_argument("--model", required=True)
    generate.add_argument("--count", type=int, default=16)
    generate.add_argument("--label", type=int, action="append", default=[], help="class label (repeatable)")
    generate.add_argument("--seed", type=int, help="seed for reproducible samples (default: server picks one)")
    generate.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    generate.add_argument("--scale", type=int, default=4, help="PNG upscaling factor, for small images")
    generate.add_argument("--out", type=Path, required=True, help="output .png grid or .npy array")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, client: GeneratorClient) -> None:
    if args.command == "list":
        for model in client.list_models():
            kind = f"{len(model.class_names)} classes" if model.class_names else "unconditional"
            shape = "x".join(str(d) for d in model.sample_shape)
            print(f"{model.name}\tversion {model.version}\t{shape}\tlatent {model.latent_dim}\t{kind}")
    elif args.command == "info":
        print(json.dumps(MessageToDict(client.get_model(args.model)), indent=2))
    else:
        generate(args, client)


def generate(args: argparse.Namespace, client: GeneratorClient) -> None:
    suffix = args.out.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise SystemExit(f"gan-client: error: --out must end in .png or .npy, got {args.out}")
    samples = client.generate(
        args.model, args.count, seed=args.seed, labels=args.label, version=args.version, uint8=suffix == ".png"
    )
    if suffix == ".png":
        save_grid(samples.array, args.out, scale=args.scale)
    else:
        np.save(args.out, samples.array)
    count, name, version = len(samples.array), samples.model, samples.version
    print(f"wrote {count} samples of {name} version {version} to {args.out} (seed {samples.seed})")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with GeneratorClient(args.target, timeout=args.timeout) as client:
            run(args, client)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"gan-client: {code}: {details}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
