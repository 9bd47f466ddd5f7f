"""The policy input, compiled once per policy load: ``Projection``. Pure: no I/O.

The input document is opa-envoy-plugin's (ext_authz v3, protojson; ``authz.policy.protojson``, ``authz.policy.parse``)
plus the verified token: ``attributes``, ``parsed_path``/``parsed_query``, ``parsed_body``/``truncated_body``,
``version``, ``source_principal`` when the source peer has one, and ``token``. The opaque token never appears:
``Authorization`` carries ``Bearer <JWT>`` of the verified token, or is removed.

From the Rego scan (``InputNeeds.tree``: what the loaded policies can read) the projection compiles a list of
*leaves*: each a place in the document (``parsed_path``, ``attributes.request.http.method``, the read names of
``headers``, ``token``, ...) with how to read it off a request (``authz.policy.view.RequestView``) and its identity.
For one request, ``values`` reads every leaf once; ``document(values)`` places them (the pruned input) and
``key(path, values)`` is their canonical form (``freeze``, injective over JSON values). So the reuse key and the input
come from one derivation: equal keys mean equal values, hence equal inputs, by construction. Reading a leaf costs
what the policy reads (a header lookup, the memoised path parse), so a reused decision is found before any
document is built. The token's leaf (document and canonical form) is worked out once per AS answer and kept on it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from authz.models import Answer, Identity
from authz.policy.input_needs import ALL_INPUT, InputNeeds, Tree, prune
from authz.policy.protojson import AUTHORIZATION, HTTP_STRINGS, replace_authorization
from authz.policy.view import RequestView

__all__ = ["ABSENT", "Kept", "Projection", "build_input", "freeze"]


class Kept:
    """A value with its canonical form worked out already (the token's leaf, kept on its AS answer)."""

    __slots__ = ("frozen", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.frozen = freeze(value)


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # a leaf the document does not have
_ABSENT_KEY = ("-",)  # its canonical form (every other non-string form is a 2-tuple)
_VERSION = {"ext_authz": "v3", "encoding": "protojson"}
_FULL: dict[str, Any] = dict.fromkeys(("attributes", "version", "parsed_path", "parsed_query", "parsed_body",
                                       "truncated_body", "source_principal", "token", "route"))
_HTTP = ("attributes", "request", "http")
_DEPTHS = ("0", "1", "2", "3")

Getter = Callable[[RequestView, Identity | None, Answer | None], Any]


def freeze(value: Any) -> Hashable:
    """A hashable canonical form of a JSON value: equal forms mean equal values (of equal types: 1, 1.0 and True
    differ), whatever the order of an object's keys."""
    kind = type(value)
    if kind is str or value is None:
        return value  # type: ignore[no-any-return]
    if kind is Kept:
        return value.frozen  # type: ignore[no-any-return]
    if value is ABSENT:
        return _ABSENT_KEY
    if kind is dict:
        return "d", tuple(sorted([(k, v if type(v) is str else freeze(v)) for k, v in value.items()])) if value else ()
    if kind is list:
        return "l", tuple([v if type(v) is str else freeze(v) for v in value])
    if kind is bool:
        return "b", value
    if kind is int:
        return "i", value
    if kind is float:
        return "f", repr(value)  # repr: -0.0 and 0.0 differ
    raise TypeError(f"not a JSON value: {kind.__name__}")


class Projection:
    """What the loaded policies read of a request, compiled from ``needs`` (``ALL_INPUT``: everything)."""

    __slots__ = ("_getters", "_paths", "_token_node", "max_body_bytes")

    def __init__(self, needs: InputNeeds = ALL_INPUT, max_body_bytes: int | None = None) -> None:
        self.max_body_bytes = max_body_bytes
        self._paths: list[tuple[str, ...]] = []
        self._getters: list[Getter] = []
        self._token_node: Tree = None
        tree = _FULL if needs.tree is None else needs.tree
        for name, node in tree.items():
            self._top(name, node)

    def _leaf(self, path: tuple[str, ...], getter: Getter) -> None:
        self._paths.append(path)
        self._getters.append(getter)

    def _top(self, name: str, node: Tree) -> None:
        if name == "attributes":
            self._attributes(node)
        elif name in ("parsed_path", "parsed_query"):
            index = name == "parsed_query"
            if node is None:
                self._leaf((name,), lambda v, i, a: v.parsed_path_and_query()[index])
            else:
                self._leaf((name,), lambda v, i, a: prune(v.parsed_path_and_query()[index], node))
        elif name in ("parsed_body", "truncated_body"):
            index = name == "truncated_body"
            limit = self.max_body_bytes
            if node is None:
                self._leaf((name,), lambda v, i, a: v.parsed_body(limit)[index])
            else:
                self._leaf((name,), lambda v, i, a: prune(v.parsed_body(limit)[index], node))
        elif name == "version":
            self._leaf((name,), lambda v, i, a: prune({**_VERSION}, node))
        elif name == "source_principal":
            self._leaf((name,), lambda v, i, a: v.source_principal() or ABSENT)
        elif name == "route":  # the matched route rule: {"name": ..., "params": {...}}; absent when none matched
            self._leaf((name,), lambda v, i, a: ABSENT if v.route is None else prune(v.route, node))
        elif name == "token":
            self._token_node = node
            self._leaf((name,), self._token)
        # any other name: not in the document

    def _attributes(self, node: Tree) -> None:
        if node is None:
            whole = _extra(_HTTP[:1], None)
            self._leaf(_HTTP[:1], lambda v, i, a: whole(v, i, a) if v.containers()[0] else ABSENT)
            return
        request = node.get("request")
        need = 1 if request is None else 2 if request.get("http") is None else 3
        # the skeleton: how many of attributes, attributes.request and attributes.request.http the input has
        self._leaf((), lambda v, i, a: _DEPTHS[need - v.containers()[:need].count(False)])
        for name, sub in node.items():
            if name != "request" or sub is None:
                self._leaf(("attributes", name), _extra(("attributes", name), sub))
                continue
            for rname, rsub in sub.items():
                if rname != "http" or rsub is None:
                    self._leaf((*_HTTP[:2], rname), _extra((*_HTTP[:2], rname), rsub))
                    continue
                for hname, hsub in rsub.items():
                    self._http(hname, hsub)

    def _http(self, name: str, node: Tree) -> None:
        path = (*_HTTP, name)
        if name in HTTP_STRINGS:
            self._leaf(path, lambda v, i, a: getattr(v, name) or ABSENT)
        elif name == "size":
            self._leaf(path, lambda v, i, a: str(v.size) if v.size else ABSENT)
        elif name == "headers" and node is not None:
            names = tuple(node)
            self._leaf(path, lambda v, i, a: _some_headers(v, i, names))
        else:  # all headers, headerMap, rawBody, a field this schema lacks
            self._leaf(path, _extra(path, node))

    def _token(self, view: RequestView, identity: Identity | None, answer: Answer | None) -> Any:
        if identity is None:
            return None
        kept = answer.policy_token if answer is not None else None
        if kept is not None and kept[0] is self:
            return kept[1]
        token = Kept(prune(_token_document(identity), self._token_node))
        if answer is not None:
            answer.policy_token = (self, token)
        return token

    # --- per request ----------------------------------------------------------------------------------------------

    def values(self, view: RequestView, identity: Identity | None, answer: Answer | None = None) -> list[Any]:
        """Every leaf of this request (``PolicyInputError``: a path, query or body the input cannot hold).
        ``answer``: the AS answer ``identity`` comes from, which keeps the token's leaf."""
        return [get(view, identity, answer) for get in self._getters]

    def key(self, decision_path: str, values: list[Any]) -> tuple[Hashable, ...]:
        """The canonical form of ``values``: equal keys, equal documents."""
        return (decision_path, *[v if type(v) is str else freeze(v) for v in values])

    def document(self, values: list[Any]) -> dict[str, Any]:
        """The input document holding ``values`` (a new document; the values themselves are shared)."""
        document: dict[str, Any] = {}
        for path, value in zip(self._paths, values, strict=True):
            if value is ABSENT:
                continue
            if type(value) is Kept:
                value = value.value
            if not path:  # the skeleton
                node = document
                for name in _HTTP[:int(value)]:
                    node = node.setdefault(name, {})
                continue
            node = document
            for name in path[:-1]:
                node = node.get(name)  # type: ignore[assignment]
                if node is None:
                    break  # its container is absent (and so is the leaf)
            else:
                node[path[-1]] = dict(value) if type(value) is dict and not value else value
        return document


def _some_headers(view: RequestView, identity: Identity | None, names: tuple[str, ...]) -> Any:
    """The read names of ``attributes.request.http.headers``, Authorization being the verified JWT's."""
    headers = view.headers
    if not headers and view.raw_headers():
        return ABSENT  # the input has headerMap only
    jwt = identity.jwt if identity is not None else None
    if not jwt and all(len(k) == len(AUTHORIZATION) and k.lower() == AUTHORIZATION for k in headers):
        return ABSENT  # no header left
    out = {}
    for name in names:
        if len(name) == len(AUTHORIZATION) and name.lower() == AUTHORIZATION:
            if name == AUTHORIZATION and jwt:
                out[name] = "Bearer " + jwt
        elif (value := headers.get(name)) is not None:
            out[name] = value
    return out


def _extra(path: tuple[str, ...], node: Tree) -> Getter:
    """A leaf read off the whole ``attributes`` document (peers, metadata, time, every header, ...)."""

    def get(view: RequestView, identity: Identity | None, answer: Answer | None) -> Any:
        value: Any = view.attributes()
        http = value.get("request", {}).get("http")
        if http is not None:
            replace_authorization(http, identity.jwt if identity is not None else None)
        for name in path[1:]:
            if not isinstance(value, dict) or name not in value:
                return ABSENT
            value = value[name]
        return prune(value, node)

    return get


def _token_document(identity: Identity) -> dict[str, Any]:
    claims = dict(identity.claims)
    issuer = claims.get("iss")
    return {
        "claims": claims,
        "scopes": sorted(identity.scopes),
        "subject": identity.subject,
        "client_id": identity.client_id,
        "issuer": issuer if isinstance(issuer, str) else None,
        "jwt": identity.jwt,
    }


def build_input(request: Any, identity: Identity | None, *, max_body_bytes: int | None = None,
                needs: InputNeeds = ALL_INPUT) -> dict[str, Any]:
    """The input document for a gRPC CheckRequest (or a ``RequestView``): what ``needs`` can read of it."""
    view = request if isinstance(request, RequestView) else RequestView.of_check(request)
    projection = Projection(needs, max_body_bytes)
    return projection.document(projection.values(view, identity))
