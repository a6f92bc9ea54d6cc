"""The data plane for gan.v1: validate a generation request, batch it, return samples.

It speaks in numpy arrays and plain dataclasses; the servicer converts messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.batcher import Priority
from service.encoding import REPLY_OVERHEAD_BYTES, ReplyFormat, image_reply_bytes
from service.errors import InvalidInput, ModelUnsupported, naming
from service.interpolation import class_mix, lerp, one_hot, slerp
from service.repository import ModelVersion, Repository
from service.sampling import labels_from_seed, latents_from_seed, random_seed
from service.signature import CLASS_WEIGHTS_INPUT, IMAGE_OUTPUT, LABEL_INPUT, LATENT_INPUT, Signature

LABEL_BYTES = 10  # a Generate reply's label of a sample, at most (a varint)


def generator_signature(model: ModelVersion) -> Signature:
    """The gan.v1 contract of `model`; plain ONNX files have none and are served through V2 only."""
    signature = model.runtime.signature
    if signature is None and model.runtime.tabular is not None:
        raise ModelUnsupported(f"model: {model.name} is a tabular model; call GenerateRows for its rows")
    if signature is None and model.runtime.translator is not None:
        raise ModelUnsupported(f"model: {model.name} is an image-to-image model; call Translate with images")
    if signature is None:
        raise ModelUnsupported(
            f"model: {model.name} is a plain ONNX model without gan.* metadata; call it through the V2 API "
            "(inference.GRPCInferenceService/ModelInfer) or export it with gan-export"
        )
    return signature


@dataclass(frozen=True)
class GenerationRequest:
    model: str
    version: int
    count: int
    seed: int | None  # None with latents given, or when the service should pick one
    latents: np.ndarray | None  # flat float32 values, (count * latent_dim,)
    labels: tuple[int, ...]
    priority: Priority | None = None  # None: the model's default
    truncation: float | None = None  # psi in [0, 1]; None: 1, no truncation
    reply_format: ReplyFormat = "float32"  # how the reply carries the samples


@dataclass(frozen=True)
class Endpoint:
    """One end of an interpolation: a seed or a latent vector, and perhaps a class."""

    seed: int | None
    latent: np.ndarray | None  # flat float32 values, (latent_dim,)
    label: int | None


@dataclass(frozen=True)
class InterpolationRequest:
    model: str
    version: int
    start: Endpoint
    end: Endpoint
    steps: int
    spherical: bool
    truncation: float | None = None
    priority: Priority | None = None
    reply_format: ReplyFormat = "float32"


@dataclass(frozen=True)
class InterpolationResult:
    model: ModelVersion
    signature: Signature
    class_weights: np.ndarray  # (steps, classes) float32; (steps, 0) for unconditional models
    samples: np.ndarray  # (steps, C, H, W) float32


@dataclass(frozen=True)
class GenerationResult:
    model: ModelVersion
    signature: Signature
    seed: int | None
    labels: np.ndarray  # (N,) int64; empty for unconditional models
    samples: np.ndarray  # (N, C, H, W) float32


class GenerationService:
    def __init__(self, repository: Repository, max_count: int, max_reply_bytes: int) -> None:
        self._repository = repository
        self._max_count = max_count
        self._max_reply_bytes = max_reply_bytes

    def max_samples(
        self, signature: Signature, reply_format: ReplyFormat = "float32", extra_bytes: int = LABEL_BYTES
    ) -> int:
        """The most samples one call may ask for: max_count, and no more than fit in one reply
        (GAN_MAX_REPLY_MIB) in `reply_format`, each with `extra_bytes` besides its image."""
        per_sample = image_reply_bytes(*signature.sample_shape, reply_format) + extra_bytes
        return min(self._max_count, max(0, self._max_reply_bytes - REPLY_OVERHEAD_BYTES) // per_sample)

    def _check_reply_size(
        self, field: str, count: int, signature: Signature, reply_format: ReplyFormat, extra_bytes: int
    ) -> None:
        """Refuse, before any work, a count whose reply would exceed the limit (gRPC would refuse
        the reply only after the run, as RESOURCE_EXHAUSTED, which clients retry)."""
        fits = self.max_samples(signature, reply_format, extra_bytes)
        if count <= fits:
            return
        shape = "x".join(str(d) for d in signature.sample_shape)
        limit_mib = self._max_reply_bytes / 2**20
        hint = "; uint8 or PNG output is about 4x smaller" if reply_format == "float32" else ""
        raise InvalidInput(
            f"{field}: {count} samples of {shape} do not fit in one reply of at most {limit_mib:g} MiB "
            f"(GAN_MAX_REPLY_MIB); ask for at most {fits} per call{hint}"
        )

    async def generate(self, request: GenerationRequest, deadline: float | None) -> GenerationResult:
        with naming("model"):
            model = self._repository.get(request.model, request.version)
        signature = generator_signature(model)
        count = self._count(request, signature)
        model.batcher.check_room(count)  # refuse before drawing latents when the queue is full
        seed = request.seed
        if request.latents is None and seed is None:
            seed = random_seed()
        psi = check_truncation(request.truncation)
        latents = self._latents(request, signature, count, seed)
        if psi != 1.0:
            latents = latents * np.float32(psi)
        labels = self._labels(request, model.name, signature, count, seed)
        inputs = {LATENT_INPUT: latents}
        if signature.conditional:
            inputs.update(class_inputs(signature, labels))
        priority = request.priority or model.config.priority
        model, outputs = await self._repository.submit(model, inputs, deadline, priority, pinned=request.version != 0)
        return GenerationResult(
            model=model,
            signature=signature,
            seed=seed if request.latents is None else None,
            labels=labels,
            samples=outputs[IMAGE_OUTPUT],
        )

    def _count(self, request: GenerationRequest, signature: Signature) -> int:
        count = request.count
        if request.latents is not None:
            latent_dim = signature.latent_dim
            size = request.latents.size
            if size == 0 or size % latent_dim:
                raise InvalidInput(
                    f"latents: {size} values is not a positive multiple of latent_dim {latent_dim} of the model"
                )
            if count not in (0, size // latent_dim):
                raise InvalidInput(
                    f"count: {count} does not match latents, which hold {size // latent_dim} vectors of "
                    f"{latent_dim}; set count to 0 or {size // latent_dim}"
                )
            count = size // latent_dim
            if count > self._max_count:
                raise InvalidInput(f"latents: {count} vectors; send at most max_count {self._max_count} per request")
        if not 1 <= count <= self._max_count:
            raise InvalidInput(f"count: must be between 1 and {self._max_count}, got {count}")
        self._check_reply_size("count", count, signature, request.reply_format, LABEL_BYTES)
        return count

    def _latents(self, request: GenerationRequest, signature: Signature, count: int, seed: int | None) -> np.ndarray:
        latent_dim = signature.latent_dim
        if request.latents is None:
            assert seed is not None
            return latents_from_seed(seed, count, latent_dim)
        latents = request.latents.astype(np.float32, copy=False).reshape(count, latent_dim)
        if not np.isfinite(latents).all():
            bad = int(np.flatnonzero(~np.isfinite(latents.ravel()))[0])
            raise InvalidInput(f"latents: value {bad} is not finite; latents must be finite float32 values")
        return latents

    def _labels(
        self, request: GenerationRequest, model_name: str, signature: Signature, count: int, seed: int | None
    ) -> np.ndarray:
        classes = signature.class_names
        given = request.labels
        if not classes:
            if given:
                raise InvalidInput(f"labels: model {model_name} is unconditional and takes no labels")
            return np.zeros(0, dtype=np.int64)
        if not given:
            if seed is None:
                raise InvalidInput(
                    f"labels: model {model_name} is conditional; with explicit latents give one label "
                    f"for all or one per sample, in [0, {len(classes) - 1}]"
                )
            return labels_from_seed(seed, count, len(classes))
        if len(given) not in (1, count):
            raise InvalidInput(f"labels: give 1 label or {count} (one per sample), got {len(given)}")
        for index, label in enumerate(given):
            if not 0 <= label < len(classes):
                raise InvalidInput(
                    f"labels[{index}]: {label} is outside the classes of model {model_name}: "
                    f"0..{len(classes) - 1} ({', '.join(classes)})"
                )
        return np.broadcast_to(np.asarray(given, dtype=np.int64), (count,)).copy()

    async def interpolate(self, request: InterpolationRequest, deadline: float | None) -> InterpolationResult:
        with naming("model"):
            model = self._repository.get(request.model, request.version)
        signature = generator_signature(model)
        steps = request.steps
        if not 2 <= steps <= self._max_count:
            raise InvalidInput(f"steps: must be between 2 and max_count {self._max_count}, got {steps}")
        weight_bytes = 4 * len(signature.class_names)  # each step's class weights
        self._check_reply_size("steps", steps, signature, request.reply_format, weight_bytes)
        psi = check_truncation(request.truncation)
        model.batcher.check_room(steps)
        z0, label0 = self._endpoint("start", request.start, model.name, signature)
        z1, label1 = self._endpoint("end", request.end, model.name, signature)
        walk = slerp(z0, z1, steps) if request.spherical else lerp(z0, z1, steps)
        inputs = {LATENT_INPUT: walk * np.float32(psi)}
        weights = np.zeros((steps, 0), dtype=np.float32)
        if signature.conditional:
            weights = class_mix(label0, label1, len(signature.class_names), steps)
            inputs.update(self._walk_classes(model.name, signature, label0, label1, weights))
        priority = request.priority or model.config.priority
        model, outputs = await self._repository.submit(model, inputs, deadline, priority, pinned=request.version != 0)
        return InterpolationResult(
            model=model, signature=signature, class_weights=weights, samples=outputs[IMAGE_OUTPUT]
        )

    def _endpoint(
        self, field: str, endpoint: Endpoint, model_name: str, signature: Signature
    ) -> tuple[np.ndarray, int]:
        """The latent (latent_dim,) and class of one end, exactly as Generate(seed, count=1) would draw them."""
        latent_dim = signature.latent_dim
        if endpoint.latent is not None:
            if endpoint.latent.size != latent_dim:
                raise InvalidInput(
                    f"{field}.latent: {endpoint.latent.size} values; model {model_name} takes latent_dim {latent_dim}"
                )
            latent = endpoint.latent.astype(np.float32, copy=False)
            if not np.isfinite(latent).all():
                raise InvalidInput(f"{field}.latent: values must be finite float32 numbers")
        elif endpoint.seed is not None:
            latent = latents_from_seed(endpoint.seed, 1, latent_dim)[0]
        else:
            raise InvalidInput(f"{field}: give a seed or a latent vector of {latent_dim} values")
        return latent, self._endpoint_label(field, endpoint, model_name, signature)

    @staticmethod
    def _endpoint_label(field: str, endpoint: Endpoint, model_name: str, signature: Signature) -> int:
        classes = signature.class_names
        if not classes:
            if endpoint.label is not None:
                raise InvalidInput(f"{field}.label: model {model_name} is unconditional and takes no labels")
            return 0
        if endpoint.label is None:
            if endpoint.seed is None:
                raise InvalidInput(
                    f"{field}.label: model {model_name} is conditional; with a latent vector give a label "
                    f"in [0, {len(classes) - 1}]"
                )
            return int(labels_from_seed(endpoint.seed, 1, len(classes))[0])
        if not 0 <= endpoint.label < len(classes):
            raise InvalidInput(
                f"{field}.label: {endpoint.label} is outside the classes of model {model_name}: 0..{len(classes) - 1}"
            )
        return endpoint.label

    @staticmethod
    def _walk_classes(
        model_name: str, signature: Signature, start: int, end: int, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        if signature.takes_class_weights:
            return {CLASS_WEIGHTS_INPUT: weights}
        if start != end:
            raise ModelUnsupported(
                f"start.label / end.label: model {model_name} takes int64 labels (an export from before class "
                "weights), so it cannot blend classes; interpolate within one class, or re-export the "
                "checkpoint with gan-export to get a class_weights input"
            )
        return {LABEL_INPUT: np.full(len(weights), start, dtype=np.int64)}


def check_truncation(truncation: float | None) -> float:
    """psi, 1.0 when unset; InvalidInput outside [0, 1]."""
    if truncation is None:
        return 1.0
    if not 0.0 <= truncation <= 1.0:  # NaN fails too
        raise InvalidInput(f"truncation: psi must be between 0 and 1 (1 or unset: no truncation), got {truncation}")
    return float(truncation)


def class_inputs(signature: Signature, labels: np.ndarray) -> dict[str, np.ndarray]:
    """What a conditional graph takes for `labels` (N,): the labels, or their one-hot class weights."""
    if signature.takes_class_weights:
        return {CLASS_WEIGHTS_INPUT: one_hot(labels, len(signature.class_names))}
    return {LABEL_INPUT: labels}
