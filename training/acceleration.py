"""Mixed precision and torch.compile: the two speed options of a GPU run (`amp`, `compile`).

Mixed precision is bfloat16 only: it keeps float32's exponent range, so no loss scaling is
needed, which matters here because the WGAN-GP and R1 penalties differentiate twice and a
float16 loss scaler would have to scale those inner gradients too. Forward passes and losses
run under `torch.autocast`; the backward passes, the optimisers and the weights stay float32.
GPUs from NVIDIA's Ampere generation on (A100, H100, RTX 30xx) run bfloat16 natively.

torch.compile wraps the forward of each network; the modules themselves (their state dicts,
the moving average, the checkpoint) are untouched, so checkpoints do not depend on the option.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from training.config import TrainConfig
from training.data import DataError

Forward = Callable[..., torch.Tensor]


def check_acceleration(config: TrainConfig, device: torch.device) -> None:
    """Refuse, before any work, options the device cannot honour."""
    if config.amp != "off" and device.type != "cuda":
        raise DataError(
            f"amp={config.amp}: mixed precision is for CUDA devices and this run is on {device}; set amp=off"
        )


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The precision context of forward passes: bfloat16 autocast with amp=bf16, else nothing."""
    if config.amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def forward_of(module: nn.Module, config: TrainConfig) -> Forward:
    """The callable a training step runs: the module, or its torch.compile'd forward."""
    if config.compile:
        return torch.compile(module)
    return module
