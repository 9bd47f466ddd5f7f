"""The path normal-form check (``authz.request_form``) against a reference written independently from RFC 3986:
§5.2.4 ``remove_dot_segments``, §6.2.2.2 percent-encoding normalization (unreserved characters are not encoded),
and the extra refusals the check documents (encoded ``/``, ``\\``, controls, double encoding, non-UTF-8, ``..;``).
Hypothesis searches for a path on which the two disagree."""

from __future__ import annotations

import re
import string
from urllib.parse import unquote_to_bytes

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from authz.errors import MalformedRequest
from authz.policy.projection import build_input
from authz.request_form import check_path, path_problem

PCHAR = set(string.ascii_letters + string.digits + "-._~" + "!$&'()*+,;=" + ":@")
UNRESERVED = set(string.ascii_letters + string.digits + "-._~")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, step by step as the RFC writes it (input buffer -> output buffer)."""
    inp, out = path, ""
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = "/" + inp[3:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = "/" + inp[4:]
            out = out[:out.rfind("/")] if "/" in out else ""
        elif inp == "/..":
            inp = "/"
            out = out[:out.rfind("/")] if "/" in out else ""
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            end = inp.find("/", start)
            end = len(inp) if end == -1 else end
            out += inp[:end]
            inp = inp[end:]
    return out


def reference_accepts(path: str, allow_encoded_slashes: bool = False) -> bool:
    if not path.startswith("/"):
        return False
    # lexically: "/", pchar, and "%" only as the start of %HH
    tokens = re.findall(r"%[0-9A-Fa-f]{2}|.", path, re.DOTALL)
    if any(len(t) == 1 and t != "/" and t not in PCHAR for t in tokens):
        return False
    escapes = [int(t[1:], 16) for t in tokens if len(t) == 3]
    # §6.2.2.2: the normal form has no escaped unreserved character
    if any(chr(b) in UNRESERVED for b in escapes):
        return False
    # §5.2.4: dot segments are gone; and no empty segment (what Envoy's merge_slashes would change)
    if remove_dot_segments(path) != path or "//" in path:
        return False
    # the service's own extra refusals
    if any(b < 0x20 or b == 0x7F or b == 0x5C for b in escapes):
        return False
    if 0x2F in escapes and not allow_encoded_slashes:
        return False
    if any(segment.split(";")[0] in (".", "..") for segment in path.split("/")):
        return False
    for segment in path.split("/"):
        once = unquote_to_bytes(segment)
        if re.search(rb"%[0-9A-Fa-f]{2}", once):
            return False
        try:
            decoded = once.decode("utf-8")
        except UnicodeDecodeError:
            return False
        # an upstream that decodes the allowed %2F and then resolves the path must see a normal form as well
        if "/" in decoded:
            inner = "/" + decoded + "/"
            if "//" in inner or remove_dot_segments(inner) != inner:
                return False
            if any(part.split(";")[0] in (".", "..") for part in decoded.split("/")):
                return False
    return True


PIECES = ["/", "/", "/", ".", "..", "a", "bob", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", "%00", "%1f", "%7f",
          "%25", "%252e", "%zz", "%4", "%", "%41", "%7E", ";", "..;", "%c3%a9", "%C3", "%ff", "~", " ", "#", "?", "é",
          "\x01", "\t", "%20", "%3B", "2e", "e", "-", "@", ":", "[", "|"]
paths = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.lists(st.sampled_from(PIECES), max_size=12).map(lambda parts: "/" + "".join(parts)),
    st.text(max_size=20),
)


@settings(max_examples=3000, deadline=None)
@given(paths, st.booleans())
@example("/records/alice/../bob/profile", False)
@example("/records/alice/%2e%2e/bob/profile", False)
@example("/records/alice/..;/bob/profile", False)
@example("/files/a%2Fb", True)
@example("/", False)
@example("/a/b/", False)
def test_normal_form_agrees_with_rfc3986_reference(path: str, allow_encoded_slashes: bool) -> None:
    accepted = path_problem(path, allow_encoded_slashes=allow_encoded_slashes) is None
    assert accepted == reference_accepts(path, allow_encoded_slashes), path
    if accepted:  # what a policy then sees: no dot or empty segment (but a trailing slash), nothing left to decode
        request = CheckRequest()
        request.attributes.request.http.path = path
        segments = build_input(request, None)["parsed_path"]
        assert not {".", ".."} & set(segments)
        assert "" not in segments[:-1] or segments == [""]


@pytest.mark.parametrize("path", [
    "/records/alice/profile", "/", "/a/b/", "/a.b/c.json", "/caf%C3%A9", "/a%20b", "/x;y=1/z", "/v1/~user/a:b@c",
    "/a/...", "/.well-known/jwks", "/q?a=%zz&b=..%2F",  # the query is not the path check's business
])
def test_item02_normal_paths_pass(path: str) -> None:
    check_path(path)


@pytest.mark.parametrize("path", [
    "/records/alice/../bob/profile", "/records/alice/%2e%2e/bob/profile", "/records/alice/%2E%2e/bob/profile",
    "/records/alice/.%2e/bob", "/records/alice/./profile", "/records//bob", "//records/bob", "/a/%2F/b", "/a%2fb",
    "/a/%5C/b", "/a\\b", "/a/%00/b", "/a%0a", "/a/%zz", "/a/%4", "/a/%", "/a/%252e%252e/b", "/a/%41", "/a/..;/b",
    "/a/.;x/b", "/a b", "/a#f", "records/alice", "", "/caf\u00e9", "/a/%ff", "/a/%c0%ae%c0%ae/b", "/a\x7f",
])
def test_item02_paths_not_in_normal_form_are_malformed_requests(path: str) -> None:
    with pytest.raises(MalformedRequest) as info:
        check_path(path)
    assert (info.value.status, info.value.oauth_error) == (400, "invalid_request")


def test_item02_encoded_slashes_only_where_the_route_allows_them() -> None:
    check_path("/files/a%2Fb/raw", allow_encoded_slashes=True)
    for still_refused in ("/files/a%2F..%2Fb", "/files/%2e%2e%2Fb", "/files/a%5Cb", "/files//b"):
        with pytest.raises(MalformedRequest):
            check_path(still_refused, allow_encoded_slashes=True)
