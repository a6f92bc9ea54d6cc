"""The non-saturating GAN loss (Goodfellow et al. 2014) on raw discriminator logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """BCE pushing real towards 1 - smoothing and fake towards 0."""
    real_targets = torch.full_like(real_logits, 1.0 - smoothing)
    real = F.binary_cross_entropy_with_logits(real_logits, real_targets)
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): strong gradients early, when D rejects every fake."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
