"""gan.v1 clients, synchronous and asyncio, with a deadline on every call and retries.

    with GeneratorClient("localhost:8001") as client:
        samples = client.generate("digits", 16, labels=[7], seed=1)

    async with AsyncGeneratorClient("localhost:8001") as client:
        samples = await client.generate("digits", 16, labels=[7], seed=1)

Errors are grpc.RpcError with the server's status code and message (it names the field).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import numpy as np

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.channel import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, TLSConfig, open_aio_channel, open_channel

__all__ = ["DEFAULT_TIMEOUT_S", "AsyncGeneratorClient", "GeneratorClient", "Samples", "TLSConfig"]


@dataclass(frozen=True)
class Samples:
    """Generated samples: (N, C, H, W) float32 in the model's value range, or uint8."""

    model: str
    version: int
    seed: int | None
    labels: list[int]
    array: np.ndarray


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
    """A synchronous gan.v1 client. `retries` (0-4) repeats UNAVAILABLE and RESOURCE_EXHAUSTED
    with exponential backoff; `wait_for_ready` makes calls wait (within their deadline) for a
    server that is starting or restarting instead of failing at once."""

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
    ) -> Samples:
        """Generate `count` samples from `seed` (or explicit `latents`, shape (count, latent_dim))."""
        request = generate_request(model, count, seed, latents, labels, version, _tensor_format(uint8))
        return samples_from(self._stub.Generate(request, **_kwargs(self._options)))

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
        """A tabular model's rows, streamed in chunks (each chunk gets the client's timeout)."""
        request = pb.GenerateRowsRequest(
            model=model, version=version, count=count, seed=seed, conditions=dict(conditions or {}),
            chunk_rows=chunk_rows,
        )  # fmt: skip
        chunks = max(1, -(-count // max(chunk_rows or count, 1)))
        options = replace(self._options, timeout=self._options.timeout * chunks)
        yield from self._stub.GenerateRowsStream(request, **_kwargs(options))


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
    ) -> Samples:
        request = generate_request(model, count, seed, latents, labels, version, _tensor_format(uint8))
        return samples_from(await self._stub.Generate(request, **_kwargs(self._options)))


def generate_request(
    model: str,
    count: int,
    seed: int | None,
    latents: np.ndarray | None,
    labels: Sequence[int],
    version: int,
    output_format: pb.OutputFormat,
) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        model=model, version=version, count=count, labels=list(labels), output_format=output_format
    )
    if latents is not None:
        request.latents.values.extend(np.asarray(latents, dtype=np.float32).ravel().tolist())
    elif seed is not None:
        request.seed = seed
    return request


def samples_from(reply: pb.GenerateResponse) -> Samples:
    return Samples(
        model=reply.model,
        version=reply.version,
        seed=reply.seed if reply.HasField("seed") else None,
        labels=list(reply.labels),
        array=decode_tensor(reply),
    )


def decode_tensor(reply: pb.GenerateResponse) -> np.ndarray:
    """The reply's raw tensor as an (N, C, H, W) array."""
    dtype = np.uint8 if reply.output_format == pb.OUTPUT_FORMAT_UINT8 else np.dtype("<f4")
    return np.frombuffer(reply.tensor, dtype=dtype).reshape(tuple(reply.shape))


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
