"""The ``policy:`` section: which OPA engine decides, where its policies are, how failures and logs behave."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from authz.config_section import ConfigError, Secret, Section, read_file, url
from authz.policy.decision_cache import DEFAULT_MAX_BYTES

__all__ = ["DEFAULT_MASK", "PolicyConfig", "parse_policy"]

DEFAULT_MASK = (
    "/input/attributes/request/http/headers/authorization",
    "/input/attributes/request/http/headers/cookie",
    "/input/token/jwt",
)
_POINTER = re.compile(r"^(/[^/]+)+$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # an RFC 9110 token


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    engine: str = "none"  # none | embedded | remote
    paths: tuple[str, ...] = ()  # embedded: .rego files, data .json/.yaml files, or directories of them
    watch_interval_seconds: float = 2.0  # embedded: poll the files for changes (0: only SIGHUP reloads)
    remote_url: str | None = None  # remote: OPA's base URL, e.g. http://127.0.0.1:8181
    remote_token: Secret | None = None  # remote: bearer token for OPA's own authentication
    timeout_seconds: float = 0.5
    failure_status: int = 503  # OPA unreachable / error / undefined decision: 503, 500 or 403
    dry_run: bool = False  # decide and log, but always allow
    decision_log: str = "summary"  # off | summary | full (with the input, masked)
    decision_log_mask: tuple[str, ...] = ()  # parse_policy fills in DEFAULT_MASK
    decision_log_mask_headers: tuple[str, ...] = ()  # erased from full logs too (besides CREDENTIAL_HEADERS)
    decision_cache_size: int = 10_000  # embedded, deterministic policies: decisions reused for equal inputs (0: off)
    decision_cache_max_bytes: int = DEFAULT_MAX_BYTES  # what the reused decisions' keys and values may hold (0: off)

    @property
    def enabled(self) -> bool:
        return self.engine != "none"


def parse_policy(sec: Section, environ: Mapping[str, str]) -> PolicyConfig:
    paths = sec.strings("paths", re.compile(r"^.+$"), "path")
    default_engine = "embedded" if paths else "remote" if sec.has("remote") else "none"
    engine = sec.choice("engine", default_engine, ("none", "embedded", "remote"))
    remote = sec.section("remote")
    token: Secret | None = None
    if remote.has("bearer_token_file"):
        token = Secret(read_file(remote, "bearer_token_file"))
    elif remote.has("bearer_token_env"):
        name = remote.str_("bearer_token_env")
        if not environ.get(name):
            raise ConfigError(remote.key("bearer_token_env"), f"environment variable {name} is not set or empty")
        token = Secret(environ[name])
    result = PolicyConfig(
        engine=engine,
        paths=paths,
        watch_interval_seconds=sec.number("watch_interval_seconds", 2.0, minimum=-1e-9),
        remote_url=url(remote, "url", required=engine == "remote") if engine == "remote" else None,
        remote_token=token,
        timeout_seconds=sec.number("timeout_seconds", 0.5),
        failure_status=int(sec.number("failure_status", 503, integer=True)),
        dry_run=sec.boolean("dry_run", False),
        decision_log=sec.choice("decision_log", "summary", ("off", "summary", "full")),
        decision_log_mask=sec.strings("decision_log_mask", _POINTER, "JSON pointer (/input/...)")
        or DEFAULT_MASK,
        decision_log_mask_headers=sec.strings("decision_log_mask_headers", _HEADER_NAME, "header name"),
        decision_cache_size=int(sec.number("decision_cache_size", 10_000, integer=True, minimum=-1e-9)),
        decision_cache_max_bytes=int(sec.number("decision_cache_max_bytes", DEFAULT_MAX_BYTES, integer=True,
                                                minimum=-1e-9)),
    )
    if result.failure_status not in (500, 503, 403):
        raise ConfigError(sec.key("failure_status"), f"must be 503, 500 or 403, got {result.failure_status}")
    if engine == "embedded" and not paths:
        raise ConfigError(sec.key("paths"), "the embedded engine needs at least one policy file or directory")
    if engine != "remote" and remote.has("url"):
        raise ConfigError(remote.key("url"), f"is only used by engine: remote (engine is {engine})")
    remote.done()
    sec.done()
    return result
