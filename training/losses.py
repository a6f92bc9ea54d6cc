"""GAN objectives on raw discriminator outputs, and the gradient penalties.

| `optim.loss`    | discriminator                               | generator                 |
|-----------------|---------------------------------------------|---------------------------|
| `minimax`       | BCE: real -> 1, fake -> 0                   | minimise log(1 - D(G(z))) (saturates early) |
| `nonsaturating` | BCE: real -> 1, fake -> 0                   | minimise -log D(G(z))     |
| `lsgan`         | 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2            | 1/2 (D(G(z)) - 1)^2       |
| `hinge`         | relu(1 - D(x)) + relu(1 + D(G(z)))          | -D(G(z))                  |
| `wgan-gp`       | D(G(z)) - D(x) + gp_weight * GP             | -D(G(z))                  |

GP (Gulrajani et al. 2017) pushes the gradient norm of D to 1 on points between real and
fake samples; R1 (Mescheder et al. 2018) pushes the gradient of D on real samples to 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from training.config import LossKind

Critic = Callable[[torch.Tensor], torch.Tensor]


def discriminator_loss(kind: LossKind, real: torch.Tensor, fake: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """The discriminator's loss on its outputs for real and generated samples (label smoothing: BCE only)."""
    if kind in ("minimax", "nonsaturating"):
        real_targets = torch.full_like(real, 1.0 - smoothing)
        return F.binary_cross_entropy_with_logits(real, real_targets) + F.binary_cross_entropy_with_logits(
            fake, torch.zeros_like(fake)
        )
    if kind == "lsgan":
        return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return fake.mean() - real.mean()  # wgan-gp, before its penalty


def generator_loss(kind: LossKind, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss on the discriminator's outputs for its samples."""
    if kind == "minimax":
        return -F.softplus(fake).mean()  # log(1 - sigmoid(fake)) = -softplus(fake)
    if kind == "nonsaturating":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if kind == "lsgan":
        return 0.5 * ((fake - 1.0) ** 2).mean()
    return -fake.mean()  # hinge and wgan-gp


def gradient_penalty(
    critic: Critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """E[(||grad D(x_hat)|| - 1)^2] on random points x_hat between real and fake samples."""
    mix = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator).to(real.device)
    between = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def r1_penalty(critic: Critic, real: torch.Tensor) -> torch.Tensor:
    """E[||grad D(x)||^2] on real samples."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(real).sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()
