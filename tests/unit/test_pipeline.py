"""Authorizer.check: route settings -> credential -> introspection -> token -> scopes -> Allow or AuthzError.

The authorization servers are fakes of ``authz.introspection.Authority`` (``introspect`` + ``identity``); the
identity step uses the real ClaimsChecker, so time, issuer and audience checks behave as in production.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.claims import ClaimsChecker
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
from authz.models import Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer

OPAQUE = "opaque-token-1234567890"
ISSUER = "https://as.example"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"  # what the AS returned, verified
THUMBPRINT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"  # a cnf.jkt: presented as Bearer, refused
PREFLIGHT = {"origin": "https://app.example", "access-control-request-method": "POST"}  # a browser's CORS preflight


def _claims(**claims: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "sub": "alice", "client_id": "web", "scope": "read write", "exp": time.time() + 600}
    base.update(claims)
    return {k: v for k, v in base.items() if v is not None}


def _jwt(**claims: Any) -> Introspection:
    """An active answer with a (verified) JWT and its claims, as Authority.introspect gives it."""
    return Introspection(active=True, jwt=JWT, claims=_claims(**claims))


def _claims_only(**claims: Any) -> Introspection:
    """An active answer with claims but no JWT (plain RFC 7662, RFC 9701)."""
    return Introspection(active=True, claims=_claims(**claims))


class FakeAuthority:
    def __init__(self, answer: Introspection | Exception, issuer: str | None = ISSUER) -> None:
        self.result = answer
        self.calls: list[str] = []
        self._checker = ClaimsChecker(issuer, (), 30.0)

    async def answer(self, token: str) -> Answer:
        self.calls.append(token)
        if isinstance(self.result, Exception):
            raise self.result
        return Answer(self.result)

    def identity(self, answer: Answer) -> Identity:
        if not answer.introspection.active:
            raise InvalidToken("authorization server says the token is not active")
        return self._checker.identity_of(answer)


SERVER = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
          "issuer": ISSUER}
PLAIN = {"introspection_endpoint": "https://plain.example/i", "client_id": "gw", "client_secret_env": "S",
         "dialect": "rfc7662"}


def _config(tmp_path: Path, **top: Any) -> Config:
    doc: dict[str, Any] = {
        "authorization_servers": {"curity": SERVER},
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


def _authorizer(tmp_path: Path, answer: Introspection | Exception, **top: Any) -> tuple[Authorizer, FakeAuthority]:
    fake = FakeAuthority(answer)
    return Authorizer(_config(tmp_path, **top), {"curity": fake}), fake


async def test_valid_token_is_exchanged_for_the_jwt(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, _jwt())
    allow = await authorizer.check(_request())
    assert fake.calls == [OPAQUE]
    assert allow.headers == (("authorization", f"Bearer {JWT}"),)
    assert allow.headers_to_remove == ("x-user-id", "x-role")
    assert dict(allow.dynamic_metadata) == {"sub": "alice", "client_id": "web", "scope": "read write"}
    assert allow.identity is not None
    assert allow.identity.subject == "alice"


async def test_metadata_omits_absent_subject_and_client(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(sub=None, client_id=None, scope="read"))
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
    authorizer, _ = _authorizer(tmp_path, _jwt(scope="read"))
    with pytest.raises(InsufficientScope) as info:
        await authorizer.check(_request(extensions={"required_scopes": "read admin"}))
    assert info.value.required == ("read", "admin")
    assert info.value.missing == ("admin",)
    assert info.value.token_id is not None


async def test_default_required_scopes_apply_to_routes_without_extensions(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(scope="write"))
    with pytest.raises(InsufficientScope) as info:
        await authorizer.check(_request())
    assert info.value.missing == ("read",)


async def test_same_token_is_refused_on_admin_route_after_read_route(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(scope="read"))
    allow = await authorizer.check(_request(extensions={"required_scopes": "read"}))
    assert allow.headers[0][0] == "authorization"
    with pytest.raises(InsufficientScope):
        await authorizer.check(_request(extensions={"required_scopes": "admin"}))


async def test_disabled_route_passes_without_introspection(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=False))
    allow = await authorizer.check(_request(authorization=(), extensions={"disabled": "true"}))
    assert fake.calls == []
    assert allow.headers == ()
    assert allow.headers_to_remove == ("x-user-id", "x-role", "authorization")
    assert allow.identity is None


async def test_disabled_route_ignores_a_garbage_credential(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=False))
    allow = await authorizer.check(_request(authorization=("Bearer a b",), extensions={"disabled": "true"}))
    assert fake.calls == []
    assert allow.headers_to_remove == ("x-user-id", "x-role", "authorization")


async def test_cors_preflight_passes_when_allowed(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=False), cors_preflight="allow")
    request = _request(authorization=(), method="OPTIONS", headers=PREFLIGHT)
    allow = await authorizer.check(request)
    assert fake.calls == []
    assert allow.headers == ()
    assert allow.headers_to_remove == ("x-user-id", "x-role", "authorization")


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


async def test_claims_of_the_wrong_type_are_upstream_misbehaved_with_token_id(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(scope=42))
    with pytest.raises(UpstreamMisbehaved) as info:
        await authorizer.check(_request())
    assert info.value.status == 502
    assert info.value.token_id is not None


async def test_expired_jwt_is_invalid_token(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(exp=time.time() - 3600))
    with pytest.raises(InvalidToken) as info:
        await authorizer.check(_request())
    assert info.value.token_id is not None


async def test_jwt_from_another_issuer_is_invalid_token(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(iss="https://evil.example"))
    with pytest.raises(InvalidToken):
        await authorizer.check(_request())


async def test_introspection_failure_propagates_with_token_id(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, UpstreamUnavailable("down", retry_after=3))
    with pytest.raises(UpstreamUnavailable) as info:
        await authorizer.check(_request())
    assert info.value.retry_after == 3
    assert info.value.token_id is not None


async def test_missing_credential_is_refused_before_introspection(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, _jwt())
    with pytest.raises(MissingCredential):
        await authorizer.check(_request(authorization=()))
    assert fake.calls == []


async def test_malformed_credential_is_refused_before_introspection(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, _jwt())
    with pytest.raises(MalformedCredential):
        await authorizer.check(_request(authorization=("Bearer a", "Bearer b")))
    assert fake.calls == []


async def test_misconfigured_route_fails_closed(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, _jwt())
    with pytest.raises(RouteMisconfigured):
        await authorizer.check(_request(extensions={"disabled": "yes"}))
    assert fake.calls == []


async def test_route_selects_its_authorization_server(tmp_path: Path) -> None:
    config = _config(tmp_path, authorization_servers={"curity": SERVER, "other": dict(SERVER)})
    default, other = FakeAuthority(Introspection(active=False)), FakeAuthority(_jwt())
    authorizer = Authorizer(config, {"curity": default, "other": other})
    await authorizer.check(_request(extensions={"as": "other"}))
    assert (default.calls, other.calls) == ([], [OPAQUE])


# claims but no JWT (plain RFC 7662, RFC 9701): never pass the opaque token on as if it were a JWT


def _forwarding(tmp_path: Path, answer: Introspection | Exception, forwarding: str = "header",
                **plain: Any) -> tuple[Authorizer, FakeAuthority]:
    servers = {"curity": SERVER, "plain": {**PLAIN, "claims_forwarding": forwarding, **plain}}
    fake = FakeAuthority(answer, issuer=None)
    config = _config(tmp_path, authorization_servers=servers)
    return Authorizer(config, {"curity": FakeAuthority(_jwt()), "plain": fake}), fake


def _decode_claims(value: str) -> Any:
    assert "=" not in value and "+" not in value and "/" not in value  # base64url without padding
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


async def test_claims_are_forwarded_as_base64url_json_in_the_claims_header(tmp_path: Path) -> None:
    answer = _claims_only(sub="bob", scope="read", username="Bob Ünicode", groups=["a", "b"])
    authorizer, fake = _forwarding(tmp_path, answer)
    allow = await authorizer.check(_request(extensions={"as": "plain"}))
    assert fake.calls == [OPAQUE]
    [(name, value)] = allow.headers
    assert name == "x-token-claims"
    assert _decode_claims(value) == dict(answer.claims)
    assert "authorization" in allow.headers_to_remove  # the opaque token does not reach the upstream
    assert "x-token-claims" not in allow.headers_to_remove  # Envoy removes after adding: it would drop ours
    assert {"x-user-id", "x-role"} <= set(allow.headers_to_remove)
    assert OPAQUE not in repr(allow.headers)
    assert dict(allow.dynamic_metadata) == {"sub": "bob", "client_id": "web", "scope": "read"}
    assert allow.identity is not None
    assert allow.identity.jwt is None


async def test_claims_go_to_the_configured_claims_header(tmp_path: Path) -> None:
    authorizer, _ = _forwarding(tmp_path, _claims_only(), claims_header="X-Introspected")
    allow = await authorizer.check(_request(extensions={"as": "plain"}))
    [(name, value)] = allow.headers
    assert name == "x-introspected"
    assert _decode_claims(value)["sub"] == "alice"
    assert "authorization" in allow.headers_to_remove


async def test_claims_forwarding_none_sets_no_header_and_removes_authorization(tmp_path: Path) -> None:
    authorizer, _ = _forwarding(tmp_path, _claims_only(), forwarding="none")
    allow = await authorizer.check(_request(extensions={"as": "plain"}))
    assert allow.headers == ()
    assert allow.headers_to_remove == ("x-user-id", "x-role", "authorization")
    assert allow.dynamic_metadata["sub"] == "alice"


async def test_claims_only_answer_still_needs_the_route_scopes(tmp_path: Path) -> None:
    authorizer, _ = _forwarding(tmp_path, _claims_only(scope="read"))
    with pytest.raises(InsufficientScope):
        await authorizer.check(_request(extensions={"as": "plain", "required_scopes": "read admin"}))


async def test_expired_claims_only_answer_is_invalid_token(tmp_path: Path) -> None:
    authorizer, _ = _forwarding(tmp_path, _claims_only(exp=time.time() - 3600))
    with pytest.raises(InvalidToken):
        await authorizer.check(_request(extensions={"as": "plain"}))


async def test_claims_header_is_removed_on_jwt_allows(tmp_path: Path) -> None:
    authorizer, _ = _forwarding(tmp_path, _claims_only())
    allow = await authorizer.check(_request())  # the default AS returns a JWT
    assert allow.headers == (("authorization", f"Bearer {JWT}"),)
    assert "x-token-claims" in allow.headers_to_remove
    assert "authorization" not in allow.headers_to_remove


async def test_claims_header_is_removed_on_disabled_routes(tmp_path: Path) -> None:
    authorizer, fake = _forwarding(tmp_path, _claims_only())
    allow = await authorizer.check(_request(authorization=(), extensions={"disabled": "true", "as": "plain"}))
    assert fake.calls == []
    assert allow.headers == ()
    assert set(allow.headers_to_remove) == {"x-user-id", "x-role", "x-token-claims", "authorization"}


async def test_claims_header_is_removed_on_allowed_preflights(tmp_path: Path) -> None:
    servers = {"curity": SERVER, "plain": {**PLAIN, "claims_forwarding": "header"}}
    config = _config(tmp_path, authorization_servers=servers, cors_preflight="allow")
    authorizer = Authorizer(config, {"curity": FakeAuthority(_jwt()), "plain": FakeAuthority(_claims_only())})
    request = _request(authorization=(), method="OPTIONS", headers=PREFLIGHT)
    assert "x-token-claims" in (await authorizer.check(request)).headers_to_remove


# --- issue 12 item 1: a scope granted with a non-SP separator never satisfies a route -------------------------------

@pytest.mark.parametrize("sep", ["\u00a0", "\t", "\x0b", "\x1f", "\u2003", "\u2028"])
async def test_item01_files_nbsp_admin_does_not_satisfy_admin(tmp_path: Path, sep: str) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(scope=f"read files:{sep}admin"))
    with pytest.raises(InsufficientScope):
        await authorizer.check(_request(extensions={"required_scopes": "admin"}))
    await authorizer.check(_request(extensions={"required_scopes": "read"}))


# --- issue 12 item 6: an allow that swaps in no JWT never forwards the client's Authorization ----------------------

async def test_item06_disabled_route_removes_the_clients_authorization(tmp_path: Path) -> None:
    authorizer, fake = _authorizer(tmp_path, _jwt())
    allow = await authorizer.check(_request(extensions={"disabled": "true"}))
    assert fake.calls == []
    assert "authorization" in allow.headers_to_remove
    assert all(name != "authorization" for name, _ in allow.headers)


async def test_item06_allowed_preflight_removes_the_clients_authorization(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(), cors_preflight="allow")
    allow = await authorizer.check(_request(method="OPTIONS", headers=PREFLIGHT))
    assert "authorization" in allow.headers_to_remove


async def test_item06_keep_authorization_keeps_it_on_disabled_routes_and_preflights(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(), cors_preflight="allow")
    keep = {"disabled": "true", "keep_authorization": "true"}
    assert (await authorizer.check(_request(extensions=keep))).headers_to_remove == ("x-user-id", "x-role")
    preflight = _request(method="OPTIONS", headers=PREFLIGHT, extensions={"keep_authorization": "true"})
    assert "authorization" not in (await authorizer.check(preflight)).headers_to_remove


async def test_item06_keep_authorization_on_a_claims_only_route_and_never_on_jwt_allows(tmp_path: Path) -> None:
    authorizer, _ = _forwarding(tmp_path, _claims_only())
    kept = await authorizer.check(_request(extensions={"as": "plain", "keep_authorization": "true"}))
    assert "authorization" not in kept.headers_to_remove
    assert "x-token-claims" not in kept.headers_to_remove and {"x-user-id", "x-role"} <= set(kept.headers_to_remove)
    removed = await authorizer.check(_request(extensions={"as": "plain"}))  # the same cached answer, other route
    assert "authorization" in removed.headers_to_remove
    jwt_allow = await authorizer.check(_request(extensions={"keep_authorization": "true"}))
    assert jwt_allow.headers == (("authorization", f"Bearer {JWT}"),)  # the JWT still replaces the opaque token


# --- issue 12 item 7: a preflight needs Origin, and is never let past a route's policy unless configured --------

@pytest.mark.parametrize("headers", [{"access-control-request-method": "POST"},
                                     {"access-control-request-method": "POST", "origin": ""},
                                     {"origin": "https://app.example"},
                                     {"origin": "https://app.example", "access-control-request-method": ""}],
                         ids=["no-origin", "empty-origin", "no-method", "empty-method"])
async def test_item07_preflight_needs_origin_and_request_method(tmp_path: Path, headers: dict[str, str]) -> None:
    authorizer, fake = _authorizer(tmp_path, Introspection(active=False), cors_preflight="allow")
    with pytest.raises(MissingCredential):
        await authorizer.check(_request(authorization=(), method="OPTIONS", headers=headers))
    with pytest.raises(InvalidToken):  # authenticated like any request
        await authorizer.check(_request(method="OPTIONS", headers=headers))
    assert fake.calls == [OPAQUE]


class _RecordingPolicy:
    """A policy stage that records the requests it decided and denies them all."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def decide(self, path: str, request: RequestInfo, identity: Identity | None, answer: Any = None,
                     route: Any = None) -> Any:
        self.seen.append(request.method)
        raise InsufficientScope(("policy",), ("policy",))


def _policy_authorizer(tmp_path: Path, **top: Any) -> tuple[Authorizer, FakeAuthority, _RecordingPolicy]:
    (tmp_path / "p.rego").write_text("package app\n\nallow := true\n", encoding="utf-8")
    config = _config(tmp_path, cors_preflight="allow", policy={"paths": [str(tmp_path / "p.rego")]}, **top)
    fake, policy = FakeAuthority(Introspection(active=False)), _RecordingPolicy()
    return Authorizer(config, {"curity": fake}, policy), fake, policy  # type: ignore[arg-type]  # a stand-in


@pytest.mark.parametrize("extensions", [{"policy": "app/allow"}, {"policy": "app/allow", "disabled": "true"}],
                         ids=["token-route", "disabled-route"])
async def test_item07_preflight_does_not_skip_a_routes_policy(tmp_path: Path, extensions: dict[str, str]) -> None:
    authorizer, _, policy = _policy_authorizer(tmp_path)
    request = _request(authorization=(), method="OPTIONS", headers=PREFLIGHT, extensions=extensions)
    with pytest.raises((MissingCredential, InsufficientScope)):
        await authorizer.check(request)
    assert policy.seen == (["OPTIONS"] if "disabled" in extensions else [])
    plain = await authorizer.check(_request(authorization=(), method="OPTIONS", headers=PREFLIGHT))
    assert plain.identity is None  # a route without a policy: the preflight passes


async def test_item07_preflight_skips_policy_routes_only_when_configured(tmp_path: Path) -> None:
    authorizer, _, policy = _policy_authorizer(tmp_path, cors_preflight_on_policy_routes=True)
    request = _request(authorization=(), method="OPTIONS", headers=PREFLIGHT, extensions={"policy": "app/allow"})
    allow = await authorizer.check(request)
    assert policy.seen == [] and "authorization" in allow.headers_to_remove


# --- issue 12 item 8: refresh, ID and bound tokens are refused (401 invalid_token), cached answer or not ----------

@pytest.mark.parametrize("claims", [{"token_type": "refresh_token"}, {"token_type": "id_token"},
                                    {"token_type": "DPoP", "cnf": {"jkt": THUMBPRINT}},
                                    {"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}],
                         ids=["refresh", "id", "dpop", "mtls"])
@pytest.mark.parametrize("answer", [_jwt, _claims_only], ids=["jwt", "claims-only"])
async def test_item08_non_access_and_bound_tokens_are_invalid_token(tmp_path: Path, claims: dict[str, Any],
                                                                    answer: Any) -> None:
    authorizer, _ = _authorizer(tmp_path, answer(scope="read admin", **claims))
    for _ in range(2):  # the same (cached) answer object is refused every time
        with pytest.raises(InvalidToken) as info:
            await authorizer.check(_request())
        assert info.value.status == 401 and info.value.token_id is not None


# --- issue 12 item 10: an empty setting fails closed (500), it does not switch a check off --------------------

@pytest.mark.parametrize("extensions", [{"required_scopes": ""}, {"required_scopes": "admin", "policy": ""},
                                        {"as": ""}, {"keep_authorization": ""}])
async def test_item10_empty_setting_is_a_500_not_an_allow(tmp_path: Path, extensions: dict[str, str]) -> None:
    authorizer, fake = _authorizer(tmp_path, _jwt(scope="read"))
    with pytest.raises(RouteMisconfigured) as info:
        await authorizer.check(_request(extensions=extensions))
    assert info.value.status == 500 and fake.calls == []


async def test_item10_dash_route_needs_a_token_but_no_scope(tmp_path: Path) -> None:
    authorizer, _ = _authorizer(tmp_path, _jwt(scope="other"))
    allow = await authorizer.check(_request(extensions={"required_scopes": "-"}))
    assert allow.headers == (("authorization", f"Bearer {JWT}"),)
    with pytest.raises(MissingCredential):
        await authorizer.check(_request(authorization=(), extensions={"required_scopes": "-"}))
