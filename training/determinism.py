"""Deterministic mode, or fast mode: PyTorch's global switches for the algorithms it picks.

Every run is seeded (training/train.py, `seed_everything`), which on CPU already repeats a run
bit for bit. On GPUs some kernels (atomic adds in backward passes, cuDNN's autotuned
convolutions, cuBLAS's split workspaces) still vary from run to run; `deterministic: true`
forbids them, at some cost in speed. With it off, a GPU run lets cuDNN benchmark and pick its
fastest convolutions.
"""

from __future__ import annotations

import os

import torch

# cuBLAS is only reproducible with a fixed workspace; it reads this variable when it starts,
# which is why deterministic mode must be set before the first matrix product on the GPU.
CUBLAS_WORKSPACE = ":4096:8"


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """Set PyTorch's switches from the config, both ways, so that one run's choice never leaks into the next."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic and device.type == "cuda"
