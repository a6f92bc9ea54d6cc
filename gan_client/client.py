"""gan.v1 clients, synchronous and asyncio, with a deadline on every call and retries.

    with GeneratorClient("localhost:8001") as client:
        samples = client.generate("digits", 16, labels=[7], seed=1)

    async with AsyncGeneratorClient("localhost:8001") as client:
        samples = await client.generate("digits", 16, labels=[7], seed=1)

Errors are grpc.RpcError with the server's status code and message (it names the field).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import numpy as np

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.channel import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, TLSConfig, open_aio_channel, open_channel

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AsyncGeneratorClient",
    "Endpoint",
    "GeneratorClient",
    "Images",
    "Samples",
    "TLSConfig",
    "chunk_seed",
]
ImageInput = bytes | np.ndarray  # PNG/JPEG bytes, or a (C, H, W) uint8 or float32 array
OutputKind = str  # "float32", "uint8" or "png"
_OUTPUT_FORMATS = {"float32": pb.OUTPUT_FORMAT_FLOAT32, "uint8": pb.OUTPUT_FORMAT_UINT8, "png": pb.OUTPUT_FORMAT_PNG}


@dataclass(frozen=True)
class Samples:
    """Generated samples: (N, C, H, W) float32 in the model's value range, or uint8."""

    model: str
    version: int
    seed: int | None
    labels: list[int]
    array: np.ndarray


@dataclass(frozen=True)
class Images:
    """Images from Translate or Interpolate: `array` (N, C, H, W) float32 or uint8, or `pngs`."""

    model: str
    version: int
    array: np.ndarray | None  # None for output="png"
    pngs: list[bytes]
    class_weights: np.ndarray | None = None  # Interpolate on a conditional model: (steps, classes)


@dataclass(frozen=True)
class Endpoint:
    """One end of an interpolation: a seed (as Generate uses it) or a latent vector; a class for conditional models."""

    seed: int | None = None
    latent: np.ndarray | None = None
    label: int | None = None

    def to_message(self) -> pb.LatentEndpoint:
        message = pb.LatentEndpoint()
        if self.latent is not None:
            message.latent.values.extend(np.asarray(self.latent, dtype=np.float32).ravel().tolist())
        elif self.seed is not None:
            message.seed = self.seed
        if self.label is not None:
            message.label = self.label
        return message


@dataclass(frozen=True)
class CallOptions:
    """What every call of one client gets: a deadline, and whether to wait for the server to be up."""

    timeout: float
    wait_for_ready: bool
    metadata: tuple[tuple[str, str], ...] = ()


class _Connection:
    """What both clients hold: call options, a channel and the gan.v1 stub."""

    def __init__(
        self,
        target: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        retries: int = DEFAULT_RETRIES,
        tls: TLSConfig | None = None,
        wait_for_ready: bool = False,
        token: str | None = None,
    ) -> None:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._options = CallOptions(_positive_timeout(timeout), wait_for_ready, metadata)
        self._channel = self._open(target, retries, tls)
        self._stub = pb_grpc.GeneratorServiceStub(self._channel)

    @staticmethod
    def _open(target: str, retries: int, tls: TLSConfig | None) -> Any:
        raise NotImplementedError


class GeneratorClient(_Connection):
    """A synchronous gan.v1 client. `retries` (0-4) repeats UNAVAILABLE, RESOURCE_EXHAUSTED and
    the server's CANCELLED with exponential backoff (gan_client.channel); `wait_for_ready` makes
    calls wait (within their deadline) for a server that is starting or restarting instead of
    failing at once."""

    _open = staticmethod(open_channel)

    def __enter__(self) -> GeneratorClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def list_models(self) -> list[pb.ModelInfo]:
        reply = self._stub.ListModels(pb.ListModelsRequest(), **_kwargs(self._options))
        return list(reply.models)

    def get_model(self, name: str, version: int = 0) -> pb.ModelInfo:
        request = pb.GetModelRequest(name=name, version=version)
        reply: pb.ModelInfo = self._stub.GetModel(request, **_kwargs(self._options))
        return reply

    def generate(
        self,
        model: str,
        count: int,
        *,
        seed: int | None = None,
        latents: np.ndarray | None = None,
        labels: Sequence[int] = (),
        version: int = 0,
        uint8: bool = False,
        truncation: float | None = None,
    ) -> Samples:
        """Generate `count` samples from `seed` (or explicit `latents`, shape (count, latent_dim)).
        `truncation` psi in [0, 1] scales every latent toward the prior's mean (1 or None: none)."""
        request = generate_request(model, count, seed, latents, labels, version, _tensor_format(uint8), truncation)
        return samples_from(self._stub.Generate(request, **_kwargs(self._options)))

    def translate(
        self, model: str, images: Sequence[ImageInput], *, output: OutputKind = "png", version: int = 0
    ) -> Images:
        """Run an image-to-image model on images of one size (PNG/JPEG bytes or (C, H, W) arrays)."""
        request = translate_request(model, images, output, version)
        return images_from(self._stub.Translate(request, **_kwargs(self._options)))

    def interpolate(
        self,
        model: str,
        start: Endpoint,
        end: Endpoint,
        steps: int,
        *,
        spherical: bool = False,
        truncation: float | None = None,
        output: OutputKind = "float32",
        version: int = 0,
    ) -> Images:
        """`steps` samples from `start` to `end` (both included), linear or spherical."""
        request = interpolate_request(model, start, end, steps, spherical, truncation, output, version)
        return images_from(self._stub.Interpolate(request, **_kwargs(self._options)))

    def generate_png(
        self, model: str, count: int, *, seed: int | None = None, labels: Sequence[int] = (), version: int = 0
    ) -> list[bytes]:
        """One PNG per sample, encoded by the server."""
        request = generate_request(model, count, seed, None, labels, version, pb.OUTPUT_FORMAT_PNG)
        reply: pb.GenerateResponse = self._stub.Generate(request, **_kwargs(self._options))
        return list(reply.images)

    def rows(
        self,
        model: str,
        count: int,
        *,
        seed: int | None = None,
        conditions: Mapping[str, str] | None = None,
        version: int = 0,
        chunk_rows: int = 0,
    ) -> Iterator[pb.GenerateRowsResponse]:
        """A tabular model's rows, streamed in chunks of `chunk_rows` (0: the model's max_count);
        the stream's deadline is the client's timeout for each chunk."""
        chunk = chunk_rows or self.get_model(model, version).max_count
        request = rows_request(model, count, seed, conditions, version, chunk)
        yield from self._stub.GenerateRowsStream(request, **_kwargs(_stream_options(self._options, count, chunk)))


class AsyncGeneratorClient(_Connection):
    """The asyncio twin of GeneratorClient (grpc.aio), with the same options."""

    _open = staticmethod(open_aio_channel)

    async def __aenter__(self) -> AsyncGeneratorClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def list_models(self) -> list[pb.ModelInfo]:
        reply = await self._stub.ListModels(pb.ListModelsRequest(), **_kwargs(self._options))
        return list(reply.models)

    async def get_model(self, name: str, version: int = 0) -> pb.ModelInfo:
        request = pb.GetModelRequest(name=name, version=version)
        reply: pb.ModelInfo = await self._stub.GetModel(request, **_kwargs(self._options))
        return reply

    async def generate(
        self,
        model: str,
        count: int,
        *,
        seed: int | None = None,
        latents: np.ndarray | None = None,
        labels: Sequence[int] = (),
        version: int = 0,
        uint8: bool = False,
        truncation: float | None = None,
    ) -> Samples:
        request = generate_request(model, count, seed, latents, labels, version, _tensor_format(uint8), truncation)
        return samples_from(await self._stub.Generate(request, **_kwargs(self._options)))

    async def translate(
        self, model: str, images: Sequence[ImageInput], *, output: OutputKind = "png", version: int = 0
    ) -> Images:
        request = translate_request(model, images, output, version)
        return images_from(await self._stub.Translate(request, **_kwargs(self._options)))

    async def interpolate(
        self,
        model: str,
        start: Endpoint,
        end: Endpoint,
        steps: int,
        *,
        spherical: bool = False,
        truncation: float | None = None,
        output: OutputKind = "float32",
        version: int = 0,
    ) -> Images:
        request = interpolate_request(model, start, end, steps, spherical, truncation, output, version)
        return images_from(await self._stub.Interpolate(request, **_kwargs(self._options)))

    async def generate_png(
        self, model: str, count: int, *, seed: int | None = None, labels: Sequence[int] = (), version: int = 0
    ) -> list[bytes]:
        request = generate_request(model, count, seed, None, labels, version, pb.OUTPUT_FORMAT_PNG)
        reply: pb.GenerateResponse = await self._stub.Generate(request, **_kwargs(self._options))
        return list(reply.images)

    async def rows(
        self,
        model: str,
        count: int,
        *,
        seed: int | None = None,
        conditions: Mapping[str, str] | None = None,
        version: int = 0,
        chunk_rows: int = 0,
    ) -> AsyncIterator[pb.GenerateRowsResponse]:
        chunk = chunk_rows or (await self.get_model(model, version)).max_count
        request = rows_request(model, count, seed, conditions, version, chunk)
        stream = self._stub.GenerateRowsStream(request, **_kwargs(_stream_options(self._options, count, chunk)))
        async for reply in stream:
            yield reply


def chunk_seed(seed: int, index: int) -> int:
    """The seed of call `index` when a count is split into several calls, as the server chunks a
    rows stream: call 0 keeps `seed`, call k > 0 takes the first 64-bit word of
    numpy.random.SeedSequence([seed, k]), so nearby seeds share no call."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**64, index]).generate_state(1, np.uint64)[0])


def rows_request(
    model: str, count: int, seed: int | None, conditions: Mapping[str, str] | None, version: int, chunk_rows: int
) -> pb.GenerateRowsRequest:
    return pb.GenerateRowsRequest(
        model=model, version=version, count=count, seed=seed, conditions=dict(conditions or {}), chunk_rows=chunk_rows
    )


def _stream_options(options: CallOptions, count: int, chunk_rows: int) -> CallOptions:
    """A stream of ceil(count / chunk_rows) messages gets the client's timeout for each."""
    chunks = max(1, -(-count // max(chunk_rows, 1)))
    return replace(options, timeout=options.timeout * chunks)


def generate_request(
    model: str,
    count: int,
    seed: int | None,
    latents: np.ndarray | None,
    labels: Sequence[int],
    version: int,
    output_format: pb.OutputFormat,
    truncation: float | None = None,
) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        model=model, version=version, count=count, labels=list(labels), output_format=output_format
    )
    if truncation is not None:
        request.truncation = truncation
    if latents is not None:
        request.latents.values.extend(np.asarray(latents, dtype=np.float32).ravel().tolist())
    elif seed is not None:
        request.seed = seed
    return request


def _output_format(output: OutputKind) -> pb.OutputFormat:
    if output not in _OUTPUT_FORMATS:
        raise ValueError(f"output: {output!r} is not one of {sorted(_OUTPUT_FORMATS)}")
    return _OUTPUT_FORMATS[output]


def source_image(image: ImageInput) -> pb.SourceImage:
    """PNG/JPEG bytes as they are; an array (C, H, W) of uint8 (0..255) or float32 (value range) raw."""
    if isinstance(image, bytes):
        return pb.SourceImage(encoded=image)
    array = np.asarray(image)
    if array.dtype == np.uint8:
        pixel_type = pb.PIXEL_TYPE_UINT8
    elif array.dtype.kind == "f":
        array, pixel_type = array.astype("<f4"), pb.PIXEL_TYPE_FLOAT32
    else:
        raise ValueError(f"images: arrays must be uint8 or float32, got {array.dtype}")
    raw = pb.RawImage(shape=list(array.shape), pixel_type=pixel_type, data=np.ascontiguousarray(array).tobytes())
    return pb.SourceImage(raw=raw)


def translate_request(
    model: str, images: Sequence[ImageInput], output: OutputKind, version: int
) -> pb.TranslateRequest:
    return pb.TranslateRequest(
        model=model,
        version=version,
        images=[source_image(image) for image in images],
        output_format=_output_format(output),
    )


def interpolate_request(
    model: str,
    start: Endpoint,
    end: Endpoint,
    steps: int,
    spherical: bool,
    truncation: float | None,
    output: OutputKind,
    version: int,
) -> pb.InterpolateRequest:
    method = pb.INTERPOLATION_METHOD_SPHERICAL if spherical else pb.INTERPOLATION_METHOD_LINEAR
    request = pb.InterpolateRequest(
        model=model,
        version=version,
        start=start.to_message(),
        end=end.to_message(),
        steps=steps,
        method=method,
        output_format=_output_format(output),
    )
    if truncation is not None:
        request.truncation = truncation
    return request


def images_from(reply: pb.TranslateResponse | pb.InterpolateResponse) -> Images:
    array = None if reply.output_format == pb.OUTPUT_FORMAT_PNG else decode_tensor(reply)
    weights = None
    if isinstance(reply, pb.InterpolateResponse) and reply.class_weights:
        weights = np.asarray(reply.class_weights, dtype=np.float32).reshape(reply.shape[0], -1)
    return Images(reply.model, reply.version, array, list(reply.images), weights)


def samples_from(reply: pb.GenerateResponse) -> Samples:
    return Samples(
        model=reply.model,
        version=reply.version,
        seed=reply.seed if reply.HasField("seed") else None,
        labels=list(reply.labels),
        array=decode_tensor(reply),
    )


def decode_tensor(reply: pb.GenerateResponse | pb.TranslateResponse | pb.InterpolateResponse) -> np.ndarray:
    """The reply's raw tensor as a writable (N, C, H, W) array of its own."""
    dtype = np.uint8 if reply.output_format == pb.OUTPUT_FORMAT_UINT8 else np.dtype("<f4")
    return np.frombuffer(reply.tensor, dtype=dtype).reshape(tuple(reply.shape)).copy()


def _tensor_format(uint8: bool) -> pb.OutputFormat:
    return pb.OUTPUT_FORMAT_UINT8 if uint8 else pb.OUTPUT_FORMAT_FLOAT32


def _kwargs(options: CallOptions) -> dict[str, object]:
    return {"timeout": options.timeout, "wait_for_ready": options.wait_for_ready, "metadata": options.metadata}


def _positive_timeout(timeout: float) -> float:
    if not timeout > 0:
        raise ValueError(f"timeout: every call needs a deadline; give a positive number of seconds, got {timeout}")
    return timeout


def columns_of(reply: pb.GenerateRowsResponse) -> dict[str, list[object]]:
    """A GenerateRows reply as {column: values}, with None where a value is missing."""
    table: dict[str, list[object]] = {}
    for column in reply.columns:
        values: list[object] = list(getattr(column, column.WhichOneof("values")).values)
        missing = list(column.missing) or [False] * len(values)
        table[column.name] = [None if gone else value for value, gone in zip(values, missing, strict=True)]
    return table
