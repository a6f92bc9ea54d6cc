"""The training loop, top to bottom: data, models, optimisers, then steps with logs, samples, checkpoints."""

from __future__ import annotations

import copy
import csv
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gan_client.grid import save_grid
from training.acceleration import Forward, autocast, check_acceleration, forward_of
from training.augment import diff_augment
from training.checkpoint import (
    check_resume,
    code_version,
    global_rng_state,
    load_checkpoint,
    recorded_config,
    refusing_misfits,
    restore_global_rng,
    save_checkpoint,
)
from training.config import TrainConfig
from training.data import DataError, ImageDataset, load_dataset
from training.determinism import set_determinism
from training.distributed import (
    SINGLE_PROCESS,
    World,
    average_buffers,
    average_gradients,
    average_scalars,
    check_batch_split,
    rank_device,
    rank_generator,
    shard,
)
from training.losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from training.mode_coverage import MIXTURES, PROTOCOL_SAMPLES, coverage
from training.models import build_discriminator, build_generator, init_weights, pack, with_spectral_norm
from training.plots import plot_losses, plot_points
from training.tensorboard_log import open_board

CHECKPOINT = "checkpoint.pt"
LOSSES = "losses.csv"
LOSS_PLOT = "losses.png"
TENSORBOARD = "tensorboard"
LOSS_COLUMNS = ["step", "d_loss", "g_loss", "d_real", "d_fake"]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    step: int
    losses: dict[str, float]


@dataclass
class Run:
    """Everything that changes while training, and so everything a checkpoint holds."""

    generator: nn.Module
    discriminator: nn.Module
    ema: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: torch.Generator  # which real images each step sees
    noise: torch.Generator  # the latents of each step
    g_forward: Forward  # what a step calls: the module itself or its compiled forward (acceleration.py)
    d_forward: Forward
    step: int = 0


def train(
    config: TrainConfig, resume: Path | None = None, progress: bool = True, world: World = SINGLE_PROCESS
) -> TrainResult:
    """Train as configured; under torchrun, `world` is this rank, inside training.distributed.process_group.

    With `resume`, `config` must keep what shapes the checkpoint's networks and optimisers
    (training.checkpoint.resume_config builds such a config from the checkpoint's own).
    """
    state = resumable_state(resume, config) if resume is not None else None
    dataset = load_dataset(config.data)  # fails before any work if the data is unusable
    if len(dataset) < 2:
        raise DataError(f"the dataset holds {len(dataset)} image(s); training needs at least 2")
    check_batch_split(config.batch_size, config.model.pack, world)
    device = rank_device(resolve_device(config.device), world)
    set_determinism(config.deterministic, device)
    check_acceleration(config, device)
    seed_everything(config.seed)
    run = new_run(config, len(dataset.class_names), device)
    if resume is not None and state is not None:
        restore(run, state, device, resume)
    out = config.out_dir
    if world.is_main:  # rank 0 alone writes; the other ranks only train
        (out / "samples").mkdir(parents=True, exist_ok=True)
    log = LossLog(out / LOSSES, keep_until=run.step) if world.is_main else None
    board = open_board(out / TENSORBOARD, run.step, enabled=config.tensorboard and world.is_main)
    images, labels = dataset.images.to(device), dataset.labels.to(device)
    fixed_latent, fixed_label = fixed_inputs(config, dataset, device)
    losses: dict[str, float] = {}
    bar = tqdm(
        total=config.steps, initial=run.step, disable=not (progress and world.is_main), desc="training", unit="step"
    )
    while run.step < config.steps:
        set_learning_rates(run, config)
        losses = train_step(run, config, images, labels, device, world)
        check_finite(losses, run.step, out / CHECKPOINT)
        run.step += 1
        bar.update(1)
        if log is None:
            continue  # not rank 0
        if run.step % config.log_every == 0 or run.step == config.steps:
            log.write(run.step, losses)
            board.scalars(run.step, {**losses, **learning_rates(run)})
            bar.set_postfix(d=f"{losses['d_loss']:.3f}", g=f"{losses['g_loss']:.3f}")
        if run.step % config.sample_every == 0 or run.step == config.steps:
            picture = out / "samples" / f"step_{run.step:06d}.png"
            save_samples(sampler(run), fixed_latent, fixed_label, picture, config)
            board.image(run.step, picture)
        if run.step % config.checkpoint_every == 0 or run.step == config.steps:
            networks = {"generator": run.generator, "discriminator": run.discriminator, "ema": run.ema}
            check_weights_finite(networks, run.step, out / CHECKPOINT)
            save_checkpoint(out / CHECKPOINT, checkpoint_state(run, config, dataset))
            plot_losses(out / LOSSES, out / LOSS_PLOT)
            board.flush()
    bar.close()
    board.close()
    return TrainResult(checkpoint=out / CHECKPOINT, step=run.step, losses=losses)


def train_step(
    run: Run,
    config: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    world: World = SINGLE_PROCESS,
) -> dict[str, float]:
    """`optim.n_critic` updates of D, then one of G. Under torchrun: on this rank's slice of the global batch,
    gradients averaged. The extra critic updates (n_critic > 1) come first, each on its own batch."""
    for _ in range(config.optim.n_critic - 1):
        with torch.no_grad():
            real, label, fake = _batch(run, config, images, labels, device, world)
        _critic_update(run, config, real, fake, label, device, world)
    real, label, fake = _batch(run, config, images, labels, device, world)
    packed_fake, d_label, d_loss, real_logits, fake_logits = _critic_update(
        run, config, real, fake, label, device, world
    )
    optim, discriminator = config.optim, run.d_forward
    with autocast(config, device):
        g_loss = generator_loss(optim.loss, discriminator(packed_fake, d_label))
    run.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    average_gradients(run.generator, world)
    run.opt_g.step()
    average_buffers(run.generator, world)  # batch-norm running statistics, the same on every replica
    average_buffers(run.discriminator, world)
    if run.ema is not None:
        update_ema(run.ema, run.generator, ema_decay(config.optim.ema_decay, run.step))
    losses = {
        "d_loss": d_loss,
        "g_loss": g_loss,
        "d_real": torch.sigmoid(real_logits).mean(),
        "d_fake": torch.sigmoid(fake_logits).mean(),
    }
    return average_scalars(losses, world)  # over the ranks: the figures of the whole global batch


def _batch(
    run: Run, config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, device: torch.device, world: World
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real images, their labels and as many generated images: (B, C, H, W), (B,), (B, C, H, W)."""
    index = shard(torch.randint(len(images), (config.batch_size,), generator=run.batches), world).to(device)
    real, label = images[index], labels[index]  # B = batch_size / world.size
    latent = shard(torch.randn(config.batch_size, config.model.latent_dim, generator=run.noise), world).to(device)
    with autocast(config, device):  # forward passes in bfloat16 with amp=bf16; backward passes outside
        fake = run.g_forward(latent, label)
    return real, label, fake


def _critic_update(
    run: Run,
    config: TrainConfig,
    real: torch.Tensor,
    fake: torch.Tensor,
    label: torch.Tensor,
    device: torch.device,
    world: World,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One update of D; returns the packed fakes G learns through, D's labels, D's loss and logits."""
    noise = rank_generator(run.noise, world)  # run.noise itself in a single process
    optim, size = config.optim, config.model.pack
    d_label = label[::size]  # packing is for unconditional models, whose discriminator ignores labels
    with autocast(config, device):
        if optim.diffaugment:  # the same kind of transforms on both, differentiable, so G learns through them
            real = diff_augment(real, optim.diffaugment, noise)
            fake = diff_augment(fake, optim.diffaugment, noise)
        packed_real, packed_fake = pack(real, size), pack(fake, size)
        real_logits = run.d_forward(packed_real, d_label)
        fake_logits = run.d_forward(packed_fake.detach(), d_label)
        d_loss = discriminator_loss(optim.loss, real_logits, fake_logits, optim.label_smoothing)
        d_total = d_loss + discriminator_penalties(run, config, packed_real, packed_fake.detach(), d_label, noise)
    run.opt_d.zero_grad(set_to_none=True)
    d_total.backward()
    average_gradients(run.discriminator, world)  # an explicit all-reduce, not DDP: training/distributed.py says why
    run.opt_d.step()
    return packed_fake, d_label, d_loss, real_logits, fake_logits


def discriminator_penalties(
    run: Run, config: TrainConfig, real: torch.Tensor, fake: torch.Tensor, label: torch.Tensor, noise: torch.Generator
) -> torch.Tensor:
    """The gradient penalty of wgan-gp and the R1 penalty, as configured (zero when neither is)."""
    total = torch.zeros((), device=real.device)

    def critic(images: torch.Tensor) -> torch.Tensor:
        return run.discriminator(images, label)

    if config.optim.loss == "wgan-gp" and config.optim.gp_weight > 0:
        total = total + config.optim.gp_weight * gradient_penalty(critic, real, fake, noise)
    if config.optim.r1_gamma > 0:
        total = total + config.optim.r1_gamma / 2 * r1_penalty(critic, real)
    return total


def new_run(config: TrainConfig, num_classes: int, device: torch.device) -> Run:
    generator = build_generator(config, num_classes).to(device)
    discriminator = build_discriminator(config, num_classes).to(device)
    if config.model.arch == "dcgan":  # the MLPs keep PyTorch's default (Kaiming) initialisation
        generator.apply(init_weights)
        discriminator.apply(init_weights)
    if config.model.spectral_norm:
        with_spectral_norm(discriminator)
    ema = copy.deepcopy(generator).eval().requires_grad_(False) if config.optim.ema_decay > 0 else None
    betas = (config.optim.beta1, config.optim.beta2)
    return Run(
        generator=generator,
        discriminator=discriminator,
        ema=ema,
        opt_g=torch.optim.Adam(generator.parameters(), lr=config.optim.lr_g, betas=betas),
        opt_d=torch.optim.Adam(discriminator.parameters(), lr=config.optim.lr_d, betas=betas),
        batches=torch.Generator().manual_seed(config.seed),
        noise=torch.Generator().manual_seed(config.seed + 1),
        g_forward=forward_of(generator, config),
        d_forward=forward_of(discriminator, config),
    )


def learning_rate_scale(config: TrainConfig, step: int) -> float:
    """The share of the configured learning rates used at `step` (0-based), by optim.lr_decay."""
    optim = config.optim
    progress = step / max(1, config.steps - 1)
    if optim.lr_decay == "linear":
        return 1.0 - (1.0 - optim.lr_floor) * progress
    if optim.lr_decay == "cosine":
        return optim.lr_floor + (1.0 - optim.lr_floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def set_learning_rates(run: Run, config: TrainConfig) -> None:
    """A function of the step alone, so a resumed run follows the same schedule exactly."""
    scale = learning_rate_scale(config, run.step)
    for optimiser, base in ((run.opt_g, config.optim.lr_g), (run.opt_d, config.optim.lr_d)):
        for group in optimiser.param_groups:
            group["lr"] = base * scale


def ema_decay(target: float, step: int) -> float:
    """Ramp the decay up from 0.1 so the average soon forgets the random initial weights."""
    return min(target, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, decay: float) -> None:
    for average, current in zip(ema.parameters(), generator.parameters(), strict=True):
        average.lerp_(current, 1.0 - decay)
    for buffer, live in zip(ema.buffers(), generator.buffers(), strict=True):
        buffer.copy_(live)  # batch-norm statistics follow the live generator


def learning_rates(run: Run) -> dict[str, float]:
    return {"lr_g": run.opt_g.param_groups[0]["lr"], "lr_d": run.opt_d.param_groups[0]["lr"]}


def sampler(run: Run) -> nn.Module:
    return run.ema if run.ema is not None else run.generator


RESUME = "gan-train --resume CHECKPOINT optim.lr_g=... optim.lr_d=..."  # what a diverged run's message suggests


def check_finite(losses: dict[str, float], step: int, checkpoint: Path, resume: str = RESUME) -> None:
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        raise TrainingDiverged(_diverged(f"step {step + 1}: {bad} is not finite", checkpoint, resume))


def check_weights_finite(
    networks: Mapping[str, nn.Module | None], step: int, checkpoint: Path, resume: str = RESUME
) -> None:
    """Before a save: the update after a finite loss can still leave a weight NaN or infinite."""
    bad = [name for name, network in networks.items() if network is not None and not _all_finite(network)]
    if bad:
        what = f"step {step}: the weights of {', '.join(bad)} are not finite"
        raise TrainingDiverged(_diverged(what, checkpoint, resume))


def _all_finite(network: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in network.state_dict().values() if t.is_floating_point())


def _diverged(what: str, checkpoint: Path, resume: str) -> str:
    kept = f"the last good checkpoint {checkpoint} is kept" if checkpoint.exists() else "no checkpoint was written"
    return f"{what}; training stopped and {kept}. Resume from it with lower learning rates: {resume}"


def checkpoint_state(run: Run, config: TrainConfig, dataset: ImageDataset) -> dict[str, Any]:
    return {
        "generator": run.generator.state_dict(),
        "discriminator": run.discriminator.state_dict(),
        "ema_generator": run.ema.state_dict() if run.ema is not None else None,
        "optimizer_g": run.opt_g.state_dict(),
        "optimizer_d": run.opt_d.state_dict(),
        "step": run.step,
        "rng": {
            "batches": run.batches.get_state(),
            "noise": run.noise.get_state(),
            **global_rng_state(),
        },
        "config": config.model_dump(mode="json"),
        "class_names": dataset.class_names,
        "code_version": code_version(),
    }


def resumable_state(path: Path, config: TrainConfig) -> dict[str, Any]:
    """The checkpoint at `path`, once `config` is known to keep what shapes its networks and optimisers."""
    state = load_checkpoint(path)
    check_resume(recorded_config(state, path), config, path)
    return state


def restore(run: Run, state: dict[str, Any], device: torch.device, path: Path) -> None:
    """Put the checkpoint's weights, optimiser states, step and random states into `run`."""
    advice = (
        "Resume it with its own config (gan-train --resume alone), with data.path at the images it was "
        "trained on (the same classes)"
    )
    with refusing_misfits(path, "its weights do not fit this run's networks", advice):
        load_weights(run, state)
    run.step = int(state["step"])
    rng = state["rng"]
    run.batches.set_state(rng["batches"])
    run.noise.set_state(rng["noise"])
    restore_global_rng(rng, cuda=device.type == "cuda")


def load_weights(run: Run, state: dict[str, Any]) -> None:
    run.generator.load_state_dict(state["generator"])
    run.discriminator.load_state_dict(state["discriminator"])
    if (run.ema is None) != (state["ema_generator"] is None):
        raise ValueError("the run and the checkpoint disagree on keeping a moving average (optim.ema_decay)")
    if run.ema is not None:
        run.ema.load_state_dict(state["ema_generator"])
    run.opt_g.load_state_dict(state["optimizer_g"])
    run.opt_d.load_state_dict(state["optimizer_d"])


def fixed_inputs(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The latents of every sample picture: 8 per class (one row each), 64 for unconditional images,
    and the protocol's 2,500 for 2-D points."""
    classes = max(len(dataset.class_names), 1)
    per_class = 8 if dataset.class_names else 64
    if config.data.is_points:
        per_class = PROTOCOL_SAMPLES
    generator = torch.Generator().manual_seed(config.seed + 2)
    latent = torch.randn(classes * per_class, config.model.latent_dim, generator=generator)
    label = torch.arange(classes).repeat_interleave(per_class)
    return latent.to(device), label.to(device)


@torch.no_grad()
def generate(generator: nn.Module, latent: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Samples of `generator` in eval mode (batch norm from its running statistics), on the CPU."""
    was_training = generator.training
    generator.eval()
    samples = generator(latent, label).cpu()
    generator.train(was_training)
    return samples


def save_samples(
    generator: nn.Module, latent: torch.Tensor, label: torch.Tensor, path: Path, config: TrainConfig
) -> None:
    """A grid of images, or for 2-D points a scatter plot over the modes and its coverage in a .json beside it."""
    samples = generate(generator, latent, label)
    if config.data.is_points:
        mixture = MIXTURES[config.data.source]()
        points = samples.double().numpy()
        plot_points(points, mixture, path)
        path.with_suffix(".json").write_text(json.dumps(coverage(points, mixture).as_dict()))
        return
    images = samples  # (N, C, H, W) in [-1, 1]
    pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    columns = 8 if len(images) % 8 == 0 else None
    save_grid(pixels, path, scale=max(1, 64 // images.shape[-1]), columns=columns)


class LossLog:
    """losses.csv, one row per logged step; on resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, keep_until: int) -> None:
        self.path = path
        rows = self._rows_until(keep_until) if keep_until > 0 and path.exists() else []
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(LOSS_COLUMNS)
            writer.writerows(rows)

    def _rows_until(self, step: int) -> list[list[str]]:
        with self.path.open(newline="") as file:
            return [row for row in list(csv.reader(file))[1:] if row and int(row[0]) <= step]

    def write(self, step: int, losses: dict[str, float]) -> None:
        with self.path.open("a", newline="") as file:
            csv.writer(file).writerow([step, *(f"{losses[c]:.6f}" for c in LOSS_COLUMNS[1:])])


def resolve_device(name: str) -> torch.device:
    """The device a run's `device` setting names; DataError when torch cannot use it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DataError(f"device: {name} requested but torch sees no CUDA device; use device=cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DataError(f"device: {name} requested but torch sees {count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
