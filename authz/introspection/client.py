"""The HTTP client for one authorization server's introspection endpoint (aiohttp, shared kept-alive session).

It owns what every dialect shares: client authentication, timeout, no redirects, a response size limit,
``Cache-Control: max-age`` and the mapping of transport failures and status classes to errors:

- connection failure, timeout, 5xx, 429            -> ``UpstreamUnavailable`` (503, Retry-After)
- 401/403 (our credentials rejected), 3xx, other 4xx,
  truncated or oversized body                      -> ``UpstreamMisbehaved`` (502)
- 200 and 204 are returned for the dialect to read (the token endpoint's 200 and 400: ``post_form``).

TLS: ``ca_file`` replaces the system's trusted CAs and ``client_cert_file``/``client_key_file`` are presented, on
every call of this client (introspection, metadata, JWKS, token exchange). A certificate that does not verify is a
connection failure (503): nothing from that server is believed. Those files are watched: a rotation is used by the
calls that start after it (``authz.introspection.client_tls``; ``start_tls_watch``).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from authz.config import AuthorizationServerConfig
from authz.errors import UpstreamMisbehaved, UpstreamUnavailable
from authz.http_body import read_at_most
from authz.introspection.client_auth import ClientAuth, client_auth_for
from authz.introspection.client_tls import ClientTls

__all__ = ["ASResponse", "AuthorizationServerClient"]

_ANSWERS = frozenset({200, 204})  # the introspection answers a dialect reads
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ASResponse:
    status: int
    content_type: str  # media type only, lower-case, no parameters
    body: bytes
    max_age: int | None


def _max_age(cache_control: str | None) -> int | None:
    """Only ``max-age`` bounds our cache. ``no-store``, which many ASes send on every token-endpoint answer for
    HTTP intermediaries' sake, does not forbid the gateway's own introspection cache (RFC 7662 §4)."""
    if not cache_control:
        return None
    match = _MAX_AGE.search(cache_control)
    return int(match.group(1)) if match else None


def _retry_after(value: str | None, default: int) -> int:
    if value and value.strip().isdigit():
        return max(1, min(int(value.strip()), 3600))
    return default


class AuthorizationServerClient:
    """Every HTTP call phantom-authz makes to one AS: introspection, and GETs of its metadata and JWKS."""

    def __init__(self, config: AuthorizationServerConfig, session: aiohttp.ClientSession,
                 auth: ClientAuth | None = None) -> None:
        self.config = config
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        # with a CA bundle or a client certificate: the TLS from those files, replaced when they change; else the
        # shared session, verifying with the system's CAs (or not at all: verify_tls false)
        self.tls = ClientTls(config, session) if config.ca_file or config.client_cert_file else None
        self._auth = auth or client_auth_for(config)

    @property
    def name(self) -> str:
        return self.config.name

    def start_tls_watch(self, on_result: Callable[[str], None] | None = None) -> None:
        """Watch the TLS files (when there are any); ``on_result`` hears "ok" / "error" for each rotation."""
        if self.tls is not None:
            self.tls.start(on_result)

    def retire(self) -> None:
        """No new calls will come (a reload replaced this AS): the TLS sessions close once the calls in flight end."""
        if self.tls is not None:
            self.tls.retire()

    async def aclose(self) -> None:
        if self.tls is not None:
            await self.tls.aclose()

    async def introspect(self, token: str, accept: str) -> ASResponse:
        """POST ``token=`` to the introspection endpoint; return a 200/204 answer or raise."""
        headers = {"Accept": accept}
        form = {"token": token}
        self._auth.apply(headers, form)
        return await self._send("POST", self.config.introspection_endpoint, "introspection", headers, form)

    async def post_form(self, url: str, what: str, form: dict[str, str], answers: frozenset[int]) -> ASResponse:
        """POST ``form`` with our client authentication to another endpoint of the AS (the token endpoint: RFC 8693),
        accepting JSON; an answer whose status is in ``answers`` is returned (the token endpoint's 400 carries an
        RFC 6749 error for the caller to read), the others raise as above."""
        headers = {"Accept": "application/json"}
        self._auth.apply(headers, form)
        return await self._send("POST", url, what, headers, form, answers)

    async def get(self, url: str, what: str, accept: str = "application/json") -> ASResponse:
        """GET a document of the AS (metadata, JWKS); only a 200 is returned."""
        resp = await self._send("GET", url, what, {"Accept": accept}, None)
        if resp.status != 200:
            raise UpstreamMisbehaved(f"AS {self.name}: {what} answered HTTP {resp.status}")
        return resp

    async def _send(self, method: str, url: str, what: str, headers: dict[str, str],
                    form: dict[str, str] | None, answers: frozenset[int] = _ANSWERS) -> ASResponse:
        body: bytes | None = None
        if form is not None:  # encoded here: aiohttp's FormData machinery costs more than the encoding itself
            body = urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            if self.tls is None:
                return await self._exchange(self._session, self.config.verify_tls, method, url, what, headers, body,
                                            answers)
            async with self.tls.connection() as (session, context):  # the TLS current when the call starts
                return await self._exchange(session, context, method, url, what, headers, body, answers)
        except (UpstreamUnavailable, UpstreamMisbehaved):
            raise
        except TimeoutError:
            raise UpstreamUnavailable(
                f"AS {self.name}: {what} gave no answer within {self.config.timeout_seconds:g}s",
                retry_after=self.config.retry_after_seconds,
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamMisbehaved(f"AS {self.name}: {what} body truncated or corrupt ({exc})") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise UpstreamUnavailable(
                f"AS {self.name}: {what}: cannot connect ({type(exc).__name__}: {exc})",
                retry_after=self.config.retry_after_seconds,
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamMisbehaved(f"AS {self.name}: {what}: bad HTTP response ({type(exc).__name__}: {exc})"
                                     ) from None

    async def _exchange(self, session: aiohttp.ClientSession, tls: ssl.SSLContext | bool, method: str, url: str,
                        what: str, headers: dict[str, str], body: bytes | None, answers: frozenset[int]) -> ASResponse:
        async with session.request(method, url, data=body, headers=headers, timeout=self._timeout,
                                   allow_redirects=False, ssl=tls) as resp:
            self._check_status(resp, what, answers)
            body = await self._read_limited(resp, what)
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            return ASResponse(resp.status, media_type, body, _max_age(resp.headers.get("Cache-Control")))

    def _check_status(self, resp: aiohttp.ClientResponse, what: str, answers: frozenset[int]) -> None:
        status = resp.status
        if status in answers:
            return
        if status == 429 or status >= 500:
            raise UpstreamUnavailable(
                f"AS {self.name}: {what} answered HTTP {status}",
                retry_after=_retry_after(resp.headers.get("Retry-After"), self.config.retry_after_seconds),
            )
        if status in (401, 403):
            raise UpstreamMisbehaved(
                f"AS {self.name}: {what} rejected our client credentials "
                f"(HTTP {status}; client_id {self.config.client_id!r})"
            )
        if 300 <= status < 400:
            raise UpstreamMisbehaved(f"AS {self.name}: {what} answered with a redirect (HTTP {status})")
        raise UpstreamMisbehaved(f"AS {self.name}: {what} answered HTTP {status}")

    async def _read_limited(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        limit = self.config.max_response_bytes
        body = await read_at_most(resp, limit)
        if body is None:
            raise UpstreamMisbehaved(f"AS {self.name}: {what} response exceeds max_response_bytes={limit}")
        return body
