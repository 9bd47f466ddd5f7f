"""Log records from libraries (aiohttp, grpc, asyncio, ...) lose whatever may quote request data.

A library's log line can carry the bytes of a request: aiohttp's parser error quotes the offending header line (a
bearer token with it) in its traceback, asyncio's "exception was never retrieved" prints the exception's repr. So a
record from any logger outside ``authz`` keeps its level, its logger's name and its fixed message text (a format
string with its arguments, or nothing when it has none: the text may then be a formatted one), and its exception
shrinks to the exception's type and where it was raised; fields it was given (``extra=``) are dropped. Our own
loggers name tokens only by ``token_id``.
"""

from __future__ import annotations

import logging
import os
import re

__all__ = ["STANDARD_ATTRIBUTES", "LibraryRecordFilter", "describe_exception"]

# what every LogRecord has (plus what formatters add); anything else on a record came with ``extra=``
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z%]")
_OURS = "authz"


def describe_exception(exc: BaseException) -> str:
    """``BadHttpMessage at _http_parser.pyx:723``: the type and the innermost frame, never the message."""
    tb = exc.__traceback__
    if tb is None:
        return type(exc).__name__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{type(exc).__name__} at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"


class LibraryRecordFilter(logging.Filter):
    """Installed on the service's log handler: rewrites every record not from an ``authz`` logger in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == _OURS or name.startswith(_OURS + "."):
            return True
        text = "(text withheld: it may quote request data)"
        if record.args and isinstance(record.msg, str):
            text = _PLACEHOLDER.sub("_", record.msg)[:200]
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text} [{describe_exception(record.exc_info[1])}]"
        record.msg, record.args = text, None
        record.exc_info = record.exc_text = record.stack_info = None
        for key in [k for k in record.__dict__ if k not in STANDARD_ATTRIBUTES]:
            del record.__dict__[key]
        return True
