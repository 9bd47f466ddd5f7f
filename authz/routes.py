"""Stage 1: the route's effective settings, per key: Envoy's ``context_extensions`` (or HTTP mode's check-path
settings) > the route rule the request matches (``routes.rules``, compiled in ``authz.route_rules``) > the service
defaults (``routes.required_scopes``, ``routes.disabled``, ``default_authorization_server``). With rules configured, a
request that matches none is denied (403 ``no_route_rule``) unless ``routes.default: defaults``.

Keys (all strings, as Envoy's per-route ``check_settings.context_extensions`` carries them; a rule has the same keys,
typed):

``required_scopes``    scopes separated by SP (RFC 6749 §3.3), all of which the token must hold (replaces the default
                       list); ``-``: a token is needed, but no scope
``disabled``           ``true`` / ``false``: the route needs no token (``headers_to_remove`` still applies)
``as``                 name of the authorization server (from ``authorization_servers``) to introspect with
``policy``             OPA decision path (``envoy/authz/allow``, ``records/allow``); routes without one skip OPA
``keep_authorization`` ``true`` / ``false`` (default): on an allow that forwards no JWT (disabled route, CORS
                       preflight, claims-only answer), keep the client's ``Authorization`` instead of removing it
``allow_encoded_slashes`` ``true`` / ``false`` (default): the path may hold ``%2F`` inside a segment
                       (``authz.request_form``; ``parsed_path`` keeps it in its segment)
``mtls_bound``         ``off`` (default; a certificate-bound token is refused), ``allowed``, ``required``: RFC 8705
                       tokens bound to the client's TLS certificate (``authz.cert_binding``)
``dpop``               ``off`` (default; a DPoP-bound token is refused), ``allowed`` (Bearer, or DPoP with a proof),
                       ``required`` (DPoP only): RFC 9449 DPoP-bound tokens and their proofs (``authz.dpop``)
``exchange_audience``  RFC 8693: the upstream gets a token the route's AS exchanged for this audience
                       (``authz.token_exchange``); the AS must have a ``token_exchange`` section
``exchange_scope``     ... with these scopes (SP-separated; ``-``: as the AS decides); needs ``exchange_audience``

Unknown keys, empty values and bad values are a misconfiguration: the route fails closed with a 500 and one error
log line per distinct bad setting. Parsed settings are memoised per matched rule and distinct extension map (routes
are few; requests many).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

from authz.cert_binding import MTLS_BOUND_MODES
from authz.config import Config, RouteRule
from authz.config.dpop import DPOP_MODES
from authz.config.routes import token_setting_of_a_disabled_route
from authz.config.token_exchange import AUDIENCE
from authz.errors import MalformedRequest, NoRouteRule, RouteMisconfigured
from authz.models import RequestInfo, RouteSettings
from authz.policy.engine import DECISION_PATH
from authz.route_rules.table import Facts, Match, RuleTable
from authz.scopes import NO_SCOPES, ScopeSyntaxError, required_scopes

__all__ = ["KNOWN_KEYS", "RouteResolver", "SettingsMemo"]

log = logging.getLogger("authz.routes")

KNOWN_KEYS = frozenset({"required_scopes", "disabled", "as", "policy", "keep_authorization", "allow_encoded_slashes",
                        "mtls_bound", "dpop", "exchange_audience", "exchange_scope"})
_MAX_MEMO = 4096
_NO_PARAMS: Mapping[str, str] = {}

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
    """A request's effective settings, per key: ``context_extensions`` > the matched route rule > the defaults."""

    def __init__(self, config: Config) -> None:
        self._config = config
        routes = config.routes
        self._memo: SettingsMemo[tuple[int, frozenset[tuple[str, str]]], RouteSettings] = SettingsMemo()
        self._default = RouteSettings(
            required_scopes=routes.required_scopes,
            disabled=routes.disabled,
            authorization_server=config.default_authorization_server,
            mtls_bound=routes.mtls_bound,
            resource=routes.resource,
            dpop=routes.dpop,
            exchange_audience=routes.exchange_audience,
            exchange_scope=routes.exchange_scope or None,
        )
        self._table = routes.table
        self._unmatched = None if self._table is None or routes.default == "defaults" else NoRouteRule()
        self._rules = tuple(self._for_rule(rule) for rule in routes.rules)

    def _for_rule(self, rule: RouteRule) -> RouteSettings:
        base = self._default
        return RouteSettings(
            required_scopes=base.required_scopes if rule.required_scopes is None else rule.required_scopes,
            disabled=base.disabled if rule.disabled is None else rule.disabled,
            authorization_server=rule.authorization_server or base.authorization_server,
            policy=rule.policy,
            keep_authorization=bool(rule.keep_authorization),
            allow_encoded_slashes=bool(rule.allow_encoded_slashes),
            rule=rule.name,
            mtls_bound=rule.mtls_bound or base.mtls_bound,
            resource=rule.resource or base.resource,
            dpop=rule.dpop or base.dpop,
            exchange_audience=rule.exchange_audience or base.exchange_audience,
            exchange_scope=base.exchange_scope if rule.exchange_scope is None else rule.exchange_scope or None,
        )

    def resolve(self, request: RequestInfo) -> tuple[RouteSettings, Mapping[str, str]]:
        """The settings and the matched rule's path parameters. Raises ``NoRouteRule`` (no rule matches, default
        deny) or ``RouteMisconfigured`` (bad context_extensions). The path must be in normal form already."""
        settings, params, rule = self._default, _NO_PARAMS, -1
        if self._table is not None:
            facts = Facts(request.method, request.host, request.path.partition("?")[0], request.headers,
                          request.source_principal, request.destination_principal)
            found = self._table.match(facts)
            if ";" in facts.path or "%3B" in facts.path or "%3b" in facts.path:
                _refuse_steering_parameters(self._table, facts, found)
            if found is not None:
                rule, params = found.rule, found.params
                settings = self._rules[rule]
            elif self._unmatched is not None:
                raise NoRouteRule(f"no route rule matches (host {request.host[:100]!r})")
        extensions = request.context_extensions
        if extensions:
            settings = self._memo.get((rule, frozenset(extensions.items())), self._parse_logged,
                                      (settings, extensions))
        return settings, params

    def configured(self) -> tuple[RouteSettings, ...]:
        """The settings of the routes the configuration itself defines: each rule's, and the defaults' unless rules
        leave no request to them (``routes.default: deny``)."""
        return self._rules if self._unmatched is not None else (self._default, *self._rules)

    def _parse_logged(self, arg: tuple[RouteSettings, Mapping[str, str]]) -> RouteSettings:
        try:
            return self._parse(*arg)
        except RouteMisconfigured as exc:
            log.error("route misconfigured: %s (context_extensions keys: %s)", exc.detail, ", ".join(sorted(arg[1])))
            raise

    def _parse(self, settings: RouteSettings, ext: Mapping[str, str]) -> RouteSettings:
        unknown = sorted(set(ext) - KNOWN_KEYS)
        if unknown:
            raise RouteMisconfigured(f"unknown context_extensions key {unknown[0]!r}")
        empty = sorted(key for key, value in ext.items() if not value.strip())
        if empty:  # an empty value never means "none" or "off": that would fail open
            raise RouteMisconfigured(f"{empty[0]}: empty value (write the setting out, e.g. required_scopes: "
                                     f"{NO_SCOPES!r} for a route that needs a token but no scope)")
        scopes = settings.required_scopes
        if "required_scopes" in ext:
            try:
                scopes = required_scopes(ext["required_scopes"])
            except ScopeSyntaxError as exc:
                raise RouteMisconfigured(f"required_scopes: {exc}") from None
        server = ext.get("as", settings.authorization_server)
        if server not in self._config.authorization_servers:
            raise RouteMisconfigured(f"as: no authorization server named {server!r}")
        policy = settings.policy
        if "policy" in ext:
            policy = ext["policy"]
            if not DECISION_PATH.match(policy):
                raise RouteMisconfigured(f"policy: {policy[:100]!r} is not a decision path like envoy/authz/allow")
            if not self._config.policy.enabled:
                raise RouteMisconfigured(f"policy: route names {policy!r} but no policy engine is configured")
        disabled = _flag(ext, "disabled", settings.disabled)
        needless = token_setting_of_a_disabled_route(ext.get) if disabled else None
        if needless is not None:
            raise RouteMisconfigured(f"{needless}: the route is disabled (needs no token), so {needless} would never "
                                     "apply")
        audience, exchange_scope = self._exchange(ext, settings, server, disabled)
        return RouteSettings(required_scopes=scopes, disabled=disabled, authorization_server=server, policy=policy,
                             resource=settings.resource,
                             keep_authorization=_flag(ext, "keep_authorization", settings.keep_authorization),
                             allow_encoded_slashes=_flag(ext, "allow_encoded_slashes",
                                                         settings.allow_encoded_slashes),
                             rule=settings.rule, mtls_bound=_choice(ext, "mtls_bound", settings.mtls_bound,
                                                                    MTLS_BOUND_MODES),
                             dpop=_choice(ext, "dpop", settings.dpop, DPOP_MODES),
                             exchange_audience=audience, exchange_scope=exchange_scope)

    def _exchange(self, ext: Mapping[str, str], settings: RouteSettings, server: str,
                  disabled: bool) -> tuple[str | None, tuple[str, ...] | None]:
        """The route's RFC 8693 exchange: audience and scopes, over the rule's (a disabled route exchanges none)."""
        audience, scope = settings.exchange_audience, settings.exchange_scope
        if "exchange_audience" in ext:
            audience = ext["exchange_audience"]
            if not AUDIENCE.match(audience):
                raise RouteMisconfigured(f"exchange_audience: {audience[:100]!r} is not one audience (1-512 "
                                         "printable ASCII characters, no spaces)")
        if "exchange_scope" in ext:
            try:
                scope = required_scopes(ext["exchange_scope"]) or None
            except ScopeSyntaxError as exc:
                raise RouteMisconfigured(f"exchange_scope: {exc}") from None
        if disabled:
            return None, None
        if audience is None and scope is not None:
            raise RouteMisconfigured("exchange_scope: narrows a token exchange, set exchange_audience too")
        if audience is not None and self._config.authorization_servers[server].token_exchange is None:
            raise RouteMisconfigured(f"exchange_audience: authorization server {server!r} does not exchange tokens "
                                     "(no token_exchange section)")
        return audience, scope


def _refuse_steering_parameters(table: RuleTable, facts: Facts, found: Match | None) -> None:
    """Servlet containers (Tomcat, Jetty, Spring) drop each segment's ``;`` parameters before mapping a path, so
    ``/api/admin;x/users`` reaches the handler of ``/api/admin/users``. Match the path that way too: when the two
    readings choose different rules (or one none), which one the upstream acts on is unknown, so the request is
    refused (400) rather than given the laxer. (A method's case cannot steer: stage 0 refuses a method with a
    lower-case letter, ``authz.request_form.check_method``.)"""
    facts.segments = tuple(segment.partition(";")[0] for segment in facts.segments)
    other = table.match(facts)
    if (found.rule if found is not None else None) != (other.rule if other is not None else None):
        raise MalformedRequest("the request's ';' path parameters change which route rule matches (a server that "
                               "drops them reads another path)")


def _choice(ext: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    if key not in ext:
        return default
    if ext[key] not in choices:
        raise RouteMisconfigured(f"{key}: must be one of {', '.join(choices)}, got {ext[key][:100]!r}")
    return ext[key]


def _flag(ext: Mapping[str, str], key: str, default: bool) -> bool:
    if key not in ext:
        return default
    flag = ext[key].strip().lower()
    if flag not in ("true", "false"):
        raise RouteMisconfigured(f"{key}: must be 'true' or 'false', got {ext[key][:100]!r}")
    return flag == "true"
