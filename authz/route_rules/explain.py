"""``authz routes explain``: which route rule a request matches, the settings it gets, and why the other rules lost.

    authz routes explain --config authz.yaml --host api.example.com --path /records/alice --method GET \
        [--principal spiffe://cluster.local/ns/web/sa/frontend] [--destination-principal SPIFFE] [--header N=V]

Exit status: 0 when the request gets settings (a rule, or the defaults), 1 when it would be refused (no rule and
``routes.default: deny``, or a path not in normal form), 2 for a configuration or usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from authz.config import Config, ConfigError, load_config
from authz.errors import AuthzError, MalformedRequest
from authz.models import RequestInfo, RouteSettings
from authz.request_form import check_method, path_problem
from authz.route_rules.table import Facts
from authz.routes import RouteResolver

__all__ = ["explain", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authz routes", description="inspect the service's route rules")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("explain", help="show the rule a request matches and why the others do not")
    cmd.add_argument("--config", required=True, help="YAML configuration file")
    cmd.add_argument("--host", required=True, help="the request's :authority (Host)")
    cmd.add_argument("--path", required=True, help="the request path (a query is ignored)")
    cmd.add_argument("--method", default="GET")
    cmd.add_argument("--principal", help="the caller's SPIFFE id (Envoy's source.principal)")
    cmd.add_argument("--destination-principal", help="the workload's SPIFFE id (Envoy's destination.principal)")
    cmd.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", help="a request header")
    return parser


def explain(config: Config, request: RequestInfo) -> tuple[int, list[str]]:
    """(exit status, lines) for ``request`` under ``config``."""
    lines = [f"request: {request.method} {request.host} {request.path} (source principal: "
             f"{request.source_principal or '-'}, destination principal: {request.destination_principal or '-'})"]
    try:
        check_method(request.method)
    except MalformedRequest as exc:
        return 1, [*lines, f"refused before any rule: 400 invalid_request, {exc.detail}"]
    problem = path_problem(request.path.partition("?")[0], allow_encoded_slashes=True)
    if problem is not None:
        return 1, [*lines, f"refused before any rule: 400 invalid_request, path not in normal form ({problem})"]
    routes = config.routes
    table = routes.table
    try:
        settings, params = RouteResolver(config).resolve(request)
    except MalformedRequest as exc:  # ';' parameters that change which rule matches
        return 1, [*lines, f"refused before any rule: 400 invalid_request, {exc.detail}"]
    except AuthzError as exc:
        lines.append(f"match: no rule; routes.default is {routes.default}: {exc.status} {exc.reason}")
        settings = None
    if table is None:
        lines.append("match: no rules are configured; every request gets the service defaults")
    elif settings is not None and settings.rule is None:
        lines.append("match: no rule; routes.default is defaults: the service defaults apply")
    elif settings is not None:
        index = next(i for i, rule in enumerate(routes.rules) if rule.name == settings.rule)
        lines.append(f"match: rule {index} ({settings.rule})")
        if params:
            lines.append("params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if settings is not None:
        lines += ["effective settings:", *_settings(settings)]
    if table is not None:
        facts = Facts(request.method, request.host, request.path.partition("?")[0], request.headers,
                      request.source_principal, request.destination_principal)
        _, reasons = table.explain(facts)
        lines += ["other rules:" if settings is not None and settings.rule is not None else "rules:",
                  *(f"  rule {i} ({routes.rules[i].name}): {why}" for i, why in reasons)]
    return (0 if settings is not None else 1), lines


def _settings(settings: RouteSettings) -> list[str]:
    return [f"  required_scopes: {' '.join(settings.required_scopes) or '(none)'}",
            f"  disabled: {str(settings.disabled).lower()}",
            f"  as: {settings.authorization_server}",
            f"  policy: {settings.policy or '(none)'}",
            f"  keep_authorization: {str(settings.keep_authorization).lower()}",
            f"  mtls_bound: {settings.mtls_bound}",
            f"  resource: {settings.resource or '(none)'}",
            f"  allow_encoded_slashes: {str(settings.allow_encoded_slashes).lower()}",
            f"  dpop: {settings.dpop}",
            f"  exchange_audience: {settings.exchange_audience or '(none: the JWT goes upstream)'}",
            f"  exchange_scope: {' '.join(settings.exchange_scope or ()) or '(as the AS decides)'}"]


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"authz routes: --header {item!r} must be NAME=VALUE", file=sys.stderr)
            return 2
        headers[name.strip().lower()] = value
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"authz: config error: {exc}", file=sys.stderr)
        return 2
    request = RequestInfo(args.method, args.path, args.host, headers, (), {},
                          source_principal=args.principal, destination_principal=args.destination_principal)
    status, lines = explain(config, request)
    print("\n".join(lines))
    return status
