"""The translation networks: pix2pix's U-Net and PatchGAN, CycleGAN's ResNet generator.

Every generator maps `source` (N, C_in, H, W) in [-1, 1] (a mask channel in {0, 1}) to an image
(N, C_out, H * scale, W * scale) in [-1, 1], so the exported graph is the whole model: the
bicubic upsampling of super-resolution and the compositing of inpainting are inside it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from service.translator_signature import INPUT_CHANNELS
from training.translation.config import TranslationConfig

LEAK = 0.2
Norm = Literal["instance", "none"]
MAX_WIDTH_FACTOR = 8  # U-Net and PatchGAN widths stop doubling at 8 x width


def _norm(channels: int, kind: Norm = "instance") -> nn.Module:
    # Instance norm: the same in training and eval mode, and one image never changes another's output
    # when the service batches requests together. "none" for super-resolution: on flat patches (sky)
    # instance norm divides near-zero variations by their near-zero spread and turns them into texture.
    return nn.InstanceNorm2d(channels, affine=True) if kind == "instance" else nn.Identity()


class UNet(nn.Module):
    """`depth` stride-2 convolutions down, as many upsampling blocks up, skip connections between them.

    (N, C_in, H, W) -> (N, C_out, H, W); H and W must be multiples of 2**depth. The last layer is
    zero-initialised so that a residual generator starts as its plain baseline.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, depth: int, norm: Norm = "instance") -> None:
        super().__init__()
        widths = [width * min(2**i, MAX_WIDTH_FACTOR) for i in range(depth)]
        self.down = nn.ModuleList()
        previous = in_channels
        for i, channels in enumerate(widths):
            normalise = _norm(channels, norm) if 0 < i < depth - 1 else nn.Identity()  # innermost map may be 1x1
            self.down.append(nn.Sequential(nn.Conv2d(previous, channels, 4, 2, 1), normalise, nn.LeakyReLU(LEAK)))
            previous = channels
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            incoming = widths[i] if i == depth - 1 else 2 * widths[i]
            outgoing = widths[i - 1] if i > 0 else width
            self.up.insert(0, _upsampling_block(incoming, outgoing, norm))
        self.out = nn.Conv2d(width + in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # Conv2d has a bias unless bias=False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for layer in self.down:
            skips.append(layer(skips[-1]))
        h = skips.pop()
        for i in reversed(range(len(self.up))):
            h = self.up[i](h)
            skip = skips[i]
            h = torch.cat([h, skip], dim=1)  # at i = 0 the skip is the input itself, full resolution
        return self.out(h)


def _upsampling_block(incoming: int, outgoing: int, norm: Norm) -> nn.Module:
    """Double the side by repeating pixels, then a 3x3 convolution: no checkerboard pattern, which a
    stride-2 transposed convolution leaves in flat regions (Odena et al. 2016), where it costs PSNR."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2.0, mode="nearest"),
        nn.Conv2d(incoming, outgoing, 3, padding=1),
        _norm(outgoing, norm),
        nn.ReLU(),
    )


class Pix2PixGenerator(nn.Module):
    """A U-Net around a task's plain baseline.

    - super-resolution (`scale` > 1): bicubic upsampling first, the U-Net refines it.
    - `rgb+mask` input (inpainting): the hole is zeroed here and the known pixels are copied to
      the output, output = mask * input + (1 - mask) * generated.
    - residual: the U-Net adds to the baseline image (the upsampled, masked or grey-replicated
      input) instead of drawing from scratch; otherwise its output goes through tanh.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        depth: int,
        scale: int,
        masked: bool,
        residual: bool,
        norm: Norm = "instance",
    ) -> None:
        super().__init__()
        self.scale, self.masked, self.residual = scale, masked, residual
        self.out_channels = out_channels
        self.unet = UNet(in_channels, out_channels, width, depth, norm)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        x = source
        if self.masked:
            mask = source[:, -1:]  # (N, 1, H, W): 1 known, 0 hole
            x = torch.cat([source[:, :-1] * mask, mask], dim=1)
        if self.scale > 1:
            x = upsample(x, self.scale)
        drawn = self.unet(x)
        image = (self.baseline(x) + drawn).clamp(-1.0, 1.0) if self.residual else torch.tanh(drawn)
        if self.masked:
            image = mask * x[:, :-1] + (1.0 - mask) * image
        return image

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The plain answer the U-Net corrects: x's image channels, grey replicated to RGB."""
        image = x[:, :-1] if self.masked else x
        if image.shape[1] != self.out_channels:
            image = image.expand(-1, self.out_channels, -1, -1)
        return image.clamp(-1.0, 1.0)


def upsample(images: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by `scale` (align_corners=False), the super-resolution baseline, not clamped."""
    return F.interpolate(images, scale_factor=float(scale), mode="bicubic", align_corners=False)


class PatchDiscriminator(nn.Module):
    """PatchGAN: (N, C, H, W) -> (N, 1, h, w) logits, one per overlapping patch.

    `layers` stride-2 convolutions, then two stride-1 ones (pix2pix's 70x70 design at layers=3).
    """

    def __init__(self, in_channels: int, width: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(LEAK)]
        previous = width
        for i in range(1, layers + 1):
            channels = width * min(2**i, MAX_WIDTH_FACTOR)
            stride = 2 if i < layers else 1
            blocks += [nn.Conv2d(previous, channels, 4, stride, 1), _norm(channels), nn.LeakyReLU(LEAK)]
            previous = channels
        blocks.append(nn.Conv2d(previous, 1, 4, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class ConditionalDiscriminator(nn.Module):
    """pix2pix's D: judges the input and the output together, the input upsampled to the output's size."""

    def __init__(self, source_channels: int, image_channels: int, width: int, layers: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.patch = PatchDiscriminator(source_channels + image_channels, width, layers)

    def forward(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if self.scale > 1:
            source = F.interpolate(source, scale_factor=float(self.scale), mode="nearest")
        return self.patch(torch.cat([source, image], dim=1))


class ResnetBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


RESNET_DOWNSAMPLINGS = 2  # so H and W must be multiples of 4


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: c7s1-w, two stride-2 convolutions, `blocks` residual blocks, back up, c7s1, tanh."""

    def __init__(self, in_channels: int, out_channels: int, width: int, blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7), _norm(width), nn.ReLU()]
        channels = width
        for _ in range(RESNET_DOWNSAMPLINGS):
            layers += [nn.Conv2d(channels, 2 * channels, 3, 2, 1), _norm(2 * channels), nn.ReLU()]
            channels *= 2
        layers += [ResnetBlock(channels) for _ in range(blocks)]
        for _ in range(RESNET_DOWNSAMPLINGS):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 3, 2, 1, output_padding=1)]
            layers += [_norm(channels // 2), nn.ReLU()]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.net(source)


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, as pix2pix and CycleGAN do; the zeroed U-Net output layer is left alone."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) and module.weight.abs().sum() > 0:
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_generator(config: TranslationConfig) -> nn.Module:
    """One generator of the config's architecture (CycleGAN builds two: a2b and b2a alike)."""
    model = config.model
    in_channels = INPUT_CHANNELS[config.input_format]
    if config.is_paired:
        masked = config.input_format == "rgb+mask"
        return Pix2PixGenerator(
            in_channels,
            config.output_channels,
            model.width,
            model.depth,
            config.scale,
            masked,
            model.residual,
            model.norm,
        )
    return ResnetGenerator(in_channels, config.output_channels, model.width, model.blocks)


def build_generators(config: TranslationConfig) -> nn.ModuleDict:
    """pix2pix: {"a2b"}; CycleGAN: {"a2b", "b2a"}."""
    names = ["a2b"] if config.is_paired else ["a2b", "b2a"]
    generators = nn.ModuleDict({name: build_generator(config) for name in names})
    generators.apply(init_weights)
    return generators


def build_discriminators(config: TranslationConfig) -> nn.ModuleDict:
    """pix2pix: {"b"}, conditioned on the input; CycleGAN: {"a", "b"}, one per domain."""
    model = config.model
    if config.is_paired:
        source_channels = INPUT_CHANNELS[config.input_format]
        d = ConditionalDiscriminator(
            source_channels, config.output_channels, model.d_width, model.d_layers, config.scale
        )
        discriminators = nn.ModuleDict({"b": d})
    else:
        channels = config.output_channels
        discriminators = nn.ModuleDict(
            {name: PatchDiscriminator(channels, model.d_width, model.d_layers) for name in ("a", "b")}
        )
    discriminators.apply(init_weights)
    return discriminators
