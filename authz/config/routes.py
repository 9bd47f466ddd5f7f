"""The ``routes:`` section: the service defaults every route starts from, and ``routes.rules``, the service's own route
rules (for control planes that send no per-route settings, such as Istio).

A rule names itself, says what it ``match``es (hosts, paths, methods, principals, headers) and carries the same
settings as Envoy's ``context_extensions``, typed. Rules are compiled here, once per load (``RoutesConfig.table``), so
a bad pattern or two overlapping rules are refused with the configuration, one line naming the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, Self

from pydantic import Field, PrivateAttr, StrictBool, StrictStr, field_validator, model_validator

from authz.cert_binding import MtlsBound
from authz.config.dpop import DpopMode
from authz.config.token_exchange import audience_text
from authz.config.types import HEADER_NAME, ConfigError, Marker, Model, Section, Text
from authz.policy.engine import DECISION_PATH
from authz.route_rules.patterns import HostPattern, PathPattern, PatternError, PrincipalGlob
from authz.route_rules.table import RuleError, RuleSpec, RuleTable
from authz.scopes import ScopeSyntaxError, required_scopes

__all__ = ["TOKEN_SETTINGS", "HeaderCondition", "RouteRule", "RoutesConfig", "RuleMatch",
           "token_setting_of_a_disabled_route"]

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}\Z")
_METHOD = re.compile(r"^[A-Z]{1,32}\Z")
# RFC 9728 §2: a resource identifier is an https URL without query or fragment (and here without userinfo)
_RESOURCE = re.compile(r"^https://[^/?#@\s\\]+(/[^?#\s\\]*)?\Z")
_HTTPS_URL = Text(re.compile(r"^https://[^/?#@\s]+(/\S*)?\Z"), "must be an https URL")


class _Resource(Marker):
    """An RFC 9728 resource identifier: ``https://host[:port][/path]``, no query, fragment or userinfo, the path in
    normal form (no empty or dot segments but a final ``/``)."""

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not _RESOURCE.match(value):
            raise ValueError(f"must be an https URL without query or fragment (RFC 9728 resource), got {value!r}")
        path = value.partition("://")[2].partition("/")[2]
        segments = path.split("/")[:-1] if path.endswith("/") else path.split("/")
        if path and any(s in ("", ".", "..") for s in segments):
            raise ValueError(f"path must have no empty or dot segments, got {value!r}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": _RESOURCE.pattern.replace(r"\Z", "$")}


class _Scopes(Marker):
    """Required scopes: a list of scope tokens or an SP-separated string, with the grammar of ``authz.scopes``;
    empty is an error (``"-"`` says none explicitly)."""

    def check(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, (str, list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of scopes or a space-separated string")
        try:
            return required_scopes(value if isinstance(value, str) else list(value))
        except ScopeSyntaxError as exc:
            raise ValueError(str(exc)) from None

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "array", "items": {"type": "string"}, "minItems": 1},
                          {"type": "string", "minLength": 1, "description": "space-separated; '-': no scope"}]}


def _each(parse: Callable[[str], object]) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    def check(values: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(values)) != len(values):
            raise ValueError("lists a value twice")
        for value in values:
            try:
                parse(value)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return values
    return check


def _method(value: str) -> None:
    if not _METHOD.match(value):
        raise PatternError(f"method {value!r} must be upper-case letters (GET, POST, ...)")


class HeaderCondition(Model):
    """A request header that must be present (``present: true``) or hold exactly ``exact``."""

    name: Annotated[str, Text(HEADER_NAME, "must be a header name", lower=True)]
    exact: StrictStr | None = None
    present: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        if (self.exact is None) == (self.present is None):
            raise ConfigError("", "give exactly one of exact: VALUE or present: true")
        return self


class RuleMatch(Model):
    """Every condition given must hold; a list's values are alternatives. None given: every request matches."""

    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    destination_principals: tuple[str, ...] = ()
    source_principals: tuple[str, ...] = ()
    headers: tuple[HeaderCondition, ...] = ()

    _hosts = field_validator("hosts")(_each(HostPattern.parse))
    _paths = field_validator("paths")(_each(PathPattern.parse))
    _methods = field_validator("methods")(_each(_method))
    _destinations = field_validator("destination_principals")(_each(PrincipalGlob.parse_spiffe))
    _sources = field_validator("source_principals")(_each(PrincipalGlob.parse_spiffe))

    @property
    def principals(self) -> bool:
        return bool(self.destination_principals or self.source_principals)


# The route settings only a token can meet, each with its value that asks nothing of one (None: every value asks). A
# route that is disabled needs no token, so any of these set on it would never apply: a rule is refused at load, a
# route whose Envoy or HTTP-mode settings say so fails closed (authz.routes). One list, so the two never drift apart.
TOKEN_SETTINGS: tuple[tuple[str, str | None], ...] = (
    ("required_scopes", None), ("mtls_bound", "off"), ("dpop", "off"), ("exchange_audience", None),
    ("exchange_scope", None))


def token_setting_of_a_disabled_route(value: Callable[[str], object]) -> str | None:
    """The first of ``TOKEN_SETTINGS`` that ``value(key)`` sets (None: unset) to something other than asking nothing."""
    return next((key for key, nothing in TOKEN_SETTINGS if (set_to := value(key)) is not None and set_to != nothing),
                None)


class RouteRule(Model):
    """One rule: its name, what it matches, and the settings it gives the requests it wins (unset: the defaults)."""

    name: Annotated[str, Text(_NAME, "must be 1-128 letters, digits, '.', '_' or '-'")]
    match: RuleMatch = RuleMatch()
    required_scopes: Annotated[tuple[str, ...], _Scopes()] | None = None
    disabled: StrictBool | None = None
    authorization_server: Annotated[str, Text()] | None = Field(default=None, alias="as")
    policy: Annotated[str, Text(DECISION_PATH, "must be a decision path like envoy/authz/allow")] | None = None
    keep_authorization: StrictBool | None = None
    allow_encoded_slashes: StrictBool | None = None
    mtls_bound: MtlsBound | None = None  # RFC 8705 certificate-bound tokens (authz.cert_binding)
    resource: Annotated[str, _Resource()] | None = None  # RFC 9728 resource identifier (authz.resource_metadata)
    resource_documentation: Annotated[str, _HTTPS_URL] | None = None  # ... and where it is documented
    dpop: DpopMode | None = None  # RFC 9449 DPoP-bound tokens and their proofs (authz.dpop)
    # RFC 8693: the upstream gets a token exchanged for this audience (and these scopes; "-": the AS's choice)
    exchange_audience: Annotated[str, audience_text()] | None = None
    exchange_scope: Annotated[tuple[str, ...], _Scopes()] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        needless = token_setting_of_a_disabled_route(lambda key: getattr(self, key)) if self.disabled else None
        if needless is not None:
            raise ConfigError(needless, f"a disabled rule needs no token, so {needless} would never apply")
        if self.resource_documentation is not None and self.resource is None:
            raise ConfigError("resource_documentation", "documents the rule's own resource: set resource too")
        return self

    def spec(self) -> RuleSpec:
        m = self.match
        return RuleSpec(
            self.name,
            paths=tuple(PathPattern.parse(p) for p in m.paths),
            hosts=tuple(HostPattern.parse(h) for h in m.hosts),
            methods=frozenset(m.methods),
            destination_principals=tuple(PrincipalGlob.parse(p) for p in m.destination_principals),
            source_principals=tuple(PrincipalGlob.parse(p) for p in m.source_principals),
            headers=tuple((h.name, h.exact) for h in m.headers),
        )


class RoutesConfig(Section):
    """Defaults for every route (overridden per route by the matched rule, then by Envoy's context_extensions), and
    the rules. With rules, a request no rule matches gets ``default``: ``deny`` (403), or ``defaults``."""

    required_scopes: Annotated[tuple[str, ...], _Scopes()] = ()
    disabled: StrictBool = False
    mtls_bound: MtlsBound = "off"  # RFC 8705 certificate-bound tokens: off (refused), allowed, required
    # RFC 9728: the resource identifier of every route without its own, and where it is documented
    resource: Annotated[str, _Resource()] | None = None
    resource_documentation: Annotated[str, _HTTPS_URL] | None = None
    dpop: DpopMode = "off"  # RFC 9449 DPoP (the dpop: section): off (a DPoP-bound token is refused), allowed, required
    # RFC 8693 token exchange for every route without its own (authz.token_exchange); unset: none
    exchange_audience: Annotated[str, audience_text()] | None = None
    exchange_scope: Annotated[tuple[str, ...], _Scopes()] | None = None
    default: Literal["deny", "defaults"] = "deny"
    rules: tuple[RouteRule, ...] = ()
    _table: RuleTable | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _compile(self) -> Self:
        if self.resource_documentation is not None and self.resource is None:
            raise ConfigError("resource_documentation", "documents routes.resource: set it too")
        documented = {self.resource: self.resource_documentation} if self.resource_documentation else {}
        for index, rule in enumerate(self.rules):
            if rule.resource is None or rule.resource_documentation is None:
                continue
            if documented.setdefault(rule.resource, rule.resource_documentation) != rule.resource_documentation:
                raise ConfigError(rule_key(self, index, "resource_documentation"),
                                  f"{rule.resource} is documented elsewhere as {documented[rule.resource]}")
        seen: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ConfigError(rule_key(self, index, "name"), f"rule {seen[rule.name]} has the same name")
            seen[rule.name] = index
        if self.rules:
            try:
                self._table = RuleTable([rule.spec() for rule in self.rules])
            except RuleError as exc:
                raise ConfigError(rule_key(self, exc.rule), exc.why) from None
        return self

    @property
    def documentation(self) -> dict[str, str]:
        """RFC 9728 ``resource_documentation`` by resource identifier."""
        found = {rule.resource: rule.resource_documentation for rule in self.rules
                 if rule.resource is not None and rule.resource_documentation is not None}
        if self.resource is not None and self.resource_documentation is not None:
            found[self.resource] = self.resource_documentation
        return found

    @property
    def table(self) -> RuleTable | None:
        """The compiled rules (None: no rules, every request gets the defaults)."""
        return self._table


def rule_key(routes: RoutesConfig, index: int, *keys: str) -> str:
    """A rule's config key for messages, relative to ``routes``: ``rules[2] (records-read).match``."""
    return ".".join((f"rules[{index}] ({routes.rules[index].name})", *keys))
