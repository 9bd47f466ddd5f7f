"""Read captured log records as the service writes them (``authz.log_format``): JSON lines and text lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from authz.log_format import JsonLines, TextLines

__all__ = ["json_lines", "parse_json_lines", "stream_text"]


def json_lines(records: Iterable[logging.LogRecord], logger: str | None = None) -> list[dict[str, Any]]:
    """Each record (of ``logger``, when given) as the JSON object its line holds."""
    formatter = JsonLines()
    return [json.loads(formatter.format(r)) for r in records if logger is None or r.name == logger]


def stream_text(records: Iterable[logging.LogRecord]) -> str:
    """Everything the records would write, in both formats: what a search for leaked secrets must cover."""
    json_format, text_format = JsonLines(), TextLines()
    return "\n".join(f"{json_format.format(r)}\n{text_format.format(r)}" for r in records)


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a process's output, one a line (lines that are not JSON objects, such as the ready line
    ``authz serve`` prints, are skipped)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            value = json.loads(line)
            if isinstance(value, dict):
                found.append(value)
    return found
