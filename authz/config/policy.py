"""The ``policy:`` section: which OPA engine decides, where its policies are, how failures and logs behave."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from authz.config.types import (
    HEADER_NAME,
    ConfigError,
    HttpUrl,
    Number,
    Secret,
    Section,
    Text,
    Words,
    with_secret,
)
from authz.policy.decision_cache import DEFAULT_MAX_BYTES

__all__ = ["DEFAULT_MASK", "PolicyConfig", "RemoteOpaConfig"]

DEFAULT_MASK = (
    "/input/attributes/request/http/headers/authorization",
    "/input/attributes/request/http/headers/cookie",
    "/input/token/jwt",
)
_POINTER = re.compile(r"^(/[^/]+)+$")
_STATUS = Number(integer=True)


class RemoteOpaConfig(Section):
    """``policy.remote``: OPA's REST API, with an optional bearer token (from a file, else a named variable)."""

    url: Annotated[str, HttpUrl] | None = None  # OPA's base URL, e.g. http://127.0.0.1:8181; required by engine: remote
    bearer_token_file: Annotated[str, Text()] | None = None
    bearer_token_env: Annotated[str, Text()] | None = None
    token: SkipJsonSchema[Secret | None] = None  # the bearer token, read by load_config

    @model_validator(mode="before")
    @classmethod
    def _read_token(cls, data: Any, info: ValidationInfo) -> Any:
        return with_secret(data, info, "token", "bearer_token_file", "bearer_token_env")


class PolicyConfig(Section):
    # default: embedded when paths are set, else remote when policy.remote is, else none
    engine: Literal["none", "embedded", "remote"] = "none"
    # embedded: .rego files, data .json/.yaml files, or directories of them
    paths: Annotated[tuple[str, ...], Words(re.compile(r"^.+$"), "path")] = ()
    watch_interval_seconds: Annotated[float, Number(ge=0)] = 2.0  # embedded: poll for changes (0: only SIGHUP)
    remote: RemoteOpaConfig = RemoteOpaConfig()
    timeout_seconds: Annotated[float, Number(gt=0)] = 0.5
    # OPA unreachable / error / undefined decision
    failure_status: Annotated[Literal[503, 500, 403], BeforeValidator(_STATUS.check)] = 503
    dry_run: StrictBool = False  # decide and log, but always allow
    decision_log: Literal["off", "summary", "full"] = "summary"  # full: with the input, masked
    decision_log_mask: Annotated[tuple[str, ...], Words(_POINTER, "JSON pointer (/input/...)",
                                                        lambda v: v or DEFAULT_MASK)] = DEFAULT_MASK
    # erased from full logs too (besides CREDENTIAL_HEADERS)
    decision_log_mask_headers: Annotated[tuple[str, ...], Words(HEADER_NAME, "header name")] = ()
    # embedded, deterministic policies: decisions reused for equal inputs (0: off)
    decision_cache_size: Annotated[int, Number(ge=0, integer=True)] = 10_000
    # what the reused decisions' keys and values may hold (0: off)
    decision_cache_max_bytes: Annotated[int, Number(ge=0, integer=True)] = DEFAULT_MAX_BYTES

    @property
    def enabled(self) -> bool:
        return self.engine != "none"

    @model_validator(mode="before")
    @classmethod
    def _default_engine(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "engine" in data:
            return data
        paths = data.get("paths")
        engine = "embedded" if (paths.split() if isinstance(paths, str) else paths) else \
            "remote" if "remote" in data else None
        return {**data, "engine": engine} if engine else data

    @field_validator("failure_status", mode="wrap")
    @classmethod
    def _status_message(cls, value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValueError:
            raise ValueError(f"must be 503, 500 or 403, got {value!r}") from None

    @model_validator(mode="after")
    def _engine_settings(self) -> Self:
        if self.engine == "embedded" and not self.paths:
            raise ConfigError("paths", "the embedded engine needs at least one policy file or directory")
        if self.engine == "remote" and self.remote.url is None:
            raise ConfigError("remote.url", "is required")
        if self.engine != "remote" and self.remote.url is not None:
            raise ConfigError("remote.url", f"is only used by engine: remote (engine is {self.engine})")
        return self
