"""Runs inside the tritonclient virtualenv (protobuf < 7), not in the project's: drives a server
with the stock tritonclient and prints what it saw as JSON.

    python drive.py descriptors          tritonclient's own V2 message descriptors
    python drive.py calls HOST:PORT       every call of the V2 API we implement
    python drive.py load HOST:PORT MODEL CONCURRENCY SECONDS INPUTS_JSON
                                          closed-loop load for bench/serve_bench.py --client tritonclient
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import numpy as np


def descriptors() -> dict[str, Any]:
    from tritonclient.grpc import service_pb2

    messages: dict[str, dict[str, list[Any]]] = {}

    def walk(message: Any) -> None:
        if message.full_name in messages:
            return
        messages[message.full_name] = {}
        for field in message.fields:
            target = field.message_type or field.enum_type
            messages[message.full_name][field.name] = [
                field.number,
                field.type,
                bool(field.is_repeated),
                target.full_name if target is not None else "",
            ]
            if field.message_type is not None:
                walk(field.message_type)

    methods = {}
    for method in service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        methods[method.name] = [method.input_type.full_name, method.output_type.full_name]
        walk(method.input_type)
        walk(method.output_type)
    return {"methods": methods, "messages": messages}


def error_of(call: Any) -> dict[str, str]:
    from tritonclient.utils import InferenceServerException

    try:
        call()
    except InferenceServerException as exc:
        return {"status": str(exc.status()), "message": str(exc.message())}
    return {"status": "OK", "message": ""}


def inputs(client_module: Any, latent: np.ndarray, weights: np.ndarray) -> list[Any]:
    first = client_module.InferInput("latent", list(latent.shape), "FP32")
    first.set_data_from_numpy(latent)
    second = client_module.InferInput("class_weights", list(weights.shape), "FP32")  # one-hot rows: plain classes
    second.set_data_from_numpy(weights)
    return [first, second]


async def infer_async(target: str, latent: np.ndarray, weights: np.ndarray) -> list[Any]:
    import tritonclient.grpc.aio as aio_client

    async with aio_client.InferenceServerClient(target) as client:
        result = await client.infer("digits", inputs(aio_client, latent, weights))
        return result.as_numpy("image").tolist()


def calls(target: str) -> dict[str, Any]:
    import tritonclient.grpc as client_module

    client = client_module.InferenceServerClient(target)
    metadata = client.get_model_metadata("digits", as_json=True)
    latent_dim = int(metadata["inputs"][0]["shape"][1]) if metadata["inputs"][0]["name"] == "latent" else 0
    latent = np.random.default_rng(0).standard_normal((4, latent_dim)).astype(np.float32)
    weights = np.eye(10, dtype=np.float32)[[0, 1, 2, 3]]
    result = client.infer("digits", inputs(client_module, latent, weights), request_id="r-1")
    wrong = np.zeros((4, latent_dim + 1), dtype=np.float32)
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("digits"),
        "server_metadata": client.get_server_metadata(as_json=True),
        "model_metadata": metadata,
        "model_config": client.get_model_config("digits", as_json=True),
        "index": client.get_model_repository_index(as_json=True),
        "latent": latent.tolist(),
        "class_weights": weights.tolist(),
        "image": result.as_numpy("image").tolist(),
        "response": result.get_response(as_json=True),
        "image_async": asyncio.run(infer_async(target, latent, weights)),
        "statistics": client.get_inference_statistics("digits", as_json=True),
        "unknown_model": error_of(lambda: client.infer("nothing", inputs(client_module, latent, weights))),
        "wrong_shape": error_of(lambda: client.infer("digits", inputs(client_module, wrong, weights))),
        "unload": error_of(lambda: client.unload_model("digits")),
    }


async def load(
    target: str, model: str, concurrency: int, seconds: float, feeds: list[dict[str, Any]]
) -> dict[str, Any]:
    """`concurrency` closed loops of tritonclient's asyncio infer for `seconds` after a 1 s warm-up.

    `feeds`: [{"name", "datatype", "shape", "data"}] of one request; the first input is the latent,
    given 64 different values in turn so replies are not identical.
    """
    import tritonclient.grpc.aio as aio_client
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    arrays = [
        np.array(feed["data"], dtype=triton_to_np_dtype(feed["datatype"])).reshape(feed["shape"]) for feed in feeds
    ]
    rng = np.random.default_rng(0)
    latents = [np.asarray(rng.standard_normal(arrays[0].shape), dtype=arrays[0].dtype) for _ in range(64)]
    latencies: list[float] = []
    errors = 0
    measuring = stop = False

    def request(index: int) -> list[Any]:
        made = []
        for feed, array in zip(feeds, [latents[index % 64], *arrays[1:]], strict=True):
            made.append(aio_client.InferInput(feed["name"], list(array.shape), feed["datatype"]))
            made[-1].set_data_from_numpy(array)
        return made

    async with aio_client.InferenceServerClient(target) as client:

        async def loop(index: int) -> None:
            nonlocal errors
            while not stop:
                index += 1
                started = time.perf_counter()
                try:
                    await client.infer(model, request(index), client_timeout=30)
                except InferenceServerException:
                    errors += 1
                    continue
                if measuring:
                    latencies.append((time.perf_counter() - started) * 1000)

        tasks = [asyncio.ensure_future(loop(i * 1_000_000)) for i in range(concurrency)]
        await asyncio.sleep(1.0)
        measuring, started = True, time.perf_counter()
        await asyncio.sleep(seconds)
        measuring, elapsed = False, time.perf_counter() - started
        stop = True
        await asyncio.gather(*tasks)
    return {"requests": len(latencies), "seconds": elapsed, "latencies_ms": latencies, "errors": errors}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "load":
        target, model, concurrency, seconds, feeds = sys.argv[2:7]
        print(json.dumps(asyncio.run(load(target, model, int(concurrency), float(seconds), json.loads(feeds)))))
    else:
        print(json.dumps(descriptors() if mode == "descriptors" else calls(sys.argv[2])))
