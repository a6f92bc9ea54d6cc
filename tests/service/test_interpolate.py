"""Interpolate and truncation against the real server, and the latent walks on their own."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.client import decode_tensor
from service.interpolation import lerp, slerp
from service.sampling import latents_from_seed
from tests.conftest import ServerThread
from tests.service.onnx_models import write_label_generator

Walk = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@pytest.fixture(scope="module")
def walk_server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """digits (exported: class weights), noise, and oldlabels (a hand-made graph with int64 labels)."""
    root = tmp_path_factory.mktemp("walks")
    for name in ("digits", "noise"):
        shutil.copytree(model_repository / name, root / name)
    write_label_generator(root / "oldlabels/1/model.onnx")
    with ServerThread(model_repository=root, max_count=64) as running:
        yield running


@pytest.fixture(scope="module")
def stub(walk_server: ServerThread) -> pb_grpc.GeneratorServiceStub:
    return pb_grpc.GeneratorServiceStub(grpc.insecure_channel(walk_server.target))


def seed_end(seed: int, label: int | None = None) -> pb.LatentEndpoint:
    endpoint = pb.LatentEndpoint(seed=seed)
    if label is not None:
        endpoint.label = label
    return endpoint


def walk(stub: pb_grpc.GeneratorServiceStub, **fields: object) -> pb.InterpolateResponse:
    reply: pb.InterpolateResponse = stub.Interpolate(pb.InterpolateRequest(**fields), timeout=30)  # type: ignore[arg-type]
    return reply


def generated(stub: pb_grpc.GeneratorServiceStub, **fields: object) -> np.ndarray:
    return decode_tensor(stub.Generate(pb.GenerateRequest(**fields), timeout=30))  # type: ignore[arg-type]


def status_of(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize("method", [pb.INTERPOLATION_METHOD_LINEAR, pb.INTERPOLATION_METHOD_SPHERICAL])
@pytest.mark.parametrize("model", ["noise", "digits"])
def test_the_walk_starts_and_ends_at_the_seeds_images(
    stub: pb_grpc.GeneratorServiceStub, model: str, method: int
) -> None:
    reply = walk(stub, model=model, start=seed_end(1), end=seed_end(2), steps=6, method=method)
    samples = decode_tensor(reply)
    assert samples.shape == (6, 1, 16, 16) and list(reply.shape) == [6, 1, 16, 16]
    np.testing.assert_allclose(samples[0], generated(stub, model=model, seed=1, count=1)[0], atol=1e-6)
    np.testing.assert_allclose(samples[-1], generated(stub, model=model, seed=2, count=1)[0], atol=1e-6)
    assert not np.allclose(samples[1], samples[0], atol=1e-4), "the middle of the walk moves"


@pytest.mark.parametrize(
    ("method", "path", "other"),
    [(pb.INTERPOLATION_METHOD_LINEAR, lerp, slerp), (pb.INTERPOLATION_METHOD_SPHERICAL, slerp, lerp)],
)
@pytest.mark.parametrize("psi", [1.0, 0.5])
def test_each_step_is_the_image_of_its_methods_latent_times_psi(
    stub: pb_grpc.GeneratorServiceStub, method: int, path: Walk, other: Walk, psi: float
) -> None:
    """The server walks by the method asked for (a line and an arc differ between the ends), and
    truncation scales every step's latent, as Generate's truncation does."""
    z0, z1 = latents_from_seed(1, 1, 8)[0], latents_from_seed(2, 1, 8)[0]

    def images_of(walked: np.ndarray) -> np.ndarray:
        return generated(stub, model="noise", latents=pb.Latents(values=(psi * walked).ravel().tolist()))

    reply = walk(stub, model="noise", start=seed_end(1), end=seed_end(2), steps=5, method=method, truncation=psi)
    expected, elsewhere = images_of(path(z0, z1, 5)), images_of(other(z0, z1, 5))
    assert np.abs(expected - elsewhere).max() > 1e-5, "the model tells the two paths apart"
    np.testing.assert_allclose(decode_tensor(reply), expected, atol=1e-6)


def test_explicit_latents_and_truncation_zero(stub: pb_grpc.GeneratorServiceStub) -> None:
    z0 = latents_from_seed(4, 1, 8)[0]
    ends = {"start": pb.LatentEndpoint(latent=pb.Latents(values=z0.tolist())), "end": seed_end(5)}
    explicit = decode_tensor(walk(stub, model="noise", steps=3, **ends))
    np.testing.assert_allclose(explicit[0], generated(stub, model="noise", seed=4, count=1)[0], atol=1e-6)
    flat = decode_tensor(walk(stub, model="noise", steps=5, truncation=0.0, **ends))
    for sample in flat[1:]:
        np.testing.assert_array_equal(sample, flat[0])  # psi 0: every latent is the prior's mean


def test_truncation_scales_the_latents_of_generate(stub: pb_grpc.GeneratorServiceStub) -> None:
    latents = latents_from_seed(9, 3, 8)
    truncated = generated(stub, model="noise", seed=9, count=3, truncation=0.5)
    by_hand = generated(stub, model="noise", latents=pb.Latents(values=(0.5 * latents).ravel().tolist()))
    np.testing.assert_allclose(truncated, by_hand, atol=1e-6)
    whole = generated(stub, model="noise", seed=9, count=3, truncation=1.0)
    np.testing.assert_array_equal(whole, generated(stub, model="noise", seed=9, count=3))
    for psi in (-0.1, 1.5, float("nan")):
        error = status_of(lambda psi=psi: generated(stub, model="noise", seed=1, count=1, truncation=psi))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "truncation" in error.details()


def test_classes_blend_on_a_class_weights_export(stub: pb_grpc.GeneratorServiceStub) -> None:
    reply = walk(stub, model="digits", start=seed_end(3, label=1), end=seed_end(3, label=7), steps=5)
    samples = decode_tensor(reply)
    weights = np.asarray(reply.class_weights, dtype=np.float32).reshape(5, 10)
    np.testing.assert_array_equal(weights[0], np.eye(10)[1])
    np.testing.assert_array_equal(weights[-1], np.eye(10)[7])
    np.testing.assert_allclose(weights[2, [1, 7]], [0.5, 0.5])
    np.testing.assert_allclose(samples[0], generated(stub, model="digits", seed=3, count=1, labels=[1])[0], atol=1e-6)
    np.testing.assert_allclose(samples[-1], generated(stub, model="digits", seed=3, count=1, labels=[7])[0], atol=1e-6)


def test_an_old_label_graph_generates_but_cannot_blend_classes(stub: pb_grpc.GeneratorServiceStub) -> None:
    images = generated(stub, model="oldlabels", seed=1, count=2, labels=[2])
    assert images.shape == (2, 1, 2, 2)
    same = walk(stub, model="oldlabels", start=seed_end(1, label=2), end=seed_end(2, label=2), steps=3)
    assert decode_tensor(same).shape == (3, 1, 2, 2)
    error = status_of(
        lambda: walk(stub, model="oldlabels", start=seed_end(1, label=0), end=seed_end(2, label=2), steps=3)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "re-export" in error.details()


BAD_WALKS = {
    "one step": ({"model": "noise", "start": seed_end(1), "end": seed_end(2), "steps": 1}, "steps"),
    "too many steps": ({"model": "noise", "start": seed_end(1), "end": seed_end(2), "steps": 65}, "steps"),
    "no start": ({"model": "noise", "end": seed_end(2), "steps": 3}, "start"),
    "short latent": (
        {"model": "noise", "start": pb.LatentEndpoint(latent=pb.Latents(values=[0.0])), "end": seed_end(2), "steps": 3},
        "start.latent",
    ),
    "label on unconditional": (
        {"model": "noise", "start": seed_end(1, 3), "end": seed_end(2), "steps": 3},
        "start.label",
    ),
    "label outside classes": (
        {"model": "digits", "start": seed_end(1), "end": seed_end(2, 10), "steps": 3},
        "end.label",
    ),
    "latent without label": (
        {
            "model": "digits",
            "start": seed_end(1),
            "end": pb.LatentEndpoint(latent=pb.Latents(values=[0.0] * 8)),
            "steps": 3,
        },
        "end.label",
    ),
    "bad truncation": (
        {"model": "noise", "start": seed_end(1), "end": seed_end(2), "steps": 3, "truncation": 2.0},
        "truncation",
    ),
    "bad method": ({"model": "noise", "start": seed_end(1), "end": seed_end(2), "steps": 3, "method": 9}, "method"),
}


@pytest.mark.parametrize("name", sorted(BAD_WALKS))
def test_bad_walks_get_invalid_argument_naming_the_field(stub: pb_grpc.GeneratorServiceStub, name: str) -> None:
    fields, expected = BAD_WALKS[name]
    error = status_of(lambda: walk(stub, **fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert expected in error.details(), error.details()


# --- the walks on their own ------------------------------------------------------------------------


def test_slerp_keeps_norms_between_the_endpoints_and_turns_the_direction() -> None:
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal(64).astype(np.float32), 1.5 * rng.standard_normal(64).astype(np.float32)
    path = slerp(z0, z1, 9)
    norms = np.linalg.norm(path, axis=1)
    low, high = sorted((np.linalg.norm(z0), np.linalg.norm(z1)))
    assert (norms >= low - 1e-4).all() and (norms <= high + 1e-4).all()
    np.testing.assert_array_equal(path[0], z0)
    np.testing.assert_array_equal(path[-1], z1)
    straight = np.linalg.norm(lerp(z0, z1, 9), axis=1)
    assert straight[4] < low - 0.1, "a straight line between independent samples passes nearer the origin"


def test_slerp_handles_parallel_opposite_and_zero_vectors() -> None:
    z = np.arange(1, 5, dtype=np.float32)
    parallel = slerp(z, 2 * z, 5)
    np.testing.assert_allclose(parallel[2], 1.5 * z, rtol=1e-6)
    opposite = slerp(z, -z, 5)
    assert np.isfinite(opposite).all()
    np.testing.assert_allclose(np.linalg.norm(opposite, axis=1), np.linalg.norm(z), rtol=1e-5)
    zero = slerp(np.zeros(4, np.float32), z, 3)
    np.testing.assert_allclose(zero[1], 0.5 * z)
