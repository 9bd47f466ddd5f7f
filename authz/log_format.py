"""The service's log stream: one handler on stderr, in one of two formats (``server.log_format``).

- ``json`` (the default; what log collectors parse): one JSON object per line per event, from python-json-logger's
  formatter: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then the record's fields: a check's
  ``request_id``, ``trace_id``, ``token_id``, ``route_rule`` (``authz.log_context``), a denial's ``outcome``,
  ``status``, ``reason``, a decision log's ``decision_id``, ``path``, ``result``, ... and ``exc_info`` (a traceback
  of our own code).
- ``text``: ``time LEVEL logger message key=value ...`` on one line, for a human at a terminal.

Every record passes the library filter first (``authz.library_logs``: a library's record keeps no data of its own,
as it may quote a request), then gets the current check's fields (``CheckContextFilter``).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from authz.library_logs import STANDARD_ATTRIBUTES, LibraryRecordFilter
from authz.log_context import CheckContextFilter

__all__ = ["FORMATS", "JsonLines", "TextLines", "configure_logging", "record_fields"]


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard ones (``extra=``, the check's context)."""
    return {k: v for k, v in record.__dict__.items() if k not in STANDARD_ATTRIBUTES and v is not None}


class JsonLines(JsonFormatter):
    """One JSON object per record: time, level, logger, message, then the record's fields."""

    def __init__(self) -> None:
        super().__init__("{levelname}{name}{message}", style="{", timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"},
                         reserved_attrs=sorted(STANDARD_ATTRIBUTES))

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        rest = {k: log_data.pop(k) for k in list(log_data) if k != "time"}  # the time first, as people read lines
        log_data.update(rest)


class TextLines(logging.Formatter):
    """``2025-01-01 12:00:00,000 INFO authz.check deny GET '/x': ... status=401 request_id=...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = record_fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={_text(value)}" for key, value in fields.items())


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value and all("!" <= c <= "~" and c not in "\"=\\" for c in value):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


FORMATS: dict[str, type[logging.Formatter]] = {"json": JsonLines, "text": TextLines}


def configure_logging(level: str, log_format: str = "json") -> None:
    """The process's one log handler (stderr), in ``log_format`` (``json`` or ``text``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATS[log_format]())
    handler.addFilter(LibraryRecordFilter())  # library log lines may quote request bytes (a token): never their data
    handler.addFilter(CheckContextFilter())  # then the check's request id, trace id, token id, route rule
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
