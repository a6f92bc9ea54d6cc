"""The one training config: defaults, a YAML file, then `key=value` overrides, validated once."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

LossKind = Literal["minimax", "nonsaturating", "lsgan", "hinge", "wgan-gp"]
SMOOTHED_LOSSES = ("minimax", "nonsaturating")  # the binary cross-entropy losses, whose real targets can be smoothed
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _known_device(device: str) -> str:
    if not DEVICE_PATTERN.fullmatch(device):
        raise ValueError("must be auto, cpu, cuda or cuda:N (N a GPU index, e.g. cuda:0)")
    return device


# Where a run trains (every trainer's `device`): auto is CUDA when torch sees a GPU, else the CPU.
# Only the spelling is checked here, so a config trained on a GPU still loads on a machine without
# one; training.train.resolve_device checks that the device exists when a run starts.
Device = Annotated[str, AfterValidator(_known_device)]
POINT_SOURCES = ("ring8", "grid25")  # 2-D Gaussian mixtures (training/mode_coverage.py), for the MLP models


Settings = TypeVar("Settings", bound=BaseModel)


class ConfigError(ValueError):
    """The config cannot be used; the message names the field and what is allowed."""


class FrozenConfig(BaseModel):
    """The base of every training config: immutable, unknown keys refused, no true/false for numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: object, info: ValidationInfo) -> object:
        # pydantic reads true as 1 for an int or float field: steps=true would train one step.
        if isinstance(value, bool) and info.field_name and _wants_number(cls.model_fields[info.field_name].annotation):
            raise ValueError("must be a number, not true or false")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _home_expanded(cls, value: object) -> object:
        # the shell leaves data.folder=~/photos alone (a dotted name is no variable assignment)
        return value.expanduser() if isinstance(value, Path) else value


def _wants_number(annotation: object) -> bool:
    """Whether a field's type takes numbers: int, float, a Literal of numbers, or an optional one of those."""
    if annotation is int or annotation is float:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return any(type(choice) in (int, float) for choice in get_args(annotation))
    if origin is Union or origin is types.UnionType:
        return any(_wants_number(member) for member in get_args(annotation))
    return False


class DataConfig(FrozenConfig):
    source: Literal["digits", "folder", "ring8", "grid25"] = "digits"
    path: Path | None = None  # folder source: images, one subfolder per class if conditional
    points: int = Field(100_000, ge=2, le=10_000_000)  # ring8/grid25: how many 2-D points to draw
    image_size: int = 16  # power of two, 16..128
    channels: Literal[1, 3] = 1
    conditional: bool = True

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, size: int) -> int:
        if size not in (16, 32, 64, 128):
            raise ValueError("must be one of 16, 32, 64, 128")
        return size

    @model_validator(mode="after")
    def _folder_needs_path(self) -> DataConfig:
        if self.source == "folder" and self.path is None:
            raise ValueError("path: required when source is 'folder' (set data.path=/your/images)")
        if self.source in POINT_SOURCES and self.conditional:
            raise ValueError(f"conditional: the {self.source} mixture has no classes; set data.conditional=false")
        return self

    @property
    def is_points(self) -> bool:
        """2-D points (a Gaussian mixture) rather than images."""
        return self.source in POINT_SOURCES


class ModelConfig(FrozenConfig):
    arch: Literal["dcgan", "mlp"] = "dcgan"  # dcgan for images, mlp for 2-D points and vectors
    latent_dim: int = Field(64, ge=1, le=4096)
    width: int = Field(64, ge=4, le=1024)  # dcgan: channels of the widest generator layer / 2; mlp: hidden units
    depth: int = Field(4, ge=1, le=16)  # mlp: hidden layers of each network
    g_batch_norm: bool = True  # mlp: batch normalisation in the generator (the dcgan generator always has it)
    d_width: int | None = Field(None, ge=4, le=4096)  # the discriminator's own width (dcgan: channels); None = width
    d_depth: int | None = Field(None, ge=1, le=16)  # mlp: the discriminator's hidden layers; None = depth
    d_maxout: int = Field(
        1, ge=1, le=16
    )  # mlp: maxout pieces per discriminator unit (PacGAN's 2-D setup: 5); 1 = leaky ReLU
    embed_dim: int = Field(32, ge=1, le=1024)  # label embedding size of a conditional generator
    minibatch_std: bool = True  # discriminator sees batch statistics: discourages mode collapse
    spectral_norm: bool = False  # spectral normalisation of every discriminator weight (Miyato et al. 2018)
    d_batch_norm: bool = True  # batch normalisation in the discriminator (off for wgan-gp and R1)
    pack: int = Field(1, ge=1, le=16)  # PacGAN: the discriminator judges this many samples at once


class OptimConfig(FrozenConfig):
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(2e-4, gt=0, le=1)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    ema_decay: float = Field(0.999, ge=0, lt=1)  # 0 disables the moving average of G's weights
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # real targets become 1 - label_smoothing
    loss: LossKind = "nonsaturating"  # minimax, nonsaturating, lsgan, hinge, wgan-gp (training/losses.py)
    gp_weight: float = Field(10.0, ge=0, le=1000)  # wgan-gp: weight of the gradient penalty
    n_critic: int = Field(1, ge=1, le=20)  # D updates per G update, each on its own batch (5 in the WGAN-GP paper)
    r1_gamma: float = Field(0.0, ge=0, le=1000)  # R1 penalty gamma/2 * ||grad D(real)||^2; 0 = off
    diffaugment: tuple[Literal["color", "translation", "cutout"], ...] = ()  # DiffAugment policy, e.g. color,cutout
    lr_decay: Literal["none", "linear", "cosine"] = "none"  # both learning rates fall to lr_floor x lr by the last step
    lr_floor: float = Field(0.0, ge=0, le=1)  # the share of the learning rate left at the last step

    @field_validator("diffaugment", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):  # optim.diffaugment=color,translation on the command line
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class TrainConfig(FrozenConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    seed: int = Field(0, ge=0)
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(64, ge=2, le=8192)
    sample_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(10, ge=1)
    out_dir: Path = Path("runs/default")
    device: Device = "auto"  # auto: cuda when available, else cpu
    deterministic: bool = False  # deterministic algorithms only: bit-identical reruns, slower on GPU
    tensorboard: bool = False  # also log scalars and sample grids to out_dir/tensorboard (rank 0)
    amp: Literal["off", "bf16"] = "off"  # mixed precision: forward passes in bfloat16 under torch.autocast (CUDA)
    compile: bool = False  # torch.compile the generator and discriminator (CUDA; needs no double backward)

    @field_validator("amp", mode="before")
    @classmethod
    def _off_is_not_false(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @model_validator(mode="after")
    def _smoothing_needs_a_cross_entropy_loss(self) -> TrainConfig:
        if self.optim.label_smoothing > 0 and self.optim.loss not in SMOOTHED_LOSSES:
            raise ValueError(
                f"optim.label_smoothing: the {self.optim.loss} loss has no targets to smooth (only minimax and "
                "nonsaturating do); set optim.label_smoothing=0"
            )
        return self

    @model_validator(mode="after")
    def _packing_fits(self) -> TrainConfig:
        pack = self.model.pack
        if pack > 1 and self.data.conditional:
            raise ValueError("model.pack: PacGAN packing needs an unconditional model; set data.conditional=false")
        if self.batch_size % pack:
            raise ValueError(f"batch_size: {self.batch_size} is not a multiple of model.pack={pack}")
        return self

    @model_validator(mode="after")
    def _architecture_fits_data(self) -> TrainConfig:
        points, arch = self.data.is_points, self.model.arch
        if points and arch != "mlp":
            raise ValueError(f"model.arch: {self.data.source} holds 2-D points, which need model.arch=mlp")
        if not points and arch == "mlp":
            raise ValueError(f"model.arch: mlp is for 2-D points (data.source=ring8 or grid25), not {self.data.source}")
        if arch != "mlp" and self.model.d_maxout > 1:
            raise ValueError("model.d_maxout: maxout units belong to the mlp discriminator; set model.d_maxout=1")
        if points and self.optim.diffaugment:
            raise ValueError("optim.diffaugment: DiffAugment transforms images; leave it empty for 2-D points")
        return self

    @model_validator(mode="after")
    def _compile_without_double_backward(self) -> TrainConfig:
        if self.compile and (self.optim.loss == "wgan-gp" or self.optim.r1_gamma > 0):
            raise ValueError(
                "compile: the wgan-gp and R1 penalties differentiate twice, which torch.compile does not support; "
                "set compile=false or use another loss without optim.r1_gamma"
            )
        return self

    @model_validator(mode="after")
    def _penalty_without_batch_norm(self) -> TrainConfig:
        if self.optim.loss == "wgan-gp" and self.model.d_batch_norm:
            raise ValueError(
                "optim.loss=wgan-gp: the gradient penalty is per sample, which batch norm breaks; "
                "set model.d_batch_norm=false"
            )
        if self.optim.r1_gamma > 0 and self.model.d_batch_norm:  # batch norm mixes the samples' gradients
            raise ValueError(
                "optim.r1_gamma: the R1 penalty is each real sample's own gradient norm, which batch norm "
                "breaks; set model.d_batch_norm=false (spectral norm is a good replacement)"
            )
        return self


def load_config(path: Path | None, overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults (or `base`, a recorded config such as a checkpoint's), then the YAML file at `path`,
    then `dotted.key=value` overrides."""
    return load_settings_model(TrainConfig, path, overrides, base)


def load_settings_model(
    model: type[Settings], path: Path | None, overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None
) -> Settings:
    """Any pydantic config (gan-train's, gan-tabular's): `base`, YAML file, then overrides, validated once."""
    raw: dict[str, Any] = copy.deepcopy(dict(base)) if base is not None else {}
    if path is not None:
        _merge(raw, _read_yaml(path))
    for override in overrides:
        key, value = _split_override(override)
        _set_dotted(raw, key, value)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


# How often a run logs, samples and checkpoints: never part of what a model is.
LOGGING_KEYS = ("log_every", "sample_every", "checkpoint_every")
# Where and how a run goes, not what it learns: left out of the digest.
RUN_ONLY_KEYS = ("out_dir", "device", "deterministic", "tensorboard", "amp", "compile", *LOGGING_KEYS)


def config_digest(config: TrainConfig) -> str:
    """sha256 of everything that shapes the model (not where it is written or run, nor how it is logged)."""
    content = config.model_dump(mode="json", exclude=set(RUN_ONLY_KEYS))
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


# What `gan-train --resume` may change: where and how the run goes, how long it trains, and the
# hyperparameters that hold no state. Every other key shapes the networks or the optimiser state
# (model.*, data.source/points/image_size/channels/conditional, optim.loss, optim.beta1/beta2),
# or the seeded streams the checkpoint continues (seed), and must stay as the checkpoint recorded it.
RESUME_CHANGEABLE = (
    *RUN_ONLY_KEYS,
    "steps",
    "batch_size",
    "data.path",  # the images may have moved; a different number of classes is refused when the weights load
    "optim.lr_g",
    "optim.lr_d",
    "optim.lr_decay",
    "optim.lr_floor",
    "optim.ema_decay",  # its value; turning the average on or off is refused (check_resumable)
    "optim.label_smoothing",
    "optim.gp_weight",
    "optim.n_critic",
    "optim.r1_gamma",
    "optim.diffaugment",
)


def check_resumable(recorded: Mapping[str, Any], config: TrainConfig) -> None:
    """ConfigError naming each field in which `config` departs from the `recorded` config (a checkpoint's)
    in a way a resumed run cannot follow."""
    before = _flatten(_with_defaults(recorded))
    after = _flatten(config.model_dump(mode="json"))
    problems = [
        f"{key}: the run was trained with {before.get(key)!r}, not {after.get(key)!r}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key) and key not in RESUME_CHANGEABLE
    ]
    problems += _ema_switch(float(before.get("optim.ema_decay", 0.0)), config.optim.ema_decay)
    if problems:
        raise ConfigError(
            "; ".join(problems) + ". These shape the networks or the optimiser state, so a resumed run keeps "
            "the checkpoint's values: drop them from --config and the key=value overrides, "
            "or start a new run in another out_dir"
        )


def _ema_switch(recorded: float, asked: float) -> list[str]:
    if recorded == 0 and asked > 0:
        return [
            "optim.ema_decay: the run kept no moving average of the generator (0), so there is none to continue; "
            "an average started now would begin from the current weights, unlike a run that had one from step 0"
        ]
    if recorded > 0 and asked == 0:
        return [f"optim.ema_decay: the run keeps a moving average ({recorded:g}); 0 would drop it"]
    return []


def _with_defaults(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """`recorded` over today's defaults: keys added since the checkpoint was written read as their default."""
    content = TrainConfig().model_dump(mode="json")
    _merge(content, copy.deepcopy(dict(recorded)))
    return content


def _flatten(content: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in content.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _merge(raw: dict[str, Any], content: Mapping[str, Any]) -> None:
    """Put `content` into `raw`, section by section: a file's `model: {width: 8}` keeps the other model keys."""
    for key, value in content.items():
        if isinstance(value, Mapping) and isinstance(raw.get(key), dict):
            _merge(raw[key], value)
        else:
            raw[key] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    return content


def _split_override(override: str) -> tuple[str, Any]:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r}: expected key=value, e.g. steps=100 or model.latent_dim=32")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError:
        return key.strip(), text


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a section, it cannot have sub-keys")
        node = child
    node[leaf] = value


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f"{path}: " if path is not None else ""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-")) or "config"
        message = error["msg"].removeprefix("Value error, ")
        if field == "config" and error["type"] == "value_error":
            parts.append(message)  # a check across fields: its message names them
            continue
        if error["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against training/config.py"
        elif "input" in error and error["type"] not in ("missing",):
            message = f"{message}, got {error['input']!r}"
        parts.append(f"{field}: {message}")
    return where + "; ".join(parts)
