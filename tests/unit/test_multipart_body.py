"""``parsed_body`` of ``multipart/form-data`` bodies, as opa-envoy-plugin builds it (Go's ``mime/multipart``):
``{name: [value, ...]}``, file parts included, JSON parts decoded; a malformed body fails the input (a 400 on a policy
route, never ``parsed_body: null``). The first cases are the plugin's own test bodies (LF line endings)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.policy.parse import PolicyInputError, parse_body
from authz.policy.projection import build_input
from authz.policy.view import RequestView, check_parsable

FORM = {"content-type": "multipart/form-data; boundary=foo"}


def _crlf(*lines: str) -> str:
    return "\r\n".join(lines)


def _parsed(body: str | bytes, headers: dict[str, str] | None = None) -> tuple[Any, bool]:
    text, raw = (body, b"") if isinstance(body, str) else ("", body)
    return parse_body(headers or FORM, text, raw, None)


@pytest.mark.parametrize(("body", "expected"), [
    # opa-envoy-plugin's request_test.go bodies: LF line endings, an epilogue of tabs
    ('--foo\nContent-Disposition: form-data; name="foo"\nContent-Type: text/plain\n\nbar\n--foo--\n\t\t\t\t',
     {"foo": ["bar"]}),
    ('--foo\nContent-Disposition: form-data; name="foo"\nContent-Type: text/plain\n\nbar\n--foo\n'
     'Content-Disposition: form-data; name="bar"\nContent-Type: application/json;\n\n{"name": "bar"}\n--foo--\n\t\t',
     {"foo": ["bar"], "bar": [{"name": "bar"}]}),
    # what browsers send: CRLF, several values for one name, a file part (its content is the value, as in Go)
    (_crlf("--foo", 'Content-Disposition: form-data; name="tag"', "", "a", "--foo",
           'Content-Disposition: form-data; name="tag"', "", "b", "--foo",
           'Content-Disposition: form-data; name="upload"; filename="notes.txt"', "Content-Type: text/plain", "",
           "line 1\r\nline 2", "--foo--", ""),
     {"tag": ["a", "b"], "upload": ["line 1\r\nline 2"]}),
    (_crlf("--foo--", ""), {}),  # no parts
    (_crlf("a preamble line", "--foo", 'Content-Disposition: form-data; name="x"', "", "1", "--foo--"), {"x": ["1"]}),
    # parts without a form-data name are skipped (Go's FormName is "")
    (_crlf("--foo", 'Content-Disposition: attachment; name="x"', "", "1", "--foo", "Content-Type: text/plain", "",
           "2", "--foo", 'Content-Disposition: form-data; filename="f"', "", "3", "--foo",
           'content-disposition: FORM-DATA; name="y"', "", "4", "--foo--"), {"y": ["4"]}),
    (_crlf("--foo", 'Content-Disposition: form-data; name="q"', "Content-Transfer-Encoding: 8bit", "", "café",
           "--foo--"), {"q": ["café"]}),  # an identity transfer encoding (any other is refused)
    (_crlf("--foo", 'Content-Disposition: form-data; name="j"', "Content-Type: application/json", "",
           '[1, {"admin": true}]', "--foo--"), {"j": [[1, {"admin": True}]]}),
])
def test_multipart_parsed_body(body: str, expected: Any) -> None:
    assert _parsed(body) == (expected, False)


def test_file_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    body = (b'--foo\r\nContent-Disposition: form-data; name="f"; filename="b.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n\xff\x00ok\r\n--foo--\r\n")
    assert _parsed(body) == ({"f": ["\ufffd\x00ok"]}, False)


def test_a_quoted_boundary_and_other_parameters() -> None:
    body = _crlf("--a b", 'Content-Disposition: form-data; name="x"', "", "1", "--a b--")
    content_type = 'multipart/form-data; charset=utf-8; boundary="a b"'
    assert _parsed(body, {"content-type": content_type}) == ({"x": ["1"]}, False)


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data; boundary=foo", _crlf("--foo", 'Content-Disposition: form-data; name="a"', "", "x")),
    ("multipart/form-data; boundary=foo", _crlf("--foo", 'Content-Disposition: form-data; name="a"', "", "x",
                                                "--foo")),  # no closing boundary
    ("multipart/form-data; boundary=foo", "no boundary line at all"),
    ("multipart/form-data; boundary=foo", _crlf("--foo", "a header without a colon", "", "x", "--foo--")),
    ("multipart/form-data; boundary=foo", _crlf("--other", 'Content-Disposition: form-data; name="a"', "", "x",
                                                "--other--")),
    ("multipart/form-data", _crlf("--foo", 'Content-Disposition: form-data; name="a"', "", "x", "--foo--")),
    ("multipart/form-data; boundary=", "--\r\n\r\n"),
    ("multipart/form-data; boundary=foo", _crlf("--foo", 'Content-Disposition: form-data; name="j"',
                                                "Content-Type: application/json", "", "{not json", "--foo--")),
    ("multipart/form-data; boundary=foo", _crlf("--foo", *[f"X-H{i}: v" for i in range(100)],
                                                'Content-Disposition: form-data; name="a"', "", "x", "--foo--")),
])
def test_malformed_multipart_fails_the_input(content_type: str, body: str) -> None:
    """As any other body that does not parse: ``PolicyInputError``, which ``authz.request_form`` makes a 400 before a
    policy runs — a deny-list policy never reads ``null`` for fields an upstream would see."""
    with pytest.raises(PolicyInputError, match="request body"):
        _parsed(body, {"content-type": content_type})
    request = CheckRequest()
    request.attributes.request.http.headers["content-type"] = content_type
    request.attributes.request.http.body = body
    with pytest.raises(PolicyInputError, match="request body"):
        check_parsable(RequestView.of_check(request))


def test_bounded_by_the_body_limit_and_envoys_cut() -> None:
    body = _crlf("--foo", 'Content-Disposition: form-data; name="f"; filename="big"', "", "x" * 1000, "--foo--")
    assert parse_body(FORM, body, b"", len(body)) == ({"f": ["x" * 1000]}, False)
    assert parse_body(FORM, body, b"", len(body) - 1) == (None, True)  # over max_body_bytes: not parsed
    assert parse_body({**FORM, "x-envoy-auth-partial-body": "true"}, body[:100], b"", None) == (None, True)
    assert parse_body({**FORM, "content-length": str(len(body) + 1)}, body, b"", None) == (None, True)


def test_the_input_document_carries_it() -> None:
    request = CheckRequest()
    request.attributes.request.http.headers.update(FORM)
    request.attributes.request.http.body = _crlf("--foo", 'Content-Disposition: form-data; name="role"', "", "admin",
                                                 "--foo--")
    document = build_input(request, None)
    assert (document["parsed_body"], document["truncated_body"]) == ({"role": ["admin"]}, False)
