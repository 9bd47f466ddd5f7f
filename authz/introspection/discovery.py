"""An endpoint from the AS metadata: ``metadata_url`` if configured, else RFC 8414
(``/.well-known/oauth-authorization-server`` inserted before the issuer's path), then OIDC discovery
(``<issuer>/.well-known/openid-configuration``). The document's ``issuer`` must equal ours (RFC 8414 §3.3).
Discovery fetches only ``https`` (the metadata and the endpoint it names) unless the AS is configured with
``allow_insecure_http: true`` (development), and never an endpoint carrying ``user:password@``. Used for the
``jwks_uri`` (``authz.introspection.jwks``) and the ``token_endpoint`` (``authz.token_exchange``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from authz.config import AuthorizationServerConfig
from authz.errors import UpstreamMisbehaved
from authz.introspection.client import AuthorizationServerClient
from authz.json_body import parse_json_object

__all__ = ["discover", "metadata_urls"]


def metadata_urls(issuer: str) -> list[str]:
    """Where the AS metadata may be, in the order RFC 8414 and OIDC Discovery give."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{issuer.rstrip('/')}/.well-known/openid-configuration",
    ]


async def discover(config: AuthorizationServerConfig, client: AuthorizationServerClient, member: str) -> str:
    """The URL the AS metadata names as ``member`` (``jwks_uri``, ``token_endpoint``); raises ``UpstreamMisbehaved``
    (or ``UpstreamUnavailable``, the AS unreachable) when there is none we may use."""
    issuer = config.issuer
    assert issuer is not None, "the configuration requires an issuer to discover by"
    candidates = [config.metadata_url] if config.metadata_url else metadata_urls(issuer)
    failure: UpstreamMisbehaved | None = None
    for url in candidates:
        _require_https(config, url, "metadata URL")
        try:
            resp = await client.get(url, "metadata")
        except UpstreamMisbehaved as exc:  # e.g. 404: try the next well-known location
            failure = exc
            continue
        doc = parse_json_object(resp.body, f"AS {config.name}: metadata", UpstreamMisbehaved)
        if doc.get("issuer") != issuer:
            raise UpstreamMisbehaved(f"AS {config.name}: metadata at {url} names issuer {doc.get('issuer')!r}")
        found = doc.get(member)
        if not isinstance(found, str) or not found.startswith(("https://", "http://")):
            raise UpstreamMisbehaved(f"AS {config.name}: metadata at {url} has no usable {member}")
        _require_https(config, found, f"{member} in the metadata at {url}")
        if urlsplit(found).username is not None:  # as a configured URL: a password would reach logs and spans
            raise UpstreamMisbehaved(f"AS {config.name}: the {member} in the metadata at {url} carries credentials "
                                     "(user:password@)")
        return found
    assert failure is not None
    raise failure


def _require_https(config: AuthorizationServerConfig, url: str, what: str) -> None:
    """What discovery finds comes over https only, unless the AS allows plain http (development)."""
    if not url.startswith("https://") and not config.allow_insecure_http:
        raise UpstreamMisbehaved(f"AS {config.name}: {what} is not https ({url[:200]}); set allow_insecure_http: "
                                 f"true for development only")
