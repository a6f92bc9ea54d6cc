"""`gan-eval`: evaluations that write JSON (and plots).

gan-eval modes --mixture ring8 --samples generated.npy --json ring8.json --plot ring8.png
gan-eval modes --mixture grid25 --self-test      # samples of the true mixture: the best score possible
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.mode_coverage import MIXTURES, Coverage, coverage, self_test
from training.plots import plot_points


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    raw = argparse.RawTextHelpFormatter
    parser = argparse.ArgumentParser(prog="gan-eval", description=__doc__, formatter_class=raw)
    commands = parser.add_subparsers(dest="command", required=True)
    modes = commands.add_parser("modes", help="2-D mode coverage (VEEGAN/PacGAN protocol)")
    modes.add_argument("--mixture", choices=sorted(MIXTURES), required=True)
    source = modes.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", type=Path, help=".npy file of generated (N, 2) points, N >= 2500")
    source.add_argument("--self-test", action="store_true", help="score samples of the true mixture")
    modes.add_argument("--seed", type=int, default=0, help="seed of --self-test")
    modes.add_argument("--json", type=Path, help="write the figures here")
    modes.add_argument("--plot", type=Path, help="write a scatter plot (PNG) here")
    return parser.parse_args(argv)


def load_samples(path: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--samples: cannot read {path} as a .npy array: {exc}") from None


def report(result: Coverage) -> str:
    return (
        f"{result.mixture}: {result.modes_covered}/{result.modes} modes covered, "
        f"{100 * result.hq_share:.1f} % high quality, reverse KL {result.reverse_kl:.4f} nats "
        f"(first {result.samples} samples)"
    )


def run_modes(args: argparse.Namespace) -> None:
    mixture = MIXTURES[args.mixture]()
    figures: dict[str, object]
    if args.self_test:
        result, hq, kl = self_test(mixture, args.seed)
        samples = mixture.sample(result.samples, np.random.default_rng(args.seed))
        figures = {**result.as_dict(), "expected_hq_share": hq, "expected_reverse_kl": kl}
        print(f"{report(result)}; a perfect generator: {100 * hq:.1f} % HQ, KL about {kl:.4f}")
    else:
        samples = load_samples(args.samples)
        result = coverage(samples, mixture)
        figures = result.as_dict()
        print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    if args.plot:
        plot_points(np.asarray(samples[: result.samples], dtype=np.float64), mixture, args.plot)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run_modes(args)
    except ValueError as exc:
        print(f"gan-eval: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
