"""The named parts of a ``multipart/form-data`` body, read as Go's ``mime/multipart`` reads them for opa-envoy-plugin
(``parsed_body`` is built from them in ``authz.policy.parse``). Pure: no I/O.

The byte-level parsing is python-multipart's (the parser Starlette and FastAPI use: strict, streaming, bounded header
count and size), chosen over the stdlib ``email`` parser, which is written for mail: it never fails on a malformed
body (it records "defects" and guesses), decodes base64 parts Go leaves as they are, and turns a nested multipart
part into sub-messages where Go gives its bytes. Around it, what Go's reader does and python-multipart does not:

- lines before the first boundary line (a preamble) are skipped;
- a body whose first boundary line ends in a bare LF uses LF line endings throughout (Go's reader switches to them).

Not as Go's reader: a part with a ``Content-Transfer-Encoding`` other than ``7bit``, ``8bit`` or ``binary`` is
refused (``ValueError``). RFC 7578 forbids senders to use one, and readers differ: Go decodes quoted-printable and
leaves base64 as it is, python-multipart's ``FormParser`` decodes both, others neither — a policy would read
``c2NyaXB0`` where an upstream reads ``script``.

Each part: its ``Content-Disposition`` must be ``form-data`` with a ``name`` (else the part is skipped, as Go's
``FormName`` is empty); its value is its whole content, a file part's too. A body that does not parse — no boundary
line, a malformed header, no closing boundary — raises ``ValueError``; so does a part that repeats its
``Content-Disposition``, ``Content-Type`` or ``Content-Transfer-Encoding`` header, or a parameter (``name``) of one
(readers differ on which one counts); a body with no ``boundary`` parameter in its
content type too (the plugin gives ``null``; here a policy never reads ``null`` for a body an upstream may read).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState

from authz.policy.content_type import media_type

__all__ = ["FormPart", "form_parts"]

# python-multipart logs each parse error before raising it; the error is reported here (a 400), once
logging.getLogger("python_multipart.multipart").setLevel(logging.CRITICAL)

_MAX_HEADERS = 64  # per part (Go's reader allows many more; browsers send two or three)
_MAX_HEADER_BYTES = 16 * 1024  # one header line
_IDENTITY_ENCODINGS = frozenset({b"7bit", b"8bit", b"binary"})


@dataclass(slots=True)
class FormPart:
    name: str
    content_type: str  # the part's Content-Type header ("" when it has none)
    value: bytes


@dataclass(slots=True)
class _Part:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)

    def header(self, name: bytes) -> bytes | None:
        """The value of a header, names compared without case; ``ValueError`` when the part repeats it (Go's
        ``Header.Get`` takes the first, other readers the last)."""
        values = [v for k, v in self.headers if k.lower() == name]
        if len(values) > 1:
            raise ValueError(f"a part repeats its {name.decode()} header")
        return values[0] if values else None


class _Collector:
    """python-multipart's callbacks: headers and data of each part, in order."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self._field = bytearray()
        self._value = bytearray()

    def begin(self) -> None:
        self.parts.append(_Part())

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self.parts[-1].headers.append((bytes(self._field), bytes(self._value)))
        self._field.clear()
        self._value.clear()

    def data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].data += data[start:end]


def _from_first_boundary(body: bytes, boundary: bytes) -> bytes:
    """The body from its first boundary line on (RFC 2046 lets a preamble come before it)."""
    dash = b"--" + boundary
    if body.startswith(dash):
        return body
    at = body.find(b"\n" + dash)
    if at < 0:
        raise ValueError("no boundary line")
    return body[at + 1:]


def form_parts(boundary_text: str, body: bytes) -> list[FormPart]:
    """The named parts of ``body`` (the content type's ``boundary`` parameter: ``boundary_text``) in order;
    ``ValueError`` when it is not a well-formed multipart body."""
    if not boundary_text:
        raise ValueError("the content type has no boundary parameter")
    boundary = boundary_text.encode("utf-8")
    body = _from_first_boundary(body, boundary)
    bare_lf = body[len(boundary) + 2:len(boundary) + 3] == b"\n"
    if bare_lf:  # CRLF for the parser; every CR LF of its output is one of these LFs again
        body = body.replace(b"\n", b"\r\n")
    collector = _Collector()
    try:
        parser = MultipartParser(boundary, {
            "on_part_begin": collector.begin, "on_header_field": collector.header_field,
            "on_header_value": collector.header_value, "on_header_end": collector.header_end,
            "on_part_data": collector.data,
        }, max_header_count=_MAX_HEADERS, max_header_size=_MAX_HEADER_BYTES)
        parser.write(body)
    except (MultipartParseError, FormParserError) as exc:
        raise ValueError(str(exc)[:200]) from None
    if parser.state != MultipartState.END:
        raise ValueError("the body ends before its closing boundary")
    return [part for p in collector.parts if (part := _named(p, bare_lf)) is not None]


def _named(part: _Part, bare_lf: bool) -> FormPart | None:
    if bare_lf:
        part.headers = [(k.replace(b"\r\n", b"\n"), v.replace(b"\r\n", b"\n")) for k, v in part.headers]
        part.data = bytearray(part.data.replace(b"\r\n", b"\n"))
    disposition, params = media_type((part.header(b"content-disposition") or b"").decode("utf-8", "replace"))
    name = params.get("name")
    if disposition != "form-data" or not name:
        return None  # Go's FormName is "" and the plugin skips the part
    value = bytes(part.data)
    encoding = part.header(b"content-transfer-encoding")
    if encoding is not None and encoding.strip().lower() not in _IDENTITY_ENCODINGS:
        raise ValueError(f"a part has the transfer encoding {encoding[:40].decode('latin-1')!r} (RFC 7578: none; "
                         f"readers differ on decoding it)")
    content_type = (part.header(b"content-type") or b"").decode("latin-1")
    return FormPart(name, content_type, value)
