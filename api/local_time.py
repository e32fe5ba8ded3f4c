"""A local time of day in an answer ("22:00:00"): a string in the OpenAPI document.

Pydantic documents a ``datetime.time`` as JSON Schema ``format: time``. That format is
RFC 3339's full-time, which needs an offset ("22:00:00Z"), but a local time in
Europe/Stockholm has none. So answers carry a local time as a plain string with a
pattern, which is what the API sends."""

from __future__ import annotations

from datetime import time
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema

LocalTime = Annotated[
    time,
    PlainSerializer(lambda t: t.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$",
                    "description": "Local time of day, HH:MM:SS (no offset)."}),
]
