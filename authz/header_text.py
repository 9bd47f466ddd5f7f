"""A header value's bytes as text, the way Envoy fills its ``headers`` map (checked against Envoy 1.40): UTF-8, each
byte of an invalid sequence replaced by ``!``. gRPC mode's ``raw_value`` bytes, HTTP mode's header bytes and the
policy input's body headers all read through ``header_text``, so every encoding decides alike. Pure."""

from __future__ import annotations

import codecs

__all__ = ["ENVOY_UTF8", "header_text"]

ENVOY_UTF8 = "phantom-authz-envoy-utf8"  # the codec error handler of header_text: each invalid byte "!"


def _bang(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return "!" * (error.end - error.start), error.end


codecs.register_error(ENVOY_UTF8, _bang)


def header_text(raw: bytes) -> str:
    """A header value as Envoy's ``headers`` map carries it: UTF-8, each invalid byte ``!``."""
    return raw.decode("utf-8", ENVOY_UTF8)
