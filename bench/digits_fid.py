"""Fréchet distance, KID, precision/recall and class accuracy of the digits DCGAN, with and without EMA.

    python bench/digits_fid.py                          # train training/configs/digits.yaml (a few minutes)
    python bench/digits_fid.py --steps 1000             # a shorter run of the same config
    python bench/digits_fid.py --checkpoint runs/digits/checkpoint.pt   # judge an existing run

Trains the conditional DCGAN of the config into --out-dir, then scores both of its generators,
the moving average of the weights (EMA, what gets exported) and the live one, with
`gan-eval images` (training/image_eval.py). Each figure is printed beside its floor: the same
figure between two disjoint halves of the real digits, the best a generator could show with
this many samples. Lower is better for Fréchet distance and KID, higher for the others.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from training.config import load_config
from training.image_eval import DEFAULT_SAMPLES, Figure, ImageEvaluation, evaluate_checkpoint
from training.train import train

CONFIG = Path("training/configs/digits.yaml")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, default=CONFIG, help=f"training config (default {CONFIG})")
    source.add_argument("--checkpoint", type=Path, help="score this checkpoint instead of training one")
    parser.add_argument("--steps", type=int, help="train this many steps instead of the config's")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/bench-digits-fid"), help="where the run goes")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="generated samples per generator")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples and of the real halves")
    return parser.parse_args()


def trained_checkpoint(config_path: Path, steps: int | None, out_dir: Path) -> Path:
    overrides = [f"out_dir={out_dir}", *([f"steps={steps}"] if steps else [])]
    config = load_config(config_path, overrides)
    print(f"training {config_path}: {config.steps} steps into {out_dir}")
    started = time.monotonic()
    result = train(config)
    print(f"trained in {time.monotonic() - started:.0f} s")
    return result.checkpoint


def table(results: list[ImageEvaluation]) -> str:
    """One row per generator; each cell: the generator's figure, then its floor in brackets."""
    header = (
        f"{'generator':<10}{'class acc.':>18}{'Fréchet dist.':>20}{'KID x 1000':>26}{'precision':>18}{'recall':>18}"
    )
    rows = [header, "-" * len(header)]
    for r in results:
        accuracy = f"{r.class_accuracy.generated:.1%} ({r.class_accuracy.floor:.1%})" if r.class_accuracy else "n/a"
        kid = f"{1000 * r.kid.generated.mean:.2f}±{1000 * r.kid.generated.std:.2f} ({1000 * r.kid.floor.mean:.2f})"
        rows.append(
            f"{'EMA' if r.ema else 'live':<10}{accuracy:>18}{cell(r.frechet_distance):>20}{kid:>26}"
            f"{cell(r.precision):>18}{cell(r.recall):>18}"
        )
    return "\n".join(rows)


def cell(figure: Figure) -> str:
    return f"{figure.generated:.3f} ({figure.floor:.3f})"


def main() -> int:
    args = parse_args()
    checkpoint = args.checkpoint or trained_checkpoint(args.config, args.steps, args.out_dir)
    cache_dir = checkpoint.parent / "features"
    results = [evaluate_checkpoint(checkpoint, args.samples, ema, cache_dir, args.seed) for ema in (True, False)]
    first = results[0]
    print(
        f"\n{checkpoint} at step {first.step}: {first.samples} generated samples per generator against "
        f"{first.samples} of {first.real_images} real digits; floor (in brackets): two disjoint halves of the real "
        f"digits.\nfeature network: {first.features.objective}, held-out accuracy "
        f"{first.features.held_out_accuracy:.1%} (the floor of class accuracy)\n"
    )
    print(table(results))
    for result in results:
        m = result.memorisation
        print(
            f"memorisation ({'EMA' if result.ema else 'live'}): {m.copy_share:.1%} of samples closer to a training "
            f"digit than 99 % of held-out digits (expected {m.expected_share:.0%}); median distance ratio "
            f"{m.median_ratio:.2f}{'  SUSPICIOUS' if m.suspicious else ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
