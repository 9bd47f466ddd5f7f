"""RemoteEngine: OPA's REST Data API over one kept-alive aiohttp session, against the OPA double served in process
(real Rego) and against small recording handlers for what goes over the wire."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from authz.config import Secret
from authz.policy.embedded import EmbeddedEngine
from authz.policy.engine import Evaluation, PolicyEvaluationError
from authz.policy.remote import RemoteEngine
from tests.local_http import serve
from tests.opa_double import build_app

POLICY = """package envoy.authz
import rego.v1

default allow := false

allow if input.user == "alice"

decision := {"allowed": input.user == "alice", "headers": {"x-user": input.user}}

echo := input

maybe if input.defined

broken := 1 / input.zero
"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _serve(app: web.Application, port: int = 0) -> AbstractAsyncContextManager[str]:
    return serve(app, port, shutdown_timeout=0.2)


@asynccontextmanager
async def _engine(base_url: str, seconds: float = 2.0, token: str | None = None) -> AsyncIterator[RemoteEngine]:
    engine = RemoteEngine(base_url, seconds, Secret(token) if token is not None else None)
    try:
        yield engine
    finally:
        await engine.close()


def _single(handler: Handler) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.fixture
def opa_policies(tmp_path: Path) -> EmbeddedEngine:
    (tmp_path / "authz.rego").write_text(POLICY, encoding="utf-8")
    return EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)


# --- against the OPA double ---------------------------------------------------------------------------------------


async def test_result_and_decision_id_from_the_double(opa_policies: EmbeddedEngine) -> None:
    async with _serve(build_app(opa_policies)) as url, _engine(url) as engine:
        allowed = await engine.evaluate("envoy/authz/allow", {"user": "alice"})
        denied = await engine.evaluate("envoy/authz/allow", {"user": "eve"})
        decision = await engine.evaluate("envoy/authz/decision", {"user": "eve"})
    assert isinstance(allowed, Evaluation)
    assert allowed.result is True
    assert denied.result is False
    assert decision.result == {"allowed": False, "headers": {"x-user": "eve"}}
    assert allowed.decision_id and denied.decision_id and allowed.decision_id != denied.decision_id


async def test_input_round_trips_through_the_double(opa_policies: EmbeddedEngine) -> None:
    document = {"attributes": {"request": {"http": {"method": "GET", "headers": {"x-ünï": "☃"}}}},
                "parsed_path": ["a", "b"], "token": None, "n": 1.5}
    async with _serve(build_app(opa_policies)) as url, _engine(url) as engine:
        assert (await engine.evaluate("envoy/authz/echo", document)).result == document


async def test_undefined_decision_is_an_evaluation_error(opa_policies: EmbeddedEngine) -> None:
    async with _serve(build_app(opa_policies)) as url, _engine(url) as engine:
        assert (await engine.evaluate("envoy/authz/maybe", {"defined": True})).result is True
        with pytest.raises(PolicyEvaluationError, match="undefined"):
            await engine.evaluate("envoy/authz/maybe", {"defined": False})
        with pytest.raises(PolicyEvaluationError, match="undefined"):
            await engine.evaluate("no/such/rule", {})


async def test_evaluation_failure_at_opa_is_an_evaluation_error(opa_policies: EmbeddedEngine) -> None:
    async with _serve(build_app(opa_policies)) as url, _engine(url) as engine:
        with pytest.raises(PolicyEvaluationError, match="500"):
            await engine.evaluate("envoy/authz/broken", {"zero": 0})


async def test_bearer_token_is_sent(opa_policies: EmbeddedEngine) -> None:
    async with _serve(build_app(opa_policies, token="opa-s3cret")) as url:
        async with _engine(url, token="opa-s3cret") as engine:
            assert (await engine.evaluate("envoy/authz/allow", {"user": "alice"})).result is True
        async with _engine(url, token="wrong") as engine:
            with pytest.raises(PolicyEvaluationError, match="401"):
                await engine.evaluate("envoy/authz/allow", {"user": "alice"})
        async with _engine(url) as engine:
            with pytest.raises(PolicyEvaluationError, match="401"):
                await engine.evaluate("envoy/authz/allow", {"user": "alice"})


async def test_slow_opa_is_a_timeout(opa_policies: EmbeddedEngine) -> None:
    async with _serve(build_app(opa_policies, latency_ms=1000)) as url, _engine(url, seconds=0.1) as engine:
        with pytest.raises(PolicyEvaluationError, match="no answer within"):
            await engine.evaluate("envoy/authz/allow", {"user": "alice"})


async def test_latency_within_the_timeout_is_fine(opa_policies: EmbeddedEngine) -> None:
    async with _serve(build_app(opa_policies, latency_ms=20)) as url, _engine(url, seconds=2.0) as engine:
        assert (await engine.evaluate("envoy/authz/allow", {"user": "alice"})).result is True


async def test_calls_reuse_one_kept_alive_connection(opa_policies: EmbeddedEngine) -> None:
    peers: list[Any] = []

    @web.middleware
    async def record_peer(request: web.Request, handler: Handler) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)

    app = build_app(opa_policies)
    app.middlewares.append(record_peer)
    async with _serve(app) as url, _engine(url) as engine:
        for user in ("alice", "eve", "alice", "bob", "alice"):
            await engine.evaluate("envoy/authz/allow", {"user": user})
        with pytest.raises(PolicyEvaluationError):
            await engine.evaluate("envoy/authz/maybe", {})  # an undefined decision does not drop the connection
        await engine.evaluate("envoy/authz/allow", {"user": "alice"})
    assert len(peers) == 7
    assert len(set(peers)) == 1


# --- what goes over the wire --------------------------------------------------------------------------------------


async def test_post_body_is_the_input_under_input_at_v1_data_path() -> None:
    seen: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path": request.path, "query": request.query_string,
                     "content_type": request.headers.get("Content-Type"),
                     "authorization": request.headers.get("Authorization"), "body": json.loads(await request.read())})
        return web.json_response({"result": {"allowed": True}, "decision_id": "d-123"})

    policy_input = {"attributes": {"request": {"http": {"path": "/x"}}}, "token": {"subject": "alice"}}
    async with _serve(_single(record)) as url, _engine(url + "/", token="tkn") as engine:
        evaluation = await engine.evaluate("envoy/authz/allow", policy_input)
    assert evaluation == Evaluation({"allowed": True}, "d-123")
    assert seen == [{"method": "POST", "path": "/v1/data/envoy/authz/allow", "query": "",
                     "content_type": "application/json", "authorization": "Bearer tkn",
                     "body": {"input": policy_input}}]


async def test_no_token_configured_sends_no_authorization() -> None:
    seen: list[str | None] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"result": True})

    async with _serve(_single(record)) as url, _engine(url) as engine:
        evaluation = await engine.evaluate("a/b", {})
    assert seen == [None]
    assert evaluation.result is True
    assert isinstance(evaluation.decision_id, str) and evaluation.decision_id  # OPA sent none: one is made up


async def test_result_false_and_null_are_results_not_undefined() -> None:
    answers = iter([{"result": False}, {"result": None}])

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(next(answers))

    async with _serve(_single(answer)) as url, _engine(url) as engine:
        assert (await engine.evaluate("a/b", {})).result is False
        assert (await engine.evaluate("a/b", {})).result is None


@pytest.mark.parametrize(("status", "body", "content_type"), [
    (500, '{"code": "internal_error", "message": "boom"}', "application/json"),
    (503, "service unavailable", "text/plain"),
    (404, '{"code": "resource_not_found"}', "application/json"),
    (200, "<html>not json</html>", "text/html"),
    (200, '{"result": tru', "application/json"),
    (200, "[true]", "application/json"),
    (200, '"allowed"', "application/json"),
    (200, "null", "application/json"),
    (200, "", "application/json"),
    (302, "", "text/plain"),
], ids=["500", "503", "404", "not-json", "truncated", "array", "string", "null", "empty", "redirect"])
async def test_unusable_answers_are_evaluation_errors(status: int, body: str, content_type: str) -> None:
    async def answer(request: web.Request) -> web.Response:
        headers = {"Location": "/v1/data/elsewhere"} if status == 302 else None
        return web.Response(status=status, text=body, content_type=content_type, headers=headers)

    async with _serve(_single(answer)) as url, _engine(url) as engine:
        with pytest.raises(PolicyEvaluationError):
            await engine.evaluate("envoy/authz/allow", {})


async def test_huge_answer_is_an_evaluation_error() -> None:
    async def huge(request: web.Request) -> web.Response:
        return web.json_response({"result": {"allowed": True, "body": "x" * (2 * 1024 * 1024)}})

    async with _serve(_single(huge)) as url, _engine(url) as engine:
        with pytest.raises(PolicyEvaluationError):
            await engine.evaluate("envoy/authz/allow", {})


async def test_large_answer_under_the_limit_is_read_whole() -> None:
    body = "x" * (400 * 1024)

    async def large(request: web.Request) -> web.Response:
        return web.json_response({"result": {"allowed": False, "body": body}, "decision_id": "big"})

    async with _serve(_single(large)) as url, _engine(url) as engine:
        evaluation = await engine.evaluate("envoy/authz/allow", {})
    assert evaluation == Evaluation({"allowed": False, "body": body}, "big")


async def test_connection_refused_is_an_evaluation_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with _engine(f"http://127.0.0.1:{port}", seconds=2.0) as engine:
        with pytest.raises(PolicyEvaluationError, match="envoy/authz/allow"):
            await engine.evaluate("envoy/authz/allow", {})


async def test_engine_recovers_after_opa_restarts(opa_policies: EmbeddedEngine) -> None:
    async with _serve(build_app(opa_policies)) as url:
        port = int(url.rsplit(":", 1)[1])
        engine = RemoteEngine(url, 2.0)
        try:
            assert (await engine.evaluate("envoy/authz/allow", {"user": "alice"})).result is True
        except BaseException:
            await engine.close()
            raise
    try:
        with pytest.raises(PolicyEvaluationError):  # OPA is down
            await engine.evaluate("envoy/authz/allow", {"user": "alice"})
        async with _serve(build_app(opa_policies), port=port):  # OPA is back on the same address
            assert (await engine.evaluate("envoy/authz/allow", {"user": "alice"})).result is True
    finally:
        await engine.close()
