"""What the dev AS's endpoints share: RFC 6749 §5.2 error responses, the no-store headers of token answers, and
reading one form field. Development only."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

__all__ = ["NO_STORE", "form_str", "oauth_error"]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(error: str, description: str | None = None) -> web.HTTPException:
    """An RFC 6749 §5.2 error response to raise: 401 for invalid_client (with a Basic challenge), else 400."""
    body = {"error": error} if description is None else {"error": error, "error_description": description}
    kind: type[web.HTTPException] = web.HTTPUnauthorized if error == "invalid_client" else web.HTTPBadRequest
    headers = {**NO_STORE, "WWW-Authenticate": 'Basic realm="dev-as"'} if error == "invalid_client" else NO_STORE
    return kind(text=json.dumps(body), content_type="application/json", headers=headers)


def form_str(form: Mapping[str, object], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None
