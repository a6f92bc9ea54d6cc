"""Bearer-token authentication: tokens from files, health open for probes, admin-only model control."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.cli import main, read_token
from gan_client.client import GeneratorClient
from inference import grpc_service_pb2 as v2
from inference import grpc_service_pb2_grpc as v2_grpc
from service.auth import read_tokens
from service.metrics import Metrics
from service.server import interceptors_for
from service.settings import Settings
from tests.conftest import ServerThread, scrape

USER, ADMIN = "user-token-1", "admin-token-9"


@pytest.fixture(scope="module")
def guarded(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("tokens")
    (folder / "users").write_text(f"# one per line\n\n{USER}\n")
    (folder / "admins").write_text(f"{ADMIN}\n")
    settings = {"auth_token_file": folder / "users", "admin_token_file": folder / "admins"}
    with ServerThread(model_repository=model_repository, model_control_mode="explicit", **settings) as running:
        yield running


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    assert "authorization" in caught.value.details()
    return caught.value.code()


def test_calls_need_a_valid_bearer_token(guarded: ServerThread) -> None:
    for token in (None, "wrong", USER[:-1]):
        with GeneratorClient(guarded.target, timeout=5, retries=0, token=token) as client:
            assert code_of(client.list_models) == grpc.StatusCode.UNAUTHENTICATED
    for token in (USER, ADMIN):
        with GeneratorClient(guarded.target, timeout=5, token=token) as client:
            assert client.list_models() is not None
    assert scrape(guarded)['gan_request_failures_total{method="ListModels",model="",reason="unauthenticated"}'] >= 3


def test_a_streamed_reply_needs_a_token_too(guarded: ServerThread) -> None:
    with grpc.insecure_channel(guarded.target) as channel:
        stream = pb_grpc.GeneratorServiceStub(channel).GenerateRowsStream(
            pb.GenerateRowsRequest(model="noise", count=1), timeout=5
        )
        assert code_of(lambda: list(stream)) == grpc.StatusCode.UNAUTHENTICATED


def test_several_authorization_headers_are_refused_whatever_their_order(guarded: ServerThread) -> None:
    with grpc.insecure_channel(guarded.target) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        good, bad = ("authorization", f"Bearer {USER}"), ("authorization", "Bearer wrong")
        for metadata in ((good, bad), (bad, good), (good, good)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ServerReady(v2.ServerReadyRequest(), timeout=10, metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "one 'authorization' header" in (caught.value.details() or "")
        assert stub.ServerReady(v2.ServerReadyRequest(), timeout=10, metadata=(good,)).ready is not None


def test_health_stays_open_for_probes(guarded: ServerThread) -> None:
    with grpc.insecure_channel(guarded.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status in (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING)


def test_model_control_needs_an_admin_token(guarded: ServerThread) -> None:
    request = v2.RepositoryModelLoadRequest(model_name="noise")
    with grpc.insecure_channel(guarded.target) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        as_user = (("authorization", f"Bearer {USER}"),)
        denied = code_of(lambda: stub.RepositoryModelLoad(request, timeout=30, metadata=as_user))
        assert denied == grpc.StatusCode.PERMISSION_DENIED
        unload = v2.RepositoryModelUnloadRequest(model_name="noise")
        denied = code_of(lambda: stub.RepositoryModelUnload(unload, timeout=30, metadata=as_user))
        assert denied == grpc.StatusCode.PERMISSION_DENIED
        index = stub.RepositoryIndex(v2.RepositoryIndexRequest(), timeout=30, metadata=as_user)  # reading is fine
        assert "noise" in {model.name for model in index.models}
        stub.RepositoryModelLoad(request, timeout=30, metadata=(("authorization", f"Bearer {ADMIN}"),))
        ready = stub.ModelReady(v2.ModelReadyRequest(name="noise"), timeout=30, metadata=as_user)
        assert ready.ready


def test_the_cli_sends_its_token_file(guarded: ServerThread, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(USER + "\n")
    assert main(["--target", guarded.target, "--token-file", str(token_file), "list"]) == 0
    assert main(["--target", guarded.target, "--retries", "0", "list"]) == 1


def test_token_files_without_tokens_are_refused_by_name(tmp_path: Path) -> None:
    empty = tmp_path / "tokens"
    empty.write_text("# nothing yet\n")
    with pytest.raises(OSError, match=r"auth_token_file .*holds no tokens"):
        read_tokens(empty, "auth_token_file")
    with pytest.raises(OSError, match=r"admin_token_file .*cannot read"):
        read_tokens(tmp_path / "missing", "admin_token_file")


def test_token_files_from_other_editors_read_as_written(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_bytes(b"\xef\xbb\xbfuser-token-1\r\n# a comment\r\n\r\n  admin-token-9  \r\n")  # BOM, CRLF
    assert read_tokens(tokens, "auth_token_file") == (b"user-token-1", b"admin-token-9")
    assert read_token(tokens) == "user-token-1", "the CLI reads it the same way"
    tokens.write_text("t\u00f6ken\n", encoding="utf-8")
    with pytest.raises(OSError, match=r"auth_token_file .*printable ASCII"):
        read_tokens(tokens, "auth_token_file")


@pytest.mark.parametrize(
    ("tokens", "warned"),
    [((), "anyone who reaches the port"), (("auth",), "every client with a token"), (("auth", "admin"), None)],
)
def test_explicit_model_control_without_admin_tokens_is_warned_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tokens: tuple[str, ...], warned: str | None
) -> None:
    for kind in tokens:
        (tmp_path / kind).write_text(f"{kind}-token\n")
    files = {f"{kind}_token_file": tmp_path / kind for kind in tokens}
    settings = Settings(model_repository=tmp_path, model_control_mode="explicit", **files)
    with caplog.at_level(logging.WARNING, logger="service.server"):
        interceptors_for(settings, Metrics(CollectorRegistry()))
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    if warned is None:
        assert not warnings
    else:
        assert len(warnings) == 1 and warned in warnings[0] and "GAN_ADMIN_TOKEN_FILE" in warnings[0]
