"""``authorization_servers.<name>.token_exchange``: the AS exchanges tokens (RFC 8693) for routes that ask for it.

A route asks with ``exchange_audience`` (and optionally ``exchange_scope``): route rules, ``routes`` defaults,
``context_extensions`` or HTTP mode's ``;settings`` (``authz.token_exchange``). The section says how to ask this AS:
where its token endpoint is (``token_endpoint``, else its RFC 8414 metadata's, found like its keys), which token is
the subject (``subject_token``) and which kind of token to ask for (``requested_token_type``). The gateway
authenticates there as it does for introspection (``client_auth_method``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from authz.config.types import HttpUrl, Model, Text

__all__ = ["AUDIENCE", "RequestedTokenType", "SubjectToken", "TokenExchangeConfig"]

# an RFC 8693 audience: a logical name or a URI, sent form-encoded (no space: one audience, not a list)
AUDIENCE = re.compile(r"^[!-~]{1,512}\Z")
SubjectToken = Literal["opaque", "jwt"]
RequestedTokenType = Literal["jwt", "access_token"]


class TokenExchangeConfig(Model):
    """How the gateway exchanges a token at this AS. ``subject_token``: ``opaque`` (the default) sends the token the
    client presented (``urn:ietf:params:oauth:token-type:access_token``: an access token this AS issued), ``jwt`` the
    JWT its introspection returned (``urn:ietf:params:oauth:token-type:jwt``; only for dialects that return one).
    ``requested_token_type``: ``jwt`` (the default; the issued JWT is verified with the AS's keys before it goes
    upstream) or ``access_token`` (whatever the AS issues for the audience, forwarded as it is)."""

    token_endpoint: Annotated[str, HttpUrl] | None = None  # default: token_endpoint of the AS metadata (RFC 8414)
    subject_token: SubjectToken = "opaque"
    requested_token_type: RequestedTokenType = "jwt"


def audience_text() -> Text:
    """The value type of ``exchange_audience`` in the config file."""
    return Text(AUDIENCE, "must be one audience: 1-512 printable ASCII characters, no spaces")
