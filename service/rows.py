"""The data plane for GenerateRows: validate, run the sampling rounds through the model's batcher.

The rounds themselves (latents, condition vectors, Gumbel-max draws, decoding, conditions kept by
rejection) are service/tabular.py's, the same ones `gan-tabular sample` runs with PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInput, ModelUnsupported, naming
from service.repository import ModelVersion, Repository
from service.sampling import random_seed
from service.tabular import (
    CONDITION_INPUT,
    LATENT_INPUT,
    LOGITS_OUTPUT,
    Columns,
    TabularSpec,
    generation_rounds,
    parse_conditions,
)

MAX_STREAM_ROWS = 100_000_000


@dataclass(frozen=True)
class RowsRequest:
    model: str
    version: int
    count: int
    seed: int | None
    conditions: Mapping[str, str]


@dataclass(frozen=True)
class RowsResult:
    model: ModelVersion
    spec: TabularSpec
    seed: int
    columns: Columns


def tabular_spec(model: ModelVersion) -> TabularSpec:
    spec = model.runtime.tabular
    if spec is None:
        raise ModelUnsupported(
            f"model: {model.name} is not a tabular model; GenerateRows serves models exported from gan-tabular "
            "(use Generate for image generators)"
        )
    return spec


class RowsService:
    def __init__(self, repository: Repository, max_count: int) -> None:
        self._repository = repository
        self.max_count = max_count

    def check(self, request: RowsRequest, limit: int) -> tuple[ModelVersion, TabularSpec]:
        """The model and its spec, or InvalidInput/ModelUnsupported naming the field, before any work."""
        with naming("model"):
            model = self._repository.get(request.model, request.version)
        spec = tabular_spec(model)
        if not 1 <= request.count <= limit:
            raise InvalidInput(f"count: must be between 1 and {limit}, got {request.count}")
        parse_conditions(spec, request.conditions)  # ConditionError (INVALID_ARGUMENT) names the column or value
        return model, spec

    async def generate(self, request: RowsRequest, deadline: float | None) -> RowsResult:
        model, spec = self.check(request, self.max_count)
        with self._repository.holding(model):
            return await self.generate_on(model, spec, request, deadline)

    async def generate_on(
        self, model: ModelVersion, spec: TabularSpec, request: RowsRequest, deadline: float | None
    ) -> RowsResult:
        """`request`'s rows from `model`, which the caller holds (Repository.holding): every round of
        rejection sampling runs on it, even when a reload retires it meanwhile."""
        priority = model.config.priority
        model.batcher.check_room(request.count)
        seed = random_seed() if request.seed is None else request.seed
        rounds = generation_rounds(spec, request.count, seed, request.conditions)
        inputs = next(rounds)
        while True:
            feeds = {LATENT_INPUT: inputs[0], CONDITION_INPUT: inputs[1]}
            # pinned: a reload between rounds must not switch to a version with other columns
            model, outputs = await self._repository.submit(model, feeds, deadline, priority, pinned=True)
            try:
                inputs = rounds.send(np.asarray(outputs[LOGITS_OUTPUT]))
            except StopIteration as finished:
                return RowsResult(model, spec, seed, finished.value)
