"""What every config section is built from: the frozen, closed base model, the masked ``Secret``, the one-line
``ConfigError``, and the value types whose validators give the messages operators read (``must be > 0, got -1``).

A value type is an ``Annotated`` marker (``Annotated[float, Number(gt=0)]``): one validator and its JSON Schema side
by side, so what the loader accepts and what ``authz config-schema`` publishes are written once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

__all__ = ["HEADER_NAME", "ConfigError", "HttpUrl", "Listen", "LoadContext", "Marker", "Model", "Number", "Secret",
           "Section", "Text", "Words", "loading", "read_file", "secret_from", "with_secret"]

HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # an RFC 9110 token


class ConfigError(ValueError):
    """A configuration problem; ``str()`` is one line naming the key and why. Raised inside a model's validator, its
    key is relative to that model; the loader prefixes the model's own dotted path."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}" if key else why)
        self.key = key
        self.why = why


class Secret:
    """A secret string whose ``repr``/``str`` never shows the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(cls._of)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "minLength": 1, "writeOnly": True}

    @classmethod
    def _of(cls, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str) or not value:
            raise ValueError("must be a non-empty string")
        return cls(value)


@dataclass(frozen=True, slots=True)
class LoadContext:
    """Validation context of ``load_config``: the environment (``*_env`` secret sources) and the authorization servers
    whose file holds an inline ``client_secret`` (refused). Models built in code, without it, take secrets as given."""

    environ: Mapping[str, str]
    inline_secrets: frozenset[str] = frozenset()


def loading(info: ValidationInfo) -> LoadContext | None:
    return info.context if isinstance(info.context, LoadContext) else None


class Model(BaseModel):
    """Frozen; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)


class Section(Model):
    """A section of the file; an empty one (``server:`` with nothing under it) takes every default."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_defaults(cls, data: Any) -> Any:
        return {} if data is None else data


class Marker:
    """An ``Annotated`` value type: ``check`` validates (raising ``ValueError`` with the operator's message) and
    ``schema`` is its JSON Schema."""

    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def schema(self) -> JsonSchemaValue:
        raise NotImplementedError

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return self.schema()


@dataclass(frozen=True)
class Number(Marker):
    """A finite number (never a boolean or a string), ``> gt`` or ``>= ge``, ``<= le``; whole when ``integer``."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    integer: bool = False

    def check(self, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        if self.integer and not float(value).is_integer():
            raise ValueError("must be a whole number")
        if self.gt is not None and not value > self.gt:
            raise ValueError(f"must be > {self.gt:g}, got {value}")
        if self.ge is not None and not value >= self.ge:
            raise ValueError(f"must be >= {self.ge:g}, got {value}")
        if self.le is not None and not value <= self.le:
            raise ValueError(f"must be <= {self.le:g}, got {value}")
        return int(value) if self.integer else float(value)

    def schema(self) -> JsonSchemaValue:
        out: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.gt is not None:
            out["exclusiveMinimum"] = self.gt
        if self.ge is not None:
            out["minimum"] = self.ge
        if self.le is not None:
            out["maximum"] = self.le
        return out


@dataclass(frozen=True)
class Text(Marker):
    """A non-empty string, optionally matching ``pattern`` (else ``why``, with the value unless it may hold a
    credential: ``quote=False``), optionally lower-cased."""

    pattern: re.Pattern[str] | None = None
    why: str = ""
    lower: bool = False
    quote: bool = True

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError("must be a non-empty string")
        if self.pattern is not None and not self.pattern.search(value):
            raise ValueError(f"{self.why}, got {value!r}" if self.quote else self.why)
        return value.lower() if self.lower else value

    def schema(self) -> JsonSchemaValue:
        out: dict[str, Any] = {"type": "string", "minLength": 1}
        if self.pattern is not None:
            out["pattern"] = self.pattern.pattern.replace(r"\Z", "$")
        return out


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")


@dataclass(frozen=True)
class Url(Text):
    """A URL with no ``user:password@``: a credential in a URL shows in every line that names the URL (the JWKS's
    "loaded ... from", an exporter's warnings, an AS error), so it is refused, and the refusal does not show it."""

    def check(self, value: Any) -> str:
        if isinstance(value, str) and _USERINFO.match(value):
            raise ValueError("must not carry user:password@ (it would show wherever the URL is named): give the "
                             "credential its own setting (the AS's client_auth_method, policy.remote's "
                             "bearer_token_file, OTEL_EXPORTER_OTLP_HEADERS)")
        return super().check(value)


HttpUrl = Url(re.compile(r"^https?://[^/\s]+"), "must be an http(s) URL")


@dataclass(frozen=True)
class Words(Marker):
    """A list of strings, or one string of space-separated words; each matches ``pattern`` (else ``'x' is not a valid
    <what>``); ``then`` maps the tuple (lower-casing, a default for an empty list)."""

    pattern: re.Pattern[str]
    what: str
    then: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None

    def check(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of strings")
        for item in value:
            if not self.pattern.match(item):
                raise ValueError(f"{item!r} is not a valid {self.what}")
        return self.then(tuple(value)) if self.then is not None else tuple(value)

    def schema(self) -> JsonSchemaValue:
        item = {"type": "string", "pattern": self.pattern.pattern.replace(r"\Z", "$")}
        return {"anyOf": [{"type": "array", "items": item}, {"type": "string", "description": "space-separated"}]}


@dataclass(frozen=True)
class Listen(Marker):
    """``HOST:PORT`` or ``unix:PATH``. ``optional``: empty, ``false`` or ``null`` turn it off (``None``);
    ``loopback``: a TCP address must be a loopback one."""

    optional: bool = False
    loopback: bool = False

    def check(self, value: Any) -> str | None:
        if self.optional and value in (None, "", False):
            return None
        if not isinstance(value, str) or not value:
            raise ValueError("must be HOST:PORT, unix:PATH, or empty to disable" if self.optional
                             else "must be a non-empty string")
        if value.startswith("unix:"):
            if len(value) <= len("unix:"):
                raise ValueError("unix socket address needs a path")
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT or unix:PATH, got {value!r}")
        if self.loopback and host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"must be a loopback address or a unix socket (operators only), got {value!r}")
        return value

    def schema(self) -> JsonSchemaValue:
        address: JsonSchemaValue = {"type": "string", "pattern": r"^(unix:.+|.+:[0-9]{1,5})$"}
        return {"anyOf": [address, {"const": ""}, {"const": False}, {"type": "null"}]} if self.optional else address


def read_file(value: Any, key: str) -> Secret:
    """The stripped content of the file named by ``value`` (the key ``key``): a secret, never empty."""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a non-empty string")
    path = Path(value)
    try:
        content = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None
    if not content:
        raise ConfigError(key, f"{path} is empty")
    return Secret(content)


def with_secret(data: Any, info: ValidationInfo, key: str, file_key: str, env_key: str) -> Any:
    """A model's ``mode="before"`` step: while loading a file, ``data`` with ``key`` read from the file named under
    ``file_key`` or the variable named under ``env_key`` (``secret_from``); ``key`` itself in the file is refused."""
    context = loading(info)
    if context is None or not isinstance(data, Mapping):
        return data
    if key in data:
        raise ConfigError(key, f"must not be inline in the config file; use {file_key} or {env_key}")
    secret = secret_from(data, file_key, env_key, context.environ)
    return data if secret is None else {**data, key: secret}


def secret_from(data: Mapping[str, Any], file_key: str, env_key: str, environ: Mapping[str, str]) -> Secret | None:
    """The secret named by ``data``: the file under ``file_key``, else the variable under ``env_key``, else None."""
    if file_key in data:
        return read_file(data[file_key], file_key)
    if env_key not in data:
        return None
    name = data[env_key]
    if not isinstance(name, str) or not name:
        raise ConfigError(env_key, "must be a non-empty string")
    if not environ.get(name):  # a name unlike a variable's is not shown: it may be the secret, written in its place
        shown = (f"environment variable {name}" if _ENV_NAME.fullmatch(name) else
                 "the environment variable named (the name is not shown: is it the secret itself?)")
        raise ConfigError(env_key, f"{shown} is not set or empty")
    return Secret(environ[name])
