"""What ``authz check`` prints: the decision and why, from the ``CheckResponse`` Envoy would get (both modes) and,
offline, from the pipeline's own values (the route's settings and rule, the token holder's scopes, the policy's
decision, the error's operator detail). Pure: no I/O. Never prints a token or a JWT: a bearer value is shown as its
length, the token as its short id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from envoy.service.auth.v3.external_auth_pb2 import CheckResponse
from google.protobuf.json_format import MessageToDict

from authz.errors import AuthzError, InsufficientScope
from authz.models import Allow, RouteSettings

__all__ = ["Explanation", "decision_lines", "response_lines", "route_lines"]

_SHOWN_BODY = 300  # characters of a denial body shown


@dataclass
class Explanation:
    """What the offline check knows beyond the wire answer."""

    route: RouteSettings | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    route_error: AuthzError | None = None  # the route could not be settled (no rule and default deny, bad settings)
    allow: Allow | None = None
    error: AuthzError | None = None


def _bearer_safe(name: str, value: str) -> str:
    """A header as shown: an ``Authorization`` value as its scheme and length, whatever the scheme (``Bearer``;
    ``DPoP`` with ``dpop.forward: dpop``), never the credential."""
    if name.lower() == "authorization":
        scheme, space, credential = value.partition(" ")
        return f"{scheme} <credential, {len(credential)} bytes>" if space else f"<credential, {len(value)} bytes>"
    return value if len(value) <= 200 else value[:200] + f"... ({len(value)} bytes)"


def route_lines(explained: Explanation) -> list[str]:
    if explained.route_error is not None:
        err = explained.route_error
        return [f"route: refused before any stage: {err.status} {err.reason}: {err.detail}"]
    route = explained.route
    if route is None:  # the request was refused before routes were read (a path not in normal form)
        return []
    where = f"rule {route.rule}" if route.rule is not None else "the service defaults (no route rule)"
    if explained.params:
        where += " (params " + ", ".join(f"{k}={v}" for k, v in explained.params.items()) + ")"
    lines = [f"route: {where}"]
    if route.disabled:
        lines.append("  disabled: no token needed")
    else:
        lines.append(f"  required scopes: {' '.join(route.required_scopes) or '(none)'}")
        lines.append(f"  authorization server: {route.authorization_server}")
    lines.append(f"  policy: {route.policy or '(none)'}")
    return lines


def decision_lines(explained: Explanation) -> list[str]:
    """The offline ``why``: the token holder and the policy on an allow, the failing stage on a denial."""
    allow, error = explained.allow, explained.error
    lines: list[str] = []
    if allow is not None:
        identity = allow.identity
        if identity is not None:
            lines.append(f"token holder: subject {identity.subject or '-'}, client {identity.client_id or '-'}, "
                         f"scopes {' '.join(sorted(identity.scopes)) or '(none)'}")
        route = explained.route
        if route is not None and route.policy is not None:
            decision_id = allow.dynamic_metadata.get("decision_id", "-")
            lines.append(f"policy {route.policy}: allowed (decision id {decision_id})")
    if error is not None:
        lines.append(f"why: {error.reason}: {error.detail}")
        if isinstance(error, InsufficientScope):
            lines.append(f"  scopes required: {' '.join(error.required)}; missing: {' '.join(error.missing)}")
    return lines


def response_lines(response: CheckResponse) -> list[str]:
    """The decision as Envoy would apply it: the status, and what the client or the upstream gets."""
    if response.HasField("ok_response"):
        ok = response.ok_response
        lines = ["decision: ALLOW (the request goes upstream)"]
        for option in ok.headers:
            lines.append(f"  upstream gets {option.header.key}: {_bearer_safe(option.header.key, option.header.value)}")
        if ok.headers_to_remove:
            lines.append(f"  removed from the request: {', '.join(ok.headers_to_remove)}")
    else:
        denied = response.denied_response
        status = denied.status.code or 403
        lines = [f"decision: DENY {status}"]
        for option in denied.headers:
            lines.append(f"  client gets {option.header.key}: {option.header.value}")
        if denied.body:
            lines.append(f"  body: {_body(denied.body)}")
    metadata = MessageToDict(response.dynamic_metadata) if response.HasField("dynamic_metadata") else {}
    if metadata:
        lines.append("  dynamic metadata: " + ", ".join(f"{k}={_text(v)}" for k, v in sorted(metadata.items())))
    return lines


def _body(body: str) -> str:
    try:
        return json.dumps(json.loads(body), separators=(", ", ": "))[:_SHOWN_BODY]
    except ValueError:
        return body[:_SHOWN_BODY]


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
