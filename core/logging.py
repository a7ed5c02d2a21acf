"""Structured logs: the context of every log line, its JSON or text form, and what is never logged.

The context (request id, tenant slug, credential kind, view; a Celery task's id and name) lives
in a ``contextvars`` variable: the request middleware (``patra.middleware``) binds the request
id first, the bearer authentication the tenant and credential kind, the Celery signals
(``patra/celery.py``) the task's id and name and the request id its message carried.
:class:`ContextFilter` copies it onto every record, so a line logged anywhere below a request or
a task carries it.

``LOG_FORMAT=json`` (the production default) writes one JSON object per line with ``timestamp``,
``level``, ``logger``, ``message``, the context fields present and a few known extras (``method``,
``path``, ``status``, ``duration_ms``, ``state``); ``text`` a plain line with the request id.
Nothing else of a record is written: not its arguments, not request bodies. Both forms pass the
message and any traceback through :func:`redact`, which masks credentials (service keys,
user tokens, bearer headers, ``password=``/``token=``-style pairs) in case code logs one by
mistake. Profile text (bios) is never logged by the application; tests/test_logging.py checks
both.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

CONTEXT_FIELDS = ("request_id", "tenant", "credential", "view", "task_id", "task_name")
EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "state")

_NOTHING: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("patra_log_context", default=_NOTHING)

_REDACTIONS = (
    (re.compile(r"\b(psk|put)_[A-Za-z0-9_\-]{8,}"), r"\1_[redacted]"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+"), r"\1 [redacted]"),
    (
        re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key|authorization|dsn)(\"?\s*[:=]\s*\"?)[^\s,;\"'}]+"),
        r"\1\2[redacted]",
    ),
)


def bind(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Add ``fields`` to the context of this request or task; returns the token to :func:`reset`."""
    return _context.set({**_context.get(), **fields})


def reset(token: contextvars.Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


def context() -> Mapping[str, Any]:
    return _context.get()


def current_request_id() -> str | None:
    value = _context.get().get("request_id")
    return str(value) if value else None


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Copies the request/task context onto each record (``record.request_id`` and so on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        for name in CONTEXT_FIELDS:
            if name in ctx and not hasattr(record, name):
                setattr(record, name, ctx[name])
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (module docs)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in (*CONTEXT_FIELDS, *EXTRA_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<time> <level> <logger> [<request id>] <message>``, redacted like the JSON form."""

    def format(self, record: logging.LogRecord) -> str:
        # The record is shared by every handler: read the request id, never set it on the record.
        line = f"{self.formatTime(record)} {record.levelname} {record.name} [{getattr(record, 'request_id', '-')}] "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """The ``LOGGING`` dictionary of ``patra.settings``: one console handler in ``log_format``."""
    formatter = "json" if log_format == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "core.logging.ContextFilter"}},
        "formatters": {"json": {"()": "core.logging.JsonFormatter"}, "text": {"()": "core.logging.TextFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": formatter, "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level},
    }
