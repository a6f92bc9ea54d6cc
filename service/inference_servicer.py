"""inference.GRPCInferenceService: the Open Inference Protocol (KServe V2), as Triton speaks it.

It shares the repository and the batchers with gan.v1, so a ModelInfer and a Generate
on the same model can run in the same session run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any, cast

import grpc

from inference import grpc_service_pb2 as v2
from inference import grpc_service_pb2_grpc as v2_grpc
from inference import model_config_pb2 as mc
from service.errors import (
    InvalidInput,
    ModelLoadError,
    ModelNotFound,
    RepositoryControlDisabled,
    naming,
)
from service.layout import is_version_number
from service.metrics import Metrics
from service.repository import READY, UNAVAILABLE, ModelVersion, Repository, VersionState, check_model_name
from service.rpc import Reply, deadline_of, observe, priority_from
from service.runtime import CUDA, TENSORRT
from service.settings import Settings
from service.statistics import Duration
from service.tensors import TensorSpec
from service.v2_tensors import decode_inputs, encode_outputs, parameter_int, requested_outputs

SERVER_NAME = "gan-serving"
EXTENSIONS = ["model_repository", "model_repository(unload_dependents)", "statistics", "model_configuration"]
PLATFORM = "onnxruntime_onnx"


def _package_version() -> str:
    try:
        return metadata.version("gan-serving")
    except metadata.PackageNotFoundError:
        return "0"


def parse_version(text: str, field: str = "version") -> int:
    """A V2 version string: empty for the server's choice (the newest), else a positive integer."""
    if text == "":
        return 0
    if not is_version_number(text) or int(text) < 1:
        raise InvalidInput(f"{field}: {text!r} is not a version; give a positive integer or leave it empty")
    return int(text)


class InferenceServicer(v2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, repository: Repository, metrics: Metrics, settings: Settings) -> None:
        self._repository = repository
        self._metrics = metrics
        self._settings = settings
        self._version = _package_version()

    async def _observe(
        self, method: str, model: str, context: grpc.aio.ServicerContext, handle: Callable[[], Awaitable[Reply]]
    ) -> Reply:
        return await observe(self._metrics, self._repository, method, model, context, handle)

    def _lookup(self, name: str, version: int, field: str = "name") -> ModelVersion:
        """repository.get, its errors naming the request's field."""
        with naming(field):
            return self._repository.get(_model_name(name, field), version)

    # --- health and metadata -----------------------------------------------------------------

    async def ServerLive(
        self, request: v2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerLiveResponse:
        async def handle() -> v2.ServerLiveResponse:
            return v2.ServerLiveResponse(live=True)

        return await self._observe("ServerLive", "", context, handle)

    async def ServerReady(
        self, request: v2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerReadyResponse:
        async def handle() -> v2.ServerReadyResponse:
            return v2.ServerReadyResponse(ready=self._repository.ready())

        return await self._observe("ServerReady", "", context, handle)

    async def ModelReady(
        self, request: v2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelReadyResponse:
        async def handle() -> v2.ModelReadyResponse:
            version = parse_version(request.version)
            if request.name not in self._repository.names():
                return v2.ModelReadyResponse(ready=False)
            serving = {mv.version for mv in self._repository.versions(request.name)}
            return v2.ModelReadyResponse(ready=version == 0 or version in serving)

        return await self._observe("ModelReady", request.name, context, handle)

    async def ServerMetadata(
        self, request: v2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerMetadataResponse:
        async def handle() -> v2.ServerMetadataResponse:
            return v2.ServerMetadataResponse(name=SERVER_NAME, version=self._version, extensions=EXTENSIONS)

        return await self._observe("ServerMetadata", "", context, handle)

    async def ModelMetadata(
        self, request: v2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelMetadataResponse:
        async def handle() -> v2.ModelMetadataResponse:
            model = self._lookup(request.name, parse_version(request.version))
            runtime = model.runtime
            return v2.ModelMetadataResponse(
                name=model.name,
                versions=[str(mv.version) for mv in self._repository.versions(model.name)],
                platform=PLATFORM,
                inputs=[_tensor_metadata(spec) for spec in runtime.inputs],
                outputs=[_tensor_metadata(spec) for spec in runtime.outputs],
            )

        return await self._observe("ModelMetadata", request.name, context, handle)

    async def ModelConfig(
        self, request: v2.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelConfigResponse:
        async def handle() -> v2.ModelConfigResponse:
            model = self._lookup(request.name, parse_version(request.version))
            return v2.ModelConfigResponse(config=_model_config(model, self._settings.max_count))

        return await self._observe("ModelConfig", request.name, context, handle)

    # --- inference ---------------------------------------------------------------------------

    async def ModelInfer(
        self, request: v2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelInferResponse:
        async def handle() -> v2.ModelInferResponse:
            started = time.perf_counter()
            version = parse_version(request.model_version, "model_version")
            model = self._lookup(request.model_name, version, "model_name")
            try:
                reply, samples = await self._infer(request, model, version, context)
            except Exception:
                model.stats.record_request(False, time.perf_counter() - started)
                raise
            self._metrics.count_samples(model.name, samples)
            model.stats.record_request(True, time.perf_counter() - started)
            return reply

        return await self._observe("ModelInfer", request.model_name, context, handle)

    async def _infer(
        self, request: v2.ModelInferRequest, model: ModelVersion, version: int, context: grpc.aio.ServicerContext
    ) -> tuple[v2.ModelInferResponse, int]:
        inputs = decode_inputs(request, model.runtime, self._settings.max_count, self._settings.translate_max_pixels)
        specs = requested_outputs(request, model.runtime)
        priority = priority_from(parameter_int(request.parameters, "priority") or 0, "parameters['priority']")
        deadline = _earlier(deadline_of(context), timeout_deadline(request.parameters))
        model, outputs = await self._repository.submit(
            model, inputs, deadline, priority or model.config.priority, pinned=version != 0
        )
        reply = v2.ModelInferResponse(model_name=model.name, model_version=str(model.version), id=request.id)
        encode_outputs(reply, outputs, specs, raw=bool(request.raw_input_contents) or not request.inputs)
        check_reply_size(reply, self._settings.max_reply_mib)
        samples = len(next(iter(outputs.values()))) if outputs and model.runtime.batched else 1
        return reply, samples

    def _versions(self, name: str) -> list[ModelVersion]:
        with naming("name"):
            return self._repository.versions(name)

    # --- statistics --------------------------------------------------------------------------

    async def ModelStatistics(
        self, request: v2.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelStatisticsResponse:
        async def handle() -> v2.ModelStatisticsResponse:
            version = parse_version(request.version)
            if request.name:
                chosen = [self._lookup(request.name, version)] if version else self._versions(request.name)
            elif version:
                raise InvalidInput(f"version: {version} without a name; set name too, or neither for every model")
            else:
                chosen = self._repository.all_versions()
            return v2.ModelStatisticsResponse(model_stats=[_statistics(mv) for mv in chosen])

        return await self._observe("ModelStatistics", request.name, context, handle)

    # --- repository --------------------------------------------------------------------------

    async def RepositoryIndex(
        self, request: v2.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> v2.RepositoryIndexResponse:
        async def handle() -> v2.RepositoryIndexResponse:
            states = self._repository.index()
            known = {state.name for state in states}
            states += [
                VersionState(name, 0, UNAVAILABLE, "not loaded")
                for name in self._repository.on_disk()
                if name not in known
            ]
            if request.ready:
                states = [s for s in states if s.state == READY]
            return v2.RepositoryIndexResponse(models=[_index_entry(s) for s in sorted(states, key=_index_key)])

        return await self._observe("RepositoryIndex", "", context, handle)

    async def RepositoryModelLoad(
        self, request: v2.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> v2.RepositoryModelLoadResponse:
        async def handle() -> v2.RepositoryModelLoadResponse:
            self._check_control()
            name = check_model_name(_model_name(request.model_name, field="model_name"))
            _refuse_load_parameters(request)
            if name not in self._repository.on_disk():
                raise ModelNotFound(f"model_name: {name!r} is not in the model repository")
            await self._repository.load_model(name)
            failed = self._repository.load_problems(name)
            if failed or name not in self._repository.names():
                raise ModelLoadError(f"model {name!r} failed to load: {'; '.join(failed) or 'no servable version'}")
            return v2.RepositoryModelLoadResponse()

        return await self._observe("RepositoryModelLoad", request.model_name, context, handle)

    async def RepositoryModelUnload(
        self, request: v2.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> v2.RepositoryModelUnloadResponse:
        async def handle() -> v2.RepositoryModelUnloadResponse:
            self._check_control()
            await self._repository.unload_model(_model_name(request.model_name, field="model_name"))
            return v2.RepositoryModelUnloadResponse()

        return await self._observe("RepositoryModelUnload", request.model_name, context, handle)

    def _check_control(self) -> None:
        if self._settings.model_control_mode != "explicit":
            raise RepositoryControlDisabled(
                f"repository control is off (model_control_mode={self._settings.model_control_mode}); "
                "start the server with GAN_MODEL_CONTROL_MODE=explicit to load and unload models"
            )


def check_reply_size(reply: v2.ModelInferResponse, max_reply_mib: int) -> None:
    """Refuse a reply over GAN_MAX_REPLY_MIB by name: gRPC would refuse to send it as RESOURCE_EXHAUSTED
    (a code clients retry) with a message naming no setting, after the call was counted a success."""
    size = reply.ByteSize()
    if size > max_reply_mib * 2**20:
        raise InvalidInput(
            f"inputs: the reply would hold {size / 2**20:.1f} MiB, over the limit of {max_reply_mib} MiB "
            "(GAN_MAX_REPLY_MIB); send fewer samples per request"
        )


def timeout_deadline(parameters: Any) -> float | None:
    """The deadline (time.monotonic) of Triton's `timeout` request parameter: microseconds, 0 or absent for none."""
    timeout_us = parameter_int(parameters, "timeout")
    if timeout_us is None or timeout_us == 0:
        return None
    if timeout_us < 0:
        raise InvalidInput(f"parameters['timeout']: {timeout_us} is negative; give microseconds, or 0 for none")
    return time.monotonic() + timeout_us / 1e6


def _earlier(first: float | None, second: float | None) -> float | None:
    return second if first is None else first if second is None else min(first, second)


def _refuse_load_parameters(request: v2.RepositoryModelLoadRequest) -> None:
    """Triton's load parameters (`config`, `file:...`) override the model's files; here the files rule."""
    for key in request.parameters:
        raise InvalidInput(
            f"parameters[{key!r}]: load parameters are not supported; change the model's config.json or files "
            "in the repository, then load it"
        )


def _model_name(name: str, field: str = "name") -> str:
    if not name:
        raise InvalidInput(f"{field}: empty; RepositoryIndex lists the models")
    return name


def _tensor_metadata(spec: TensorSpec) -> v2.ModelMetadataResponse.TensorMetadata:
    return v2.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=spec.datatype, shape=spec.shape)


def _data_type(spec: TensorSpec) -> mc.DataType:
    return cast(mc.DataType, mc.DataType.Value(f"TYPE_{spec.datatype}"))


def _instance_kind(provider: str) -> mc.ModelInstanceGroup.Kind:
    return mc.ModelInstanceGroup.KIND_GPU if provider in (CUDA, TENSORRT) else mc.ModelInstanceGroup.KIND_CPU


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    return list(spec.shape[1:] if batched else spec.shape)


def _model_config(model: ModelVersion, max_count: int) -> mc.ModelConfig:
    """Triton's view of the model. max_batch_size is the most samples a session run takes, and never
    more than a request may hold (GAN_MAX_COUNT): clients that trust it send batches we accept."""
    runtime = model.runtime
    policy = model.batcher.policy
    batched = runtime.batched
    config = mc.ModelConfig(
        name=model.name,
        platform=PLATFORM,
        backend="onnxruntime",
        max_batch_size=min(policy.max_batch_size, max_count) if batched else 0,
        input=[mc.ModelInput(name=s.name, data_type=_data_type(s), dims=_dims(s, batched)) for s in runtime.inputs],
        output=[mc.ModelOutput(name=s.name, data_type=_data_type(s), dims=_dims(s, batched)) for s in runtime.outputs],
        instance_group=[
            mc.ModelInstanceGroup(
                name=f"{model.name}_0",
                count=len(runtime.sessions),
                kind=_instance_kind(runtime.provider),
            )
        ],
        default_model_filename="model.onnx",
    )
    version_policy = model.config.version_policy
    if version_policy.all:
        config.version_policy.all.SetInParent()
    elif version_policy.specific is not None:
        config.version_policy.specific.versions.extend(version_policy.specific)
    else:
        config.version_policy.latest.num_versions = version_policy.latest or 1
    if batched:
        batching = config.dynamic_batching
        batching.preferred_batch_size.extend(policy.allowed_batch_sizes)
        batching.max_queue_delay_microseconds = int(policy.max_queue_delay_s * 1e6)
        batching.priority_levels = 2
        batching.default_priority_level = int(model.config.priority)
        batching.default_queue_policy.max_queue_size = policy.max_queue_size
    return config


def _duration(duration: Duration) -> v2.StatisticDuration:
    return v2.StatisticDuration(count=duration.count, ns=duration.ns)


def _statistics(model: ModelVersion) -> v2.ModelStatistics:
    stats = model.stats
    return v2.ModelStatistics(
        name=model.name,
        version=str(model.version),
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=v2.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
        ),
        batch_stats=[
            v2.InferBatchStatistics(
                batch_size=size,
                compute_input=_duration(batch.input),
                compute_infer=_duration(batch.infer),
                compute_output=_duration(batch.output),
            )
            for size, batch in sorted(stats.batches.items())
        ],
    )


def _index_key(state: VersionState) -> tuple[str, int]:
    return state.name, state.version


def _index_entry(state: VersionState) -> v2.RepositoryIndexResponse.ModelIndex:
    version = str(state.version) if state.version else ""
    return v2.RepositoryIndexResponse.ModelIndex(
        name=state.name, version=version, state=state.state, reason=state.reason
    )
