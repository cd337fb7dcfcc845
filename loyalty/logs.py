"""Structured logs: an event name plus fields, never personal data or secrets.

Lines are `key=value` text by default; `LOG_FORMAT=json` writes one JSON object a
line through structlog, with the fields code passes as `extra=` (member and
message ids) and any bound with `structlog.contextvars` as keys of their own.

Every line passes through `redact`, whatever logged it (our code, a provider's
client at DEBUG, a traceback): email addresses, phone numbers, API keys, bearer
tokens and the tokens in unsubscribe and survey links are replaced before the
line is written. Provider clients that log whole requests are held at WARNING.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

__all__ = ["JsonFormatter", "configure_logging", "redact"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

#: Libraries that log requests, payloads or headers below WARNING.
QUIET_LOGGERS = (
    "dramatiq",
    "apscheduler",
    "alembic",
    "httpx",
    "httpcore",
    "urllib3",
    "python_http_client",
    "sendgrid",
    "twilio",
    "hubspot",
    "simple_salesforce",
    "uvicorn.access",
)

_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Secrets first: keys and tokens can contain what looks like an address.
    (re.compile(r"\bSG\.[\w-]+\.[\w-]+"), "<secret>"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]{8,}"), r"\1 <secret>"),
    (
        re.compile(
            r"(?i)((?:api[_-]?key|auth[_-]?token|access[_-]?token|password|secret)"
            r"['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"
        ),
        r"\1<secret>",
    ),
    (re.compile(r"(/[us]/)[\w-]{8,}"), r"\1<token>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    # Phone numbers are kept in E.164, so a leading + marks them (ids and times have none).
    (re.compile(r"\+\d[\d ().-]{6,}\d\b"), "<phone>"),
)


def redact(text: str) -> str:
    """`text` with email addresses, phone numbers, secrets and link tokens replaced."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        values = {**structlog.contextvars.get_contextvars(), **vars(record)}
        fields = " ".join(f"{key}={value}" for key, value in values.items() if key not in _STANDARD)
        base = f"{self.formatTime(record)} {record.levelname:<7} {record.getMessage()}"
        text = f"{base} {fields}" if fields else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text)


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """One JSON object a line for every record, ours and the libraries', redacted like text."""

    def __init__(self) -> None:
        pre_chain: list[Any] = [
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ]
        super().__init__(
            foreign_pre_chain=pre_chain,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(default=str),
            ],
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str, fmt: str = "text") -> None:
    """Every record to stderr, as `key=value` text or (`fmt="json"`) JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
