"""Malformed payloads for testing a receiver: one or more per decode refusal reason.

:func:`malformed_messages` yields ``(channel, payload, expected_reason)`` triples; each
payload is refused by :func:`firmware_contracts.decode.decode_payload` (at the same
``now``) with exactly ``expected_reason``. Together they cover every
:class:`~firmware_contracts.decode.Reason`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson

from firmware_contracts.decode import DEFAULT_MAX_BYTES, Reason
from firmware_contracts.topics import Channel


class Malformed(NamedTuple):
    channel: Channel
    payload: bytes
    expected_reason: Reason


def malformed_messages(*, now: datetime, id_prefix: str = "bad") -> Iterator[Malformed]:
    counter = 0

    def message(msg_type: str, **fields: Any) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        base: dict[str, Any] = {"v": 1, "type": msg_type, "id": f"{id_prefix}-{counter}"}
        base["ts"] = now.isoformat()
        base.update(fields)
        return base

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    tele, events, beat = Channel.TELEMETRY, Channel.EVENTS, Channel.HEARTBEAT
    schema = Reason.SCHEMA_VIOLATION

    # Too large: otherwise a fine weight reading, padded past the size limit.
    padded = message("weight", kg=80.0)
    padded["pad"] = "x" * (DEFAULT_MAX_BYTES + 1)
    yield Malformed(tele, dumps(padded), Reason.PAYLOAD_TOO_LARGE)

    yield Malformed(tele, b'{"v":1,"type":"weight","kg":', Reason.INVALID_JSON)
    yield Malformed(tele, b"\xff\xfe not utf-8", Reason.INVALID_JSON)
    yield Malformed(tele, b"", Reason.INVALID_JSON)
    yield Malformed(tele, dumps([message("weight", kg=80.0)]), Reason.NOT_AN_OBJECT)
    yield Malformed(tele, b'"weight"', Reason.NOT_AN_OBJECT)

    yield Malformed(tele, dumps(message("weight", kg=80.0, v=2)), Reason.UNSUPPORTED_VERSION)
    yield Malformed(tele, dumps(message("weight", kg=80.0, v=True)), Reason.UNSUPPORTED_VERSION)
    no_version = message("weight", kg=80.0)
    del no_version["v"]
    yield Malformed(tele, dumps(no_version), Reason.UNSUPPORTED_VERSION)

    yield Malformed(tele, dumps(message("temperature", celsius=21.5)), Reason.UNKNOWN_TYPE)
    yield Malformed(tele, dumps(message("weight", kg=80.0, type=7)), Reason.UNKNOWN_TYPE)

    yield Malformed(events, dumps(message("weight", kg=80.0)), Reason.WRONG_CHANNEL)
    yield Malformed(tele, dumps(message("heartbeat")), Reason.WRONG_CHANNEL)
    yield Malformed(Channel.COMMANDS, dumps(message("alarm", kind="button")), Reason.WRONG_CHANNEL)

    bp = {"systolic_mmhg": 80, "diastolic_mmhg": 80}
    yield Malformed(tele, dumps(message("blood_pressure", **bp)), schema)
    yield Malformed(tele, dumps(message("weight", kg=0)), schema)
    yield Malformed(tele, dumps(message("weight", kg=612.5)), schema)
    position = {"lat": 91.0, "lon": 18.06, "accuracy_m": 10.0}
    yield Malformed(tele, dumps(message("position", **position)), schema)
    yield Malformed(tele, dumps(message("battery", percent=101)), schema)
    yield Malformed(beat, dumps(message("heartbeat", battery_percent=140)), schema)
    yield Malformed(events, dumps(message("alarm", kind="button", lat=59.3)), schema)
    yield Malformed(events, dumps(message("alarm", kind="sneeze")), schema)
    yield Malformed(events, dumps(message("lock", action="unlocked", method="app")), schema)
    yield Malformed(tele, dumps(message("weight", kg=80.0, grams=80000)), schema)
    yield Malformed(tele, dumps(message("weight", kg=80.0, id="x" * 65)), schema)
    yield Malformed(tele, dumps(message("weight", kg=80.0, ts=int(now.timestamp()))), schema)
    naive = now.replace(tzinfo=None).isoformat()
    yield Malformed(tele, dumps(message("weight", kg=80.0, ts=naive)), schema)
    missing_id = message("weight", kg=80.0)
    del missing_id["id"]
    yield Malformed(tele, dumps(missing_id), schema)

    future = (now + timedelta(hours=1)).isoformat()
    yield Malformed(tele, dumps(message("weight", kg=80.0, ts=future)), Reason.FUTURE_TIMESTAMP)
    yield Malformed(beat, dumps(message("heartbeat", ts=future)), Reason.FUTURE_TIMESTAMP)

    epoch = "1970-01-01T00:00:00+00:00"
    yield Malformed(tele, dumps(message("weight", kg=80.0, ts=epoch)), Reason.IMPLAUSIBLE_TIMESTAMP)
    yield Malformed(
        events, dumps(message("alarm", kind="fall", ts=epoch)), Reason.IMPLAUSIBLE_TIMESTAMP
    )
