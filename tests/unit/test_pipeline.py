"""Authorizer.check: route settings -> credential -> introspection -> token -> scopes -> Allow or AuthzError."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from authz.config import Config, load_config
from authz.errors import (
    InsufficientScope,
    InvalidToken,
    MalformedCredential,
    MissingCredential,
    RouteMisconfigured,
    UpstreamMisbehaved,
    UpstreamUnavailable,
)
from authz.models import Introspection, RequestInfo
from authz.pipeline import Authorizer

OPAQUE = "opaque-token-1234567890"


def _jwt(**claims: Any) -> str:
    base = {"sub": "alice", "client_id": "web", "scope": "read write", "exp": time.time() + 600}
    base.update(claims)
    return jwt.encode(base, "k" * 32, algorithm="HS256")


class FakeIntrospector:
    dialect = "phantom"

    def __init__(self, answer: Introspection | Exception) -> None:
        self.answer = answer
        self.calls: list[str] = []

    async def introspect(self, token: str) -> Introspection:
        self.calls.append(token)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _config(tmp_path: Path, **top: Any) -> Config:
    doc: dict[str, Any] = {
        "authorization_servers": {
            "curity": {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S"}
        },
        "headers_to_remove": ["x-user-id", "x-role"],
        "routes": {"required_scopes": ["read"]},
    }
    doc.update(top)
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "secret"})


def _request(
    authorization: tuple[str, ...] = (f"Bearer {OPAQUE}",),
    extensions: dict[str, str] | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> RequestInfo:
    return RequestInfo(
        method=method,
        path="/orders",
        host="api.example",
        headers=headers or {},
        authorization=authorization,
        context_extensions=extensions or {},
    )


def _authorizer(tmp_path: Path, answer: Introspection | Exception, **top: Any) -> tuple[Authorizer, FakeIntrospector]:
    fake = FakeIntrospector(answer)
    return Authorizer(_config(tmp_path, **top), {"curity": fake}), fake


async def test_valid_token_is_exchanged_for_the_jwt(tmp_path: Path) -> None:
    token = _jwt()
    authorizer, fake = _authorizer(tmp_path, Introspection(active=True, jwt=token))
    allow = await authorizer.check(_request())
    assert fake.calls == [OPAQUE]
    assert allow.headers == (("authorization", f"Bearer {token}"),)
    assert allow.headers_to_remove == ("x-user-id", "x-role")
    assert dict(allow.dynamic_metadata) == {"sub": "alice", "client_id": "web", "scope": "read write"}
    assert allow.identity is not None
    assert allow.identity.subject == "alice"


async def test_metadata_omits_absent_subject_and_client(tmp_path: Path) -> None:
    token = jwt.encode({"scope": "read"}, "k" * 32, algorithm="HS256")
    authorizer, _ = _authorizer(tmp_path, Introspection(active=True, jwt=token))
    allow = await authorizer.check(_request())
    assert dict(allow.dynamic_metadata) == {"scope": "read"}


async def test_inactive_token_is_invalid_token_with_token_id(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=False))
    with pytest.raises(InvalidToken) as info:
        await authorizer.check(_request())
    assert info.value.status == 401
    token_id = info.value.token_id
    assert token_id is not None
    assert re.fullmatch(r"[0-9a-f]{12}", token_id)
    assert token_id not in OPAQUE
    assert OPAQUE not in str(info.value)


async def test_token_id_differs_per_token_and_is_stable(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=False))
    ids = []
    for token in ("tok-a", "tok-b", "tok-a"):
        with pytest.raises(InvalidToken) as info:
            await authorizer.check(_request((f"Bearer {token}",)))
        ids.append(info.value.token_id)
    assert ids[0] == ids[2] != ids[1]


async def test_missing_scope_is_insufficient_scope(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=True, jwt=_jwt(scope="read")))
    with pytest.raises(InsufficientScope) as info:
        await authorizer.check(_request(extensions={"required_scopes": "read admin"}))
    assert info.value.required == ("read", "admin")
    assert info.value.missing == ("admin",)
    assert info.value.token_id is not None


async def test_default_required_scopes_apply_to_routes_without_extensions(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=True, jwt=_jwt(scope="write")))
    with pytest.raises(InsufficientScope) as info:
        await authorizer.check(_request())
    assert info.value.missing == ("read",)


async def test_same_token_is_refused_on_admin_route_after_read_route(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=True, jwt=_jwt(scope="read")))
    allow = await authorizer.check(_request(extensions={"required_scopes": "read"}))
    assert allow.headers[0][0] == "authorization"
    with pytest.raises(InsufficientScope):
        await authorizer.check(_request(extensions={"required_scopes": "admin"}))


async def test_disabled_route_passes_without_introspection(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=False))
    allow = await authorizer.check(_request(authorization=(), extensions={"disabled": "true"}))
    assert fake.calls == []
    assert allow.headers == ()
    assert allow.headers_to_remove == ("x-user-id", "x-role")
    assert allow.identity is None


async def test_disabled_route_ignores_a_garbage_credential(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=False))
    allow = await authorizer.check(_request(authorization=("Bearer a b",), extensions={"disabled": "true"}))
    assert fake.calls == []
    assert allow.headers_to_remove == ("x-user-id", "x-role")


async def test_cors_preflight_passes_when_allowed(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=False), cors_preflight="allow")
    request = _request(authorization=(), method="OPTIONS", headers={"access-control-request-method": "POST"})
    allow = await authorizer.check(request)
    assert fake.calls == []
    assert allow.headers == ()
    assert allow.headers_to_remove == ("x-user-id", "x-role")


async def test_cors_preflight_is_authenticated_by_default(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=False))
    request = _request(authorization=(), method="OPTIONS", headers={"access-control-request-method": "POST"})
    with pytest.raises(MissingCredential):
        await authorizer.check(request)


async def test_plain_options_is_not_a_preflight(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=False), cors_preflight="allow")
    with pytest.raises(MissingCredential):
        await authorizer.check(_request(authorization=(), method="OPTIONS"))


async def test_preflight_header_on_get_is_not_a_preflight(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=False), cors_preflight="allow")
    with pytest.raises(MissingCredential):
        await authorizer.check(_request(authorization=(), headers={"access-control-request-method": "POST"}))


async def test_active_answer_without_jwt_is_upstream_misbehaved(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=True))
    with pytest.raises(UpstreamMisbehaved) as info:
        await authorizer.check(_request())
    assert info.value.status == 502
    assert info.value.token_id is not None


async def test_expired_jwt_is_invalid_token(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, Introspection(active=True, jwt=_jwt(exp=time.time() - 3600)))
    with pytest.raises(InvalidToken):
        await authorizer.check(_request())


async def test_introspection_failure_propagates_with_token_id(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, UpstreamUnavailable("down", retry_after=3))
    with pytest.raises(UpstreamUnavailable) as info:
        await authorizer.check(_request())
    assert info.value.retry_after == 3
    assert info.value.token_id is not None


async def test_missing_credential_is_refused_before_introspection(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=True, jwt=_jwt()))
    with pytest.raises(MissingCredential):
        await authorizer.check(_request(authorization=()))
    assert fake.calls == []


async def test_malformed_credential_is_refused_before_introspection(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=True, jwt=_jwt()))
    with pytest.raises(MalformedCredential):
        await authorizer.check(_request(authorization=("Bearer a", "Bearer b")))
    assert fake.calls == []


async def test_misconfigured_route_fails_closed(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=True, jwt=_jwt()))
    with pytest.raises(RouteMisconfigured):
        await authorizer.check(_request(extensions={"disabled": "yes"}))
    assert fake.calls == []


async def test_route_selects_its_authorization_server(tmp_path: Path) -> None:
    server = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S"}
    config = _config(tmp_path, authorization_servers={"curity": server, "other": dict(server)})
    default, other = (
        FakeIntrospector(Introspection(active=False)),
        FakeIntrospector(Introspection(active=True, jwt=_jwt())),
    )
    authorizer = Authorizer(config, {"curity": default, "other": other})
    await authorizer.check(_request(extensions={"as": "other"}))
    assert (default.calls, other.calls) == ([], [OPAQUE])
