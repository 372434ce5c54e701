"""JSON logs through structlog that never carry personal data, tokens or secrets.

Call sites log events and opaque IDs only; the redaction processor is the safety net for
the day someone passes a request body or a header by mistake."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

#: Keys whose values are dropped wherever they appear in a log event.
SENSITIVE_KEYS = re.compile(
    r"(^|_)(token|secret|password|api_key|apikey|authorization|cookie|code|key|"
    r"text|answer|body|ip|address|client|email|phone|headers)($|_)",
    re.IGNORECASE,
)
#: Keys that look sensitive by name but hold only a number or a label.
SAFE_KEYS = frozenset({"event", "level", "timestamp", "logger", "service", "status_code"})
REDACTED = "[redacted]"


def redact_sensitive(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key in SAFE_KEYS:
            continue
        if SENSITIVE_KEYS.search(key):
            event_dict[key] = REDACTED
    return event_dict


def configure_logging(service_name: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper(), force=True)
    # Uvicorn's access log prints the full client address and the raw path (which can
    # hold an opp code); the gateway's own metrics and traces replace it.
    logging.getLogger("uvicorn.access").disabled = True
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_sensitive,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service_name)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
