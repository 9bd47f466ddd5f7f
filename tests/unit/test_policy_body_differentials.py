"""Parser differentials in what a policy reads: a body whose meaning depends on which parser reads it is a 400
``invalid_request`` on a policy route, never a ``parsed_body`` that approves one thing while the upstream acts on
another. Each case below parsed before (the policy saw one reading, an upstream could take another).

- JSON objects with a repeated key (Python and Go keep the last, many parsers the first, some refuse);
- integers the engine cannot hold exactly (regorus saturates 2**64 + 5 to 2**64 - 1, -2**63 - 1 to -2**63);
- a ``Content-Type`` naming more than one media type (two headers, merged with ``,`` by Envoy), repeating a
  parameter (``boundary=a; boundary=b``) or declaring a charset other than UTF-8 for a JSON or form body;
- multipart parts with two ``Content-Disposition`` (or ``Content-Type``) headers, a repeated ``name``, or a
  transfer encoding (base64, quoted-printable) that readers decode differently.

And a media type in another letter case (``Application/JSON``: RFC 9110 types are case-insensitive, every upstream
reads JSON) is parsed, where it gave ``parsed_body: null`` for a deny-list policy to read as "nothing to deny".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.policy.parse import PolicyInputError, parse_body
from authz.policy.view import RequestView, check_parsable
from tests.unit.test_malformed_requests import DENY_LIST, Gateway, _policy_dir

JSON = {"content-type": "application/json"}
MULTIPART = {"content-type": "multipart/form-data; boundary=a"}


def _parse(headers: dict[str, str], body: str) -> tuple[Any, bool]:
    return parse_body(headers, body, b"", None)


def _refused(headers: dict[str, str], body: str) -> None:
    with pytest.raises(PolicyInputError, match="request body"):
        _parse(headers, body)


def _part(headers: str, value: str) -> str:
    return f"--a\r\n{headers}\r\n\r\n{value}\r\n--a--\r\n"


@pytest.mark.parametrize("body", [
    '{"amount": 1, "amount": 1000000}',
    '{"order": {"amount": 1, "amount": 1000000}}',
    '[{"role": "user", "role": "admin"}]',
    '{"a": 1, "\\u0061": 2}',  # the same key, one escaped: still one key twice
])
def test_json_object_with_a_repeated_key_is_refused(body: str) -> None:
    _refused(JSON, body)


def test_json_keys_that_differ_are_kept() -> None:
    assert _parse(JSON, '{"a": {"x": 1}, "b": {"x": 2}}') == ({"a": {"x": 1}, "b": {"x": 2}}, False)


def test_multipart_json_part_with_a_repeated_key_is_refused() -> None:
    body = _part('Content-Disposition: form-data; name="order"\r\nContent-Type: application/json',
                 '{"amount": 1, "amount": 1000000}')
    _refused(MULTIPART, body)


@pytest.mark.parametrize("number", [str(2**64), str(2**64 + 5), str(-(2**63) - 1), "1" + "0" * 30])
def test_integer_the_engine_cannot_hold_is_refused(number: str) -> None:
    _refused(JSON, f'{{"amount": {number}}}')


@pytest.mark.parametrize("number", [2**64 - 1, -(2**63), 9007199254740993])
def test_integer_the_engine_holds_exactly_is_kept(number: int) -> None:
    assert _parse(JSON, f'{{"amount": {number}}}') == ({"amount": number}, False)


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("Application/JSON", '{"admin": true}', {"admin": True}),
    ("APPLICATION/JSON; Charset=UTF-8", '{"admin": true}', {"admin": True}),
    ("Application/X-WWW-Form-Urlencoded", "admin=true", {"admin": ["true"]}),
    ("Multipart/Form-Data; Boundary=a", _part('Content-Disposition: form-data; name="admin"', "true"),
     {"admin": ["true"]}),
])
def test_media_type_in_any_letter_case_is_parsed(content_type: str, body: str, expected: Any) -> None:
    assert _parse({"content-type": content_type}, body) == (expected, False)


@pytest.mark.parametrize("content_type", [
    "text/plain, application/json",  # two Content-Type headers, as Envoy merges them
    "application/json,application/x-www-form-urlencoded",
    "application/json; charset=utf-16",
    'application/x-www-form-urlencoded; charset="iso-8859-1"',
    "application/json; charset=utf-8; charset=latin1",
    "multipart/form-data; boundary=a; boundary=b",
    "multipart/form-data; boundary=b; BOUNDARY=a",
])
def test_ambiguous_content_type_is_refused(content_type: str) -> None:
    body = '"&admin=true&"' if "multipart" not in content_type else _part(
        'Content-Disposition: form-data; name="admin"', "true")
    _refused({"content-type": content_type}, body)


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-8", 'application/json; charset="UTF-8"', "application/json; charset=us-ascii",
    'multipart/form-data; boundary="a,b"',  # a comma inside a quoted parameter is not a second media type
])
def test_unambiguous_content_type_is_parsed(content_type: str) -> None:
    if "multipart" in content_type:
        body = _part('Content-Disposition: form-data; name="x"', "1").replace("--a", "--a,b")
        assert _parse({"content-type": content_type}, body) == ({"x": ["1"]}, False)
    else:
        assert _parse({"content-type": content_type}, '{"x": 1}') == ({"x": 1}, False)


@pytest.mark.parametrize("headers", [
    'Content-Disposition: form-data; name="role"\r\nContent-Disposition: form-data; name="note"',
    'Content-Disposition: form-data; name="role"; name="note"',
    'Content-Disposition: form-data; name="role"\r\nContent-Type: text/plain\r\nContent-Type: application/json',
    'Content-Disposition: form-data; name="role"\r\nContent-Transfer-Encoding: 7bit\r\n'
    "Content-Transfer-Encoding: base64",
])
def test_multipart_part_with_ambiguous_headers_is_refused(headers: str) -> None:
    _refused(MULTIPART, _part(headers, "admin"))


def test_two_content_type_entries_in_raw_header_lists_are_refused() -> None:
    """``encode_raw_headers``: Envoy sends each header line; the policy read the first, an upstream may take the
    last."""
    req = CheckRequest()
    http = req.attributes.request.http
    http.path, http.body = "/submit", '"&admin=true&"'
    for value in ("application/json", "application/x-www-form-urlencoded"):
        http.header_map.headers.add(key="content-type", raw_value=value.encode())
    with pytest.raises(PolicyInputError, match="request body"):
        check_parsable(RequestView.of_check(req))


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", '{"admin": true, "admin": false}'),
    ("application/json", '{"admin": false, "admin": true}'),
    ("text/plain, application/json", '{"admin": true}'),
    ("application/json; charset=utf-16", '{"admin": true}'),
])
def test_deny_list_policy_route_refuses_ambiguous_body_with_400(tmp_path: Path, transport: str,
                                                                 content_type: str, body: str) -> None:
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", DENY_LIST))
    request = gateway.request(transport, "POST", "/orders", {"policy": "app/allow"}, "tok-alice",
                              {"content-type": content_type}, body)
    outcome = gateway.outcome(request)
    assert outcome[:3] == ("deny", "MalformedRequest", 400), outcome


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_deny_list_policy_reads_a_json_body_whatever_the_letter_case(tmp_path: Path, transport: str) -> None:
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", DENY_LIST))
    request = gateway.request(transport, "POST", "/orders", {"policy": "app/allow"}, "tok-alice",
                              {"content-type": "Application/JSON"}, '{"admin": true}')
    assert gateway.outcome(request)[0] == "deny"


@pytest.mark.parametrize(("encoding", "value"), [("base64", "c2NyaXB0"), ("Quoted-Printable", "=73cript"),
                                                 ("x-unknown", "script")])
def test_multipart_part_with_a_transfer_encoding_is_refused(encoding: str, value: str) -> None:
    """RFC 7578 §4.7: senders must not use one, and readers differ (Go decodes quoted-printable and leaves base64 as
    it is; python-multipart's FormParser decodes both; others decode neither): a deny-list on ``kind`` would read
    ``c2NyaXB0`` where the upstream reads ``script``."""
    _refused(MULTIPART, _part(f'Content-Disposition: form-data; name="kind"\r\nContent-Transfer-Encoding: {encoding}',
                              value))


@pytest.mark.parametrize("encoding", ["7bit", "8BIT", "binary"])
def test_multipart_part_with_an_identity_transfer_encoding_is_read(encoding: str) -> None:
    body = _part(f'Content-Disposition: form-data; name="kind"\r\nContent-Transfer-Encoding: {encoding}', "image")
    assert _parse(MULTIPART, body) == ({"kind": ["image"]}, False)
