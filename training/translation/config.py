"""The translation config: one pydantic model, read by training.config's loader (YAML, key=value overrides).

`task` decides the data and the architecture:
- super-resolution, inpainting, colourisation: pix2pix on pairs made from target images (the
  shipped sample photographs, or `data.folder` of your own), see training/translation/data.py.
- paired: pix2pix on `data.folder`/a and `data.folder`/b, files matched by name.
- unpaired: CycleGAN on two domains, `data.folder`/a and `data.folder`/b, or the shipped digits
  (plain against bold) when no folder is given.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from training.config import LOGGING_KEYS, Device, FrozenConfig

Task = Literal["super-resolution", "inpainting", "colourisation", "paired", "unpaired"]
PAIRED_TASKS = ("super-resolution", "inpainting", "colourisation", "paired")
INPUT_FORMATS = {"super-resolution": "rgb", "inpainting": "rgb+mask", "colourisation": "gray", "paired": "rgb"}
SR_SCALE = 4


class TranslationData(FrozenConfig):
    folder: Path | None = None  # None: the shipped example; else your images (see the module docstring)
    patch_size: int = Field(32, ge=8, le=512)  # side of the target patches (whole images for paired/unpaired)
    held_out_share: float = Field(0.3, gt=0, lt=1)  # right-hand share of each photo's columns (or of the files)
    bands: int = Field(1, ge=1, le=16)  # photos: split into this many column bands, each with its held-out right part
    channels: Literal[1, 3] = 3  # paired and unpaired folders: 1 reads them as grey
    hole_min: float = Field(0.25, gt=0, le=1)  # inpainting: a hole's side, as a share of the patch side
    hole_max: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _hole_range(self) -> TranslationData:
        if self.hole_min > self.hole_max:
            raise ValueError(f"hole_min: {self.hole_min} is above hole_max={self.hole_max}")
        return self


class TranslationModel(FrozenConfig):
    width: int = Field(32, ge=4, le=512)  # channels of the first layer of G and D
    depth: int = Field(4, ge=2, le=8)  # U-Net: stride-2 levels (the input side must be a multiple of 2**depth/scale)
    blocks: int = Field(6, ge=1, le=16)  # CycleGAN ResNet generator: residual blocks
    residual: bool = True  # U-Net adds to the plain baseline (bicubic, masked or grey input) instead of drawing it
    norm: Literal["instance", "none"] = "instance"  # U-Net normalisation; none suits super-resolution (models.py)
    d_width: int = Field(32, ge=4, le=512)
    d_layers: int = Field(2, ge=1, le=5)  # PatchGAN stride-2 layers: receptive field 16 (1), 34 (2), 70 (3)


class TranslationOptim(FrozenConfig):
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(2e-4, gt=0, le=1)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    l1_weight: float = Field(100.0, ge=0)  # pix2pix: lambda_L1
    cycle_weight: float = Field(10.0, ge=0)  # CycleGAN: lambda; identity loss weighs identity_share * lambda
    identity_share: float = Field(0.5, ge=0)
    pool_size: int = Field(50, ge=0, le=10_000)  # CycleGAN image pools; 0 = D sees only the newest fakes
    ema_decay: float = Field(0.999, ge=0, lt=1)  # moving average of the generators (what is evaluated, exported)
    decay_from: float = Field(1.0, ge=0, le=1)  # share of the steps after which both learning rates fall linearly to 0


class TranslationConfig(FrozenConfig):
    task: Task
    data: TranslationData = TranslationData()
    model: TranslationModel = TranslationModel()
    optim: TranslationOptim = TranslationOptim()
    seed: int = Field(0, ge=0)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(16, ge=1, le=4096)
    sample_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(25, ge=1)
    out_dir: Path = Path("runs/translation")
    device: Device = "auto"  # auto: cuda when torch sees a GPU, else cpu
    deterministic: bool = False  # deterministic algorithms only: a GPU run repeats bit for bit, slower
    domains: tuple[str, str] = ("a", "b")  # unpaired: names of the two domains; the model's task is "a-to-b"

    @model_validator(mode="after")
    def _task_fits(self) -> TranslationConfig:
        if self.task == "paired" and self.data.folder is None:
            raise ValueError(
                "data.folder: task 'paired' needs a folder with a/ and b/ holding images of the same names"
            )
        if self.task == "super-resolution":
            if 2**self.model.depth < SR_SCALE:
                raise ValueError(f"model.depth: super-resolution x{SR_SCALE} needs depth >= 2, got {self.model.depth}")
            if self.data.patch_size % SR_SCALE:
                raise ValueError(f"data.patch_size: must be a multiple of {SR_SCALE}, got {self.data.patch_size}")
        if self.is_paired and self.data.patch_size % 2**self.model.depth:
            raise ValueError(
                f"data.patch_size: {self.data.patch_size} is not a multiple of 2**model.depth={2**self.model.depth}"
            )
        if not self.is_paired and self.data.patch_size % 4:
            raise ValueError(
                f"data.patch_size: the CycleGAN generator needs a multiple of 4, got {self.data.patch_size}"
            )
        return self

    @property
    def is_paired(self) -> bool:
        return self.task in PAIRED_TASKS

    @property
    def architecture(self) -> str:
        return "pix2pix-unet" if self.is_paired else "cyclegan-resnet"

    @property
    def scale(self) -> int:
        return SR_SCALE if self.task == "super-resolution" else 1

    @property
    def input_format(self) -> str:
        if self.is_paired:
            return INPUT_FORMATS[self.task] if self.data.channels == 3 or self.task != "paired" else "gray"
        return "rgb" if self.data.channels == 3 else "gray"

    @property
    def output_channels(self) -> int:
        return self.data.channels if self.task in ("paired", "unpaired") else 3

    @property
    def size_multiple(self) -> int:
        """What the input's H and W must be multiples of, so every stride-2 level divides evenly."""
        if self.is_paired:
            return max(1, 2**self.model.depth // self.scale)
        return 4

    @property
    def input_size(self) -> int:
        """Side of the training inputs (the low-resolution side for super-resolution)."""
        return self.data.patch_size // self.scale


RUN_ONLY_KEYS = {"out_dir", "device", "deterministic", *LOGGING_KEYS}


def translation_digest(config: TranslationConfig) -> str:
    """sha256 of what shapes the model (not where it is written or trained, nor how often it logs)."""
    content = config.model_dump(mode="json", exclude=RUN_ONLY_KEYS)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
