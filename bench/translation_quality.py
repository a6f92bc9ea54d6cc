"""Train every shipped translation config, evaluate it on held-out data, and print one table.

    python bench/translation_quality.py                    # each config's own steps, one thread
    python bench/translation_quality.py --steps 300        # a quick look
    python bench/translation_quality.py --configs sr.yaml inpaint.yaml
    python bench/translation_quality.py --device cuda       # train on a GPU (auto: a GPU when torch sees one)

Per config: the training wall time, then (training/translation/evaluate.py) PSNR and SSIM of the
model against held-out targets beside the plain baseline's (paired tasks), and the feature-based
Fréchet distance of the model's outputs, of the baseline's and of real held-out images (the floor)
to a real reference set. Feature networks are cached under --out/features, so their training
(about a minute for the photo patches) is not counted as the translator's. Exits 1 when a model
does not beat its baseline (PSNR and SSIM for paired tasks, feature distance for unpaired ones).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from training.train import resolve_device
from training.translation.cli import translation_config
from training.translation.evaluate import TranslationEvaluation, evaluate_translation, improved, report
from training.translation.train import train_translation

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
SHIPPED = ("sr.yaml", "inpaint.yaml", "colourise.yaml", "cyclegan_digits.yaml")


@dataclass(frozen=True)
class Row:
    config: str
    steps: int
    train_seconds: float
    result: TranslationEvaluation


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(SHIPPED), help="file names under training/configs")
    parser.add_argument("--steps", type=int, help="override every config's steps (default: each config's own)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="auto", help="where to train: auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-translation"))
    return parser.parse_args()


def run_one(name: str, out: Path, steps: int | None, device: str) -> Row:
    overrides = [f"out_dir={out / Path(name).stem}", f"device={device}"] + ([f"steps={steps}"] if steps else [])
    config = translation_config(CONFIGS / name, overrides)
    started = time.monotonic()
    trained = train_translation(config, progress=False)
    seconds = time.monotonic() - started
    pictures = config.out_dir / "examples.png"
    result = evaluate_translation(trained.checkpoint, out / "features", pictures)
    print(f"\n{name}: trained {trained.step} steps in {seconds:.0f} s\n{report(result)}", flush=True)
    return Row(name, trained.step, seconds, result)


def table(rows: list[Row]) -> str:
    header = (
        f"{'task':<18} {'steps':>5} {'train s':>7}  {'PSNR model/base (dB)':>21}  {'SSIM model/base':>15}  "
        f"{'feature FD model/base/floor':>27}  better"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        result, pixels, features = row.result, row.result.pixels, row.result.features
        psnr = f"{pixels.psnr_model:.2f} / {pixels.psnr_baseline:.2f}" if pixels else "-"
        ssim = f"{pixels.ssim_model:.4f} / {pixels.ssim_baseline:.4f}" if pixels else "-"
        distance = f"{features.model:.2f} / {features.baseline:.2f} / {features.floor:.2f}" if features else "-"
        lines.append(
            f"{result.task:<18} {row.steps:>5} {row.train_seconds:>7.0f}  {psnr:>21}  {ssim:>15}  {distance:>27}  "
            f"{'yes' if improved(result) else 'NO'}"
        )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    device = resolve_device(args.device)
    rows = [run_one(name, args.out, args.steps, str(device)) for name in args.configs]
    where = f"{args.threads} CPU thread(s)"
    if device.type == "cuda":
        where += f", trained on {torch.cuda.get_device_name(device)}"
    print(f"\n{table(rows)}\n\ntotal wall time {time.monotonic() - started:.0f} s ({where})")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = [{"config": r.config, "train_seconds": r.train_seconds, **r.result.as_dict()} for r in rows]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0 if all(improved(row.result) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
