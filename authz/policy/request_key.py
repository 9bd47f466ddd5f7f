"""A cheap key for what the loaded policies can read of one request, to find a reused decision before building the
input document (``authz.policy.decision_cache``).

Only for policies whose read paths (``InputNeeds.tree``) stay within fields this module knows how ``build_input``
derives: ``attributes.request.http`` string fields and headers, ``parsed_path``/``parsed_query`` (from the path),
``parsed_body``/``truncated_body`` (from the body and three headers), ``version`` and ``token``. Anything else (peers,
time, metadata, raw header lists, the whole input) gives no key, and the input is built as before. The token part is
the identity's JWT and claims (made once per AS answer and kept on its ``Answer``), so two requests with equal keys
have equal pruned inputs; a test checks that property over varied requests.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from authz.models import Answer, Identity, RequestInfo
from authz.policy.input_needs import InputNeeds

__all__ = ["RequestKeyer", "check_request_fields", "http_fields"]

_TOP = frozenset({"attributes", "parsed_path", "parsed_query", "parsed_body", "truncated_body", "token", "version"})
_HTTP_FIELDS = ("method", "path", "host", "scheme", "query", "fragment", "protocol", "id", "size")
_BODY_HEADERS = ("content-type", "content-length", "x-envoy-auth-partial-body")
_AUTHORIZATION = "authorization"


def http_fields(request: RequestInfo) -> Any | None:
    """What the key reads of a request: the HTTP transport's ``HttpFields``, or the gRPC CheckRequest's
    ``attributes.request.http`` message (same attribute names)."""
    return request.http.fields() if request.http is not None else check_request_fields(request.source)


def check_request_fields(request: Any) -> Any | None:
    """A CheckRequest's ``attributes.request.http``; None when it has none, or carries raw header lists
    (``header_map``), which the key does not cover."""
    if not (request is not None and request.HasField("attributes") and request.attributes.HasField("request")
            and request.attributes.request.HasField("http")):
        return None
    http = request.attributes.request.http
    return None if http.header_map.headers else http


class RequestKeyer:
    def __init__(self, needs: InputNeeds) -> None:
        self.enabled = False
        self._fields: tuple[str, ...] = ()
        self._headers: tuple[str, ...] | None = ()  # None: every header
        self._body = False
        tree = needs.tree
        if tree is None or not tree.keys() <= _TOP:
            return
        fields: set[str] = set()
        headers: set[str] | None = set()
        if "attributes" in tree:
            attributes = tree["attributes"]
            if attributes is None or not attributes.keys() <= {"request"}:
                return
            request = attributes.get("request", {})
            if request is None or not request.keys() <= {"http"}:
                return
            http = request.get("http", {})
            if http is None or not http.keys() <= {*_HTTP_FIELDS, "headers", "body"}:
                return
            fields = set(http) & set(_HTTP_FIELDS)
            if "headers" in http:
                headers = None if http["headers"] is None else set(http["headers"])
            self._body = "body" in http
        if "parsed_path" in tree or "parsed_query" in tree:
            fields.add("path")
        if "parsed_body" in tree or "truncated_body" in tree:
            self._body = True
            if headers is not None:
                headers.update(_BODY_HEADERS)
        self._fields = tuple(sorted(fields))
        self._headers = None if headers is None else tuple(sorted(headers - {_AUTHORIZATION}))
        self.enabled = True

    def key(self, decision_path: str, http: Any, identity: Identity | None,
            answer: Answer | None = None) -> Hashable | None:
        """The key from ``http`` (``http_fields``: the request's ``attributes.request.http``), or None when this
        request's shape is not covered. ``answer``: the AS answer ``identity`` comes from, which keeps its part."""
        if not self.enabled or http is None:
            return None
        headers = http.headers
        # Authorization is left out: the input carries the verified JWT there (the identity part), never the token
        if self._headers is None:
            header_part: tuple[Any, ...] = tuple(sorted(kv for kv in headers.items() if kv[0] != _AUTHORIZATION))
        else:
            header_part = tuple(headers.get(name) for name in self._headers)
        body_part = (http.body, http.raw_body) if self._body else ()
        return (decision_path, tuple(getattr(http, f) for f in self._fields), header_part, body_part,
                _identity_part(identity, answer))


def _identity_part(identity: Identity | None, answer: Answer | None) -> str | None:
    """The whole verified token (JWT and claims) as one string, made once per AS answer (kept on it: the same for
    every policy load)."""
    if identity is None:
        return None
    part = answer.policy_key if answer is not None else None
    if part is None:
        part = json.dumps([identity.jwt, identity.claims, sorted(identity.scopes), identity.subject,
                           identity.client_id], sort_keys=True, default=str)
        if answer is not None:
            answer.policy_key = part
    return part
