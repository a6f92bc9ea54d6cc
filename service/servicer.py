"""gan.v1.GeneratorService: converts messages to domain calls and errors to statuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import grpc
import numpy as np

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from service.encoding import ReplyFormat, to_png, to_uint8
from service.errors import InvalidInput, ModelNotFound, naming
from service.generation import (
    Endpoint,
    GenerationRequest,
    GenerationResult,
    GenerationService,
    InterpolationRequest,
    generator_signature,
)
from service.metrics import Metrics
from service.repository import ModelVersion, Repository
from service.rows import MAX_STREAM_ROWS, RowsRequest, RowsResult, RowsService
from service.rpc import Reply, deadline_of, observe, priority_from
from service.sampling import chunk_seed, random_seed
from service.translation import RawPixels, SourceImage, TranslationRequest, TranslationService

INLINE_FILL_BYTES = 1024 * 1024  # replies of larger images are encoded in a worker thread


class GeneratorServicer(pb_grpc.GeneratorServiceServicer):
    def __init__(
        self,
        repository: Repository,
        generation: GenerationService,
        translation: TranslationService,
        metrics: Metrics,
        max_count: int,
    ) -> None:
        self._repository = repository
        self._generation = generation
        self._translation = translation
        self._rows = RowsService(repository, max_count)
        self._metrics = metrics
        self._max_count = max_count

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        async def handle() -> pb.ListModelsResponse:
            newest = [self._repository.get(name) for name in self._repository.names()]
            servable = [m for m in newest if _servable(m)]
            infos = [self._model_info(model) for model in servable]
            return pb.ListModelsResponse(models=infos)

        return await self._observe("ListModels", "", context, handle)

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        async def handle() -> pb.ModelInfo:
            with naming("name"):
                model = self._repository.get(request.name, _version(request.version))
            return self._model_info(model)

        return await self._observe("GetModel", request.name, context, handle)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        async def handle() -> pb.GenerateResponse:
            started = time.perf_counter()
            result = await self._generation.generate(_generation_request(request), deadline_of(context))
            reply = _generate_response(result, request.output_format)
            self._served(result.model, len(result.samples), started)
            return reply

        return await self._observe("Generate", request.model, context, handle)

    async def Interpolate(
        self, request: pb.InterpolateRequest, context: grpc.aio.ServicerContext
    ) -> pb.InterpolateResponse:
        async def handle() -> pb.InterpolateResponse:
            started = time.perf_counter()
            result = await self._generation.interpolate(_interpolation_request(request), deadline_of(context))
            value_range = result.signature.value_range
            reply = pb.InterpolateResponse(model=result.model.name, version=result.model.version)
            _fill_images(reply, result.samples, value_range, _output_format(request.output_format))
            reply.class_weights.extend(result.class_weights.ravel().tolist())
            self._served(result.model, len(result.samples), started)
            return reply

        return await self._observe("Interpolate", request.model, context, handle)

    async def Translate(self, request: pb.TranslateRequest, context: grpc.aio.ServicerContext) -> pb.TranslateResponse:
        async def handle() -> pb.TranslateResponse:
            started = time.perf_counter()
            output_format = _output_format(request.output_format)
            result = await self._translation.translate(_translation_request(request), deadline_of(context))
            reply = pb.TranslateResponse(model=result.model.name, version=result.model.version)
            fill = (reply, result.images, result.signature.value_range, output_format)
            if result.images.nbytes > INLINE_FILL_BYTES:  # encoding large images would hold the event loop up
                await asyncio.to_thread(_fill_images, *fill)
            else:
                _fill_images(*fill)
            self._served(result.model, len(result.images), started)
            return reply

        return await self._observe("Translate", request.model, context, handle)

    async def GenerateRows(
        self, request: pb.GenerateRowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateRowsResponse:
        async def handle() -> pb.GenerateRowsResponse:
            started = time.perf_counter()
            result = await self._rows.generate(_rows_request(request), deadline_of(context))
            reply = _rows_response(result, offset=0)
            self._served(result.model, int(reply.rows), started)
            return reply

        return await self._observe("GenerateRows", request.model, context, handle)

    async def GenerateRowsStream(self, request: pb.GenerateRowsRequest, context: grpc.aio.ServicerContext) -> None:
        async def handle() -> None:
            rows = _rows_request(request)
            model, spec = self._rows.check(rows, MAX_STREAM_ROWS)
            chunk = request.chunk_rows or self._max_count
            if not 1 <= chunk <= self._max_count:
                raise InvalidInput(f"chunk_rows: must be between 1 and max_count {self._max_count}, got {chunk}")
            seed = random_seed() if rows.seed is None else rows.seed
            with self._repository.holding(model):  # every chunk from one version, even across a reload
                for index, offset in enumerate(range(0, rows.count, chunk)):
                    part = replace(rows, count=min(chunk, rows.count - offset), seed=chunk_seed(seed, index))
                    result = await self._rows.generate_on(model, spec, part, deadline_of(context))
                    await context.write(_rows_response(result, offset))
                    self._metrics.count_samples(result.model.name, part.count)  # samples sent, as elsewhere

        return await self._observe("GenerateRowsStream", request.model, context, handle)

    def _served(self, model: ModelVersion, samples: int, started: float) -> None:
        """A call that succeeded: count its samples and record it in the model's statistics."""
        self._metrics.count_samples(model.name, samples)
        model.stats.record_request(True, time.perf_counter() - started)

    async def _observe(
        self,
        method: str,
        model: str,
        context: grpc.aio.ServicerContext,
        handle: Callable[[], Awaitable[Reply]],
    ) -> Reply:
        return await observe(self._metrics, self._repository, method, model, context, handle)

    def _model_info(self, model: ModelVersion) -> pb.ModelInfo:
        versions = [v.version for v in self._repository.versions(model.name)]
        if model.runtime.tabular is not None:
            spec = model.runtime.tabular
            return pb.ModelInfo(
                name=model.name,
                version=model.version,
                versions=versions,
                latent_dim=spec.latent_dim,
                max_count=self._max_count,
                columns=[_column_info(column) for column in spec.layout],
            )
        if model.runtime.translator is not None:
            return self._translator_info(model, versions)
        signature = generator_signature(model)
        return pb.ModelInfo(
            name=model.name,
            version=model.version,
            versions=versions,
            latent_dim=signature.latent_dim,
            class_names=list(signature.class_names),
            sample_shape=list(signature.sample_shape),
            value_min=signature.value_range[0],
            value_max=signature.value_range[1],
            max_count=self._generation.max_samples(signature),
            config_digest=signature.config_digest,
        )

    def _translator_info(self, model: ModelVersion, versions: list[int]) -> pb.ModelInfo:
        spec = model.runtime.translator
        assert spec is not None
        limits = self._translation.limits
        translator = pb.TranslatorInfo(
            task=spec.task,
            input_format=spec.input_format,
            input_channels=spec.input_channels,
            output_channels=spec.output_channels,
            scale=spec.scale,
            size_multiple=spec.size_multiple,
            train_size=list(spec.train_size),
            dynamic_size=spec.dynamic_size,
            max_images=limits.max_images,
            max_pixels=limits.max_pixels,
            max_image_bytes=limits.max_image_bytes,
            architecture=spec.architecture,
        )
        return pb.ModelInfo(
            name=model.name,
            version=model.version,
            versions=versions,
            value_min=spec.value_range[0],
            value_max=spec.value_range[1],
            config_digest=spec.config_digest,
            translator=translator,
        )


def _servable(model: ModelVersion) -> bool:
    """Models gan.v1 can serve; plain ONNX files go through V2 only."""
    runtime = model.runtime
    return runtime.signature is not None or runtime.tabular is not None or runtime.translator is not None


def _version(version: int) -> int:
    if version < 0:
        raise InvalidInput(f"version: must be 0 (newest) or a positive version number, got {version}")
    return version


def _generation_request(request: pb.GenerateRequest) -> GenerationRequest:
    if not request.model:
        raise ModelNotFound("model: the request names no model; ListModels shows the loaded ones")
    source = request.WhichOneof("source")
    latents = np.asarray(request.latents.values, dtype=np.float32) if source == "latents" else None
    output_format = _output_format(request.output_format)
    return GenerationRequest(
        model=request.model,
        version=_version(request.version),
        count=request.count,
        seed=request.seed if source == "seed" else None,
        latents=latents,
        labels=tuple(request.labels),
        priority=priority_from(request.priority, "priority"),
        truncation=request.truncation if request.HasField("truncation") else None,
        reply_format=_REPLY_FORMATS[output_format],
    )


_OUTPUT_FORMATS = frozenset(pb.OutputFormat.values())  # values() builds a new list each call
_REPLY_FORMATS: dict[int, ReplyFormat] = {
    pb.OUTPUT_FORMAT_FLOAT32: "float32",
    pb.OUTPUT_FORMAT_UINT8: "uint8",
    pb.OUTPUT_FORMAT_PNG: "png",
}


def _output_format(output_format: int) -> int:
    if output_format not in _OUTPUT_FORMATS:
        raise InvalidInput(f"output_format: {output_format} is not one of {sorted(_OUTPUT_FORMATS)}")
    return pb.OUTPUT_FORMAT_FLOAT32 if output_format == pb.OUTPUT_FORMAT_UNSPECIFIED else output_format


def _endpoint(endpoint: pb.LatentEndpoint) -> Endpoint:
    point = endpoint.WhichOneof("point")
    return Endpoint(
        seed=endpoint.seed if point == "seed" else None,
        latent=np.asarray(endpoint.latent.values, dtype=np.float32) if point == "latent" else None,
        label=endpoint.label if endpoint.HasField("label") else None,
    )


def _interpolation_request(request: pb.InterpolateRequest) -> InterpolationRequest:
    if not request.model:
        raise ModelNotFound("model: the request names no model; ListModels shows the loaded ones")
    if request.method not in pb.InterpolationMethod.values():
        raise InvalidInput(f"method: {request.method} is not one of {sorted(pb.InterpolationMethod.values())}")
    output_format = _output_format(request.output_format)
    return InterpolationRequest(
        model=request.model,
        version=_version(request.version),
        start=_endpoint(request.start),
        end=_endpoint(request.end),
        steps=request.steps,
        spherical=request.method == pb.INTERPOLATION_METHOD_SPHERICAL,
        truncation=request.truncation if request.HasField("truncation") else None,
        priority=priority_from(request.priority, "priority"),
        reply_format=_REPLY_FORMATS[output_format],
    )


_PIXEL_TYPES = {pb.PIXEL_TYPE_UINT8: "uint8", pb.PIXEL_TYPE_FLOAT32: "float32"}


def _source_image(image: pb.SourceImage) -> SourceImage:
    if image.WhichOneof("image") == "raw":
        raw = image.raw
        return RawPixels(tuple(raw.shape), _PIXEL_TYPES.get(raw.pixel_type, ""), raw.data)
    return image.encoded


def _translation_request(request: pb.TranslateRequest) -> TranslationRequest:
    if not request.model:
        raise ModelNotFound("model: the request names no model; ListModels shows the loaded ones")
    return TranslationRequest(
        model=request.model,
        version=_version(request.version),
        images=tuple(_source_image(image) for image in request.images),
        priority=priority_from(request.priority, "priority"),
        reply_format=_REPLY_FORMATS[_output_format(request.output_format)],
    )


def _fill_images(
    reply: pb.GenerateResponse | pb.InterpolateResponse | pb.TranslateResponse,
    images: np.ndarray,
    value_range: tuple[float, float],
    output_format: int,
) -> None:
    """Put (N, C, H, W) float32 images into `reply` as Generate does: a float32 or uint8 tensor, or PNGs."""
    reply.output_format = output_format  # type: ignore[assignment]
    reply.shape.extend(images.shape)
    if output_format == pb.OUTPUT_FORMAT_PNG:
        reply.images.extend(to_png(image) for image in to_uint8(images, value_range))
    elif output_format == pb.OUTPUT_FORMAT_UINT8:
        reply.tensor = to_uint8(images, value_range).tobytes()
    else:
        reply.tensor = np.ascontiguousarray(images, dtype="<f4").tobytes()


def _generate_response(result: GenerationResult, output_format: pb.OutputFormat) -> pb.GenerateResponse:
    model = result.model
    reply = pb.GenerateResponse(model=model.name, version=model.version, labels=result.labels.tolist())
    if result.seed is not None:
        reply.seed = result.seed
    _fill_images(reply, result.samples, result.signature.value_range, _output_format(output_format))
    return reply


def _rows_request(request: pb.GenerateRowsRequest) -> RowsRequest:
    if not request.model:
        raise ModelNotFound("model: the request names no model; ListModels shows the loaded ones")
    return RowsRequest(
        model=request.model,
        version=_version(request.version),
        count=request.count,
        seed=request.seed if request.HasField("seed") else None,
        conditions=dict(request.conditions),
    )


def _column_info(column: dict[str, Any]) -> pb.TableColumnInfo:
    categories = [str(c) for c in column.get("categories", [])]
    return pb.TableColumnInfo(
        name=column["name"], kind=column["kind"], categories=categories, nullable=column["missing"]
    )


def _rows_response(result: RowsResult, offset: int) -> pb.GenerateRowsResponse:
    count = len(next(iter(result.columns.values())))
    reply = pb.GenerateRowsResponse(
        model=result.model.name, version=result.model.version, seed=result.seed, rows=count, offset=offset
    )
    for column in result.spec.layout:
        reply.columns.append(_table_column(column["name"], column["kind"], result.columns[column["name"]]))
    return reply


def _table_column(name: str, kind: str, values: np.ndarray) -> pb.TableColumn:
    """Typed values with a missing mask: NaN for numbers, None for categories."""
    if kind in ("continuous", "integer"):
        numbers = values.astype(np.float64)
        missing = np.isnan(numbers)
        column = pb.TableColumn(name=name, kind=kind, missing=missing.tolist() if missing.any() else [])
        filled = np.where(missing, 0.0, numbers)
        if kind == "integer":
            column.integers.values.extend(filled.astype(np.int64).tolist())
        else:
            column.doubles.values.extend(filled.tolist())
        return column
    missing = np.array([value is None for value in values], dtype=bool)
    column = pb.TableColumn(name=name, kind=kind, missing=missing.tolist() if missing.any() else [])
    if kind == "boolean":
        column.booleans.values.extend(bool(value) for value in values)
    else:
        column.strings.values.extend("" if value is None else str(value) for value in values)
    return column
