"""A :class:`PolicyDecision` -> the Envoy ext_authz v3 messages, the way opa-envoy-plugin maps its result. Pure.

Where each key goes (opa-envoy-plugin ``internal/internal.go``):

- allow: ``headers`` -> ``OkHttpResponse.headers`` (upstream request), ``request_headers_to_remove`` ->
  ``headers_to_remove``, ``response_headers_to_add`` -> ``response_headers_to_add`` (downstream response),
  ``query_parameters_to_set`` / ``query_parameters_to_remove`` -> the fields of the same name;
- deny: ``headers`` -> ``DeniedHttpResponse.headers`` (the local reply), ``http_status`` (default 403), ``body``;
- both: ``dynamic_metadata`` -> ``CheckResponse.dynamic_metadata`` (Envoy files it under
  ``envoy.filters.http.ext_authz``); opa-envoy-plugin also always puts its ``decision_id`` there.

How ``HeaderMutation.append`` is encoded. opa-envoy-plugin sets neither ``append`` nor ``append_action``. Envoy
1.40 (checked against the real binary) reads the two fields differently per message, so each destination gets the
encoding that Envoy actually honours there:

- ``OkHttpResponse.headers``: ``append_action`` is ignored; only the deprecated ``append`` counts (unset/false:
  overwrite; true: append to the existing value, comma-joined). Overwrite -> ``OVERWRITE_IF_EXISTS_OR_ADD`` with
  ``append`` unset (correct both on 1.40 and where ``append_action`` is read); append -> ``append: true``, the only
  encoding 1.40 appends for (newer Envoy still honours it first).
- ``response_headers_to_add`` and ``DeniedHttpResponse.headers``: ``append_action`` is honoured, ``append: true``
  would drop the value from a local reply -> ``OVERWRITE_IF_EXISTS_OR_ADD`` / ``APPEND_IF_EXISTS_OR_ADD``.
"""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption, QueryParameter
from envoy.service.auth.v3.external_auth_pb2 import DeniedHttpResponse, OkHttpResponse
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct
from google.protobuf.wrappers_pb2 import BoolValue

from authz.policy.decision import HeaderMutation, PolicyDecision

__all__ = [
    "DEFAULT_DENY_STATUS",
    "apply_to_ok",
    "denied_http_response",
    "metadata_struct",
    "request_header_option",
    "response_header_option",
]

DEFAULT_DENY_STATUS = 403
_OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def request_header_option(mutation: HeaderMutation) -> HeaderValueOption:
    """For ``OkHttpResponse.headers`` (the request sent upstream)."""
    header = HeaderValue(key=mutation.name, value=mutation.value)
    if mutation.append:
        return HeaderValueOption(header=header, append=BoolValue(value=True))
    return HeaderValueOption(header=header, append_action=_OVERWRITE)


def response_header_option(mutation: HeaderMutation) -> HeaderValueOption:
    """For ``OkHttpResponse.response_headers_to_add`` and ``DeniedHttpResponse.headers`` (what the client gets)."""
    return HeaderValueOption(
        header=HeaderValue(key=mutation.name, value=mutation.value),
        append_action=_APPEND if mutation.append else _OVERWRITE,
    )


def apply_to_ok(decision: PolicyDecision, ok: OkHttpResponse) -> None:
    """Add an allow decision's mutations to ``ok``, after whatever it already holds (the pipeline's own headers).

    Envoy inserts ``query_parameters_to_set`` into ``:path`` as they are and keeps the last value of a repeated name.
    Envoy removes ``headers_to_remove`` after it sets ``headers``: a header the policy overwrites is dropped from the
    removals ``ok`` already holds (the service's ``headers_to_remove``, there to strip a client's copy, which the
    overwrite replaces anyway), or the policy's value would be removed with it. One it only appends to stays removed.
    """
    if not decision.allowed:
        raise ValueError("apply_to_ok() needs an allow decision")
    overwritten = {m.name for m in decision.headers if not m.append}
    if overwritten and any(name in overwritten for name in ok.headers_to_remove):
        kept = [name for name in ok.headers_to_remove if name not in overwritten]
        del ok.headers_to_remove[:]
        ok.headers_to_remove.extend(kept)
    ok.headers.extend(request_header_option(m) for m in decision.headers)
    ok.headers_to_remove.extend(decision.request_headers_to_remove)
    ok.response_headers_to_add.extend(response_header_option(m) for m in decision.response_headers_to_add)
    ok.query_parameters_to_set.extend(QueryParameter(key=k, value=v) for k, v in decision.query_parameters_to_set)
    ok.query_parameters_to_remove.extend(decision.query_parameters_to_remove)


def denied_http_response(decision: PolicyDecision) -> DeniedHttpResponse:
    """The local reply for a deny decision: its status (default 403), headers and body, as the policy says."""
    if decision.allowed:
        raise ValueError("denied_http_response() needs a deny decision")
    status = decision.http_status if decision.http_status is not None else DEFAULT_DENY_STATUS
    return DeniedHttpResponse(
        status=HttpStatus(code=status),  # an open enum: every 100..599 code reaches the client (checked: 499)
        headers=[response_header_option(m) for m in decision.headers],
        body=decision.body or "",
    )


def metadata_struct(decision: PolicyDecision, *, decision_id: str | None = None) -> Struct | None:
    """The decision's ``dynamic_metadata`` as a Struct, plus ``decision_id`` when given (it wins over a policy's own
    ``decision_id`` key, as in opa-envoy-plugin); ``None`` when there is nothing to attach."""
    if not decision.dynamic_metadata and decision_id is None:
        return None
    struct = Struct()
    if decision.dynamic_metadata:
        struct.update(decision.dynamic_metadata)
    if decision_id is not None:
        struct["decision_id"] = decision_id
    return struct
