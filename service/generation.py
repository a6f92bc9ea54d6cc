"""The data plane for gan.v1: validate a generation request, batch it, return samples.

It speaks in numpy arrays and plain dataclasses; the servicer converts messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.batcher import Priority
from service.errors import InvalidInput, ModelUnsupported
from service.repository import ModelVersion, Repository
from service.sampling import labels_from_seed, latents_from_seed, random_seed
from service.signature import IMAGE_OUTPUT, LABEL_INPUT, LATENT_INPUT, Signature


def generator_signature(model: ModelVersion) -> Signature:
    """The gan.v1 contract of `model`; plain ONNX files have none and are served through V2 only."""
    signature = model.runtime.signature
    if signature is None and model.runtime.tabular is not None:
        raise ModelUnsupported(f"model: {model.name} is a tabular model; call GenerateRows for its rows")
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


@dataclass(frozen=True)
class GenerationResult:
    model: ModelVersion
    signature: Signature
    seed: int | None
    labels: np.ndarray  # (N,) int64; empty for unconditional models
    samples: np.ndarray  # (N, C, H, W) float32


class GenerationService:
    def __init__(self, repository: Repository, max_count: int) -> None:
        self._repository = repository
        self._max_count = max_count

    async def generate(self, request: GenerationRequest, deadline: float | None) -> GenerationResult:
        model = self._repository.get(request.model, request.version)
        signature = generator_signature(model)
        count = self._count(request, signature)
        model.batcher.check_room(count)  # refuse before drawing latents when the queue is full
        seed = request.seed
        if request.latents is None and seed is None:
            seed = random_seed()
        latents = self._latents(request, signature, count, seed)
        labels = self._labels(request, model.name, signature, count, seed)
        inputs = {LATENT_INPUT: latents}
        if signature.conditional:
            inputs[LABEL_INPUT] = labels
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
        if not 1 <= count <= self._max_count:
            raise InvalidInput(f"count: must be between 1 and {self._max_count}, got {count}")
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
