"""Mode coverage on Ring-8 and Grid-25: the plain GAN against the project's shipped recipe.

    .venv/bin/python bench/mode_coverage.py [--seeds 5] [--workers 2] [--json figures.json]
    .venv/bin/python bench/mode_coverage.py --recipes plain pacgan4 --steps 400000 --seeds 1   # the paper's length

Trains every (configuration, mixture, seed) with the configs under training/configs/
(ring8_plain.yaml, grid25_plain.yaml: the PacGAN paper's plain GAN, a 4x400 batch-norm MLP
generator against a 3x200 discriminator, non-saturating loss, Adam 1e-3; ring8.yaml,
grid25.yaml: the shipped recipe), one CPU thread per run and `--workers` runs at a time, then
scores the first 2,500 samples of each generator with the VEEGAN/PacGAN protocol
(training/mode_coverage.py). It prints each run, then per configuration and mixture the mean,
spread (standard deviation) and minimum of modes covered, the high-quality share and the
reverse KL, and the wall time, and checks the shipped recipe against the targets:
Ring-8 all 8 modes in every seed, >= 95 % HQ, KL <= 0.05; Grid-25 >= 24.5 modes on average and
never below 23, >= 90 % HQ, KL <= 0.10. Exits 1 with --strict when a target is missed.
The recipe pacgan4 is the plain GAN with the paper's packed discriminator (4 samples per
decision); with --steps 400000 the plain and pacgan4 rows are the paper's full-length setting.
plain-maxout and pacgan4-maxout swap the leaky-ReLU discriminator units for the paper's maxout
units (5 pieces, model.d_maxout=5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {  # (recipe, mixture) -> config file
    (recipe, mixture): ROOT / "training" / "configs" / f"{mixture}{suffix}.yaml"
    for recipe, suffix in (
        ("plain", "_plain"),
        ("pacgan4", "_plain"),
        ("plain-maxout", "_plain"),
        ("pacgan4-maxout", "_plain"),
        ("shipped", ""),
    )
    for mixture in ("ring8", "grid25")
}
MAXOUT = ["model.d_maxout=5"]  # the paper's discriminator: maxout units of 5 pieces in place of leaky ReLU
OVERRIDES = {  # the paper's PacGAN4: the plain GAN with a packed discriminator
    "pacgan4": ["model.pack=4"],
    "plain-maxout": MAXOUT,
    "pacgan4-maxout": ["model.pack=4", *MAXOUT],
}
SAMPLE_SEED = 10_000  # the latents scored are drawn from their own seed, not the training noise


@dataclass(frozen=True)
class Result:
    recipe: str
    mixture: str
    seed: int
    modes_covered: int
    modes: int
    hq_share: float
    reverse_kl: float
    steps: int
    seconds: float


def run_one(
    recipe: str, mixture: str, seed: int, workdir: str, steps: int | None = None, device: str = "cpu"
) -> Result:
    """Train one configuration with one seed on one CPU thread (or `device`), then score 2,500 samples."""
    import torch

    torch.set_num_threads(1)
    from training.config import load_config
    from training.mode_coverage import MIXTURES, PROTOCOL_SAMPLES, coverage
    from training.train import generate, train

    out = Path(workdir) / f"{recipe}-{mixture}-{seed}"
    overrides = [f"seed={seed}", f"out_dir={out}", f"device={device}", *OVERRIDES.get(recipe, [])]
    if steps is not None:  # checkpoints and sample plots at every eighth of the run
        overrides += [f"steps={steps}", f"checkpoint_every={max(1, steps // 8)}", f"sample_every={max(1, steps // 8)}"]
    config = load_config(CONFIGS[recipe, mixture], overrides)
    started = time.perf_counter()
    result = train(config, progress=False)
    seconds = time.perf_counter() - started
    from training.checkpoint import load_generator

    generator = load_generator(result.checkpoint).generator  # the EMA generator where the recipe keeps one
    noise = torch.Generator().manual_seed(SAMPLE_SEED + seed)
    latent = torch.randn(PROTOCOL_SAMPLES, config.model.latent_dim, generator=noise)
    label = torch.zeros(PROTOCOL_SAMPLES, dtype=torch.int64)
    points = generate(generator, latent, label).double().numpy()
    score = coverage(points, MIXTURES[mixture]())
    return Result(
        recipe, mixture, seed, score.modes_covered, score.modes, score.hq_share, score.reverse_kl, result.step, seconds
    )


@dataclass(frozen=True)
class Target:
    mixture: str
    mean_modes: float
    min_modes: int
    hq_share: float
    reverse_kl: float


TARGETS = {
    "ring8": Target("ring8", mean_modes=8, min_modes=8, hq_share=0.95, reverse_kl=0.05),
    "grid25": Target("grid25", mean_modes=24.5, min_modes=23, hq_share=0.90, reverse_kl=0.10),
}


def summary_line(recipe: str, mixture: str, results: list[Result]) -> str:
    modes = [r.modes_covered for r in results]
    hq = [100 * r.hq_share for r in results]
    kl = [r.reverse_kl for r in results]
    seconds = [r.seconds for r in results]
    spread = statistics.pstdev
    return (
        f"{recipe:>14} {mixture:>7} seeds {len(results)}  modes {statistics.mean(modes):5.2f} ±{spread(modes):4.2f} "
        f"min {min(modes):2d}/{results[0].modes}  "
        f"HQ {statistics.mean(hq):5.1f} % ±{spread(hq):4.1f} min {min(hq):5.1f}  "
        f"KL {statistics.mean(kl):.3f} ±{spread(kl):.3f} max {max(kl):.3f}  "
        f"{results[0].steps} steps, {statistics.mean(seconds):5.0f} s/run"
    )


def target_failures(mixture: str, results: list[Result]) -> list[str]:
    target = TARGETS[mixture]
    modes = [r.modes_covered for r in results]
    mean_modes = statistics.mean(modes)
    checks = [
        (f"mean modes {mean_modes:.2f} >= {target.mean_modes}", mean_modes >= target.mean_modes),
        (f"min modes {min(modes)} >= {target.min_modes}", min(modes) >= target.min_modes),
        (
            f"mean HQ {statistics.mean(r.hq_share for r in results):.3f} >= {target.hq_share}",
            statistics.mean(r.hq_share for r in results) >= target.hq_share,
        ),
        (
            f"mean KL {statistics.mean(r.reverse_kl for r in results):.3f} <= {target.reverse_kl}",
            statistics.mean(r.reverse_kl for r in results) <= target.reverse_kl,
        ),
    ]
    for label, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  shipped {mixture}: {label}")
    return [label for label, ok in checks if not ok]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, help="runs at a time, one thread each (default: cores; 1 on a GPU)")
    recipes = sorted({recipe for recipe, _ in CONFIGS})
    parser.add_argument("--recipes", nargs="+", choices=recipes, default=["plain", "shipped"])
    parser.add_argument("--steps", type=int, help="train every run this long (default: each config's own steps)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the paper's full length on a GPU")
    parser.add_argument("--mixtures", nargs="+", choices=["ring8", "grid25"], default=["ring8", "grid25"])
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.workers is None:  # one process per core on the CPU; on a GPU, one run at a time
        args.workers = (os.cpu_count() or 1) if args.device == "cpu" else 1

    jobs = [(r, m, s) for r in args.recipes for m in args.mixtures for s in range(args.seeds)]
    jobs.sort(key=lambda job: job[0] != "plain")  # the slower plain runs first, so the pool ends together
    workdir = tempfile.mkdtemp(prefix="mode-coverage-")
    print(f"{len(jobs)} runs, {args.workers} at a time, one CPU thread each", flush=True)
    started = time.perf_counter()
    results: list[Result] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_one, *job, workdir, args.steps, args.device) for job in jobs]
        for future in as_completed(futures):
            r = future.result()
            results.append(r)
            print(
                f"  {r.recipe:>14} {r.mixture:>7} seed {r.seed}: {r.modes_covered}/{r.modes} modes, "
                f"{100 * r.hq_share:5.1f} % HQ, KL {r.reverse_kl:.3f}, {r.seconds:.0f} s",
                flush=True,
            )
    total = time.perf_counter() - started
    print(f"\nmode coverage (first 2,500 samples, {args.seeds} seeds; total wall time {total / 60:.1f} min)")
    for recipe in args.recipes:
        for mixture in args.mixtures:
            chosen = sorted((r for r in results if (r.recipe, r.mixture) == (recipe, mixture)), key=lambda r: r.seed)
            print(summary_line(recipe, mixture, chosen))
    failures: list[str] = []
    if "shipped" in args.recipes:
        print("\ntargets:")
        for mixture in args.mixtures:
            failures += target_failures(mixture, [r for r in results if (r.recipe, r.mixture) == ("shipped", mixture)])
    if args.json:
        args.json.write_text(json.dumps({"total_seconds": total, "runs": [asdict(r) for r in results]}, indent=2))
    return 1 if args.strict and failures else 0


if __name__ == "__main__":
    sys.exit(main())
