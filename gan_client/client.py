"""A small synchronous client for gan.v1 with deadlines on every call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc
import numpy as np

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 30.0
_MESSAGE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Samples:
    """Generated samples: (N, C, H, W) float32 in the model's value range, or uint8."""

    model: str
    version: int
    seed: int | None
    labels: list[int]
    array: np.ndarray


class GeneratorClient:
    """`with GeneratorClient("localhost:8001") as client: client.generate("digits", 16, labels=[7])`."""

    def __init__(self, target: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", _MESSAGE_LIMIT)])
        self._stub = pb_grpc.GeneratorServiceStub(self._channel)
        self._timeout = timeout

    def __enter__(self) -> GeneratorClient:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def list_models(self) -> list[pb.ModelInfo]:
        return list(self._stub.ListModels(pb.ListModelsRequest(), timeout=self._timeout).models)

    def get_model(self, name: str, version: int = 0) -> pb.ModelInfo:
        reply: pb.ModelInfo = self._stub.GetModel(pb.GetModelRequest(name=name, version=version), timeout=self._timeout)
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
        output_format = pb.OUTPUT_FORMAT_UINT8 if uint8 else pb.OUTPUT_FORMAT_FLOAT32
        request = pb.GenerateRequest(
            model=model, version=version, count=count, labels=list(labels), output_format=output_format
        )
        if latents is not None:
            request.latents.values.extend(np.asarray(latents, dtype=np.float32).ravel().tolist())
        elif seed is not None:
            request.seed = seed
        reply: pb.GenerateResponse = self._stub.Generate(request, timeout=self._timeout)
        return Samples(
            model=reply.model,
            version=reply.version,
            seed=reply.seed if reply.HasField("seed") else None,
            labels=list(reply.labels),
            array=decode_tensor(reply),
        )

    def generate_png(
        self, model: str, count: int, *, seed: int | None = None, labels: Sequence[int] = ()
    ) -> list[bytes]:
        """One PNG per sample, encoded by the server."""
        request = pb.GenerateRequest(model=model, count=count, labels=list(labels), output_format=pb.OUTPUT_FORMAT_PNG)
        if seed is not None:
            request.seed = seed
        reply: pb.GenerateResponse = self._stub.Generate(request, timeout=self._timeout)
        return list(reply.images)


def decode_tensor(reply: pb.GenerateResponse) -> np.ndarray:
    """The reply's raw tensor as an (N, C, H, W) array."""
    dtype = np.uint8 if reply.output_format == pb.OUTPUT_FORMAT_UINT8 else np.dtype("<f4")
    return np.frombuffer(reply.tensor, dtype=dtype).reshape(tuple(reply.shape))
