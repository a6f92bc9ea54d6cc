"""The GAN objectives and penalties on known values, and short runs with each of them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from training.checkpoint import load_checkpoint
from training.config import ConfigError, LossKind, load_config
from training.losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from training.models import build_discriminator, pack, with_spectral_norm
from training.train import train

KINDS: list[LossKind] = ["minimax", "nonsaturating", "lsgan", "hinge", "wgan-gp"]


def test_each_discriminator_loss_is_zero_or_known_where_it_should_be() -> None:
    real, fake = torch.tensor([2.0, 3.0]), torch.tensor([-2.0, -1.0])
    assert discriminator_loss("hinge", real, fake).item() == 0.0  # both beyond the margin
    assert discriminator_loss("lsgan", torch.ones(2), torch.zeros(2)).item() == 0.0
    assert discriminator_loss("wgan-gp", real, fake).item() == pytest.approx(-1.5 - 2.5)
    bce = discriminator_loss("nonsaturating", torch.zeros(1), torch.zeros(1)).item()
    assert bce == pytest.approx(2 * math.log(2))
    assert discriminator_loss("minimax", torch.zeros(1), torch.zeros(1)).item() == pytest.approx(bce)


@pytest.mark.parametrize("kind", ["minimax", "nonsaturating"])
def test_the_cross_entropy_discriminator_wants_real_high_and_fake_low(kind: LossKind) -> None:
    right, wrong = torch.tensor([10.0]), torch.tensor([-10.0])
    assert discriminator_loss(kind, right, wrong).item() < 1e-3  # confident and right
    assert discriminator_loss(kind, wrong, right).item() == pytest.approx(20.0, abs=1e-3)  # confident and wrong
    smoothed = discriminator_loss(kind, right, wrong, smoothing=0.1).item()
    assert smoothed == pytest.approx(1.0, abs=1e-3), "target 0.9 for real: a confident 10 now costs 0.1 * 10"


@pytest.mark.parametrize("kind", KINDS)
def test_every_generator_loss_falls_as_the_discriminator_believes_the_fakes(kind: LossKind) -> None:
    doubted, believed = torch.tensor([-0.5]), torch.tensor([0.5])
    assert generator_loss(kind, believed).item() < generator_loss(kind, doubted).item()


def test_the_gradient_penalty_is_taken_between_the_real_and_the_fake_sample() -> None:
    """Critic 0.5 |x|^2 has slope |x|: with real = fake on the unit circle, every point between has slope 1."""

    def critic(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x**2).sum(dim=1)

    point = torch.tensor([[0.6, 0.8]]).expand(16, 2)
    assert gradient_penalty(critic, point, point.clone(), torch.Generator().manual_seed(0)).item() < 1e-10


def test_the_minimax_generator_loss_saturates_and_the_non_saturating_one_does_not() -> None:
    """When D confidently rejects the fakes (very negative logits), only -log D still gives G a gradient."""
    gradients = {}
    for kind in ("minimax", "nonsaturating"):
        logits = torch.full((4,), -8.0, requires_grad=True)
        generator_loss(kind, logits).backward()  # type: ignore[arg-type]
        assert logits.grad is not None
        gradients[kind] = logits.grad.abs().mean().item()
    assert gradients["minimax"] < 1e-3 < 0.2 < gradients["nonsaturating"]


def test_generator_losses_of_lsgan_hinge_and_wgan() -> None:
    fake = torch.tensor([0.5, 1.5])
    assert generator_loss("lsgan", torch.ones(2)).item() == 0.0
    assert generator_loss("hinge", fake).item() == pytest.approx(-1.0)
    assert generator_loss("wgan-gp", fake).item() == pytest.approx(-1.0)


@pytest.mark.parametrize(("scale", "penalty"), [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_the_gradient_penalty_measures_the_critics_slope(scale: float, penalty: float) -> None:
    direction = torch.tensor([0.6, 0.8])  # unit norm: a critic with slope `scale` everywhere

    def critic(x: torch.Tensor) -> torch.Tensor:
        return scale * (x @ direction)

    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    value = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(penalty, abs=1e-5)
    assert r1_penalty(critic, real).item() == pytest.approx(scale**2, abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_short_run_with_each_loss_and_the_stabilisers_stays_finite(kind: LossKind, tmp_path: Path) -> None:
    extra = [f"optim.loss={kind}", "steps=3", "model.spectral_norm=true", "optim.r1_gamma=1.0"]
    extra.append("model.d_batch_norm=false")  # both penalties are per sample
    result = train(load_config(None, [*TINY, f"out_dir={tmp_path}", *extra]), progress=False)
    assert result.step == 3 and all(math.isfinite(v) for v in result.losses.values())


def test_spectral_norm_keeps_every_discriminator_weight_at_unit_scale(tmp_path: Path) -> None:
    config = load_config(None, [*TINY, f"out_dir={tmp_path}", "steps=3", "model.spectral_norm=true"])
    state = load_checkpoint(train(config, progress=False).checkpoint)["discriminator"]
    originals = [key for key in state if key.endswith("parametrizations.weight.original")]
    assert originals, "spectral norm should parametrize the discriminator's weights"
    discriminator = with_spectral_norm(build_discriminator(config, 10))
    discriminator.load_state_dict(state)
    for module in discriminator.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            sigma = torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2).item()
            assert sigma == pytest.approx(1.0, abs=0.15)


def test_wgan_gp_with_batch_norm_in_the_discriminator_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"optim\.loss=wgan-gp.*model\.d_batch_norm=false"):
        load_config(None, ["optim.loss=wgan-gp"])
    with pytest.raises(ConfigError, match=r"optim\.loss"):
        load_config(None, ["optim.loss=wasserstein"])


def test_packing_puts_consecutive_samples_side_by_side() -> None:
    images = torch.arange(4 * 1 * 2 * 2, dtype=torch.float32).reshape(4, 1, 2, 2)
    packed = pack(images, 2)
    assert packed.shape == (2, 2, 2, 2)
    assert torch.equal(packed[1, 0], images[2, 0]) and torch.equal(packed[1, 1], images[3, 0])
    assert pack(images, 1) is images


def test_a_packed_discriminator_trains_and_judges_pairs(tmp_path: Path) -> None:
    extra = ["steps=3", "data.conditional=false", "model.pack=2"]
    config = load_config(None, [*TINY, f"out_dir={tmp_path}", *extra])
    result = train(config, progress=False)
    assert all(math.isfinite(v) for v in result.losses.values())
    first_conv = load_checkpoint(result.checkpoint)["discriminator"]["body.0.weight"]
    assert first_conv.shape[1] == 2 * config.data.channels


def test_packing_settings_that_cannot_work_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"model\.pack.*data\.conditional=false"):
        load_config(None, ["model.pack=2"])
    with pytest.raises(ConfigError, match=r"batch_size: 63 is not a multiple of model\.pack=2"):
        load_config(None, ["model.pack=2", "data.conditional=false", "batch_size=63"])


@pytest.mark.parametrize("penalty", ["optim.loss=wgan-gp", "optim.r1_gamma=1"])
def test_a_per_sample_penalty_with_a_batch_norm_discriminator_is_refused(penalty: str) -> None:
    with pytest.raises(ConfigError, match=r"(wgan-gp|r1_gamma).*batch norm.*model.d_batch_norm=false"):
        load_config(None, [penalty, "model.d_batch_norm=true"])


def test_n_critic_updates_the_discriminator_that_many_times_per_generator_update(tmp_path: Path) -> None:
    extra = ["optim.loss=wgan-gp", "model.d_batch_norm=false", "optim.n_critic=3", "steps=2", "optim.ema_decay=0"]
    result = train(load_config(None, [*TINY, f"out_dir={tmp_path}", *extra]), progress=False)
    state = load_checkpoint(result.checkpoint)
    d_steps = {float(entry["step"]) for entry in state["optimizer_d"]["state"].values()}
    g_steps = {float(entry["step"]) for entry in state["optimizer_g"]["state"].values()}
    assert d_steps == {6.0} and g_steps == {2.0}
    assert all(math.isfinite(value) for value in result.losses.values())
