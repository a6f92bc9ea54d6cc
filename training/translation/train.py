"""The translation training loop: data, networks, optimisers, then steps with logs, pictures and checkpoints.

pix2pix (paired): D learns real (input, target) from (input, G(input)) with the non-saturating loss;
G minimises that adversarial loss + l1_weight * |G(input) - target|.
CycleGAN (unpaired): generators a2b and b2a, discriminators a and b, LSGAN losses; G adds
cycle_weight * (|b2a(a2b(a)) - a| + |a2b(b2a(b)) - b|) and identity_share * cycle_weight * identity
terms; each D sees fakes through an image pool.
"""

from __future__ import annotations

import copy
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.checkpoint import (
    atomic_save,
    code_version,
    global_rng_state,
    refusing_misfits,
    restore_global_rng,
)
from training.determinism import set_determinism
from training.train import (
    check_finite,
    check_weights_finite,
    ema_decay,
    resolve_device,
    seed_everything,
    update_ema,
)
from training.translation.checkpoint import FORMAT, load_translation_checkpoint
from training.translation.config import TranslationConfig, translation_digest
from training.translation.data import PairedData, UnpairedData, load_paired, load_unpaired
from training.translation.models import build_discriminators, build_generators
from training.translation.pictures import save_rows
from training.translation.pool import ImagePool

CHECKPOINT = "checkpoint.pt"
LOSSES = "losses.csv"
RESUME = "gan-translate train --config CONFIG --resume CHECKPOINT optim.lr_g=... optim.lr_d=..."
PAIRED_COLUMNS = ["d_loss", "g_adv", "l1"]
UNPAIRED_COLUMNS = ["d_loss", "g_adv", "cycle", "identity"]
PICTURE_ROWS = 8

Data = PairedData | UnpairedData


@dataclass
class Run:
    """Everything that changes while training, and so everything a checkpoint holds."""

    generators: nn.ModuleDict  # "a2b" (and "b2a" for CycleGAN)
    discriminators: nn.ModuleDict  # "b" (and "a")
    ema: nn.ModuleDict | None  # moving average of the generators
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: torch.Generator  # which crops, holes and images each step sees
    pool_rng: torch.Generator  # the image pools' choices
    pools: dict[str, ImagePool]  # CycleGAN: "a", "b"
    device: torch.device  # where the networks, optimiser states and pools live; data is drawn on the CPU
    step: int = 0


@dataclass(frozen=True)
class TranslationResult:
    checkpoint: Path
    step: int
    losses: dict[str, float]


def load_data(config: TranslationConfig) -> Data:
    return load_paired(config) if config.is_paired else load_unpaired(config)


def train_translation(
    config: TranslationConfig, resume: Path | None = None, progress: bool = True
) -> TranslationResult:
    """Train as configured (from `resume` if given); returns the final checkpoint."""
    device = resolve_device(config.device)  # a device torch cannot use, or data that is unusable, stops it first
    data = load_data(config)
    set_determinism(config.deterministic, device)  # off, a GPU run lets cuDNN pick its fastest convolutions
    seed_everything(config.seed)
    run = new_run(config, device)
    if resume is not None:
        restore(run, load_translation_checkpoint(resume), resume)
    out = config.out_dir
    (out / "samples").mkdir(parents=True, exist_ok=True)
    columns = PAIRED_COLUMNS if config.is_paired else UNPAIRED_COLUMNS
    log = CsvLog(out / LOSSES, columns, keep_until=run.step)
    losses: dict[str, float] = {}
    bar = tqdm(total=config.steps, initial=run.step, disable=not progress, desc=config.task, unit="step")
    while run.step < config.steps:
        losses = train_step(run, config, data)
        check_finite(losses, run.step, out / CHECKPOINT, RESUME)  # stops before a non-finite state is ever saved
        run.step += 1
        bar.update(1)
        if run.step % config.log_every == 0 or run.step == config.steps:
            log.write(run.step, losses)
            bar.set_postfix({name: f"{value:.3f}" for name, value in losses.items()})
        if run.step % config.sample_every == 0 or run.step == config.steps:
            save_picture(run, config, data, out / "samples" / f"step_{run.step:06d}.png")
        if run.step % config.checkpoint_every == 0 or run.step == config.steps:
            networks = {"generators": run.generators, "discriminators": run.discriminators, "ema": run.ema}
            check_weights_finite(networks, run.step, out / CHECKPOINT, RESUME)
            atomic_save(out / CHECKPOINT, checkpoint_state(run, config))
    bar.close()
    return TranslationResult(out / CHECKPOINT, run.step, losses)


def learning_rate_scale(config: TranslationConfig, step: int) -> float:
    """1 until decay_from x steps, then linearly down to 0 at the last step (pix2pix's schedule)."""
    start = config.optim.decay_from * config.steps
    if step < start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(1.0, config.steps - start))


def set_learning_rates(run: Run, config: TranslationConfig) -> None:
    """A function of the step alone, so a resumed run follows the same schedule."""
    scale = learning_rate_scale(config, run.step)
    for optimiser, base in ((run.opt_g, config.optim.lr_g), (run.opt_d, config.optim.lr_d)):
        for group in optimiser.param_groups:
            group["lr"] = base * scale


def train_step(run: Run, config: TranslationConfig, data: Data) -> dict[str, float]:
    set_learning_rates(run, config)
    a, b = (images.to(run.device) for images in data.draw(config.batch_size, run.batches))
    losses = paired_step(run, config, a, b) if config.is_paired else unpaired_step(run, config, a, b)
    if run.ema is not None:
        update_ema(run.ema, run.generators, ema_decay(config.optim.ema_decay, run.step))
    return losses


def paired_step(run: Run, config: TranslationConfig, source: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """pix2pix: one update of D, then of G. source (B, C_in, h, w), target (B, C_out, H, W)."""
    generator, discriminator = run.generators["a2b"], run.discriminators["b"]
    fake = generator(source)
    real_logits = discriminator(source, target)
    fake_logits = discriminator(source, fake.detach())
    d_loss = 0.5 * (_bce(real_logits, 1.0) + _bce(fake_logits, 0.0))
    _update(run.opt_d, d_loss)

    discriminator.requires_grad_(False)
    g_adv = _bce(discriminator(source, fake), 1.0)
    l1 = (fake - target).abs().mean()
    _update(run.opt_g, g_adv + config.optim.l1_weight * l1)
    discriminator.requires_grad_(True)
    return _scalars({"d_loss": d_loss, "g_adv": g_adv, "l1": l1})


def unpaired_step(run: Run, config: TranslationConfig, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """CycleGAN: one update of both generators, then of both discriminators. a, b (B, C, H, W)."""
    a2b, b2a = run.generators["a2b"], run.generators["b2a"]
    d_a, d_b = run.discriminators["a"], run.discriminators["b"]
    optim = config.optim
    fake_b, fake_a = a2b(a), b2a(b)
    run.discriminators.requires_grad_(False)
    g_adv = _lsgan(d_b(fake_b), 1.0) + _lsgan(d_a(fake_a), 1.0)
    cycle = (b2a(fake_b) - a).abs().mean() + (a2b(fake_a) - b).abs().mean()
    identity = torch.zeros((), device=a.device)
    if optim.identity_share > 0:
        identity = (a2b(b) - b).abs().mean() + (b2a(a) - a).abs().mean()
    weight = optim.cycle_weight
    _update(run.opt_g, g_adv + weight * cycle + optim.identity_share * weight * identity)
    run.discriminators.requires_grad_(True)

    pooled_b = run.pools["b"].query(fake_b.detach(), run.pool_rng)
    pooled_a = run.pools["a"].query(fake_a.detach(), run.pool_rng)
    d_loss_b = 0.5 * (_lsgan(d_b(b), 1.0) + _lsgan(d_b(pooled_b), 0.0))
    d_loss_a = 0.5 * (_lsgan(d_a(a), 1.0) + _lsgan(d_a(pooled_a), 0.0))
    _update(run.opt_d, d_loss_a + d_loss_b)
    return _scalars({"d_loss": d_loss_a + d_loss_b, "g_adv": g_adv, "cycle": cycle, "identity": identity})


def _scalars(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value.detach()) for name, value in losses.items()}


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _lsgan(outputs: torch.Tensor, target: float) -> torch.Tensor:
    return (outputs - target).square().mean()


def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def new_run(config: TranslationConfig, device: torch.device) -> Run:
    """Networks built on the CPU (the same initial weights on any device), then moved to `device`."""
    generators, discriminators = build_generators(config).to(device), build_discriminators(config).to(device)
    ema = copy.deepcopy(generators).eval().requires_grad_(False) if config.optim.ema_decay > 0 else None
    betas = (config.optim.beta1, config.optim.beta2)
    return Run(
        generators=generators,
        discriminators=discriminators,
        ema=ema,
        opt_g=torch.optim.Adam(generators.parameters(), lr=config.optim.lr_g, betas=betas),
        opt_d=torch.optim.Adam(discriminators.parameters(), lr=config.optim.lr_d, betas=betas),
        batches=torch.Generator().manual_seed(config.seed),
        pool_rng=torch.Generator().manual_seed(config.seed + 1),
        pools={} if config.is_paired else {name: ImagePool(config.optim.pool_size) for name in ("a", "b")},
        device=device,
    )


def sampler(run: Run) -> nn.ModuleDict:
    return run.ema if run.ema is not None else run.generators


@torch.no_grad()
def save_picture(run: Run, config: TranslationConfig, data: Data, path: Path) -> None:
    """Rows of held-out examples: input | output | target (CycleGAN: input | a2b | back to a)."""
    generators = sampler(run)
    was_training = generators.training
    generators.eval()
    if isinstance(data, PairedData):
        source, target = _spread(data.held_out[0]).to(run.device), _spread(data.held_out[1])
        save_rows([source, generators["a2b"](source), target], path)
    else:
        source = _spread(data.held_out_a).to(run.device)
        translated = generators["a2b"](source)
        save_rows([source, translated, generators["b2a"](translated)], path)
    generators.train(was_training)


def _spread(images: torch.Tensor) -> torch.Tensor:
    """PICTURE_ROWS images evenly spread over the set (neighbouring patches look alike)."""
    index = torch.linspace(0, len(images) - 1, min(PICTURE_ROWS, len(images))).round().long()
    return images[index]


def checkpoint_state(run: Run, config: TranslationConfig) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "generators": run.generators.state_dict(),
        "discriminators": run.discriminators.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "optimizer_g": run.opt_g.state_dict(),
        "optimizer_d": run.opt_d.state_dict(),
        "pools": {name: pool.state() for name, pool in run.pools.items()},
        "step": run.step,
        "rng": {
            "batches": run.batches.get_state(),
            "pools": run.pool_rng.get_state(),
            **global_rng_state(),
        },
        "config": config.model_dump(mode="json"),
        "config_digest": translation_digest(config),
        "code_version": code_version(),
    }


def restore(run: Run, state: dict[str, Any], path: Path) -> None:
    """Put the checkpoint's weights, optimiser states, pools, step and random states into `run`."""
    advice = "Resume it with the config it was trained with (the same task, model.* and optim.ema_decay, on or off)"
    with refusing_misfits(path, "does not fit this run", advice):
        load_weights(run, state)
    run.step = int(state["step"])
    rng = state["rng"]
    run.batches.set_state(rng["batches"])
    run.pool_rng.set_state(rng["pools"])
    restore_global_rng(rng, cuda=run.device.type == "cuda")


def load_weights(run: Run, state: dict[str, Any]) -> None:
    # An average the checkpoint lacks would start from the networks' initial weights, not the trained ones.
    if (run.ema is None) != (state["ema"] is None):
        raise ValueError("the run and the checkpoint disagree on keeping a moving average (optim.ema_decay)")
    run.generators.load_state_dict(state["generators"])
    run.discriminators.load_state_dict(state["discriminators"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    run.opt_g.load_state_dict(state["optimizer_g"])
    run.opt_d.load_state_dict(state["optimizer_d"])
    for name, pool in run.pools.items():
        pool.restore(state["pools"][name].to(run.device))  # checkpoints load onto the CPU


class CsvLog:
    """losses.csv, one row per logged step; on resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, columns: list[str], keep_until: int) -> None:
        self.path, self.columns = path, columns
        rows = self._rows_until(keep_until) if keep_until > 0 and path.exists() else []
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["step", *columns])
            writer.writerows(rows)

    def _rows_until(self, step: int) -> list[list[str]]:
        with self.path.open(newline="") as file:
            return [row for row in list(csv.reader(file))[1:] if row and int(row[0]) <= step]

    def write(self, step: int, losses: dict[str, float]) -> None:
        with self.path.open("a", newline="") as file:
            csv.writer(file).writerow([step, *(f"{losses[c]:.6f}" for c in self.columns)])
