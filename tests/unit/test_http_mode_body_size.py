"""HTTP mode cannot tell a policy the client's body size: Envoy's HTTP check request carries its own
``Content-Length`` (the length of the body it forwards: at most ``with_request_body.max_request_bytes``, 0 without
a body), and the view's ``size`` is that forwarded body's length. Through real Envoy 1.40 a 9017-byte form body
reached a policy as ``content-length: "9017"``, ``size: "9017"`` in gRPC mode and as ``"8192"``, ``"8192"`` in HTTP
mode, so a policy denying uploads over, say, 8 KiB by either field denied in gRPC mode and allowed the same request
in HTTP mode. Such policies are refused with the HTTP transport on, as those reading the client's protocol are."""

from __future__ import annotations

import pytest

from authz.policy.engine import PolicyLoadError
from authz.policy.input_needs import input_needs
from authz.transport.http_gaps import http_gap
from authz.transport.http_request import HttpCheckTranslator

UPLOAD_LIMIT = """package p
import rego.v1
deny if to_number(input.attributes.request.http.headers["content-length"]) > 8192
"""


@pytest.mark.parametrize(("source", "gap"), [
    ('x := input.attributes.request.http.headers["content-length"]', "content-length"),
    ("x := input.attributes.request.http.size", "input.attributes.request.http.size"),
    ('x := input.attributes.request.http["size"]', "input.attributes.request.http.size"),
    ('h := input.attributes.request.http.headers\nx := h["content-length"]', "headers whole"),
    ('h := input.attributes.request.http\nx := object.get(h.headers, "content-length", "0")',
     "input.attributes.request.http whole"),
    ("h := input.attributes.request.http\nx := h.size", "input.attributes.request.http whole"),
    ('r := input.attributes.request\nx := r.http.size', "input.attributes.request whole"),
    # what HTTP mode does send stays readable
    ('x := input.attributes.request.http.headers["content-type"]', None),
    ("h := input.attributes.request.http.headers\nx := h.accept", None),
    ("h := input.attributes.request.http\nx := h.method", None),
    ("x := input.attributes.request.http.method\ny := input.parsed_body.size", None),  # not under http
])
def test_policies_reading_the_clients_body_size_are_named(source: str, gap: str | None) -> None:
    found = http_gap(input_needs(["package p\n" + source]))
    assert (found is None) if gap is None else (found is not None and gap in found), found


def test_http_mode_content_length_is_envoys_check_request_not_the_clients() -> None:
    """What the view holds: the forwarded body's length, whatever the client's request declared (Envoy replaces
    it), which is why a policy reading it is refused rather than served."""
    body = b"a=" + b"x" * 8190  # what Envoy forwards of a longer body (max_request_bytes 8192)
    info = HttpCheckTranslator("/phantom-authz", 65536).request_info(
        "POST", "/phantom-authz/upload", [(b"host", b"api"), (b"content-length", b"8192"),
                                          (b"x-envoy-auth-partial-body", b"true")], body)
    assert info.make_view is not None
    view = info.make_view()
    assert view.headers["content-length"] == "8192" and view.size == 8192
    assert view.parsed_body() == (None, True)


def test_an_upload_limit_policy_is_refused_at_load_in_http_mode() -> None:
    from authz.transport import http_gaps

    with pytest.raises(PolicyLoadError, match="content-length"):
        http_gaps._check(input_needs([UPLOAD_LIMIT]))
