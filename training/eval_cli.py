"""`gan-eval`: evaluations that write JSON (and plots).

gan-eval modes --mixture ring8 --samples generated.npy --json ring8.json --plot ring8.png
gan-eval modes --mixture grid25 --self-test      # samples of the true mixture: the best score possible
gan-eval images --checkpoint runs/digits/checkpoint.pt --json digits.json --plot digits.png
gan-eval images --checkpoint runs/digits/checkpoint.pt --no-ema --samples 500
gan-eval translation --checkpoint runs/sr/checkpoint.pt [--out runs/sr/eval]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.image_eval import DEFAULT_SAMPLES, ImageEvaluation, evaluate_checkpoint, report_table
from training.image_metrics import NEAREST_K
from training.memorisation_plot import plot_memorisation
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
    add_images_parser(commands)
    add_tabular_parser(commands)
    add_translation_parser(commands)
    return parser.parse_args(argv)


def add_translation_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    translation = commands.add_parser(
        "translation",
        help="PSNR/SSIM and feature distance of a gan-translate checkpoint against its plain baseline",
        description="Translate the held-out data of a gan-translate checkpoint's config and score it beside the "
        "plain baseline (training/translation/evaluate.py says what each figure means). Writes translation.json "
        "and examples.png (rows of input | baseline | output | target) into --out.",
    )
    translation.add_argument("--checkpoint", type=Path, required=True, help="gan-translate checkpoint.pt")
    translation.add_argument(
        "--out", type=Path, help="folder for the JSON and PNG (default: eval/ beside the checkpoint)"
    )
    translation.add_argument("--direction", choices=["a2b", "b2a"], default="a2b", help="CycleGAN: which generator")
    translation.add_argument("--no-ema", dest="ema", action="store_const", const=False, help="the live generator")
    translation.add_argument(
        "--cache-dir", type=Path, help="where the feature network is cached (default: features/ beside the checkpoint)"
    )


def add_tabular_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tabular = commands.add_parser(
        "tabular",
        help="column shapes, pair trends, ML efficacy and privacy of a synthetic table",
        description="Compare a synthetic CSV with the real training CSV and a held-out real CSV "
        "(training/tabular/evaluate.py says what each score means).",
    )
    tabular.add_argument("--real", type=Path, required=True, help="the real rows the synthesizer trained on")
    tabular.add_argument("--held-out", type=Path, required=True, help="real rows it never saw")
    tabular.add_argument("--synthetic", type=Path, required=True)
    tabular.add_argument("--target", required=True, help="column the ML-efficacy model predicts")
    tabular.add_argument("--json", type=Path, help="write the figures here")
    tabular.add_argument("--plot", type=Path, help="write a PNG of every column, real against synthetic")


def add_images_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    images = commands.add_parser(
        "images",
        help="Fréchet distance, KID, precision/recall, class accuracy and memorisation of a checkpoint",
        description="Generate samples from a gan-train checkpoint and compare them with the real data of its "
        "config; every figure is printed beside its floor, the same figure between two halves of real data.",
    )
    images.add_argument("--checkpoint", type=Path, required=True, help="gan-train checkpoint.pt")
    images.add_argument(
        "--samples",
        type=positive_int,
        default=DEFAULT_SAMPLES,
        help=f"generated samples (default {DEFAULT_SAMPLES}; at most half the real images are used)",
    )
    weights = images.add_mutually_exclusive_group()
    weights.add_argument("--use-ema", dest="ema", action="store_const", const=True, help="the EMA generator (default)")
    weights.add_argument("--no-ema", dest="ema", action="store_const", const=False, help="the live generator")
    images.add_argument("--k", type=positive_int, default=NEAREST_K, help="neighbours of precision/recall (default 3)")
    images.add_argument("--seed", type=int, default=0, help="seed of the samples and of the real halves")
    images.add_argument(
        "--cache-dir", type=Path, help="where the feature network is cached (default: features/ beside the checkpoint)"
    )
    images.add_argument("--json", type=Path, help="write the figures here")
    images.add_argument("--plot", type=Path, help="write the memorisation picture (PNG) here")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


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


def run_images(args: argparse.Namespace) -> None:
    cache_dir = args.cache_dir or args.checkpoint.parent / "features"
    result = evaluate_checkpoint(args.checkpoint, args.samples, args.ema, cache_dir, args.seed, args.k)
    if result.samples < args.samples:
        print(f"--samples {args.samples}: only {result.samples} used, half of the {result.real_images} real images")
    print(report_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.as_dict(), indent=2))
    if args.plot:
        plot_images(result, args.plot)


def plot_images(result: ImageEvaluation, path: Path) -> None:
    nearest = result.nearest
    plot_memorisation(
        nearest.generated,
        nearest.held_out,
        result.memorisation.threshold,
        nearest.generated_images,
        nearest.nearest_images,
        path,
    )


def run_tabular(args: argparse.Namespace) -> None:
    from training.tabular.cli import read_csv
    from training.tabular.evaluate import evaluate_table, independent_columns
    from training.tabular.report_plot import plot_columns
    from training.tabular.schema import infer_schema

    real, held_out, synthetic = read_csv(args.real), read_csv(args.held_out), read_csv(args.synthetic)
    if args.target not in real.columns:
        raise ValueError(f"--target: {args.target!r} is not a column of {args.real} ({list(real.columns)})")
    missing = sorted(set(real.columns) - set(synthetic.columns))
    if missing:
        raise ValueError(f"--synthetic: {args.synthetic} lacks the columns {missing}")
    specs = infer_schema(real)
    scores = evaluate_table(real, held_out, synthetic[real.columns], specs, args.target)
    floor = evaluate_table(real, held_out, independent_columns(real, len(synthetic)), specs, args.target)
    print(
        f"column shapes {scores.column_shapes:.3f}  pair trends {scores.pair_trends:.3f} "
        f"(independent-columns floor {floor.pair_trends:.3f})\n"
        f"ML efficacy ({scores.efficacy_metric} on held-out real rows): trained on synthetic "
        f"{scores.efficacy_synthetic:.3f}, on real {scores.efficacy_real:.3f}\n"
        f"privacy: {100 * scores.close_share:.1f} % of synthetic rows closer to a training row than 95 % of "
        f"held-out rows (expected 5 %); median distance ratio {scores.dcr_ratio:.2f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**scores.as_dict(), "floor_pair_trends": floor.pair_trends}, indent=2))
    if args.plot:
        plot_columns(real, synthetic, specs, scores.per_column, args.plot)


def run_translation(args: argparse.Namespace) -> None:
    from training.translation.evaluate import evaluate_translation, report

    out = args.out or args.checkpoint.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = args.cache_dir or args.checkpoint.parent / "features"
    result = evaluate_translation(args.checkpoint, cache_dir, out / "examples.png", args.direction, args.ema)
    print(report(result))
    (out / "translation.json").write_text(json.dumps(result.as_dict(), indent=2))
    print(f"gan-eval: wrote {out / 'translation.json'} and {out / 'examples.png'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "images":
            run_images(args)
        elif args.command == "tabular":
            run_tabular(args)
        elif args.command == "translation":
            run_translation(args)
        else:
            run_modes(args)
    except ValueError as exc:
        print(f"gan-eval: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path that cannot be written
        print(f"gan-eval: error: {exc.filename}: {exc.strerror}; choose another path", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
