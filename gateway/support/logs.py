"""Structured logs: one JSON object per line on stderr.

Never log personal identity numbers or readings: log records carry ids, counts, reasons
and error class names only. As a second line of defence anything that looks like a
Swedish personal identity number (YYYYMMDD-NNNN, YYMMDD-NNNN, with or without the dash)
is masked before a line is written.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

#: A UUID (kept: ids are what logs carry, and one in ten thousand random UUIDs has a run
#: of ten or twelve digits in it) or a personal identity number (masked).
_PIN_RE = re.compile(
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?<!\d)(?:19|20)?\d{6}[-+]?\d{4}(?!\d)"
)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# uvicorn's copy of the message with terminal colour codes: not for a JSON log


def _masked(match: re.Match[str]) -> str:
    return match.group("uuid") or "[redacted]"


def mask(text: str) -> str:
    return _PIN_RE.sub(_masked, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        return mask(line)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqtt", "transitions", "uvicorn.access", "mqtt", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
