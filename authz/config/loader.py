"""``load_config``: one YAML file plus ``AUTHZ__``-prefixed environment overrides, validated by the models into
``Config``; every problem is one ``ConfigError`` line naming its dotted key. ``config_schema``: the file's JSON Schema.

File names in it (every ``*_file`` key, ``policy.paths``) are relative to the config file's directory.

Environment overrides: ``AUTHZ__SERVER__LISTEN=unix:/run/authz.sock`` sets ``server.listen``; the value is read as a
YAML scalar or flow sequence (``AUTHZ__HEADERS_TO_REMOVE='[x-user-id, x-role]'``), except a ``client_secret``,
which is taken verbatim.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from authz.config.models import NO_SERVERS, Config
from authz.config.types import ConfigError, LoadContext

__all__ = ["ENV_PREFIX", "config_schema", "load_config"]

ENV_PREFIX = "AUTHZ__"
_VERBATIM = frozenset({"client_secret"})  # override values taken as-is, not read as YAML
_MESSAGES = {  # pydantic's error types, in our words
    "extra_forbidden": "unknown key",
    "missing": "is required",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "bool_type": "must be true or false",
    "string_type": "must be a non-empty string",
}


def load_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the configuration. Raises ``ConfigError`` (one line) on any problem."""
    env = os.environ if environ is None else environ
    data = _read(path) if path is not None else {}
    servers = data.get("authorization_servers")
    inline = frozenset(str(name) for name, entry in servers.items()
                       if isinstance(entry, Mapping) and "client_secret" in entry) \
        if isinstance(servers, Mapping) else frozenset()
    _apply_env(data, env)
    if path is not None:
        _relative_to(Path(path).absolute().parent, data)
    try:
        return Config.model_validate(data, context=LoadContext(env, inline))
    except ValidationError as exc:
        raise _config_error(exc, data) from None


def config_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the configuration file, as ``authz config-schema`` prints it. Secrets resolved
    from their sources and each server's name (its key) are not part of the file, so not of the schema."""
    schema = Config.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "phantom-authz configuration",
            **{k: v for k, v in schema.items() if k != "title"}}


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("", f"config file {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"config file {path} must hold a mapping at the top level")
    return data


def _relative_to(base: Path, node: Any, key: str = "") -> None:
    """File names in the configuration (every ``*_file`` key, ``policy.paths``) that are relative are relative to the
    config file's directory, not to the working directory the service was started in."""
    if isinstance(node, dict):
        for name, value in node.items():
            if isinstance(value, str) and value and str(name).endswith("_file"):
                node[name] = str(base / value)
            elif key == "policy" and name == "paths" and isinstance(value, (str, list)):
                items = value.split() if isinstance(value, str) else value
                node[name] = [str(base / item) if isinstance(item, str) and item else item for item in items]
            else:
                _relative_to(base, value, str(name))
    elif isinstance(node, list):
        for item in node:
            _relative_to(base, item, key)


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            raise ConfigError(name, "malformed override variable name")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts), f"{name} overrides inside a value that is not a mapping")
            node = child
        if parts[-1] in _VERBATIM:
            node[parts[-1]] = environ[name]
            continue
        try:
            node[parts[-1]] = yaml.safe_load(environ[name]) if environ[name] else ""
        except yaml.YAMLError:
            raise ConfigError(".".join(parts), f"{name} is not a valid YAML value") from None


def _config_error(exc: ValidationError, data: Mapping[str, Any]) -> ConfigError:
    """The first problem as one line: the dotted key (the model's path, then a validator's own key) and why."""
    error = exc.errors(include_url=False)[0]
    key = _dotted(error["loc"], data)
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return ConfigError(".".join(k for k in (key, cause.key) if k), cause.why)
    if isinstance(cause, Exception):
        return ConfigError(key, str(cause))
    if error["type"] == "missing" and key == "authorization_servers":
        return ConfigError(key, NO_SERVERS)
    if error["type"] == "literal_error":
        expected = str((error.get("ctx") or {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
        return ConfigError(key, f"must be one of {expected}, got {error['input']!r}")
    return ConfigError(key, _MESSAGES.get(error["type"], error["msg"]))


def _dotted(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str:
    """``routes.rules[2] (records-read).match`` for a location in a route rule, else the location dotted."""
    if loc[:2] == ("routes", "rules") and len(loc) > 2 and isinstance(loc[2], int):
        rules = data["routes"]["rules"]
        name = rules[loc[2]].get("name") if isinstance(rules[loc[2]], Mapping) else None
        rule = f"rules[{loc[2]}]" + (f" ({name})" if isinstance(name, str) else "")
        return ".".join(str(part) for part in ("routes", rule, *loc[3:]))
    return ".".join(str(part) for part in loc)
