"""Stage 1: the route's effective settings = service defaults overridden by Envoy ``context_extensions``.

Keys (all strings, as Envoy's per-route ``check_settings.context_extensions`` carries them):

``required_scopes``    scopes separated by SP (RFC 6749 §3.3), all of which the token must hold (replaces the default
                       list); ``-``: a token is needed, but no scope
``disabled``           ``true`` / ``false``: the route needs no token (``headers_to_remove`` still applies)
``as``                 name of the authorization server (from ``authorization_servers``) to introspect with
``policy``             OPA decision path (``envoy/authz/allow``, ``records/allow``); routes without one skip OPA
``keep_authorization`` ``true`` / ``false`` (default): on an allow that forwards no JWT (disabled route, CORS
                       preflight, claims-only answer), keep the client's ``Authorization`` instead of removing it
``allow_encoded_slashes`` ``true`` / ``false`` (default): the path may hold ``%2F`` inside a segment
                       (``authz.request_form``; ``parsed_path`` keeps it in its segment)

Unknown keys, empty values and bad values are a misconfiguration: the route fails closed with a 500 and one error
log line per distinct bad setting. Parsed settings are memoised per distinct extension map (routes are few;
requests many).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

from authz.config import Config
from authz.errors import RouteMisconfigured
from authz.models import RouteSettings
from authz.policy.engine import DECISION_PATH
from authz.scopes import NO_SCOPES, ScopeSyntaxError, required_scopes

__all__ = ["KNOWN_KEYS", "RouteResolver", "SettingsMemo"]

log = logging.getLogger("authz.routes")

KNOWN_KEYS = frozenset({"required_scopes", "disabled", "as", "policy", "keep_authorization", "allow_encoded_slashes"})
_MAX_MEMO = 4096

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")
V = TypeVar("V")


class SettingsMemo(Generic[K, V]):
    """Route settings parsed once per distinct key, and so is a misconfiguration: a bad route's error is remembered
    and raised afresh on every request without parsing (or logging) again. Bounded, emptied when full."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[K, V | RouteMisconfigured] = {}

    def get(self, key: K, parse: Callable[[A], V], arg: A) -> V:
        """``parse(arg)`` the first time ``key`` is seen (it may raise ``RouteMisconfigured``)."""
        found = self._entries.get(key)
        if found is None:
            try:
                found = parse(arg)
            except RouteMisconfigured as exc:
                found = exc
            if len(self._entries) >= _MAX_MEMO:
                self._entries.clear()
            self._entries[key] = found
        if isinstance(found, RouteMisconfigured):
            raise RouteMisconfigured(found.detail)
        return found


class RouteResolver:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._memo: SettingsMemo[frozenset[tuple[str, str]], RouteSettings] = SettingsMemo()
        self._default = RouteSettings(
            required_scopes=config.routes.required_scopes,
            disabled=config.routes.disabled,
            authorization_server=config.default_authorization_server,
        )

    def resolve(self, extensions: Mapping[str, str]) -> RouteSettings:
        if not extensions:
            return self._default
        return self._memo.get(frozenset(extensions.items()), self._parse_logged, extensions)

    def _parse_logged(self, ext: Mapping[str, str]) -> RouteSettings:
        try:
            return self._parse(ext)
        except RouteMisconfigured as exc:
            log.error("route misconfigured: %s (context_extensions keys: %s)", exc.detail, ", ".join(sorted(ext)))
            raise

    def _parse(self, ext: Mapping[str, str]) -> RouteSettings:
        unknown = sorted(set(ext) - KNOWN_KEYS)
        if unknown:
            raise RouteMisconfigured(f"unknown context_extensions key {unknown[0]!r}")
        empty = sorted(key for key, value in ext.items() if not value.strip())
        if empty:  # an empty value never means "none" or "off": that would fail open
            raise RouteMisconfigured(f"{empty[0]}: empty value (write the setting out, e.g. required_scopes: "
                                     f"{NO_SCOPES!r} for a route that needs a token but no scope)")
        settings = self._default
        scopes = settings.required_scopes
        if "required_scopes" in ext:
            try:
                scopes = required_scopes(ext["required_scopes"])
            except ScopeSyntaxError as exc:
                raise RouteMisconfigured(f"required_scopes: {exc}") from None
        server = ext.get("as", settings.authorization_server)
        if server not in self._config.authorization_servers:
            raise RouteMisconfigured(f"as: no authorization server named {server!r}")
        policy = ext.get("policy")
        if policy is not None:
            if not DECISION_PATH.match(policy):
                raise RouteMisconfigured(f"policy: {policy[:100]!r} is not a decision path like envoy/authz/allow")
            if not self._config.policy.enabled:
                raise RouteMisconfigured(f"policy: route names {policy!r} but no policy engine is configured")
        return RouteSettings(required_scopes=scopes, disabled=_flag(ext, "disabled", settings.disabled),
                             authorization_server=server, policy=policy,
                             keep_authorization=_flag(ext, "keep_authorization", False),
                             allow_encoded_slashes=_flag(ext, "allow_encoded_slashes", False))


def _flag(ext: Mapping[str, str], key: str, default: bool) -> bool:
    if key not in ext:
        return default
    flag = ext[key].strip().lower()
    if flag not in ("true", "false"):
        raise RouteMisconfigured(f"{key}: must be 'true' or 'false', got {ext[key][:100]!r}")
    return flag == "true"
