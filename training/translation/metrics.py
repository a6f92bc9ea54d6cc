"""PSNR and SSIM of images against references, written here in torch (no extra dependency).

Both take (N, C, H, W) tensors in the models' [-1, 1] range and first map them to [0, 1]
(clamped), so the data range is 1.

- PSNR = 10 log10(1 / MSE), the MSE pooled over every pixel of every image (the PSNR of the
  whole held-out set, as if its patches were one image). Averaging per-image PSNRs instead would
  let flat patches (sky, blurred background), where any method scores 45-60 dB, dominate the
  mean. An exact copy (MSE 0) scores PSNR_CAP instead of infinity.
- SSIM (Wang et al. 2004) with the standard constants: an 11x11 Gaussian window of sigma 1.5,
  K1 = 0.01, K2 = 0.03; local means, variances and covariance are Gaussian-weighted over the
  window at every position where it fits inside the image ('valid', no padding), the SSIM map
  is averaged over positions and channels per image, then over images. Images need H, W >= 11.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PSNR_CAP = 100.0  # dB, for identical images
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, float64 for stable statistics."""
    return ((images.double() + 1.0) / 2.0).clamp(0.0, 1.0)


def _check_pair(images: torch.Tensor, references: torch.Tensor) -> None:
    if images.shape != references.shape or images.dim() != 4:
        raise ValueError(
            f"images {tuple(images.shape)} and references {tuple(references.shape)} must be equal (N, C, H, W)"
        )


def psnr_per_image(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(N,) PSNR in dB of each image against its reference, both (N, C, H, W) in [-1, 1]."""
    _check_pair(images, references)
    return _decibels((to_unit(images) - to_unit(references)).square().flatten(1).mean(1))


def psnr(images: torch.Tensor, references: torch.Tensor) -> float:
    """PSNR in dB of the whole set: the MSE pooled over all images, (N, C, H, W) in [-1, 1]."""
    _check_pair(images, references)
    return float(_decibels((to_unit(images) - to_unit(references)).square().mean()))


def _decibels(mse: torch.Tensor) -> torch.Tensor:
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-300))).clamp(max=PSNR_CAP)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """(size, size) float64 weights summing to 1."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    line = torch.exp(-offsets.square() / (2 * sigma**2))
    line = line / line.sum()
    return line[:, None] * line[None, :]


def ssim_per_image(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(N,) mean SSIM of each image against its reference, both (N, C, H, W) in [-1, 1]."""
    _check_pair(images, references)
    if min(images.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(images.shape[-2:])}")
    x, y = to_unit(images), to_unit(references)
    channels = x.shape[1]
    window = gaussian_window().expand(channels, 1, -1, -1).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)  # valid positions only

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    covariance = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    numerator = (2 * mu_x * mu_y + c1) * (2 * covariance + c2)
    denominator = (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    return (numerator / denominator).flatten(1).mean(1)


def ssim(images: torch.Tensor, references: torch.Tensor) -> float:
    return float(ssim_per_image(images, references).mean())
