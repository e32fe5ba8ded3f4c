"""Device contract v1: decoder, topic scheme and JSON Schema export.

Pure tests: no broker, no database; the only I/O is ``tmp_path`` for the schema export.
Every decode passes an explicit ``now`` so the results never depend on the wall clock.
"""

from __future__ import annotations

import json
import string
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from firmware_contracts.decode import (
    ALL_TYPES,
    CHANNEL_TYPES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SKEW,
    EARLIEST_PLAUSIBLE_TS,
    Decoded,
    DecodeError,
    Reason,
    decode_payload,
)
from firmware_contracts.messages import (
    Alarm,
    AlarmKind,
    BloodPressure,
    Command,
    Heartbeat,
    Lock,
    Position,
    Reply,
    Status,
    Weight,
)
from firmware_contracts.schema import SCHEMA_DIALECT, channel_schema, export
from firmware_contracts.topics import (
    DEVICE_ID_PATTERN,
    DEVICE_PUBLISHED,
    Channel,
    DeviceTopic,
    device_topic,
    is_valid_device_id,
    parse_device_topic,
    tenant_alarms_topic,
)

#: Gateway time for every decode in this module.
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
TS = "2025-06-01T11:59:30Z"
TS_OFFSET = "2025-06-01T13:58:00+02:00"

#: Local to this module: deterministic and bounded, no example database on disk.
PROPERTY = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

T = Channel.TELEMETRY
E = Channel.EVENTS
H = Channel.HEARTBEAT
S = Channel.STATUS
C = Channel.COMMANDS
R = Channel.REPLIES


def msg(type_: str, *, id_: str = "m-1", ts: str = TS, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "type": type_, "id": id_, "ts": ts, **fields}


def without(payload: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in keys}


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def decode(channel: Channel, payload: Any, **kwargs: Any) -> Decoded | DecodeError:
    raw = payload if isinstance(payload, bytes) else encode(payload)
    return decode_payload(channel, raw, now=kwargs.pop("now", NOW), **kwargs)


def refused(channel: Channel, payload: Any, **kwargs: Any) -> DecodeError:
    result = decode(channel, payload, **kwargs)
    assert isinstance(result, DecodeError), f"expected a refusal, got {result!r}"
    assert result.detail, "every refusal carries a human-readable detail"
    return result


# --- valid examples --------------------------------------------------------------------

VALID: list[Any] = [
    pytest.param(T, msg("weight", kg=72.4), id="weight"),
    pytest.param(T, msg("weight", kg=500), id="weight-max-int"),
    pytest.param(T, msg("weight", kg=0.001, ts=TS_OFFSET), id="weight-tiny-offset-ts"),
    pytest.param(
        T,
        msg("blood_pressure", systolic_mmhg=128, diastolic_mmhg=82, pulse_bpm=64),
        id="blood_pressure-with-pulse",
    ),
    pytest.param(
        T, msg("blood_pressure", systolic_mmhg=41, diastolic_mmhg=40), id="blood_pressure-no-pulse"
    ),
    pytest.param(
        T,
        msg("blood_pressure", systolic_mmhg=128, diastolic_mmhg=82, pulse_bpm=None),
        id="blood_pressure-pulse-null",
    ),
    pytest.param(T, msg("position", lat=59.3293, lon=18.0686, accuracy_m=8.5), id="position"),
    pytest.param(T, msg("position", lat=-90, lon=180, accuracy_m=0), id="position-bounds"),
    pytest.param(T, msg("battery", percent=0), id="battery-0"),
    pytest.param(T, msg("battery", percent=100), id="battery-100"),
    *[
        pytest.param(E, msg("alarm", kind=kind.value), id=f"alarm-{kind.value}")
        for kind in AlarmKind
    ],
    *[
        pytest.param(
            E,
            msg("alarm", kind=kind.value, lat=57.7089, lon=11.9746, accuracy_m=12.0),
            id=f"alarm-{kind.value}-with-position",
        )
        for kind in AlarmKind
    ],
    pytest.param(E, msg("alarm", kind="fall", lat=57.7, lon=11.9), id="alarm-no-accuracy"),
    *[
        pytest.param(
            E,
            msg("lock", action=action, method=method, key_id="key-7"),
            id=f"lock-{action}-{method}",
        )
        for action in ("unlocked", "locked", "denied")
        for method in ("app", "remote", "manual")
    ],
    pytest.param(E, msg("lock", action="locked", method="manual"), id="lock-manual-no-key"),
    pytest.param(E, msg("lock", action="unlocked", method="remote"), id="lock-remote-no-key"),
    pytest.param(E, msg("battery_low", percent=9), id="battery_low"),
    # passive sensors (issue #20): the test vectors
    pytest.param(E, msg("door", state="open"), id="door-open"),
    pytest.param(E, msg("door", state="closed", resident_tag="04A2B3"), id="door-closed-tag"),
    pytest.param(E, msg("motion", detected=True), id="motion-detected"),
    pytest.param(E, msg("motion", detected=False), id="motion-none"),
    pytest.param(E, msg("bed", occupied=True), id="bed-occupied"),
    pytest.param(E, msg("bed", occupied=False), id="bed-empty"),
    pytest.param(E, msg("floor_mat", stepped_on=True), id="floor_mat-stepped-on"),
    pytest.param(E, msg("floor_mat", stepped_on=False), id="floor_mat-released"),
    pytest.param(H, msg("heartbeat"), id="heartbeat-minimal"),
    pytest.param(H, msg("heartbeat", battery_percent=87, rssi_dbm=-71), id="heartbeat-full"),
    pytest.param(H, msg("heartbeat", rssi_dbm=0), id="heartbeat-rssi-0"),
    pytest.param(S, msg("status", state="online", firmware="2.4.1"), id="status-online-with-id-ts"),
    pytest.param(S, {"v": 1, "type": "status", "state": "offline"}, id="status-last-will"),
    pytest.param(S, {"v": 1, "type": "status", "state": "online", "id": "boot-1"}, id="status-id"),
    pytest.param(
        C,
        msg("command", name="unlock", args={"door": "front"}, expires_at="2025-06-01T12:00:30Z"),
        id="command-unlock",
    ),
    pytest.param(C, msg("command", name="locate"), id="command-locate"),
    pytest.param(
        C,
        msg("command", name="configure", args={"heartbeat_interval_s": 300, "x": [1, None]}),
        id="command-configure",
    ),
    pytest.param(R, msg("reply", command_id="cmd-42", ok=True), id="reply-ok"),
    pytest.param(
        R, msg("reply", command_id="cmd-42", ok=False, detail="expired"), id="reply-expired"
    ),
]


@pytest.mark.parametrize(("channel", "payload"), VALID)
def test_valid_example_decodes(channel: Channel, payload: dict[str, Any]) -> None:
    result = decode(channel, payload)
    assert isinstance(result, Decoded), result
    message = result.message
    assert type(message) is CHANNEL_TYPES[channel][payload["type"]]
    dumped = message.model_dump(mode="json", exclude_unset=True)
    for key, value in payload.items():
        if key in ("ts", "expires_at"):
            assert getattr(message, key) == datetime.fromisoformat(value)
        else:
            assert dumped[key] == value, key


def test_every_type_has_a_valid_example() -> None:
    covered = {(p.values[0], p.values[1]["type"]) for p in VALID}
    expected = {(ch, name) for ch, types in CHANNEL_TYPES.items() for name in types}
    assert covered == expected


def test_compact_bytes_from_firmware_decode() -> None:
    raw = b'{"v":1,"type":"weight","id":"a","ts":"2025-06-01T11:00:00.123+01:00","kg":80}'
    result = decode(T, raw)
    assert isinstance(result, Decoded)
    assert isinstance(result.message, Weight)
    assert result.message.ts == datetime(2025, 6, 1, 10, 0, 0, 123000, tzinfo=UTC)


def test_models_are_frozen() -> None:
    result = decode(T, msg("weight", kg=70))
    assert isinstance(result, Decoded)
    with pytest.raises(ValidationError, match="frozen"):
        result.message.kg = 71


# --- invalid examples ------------------------------------------------------------------

SV = Reason.SCHEMA_VIOLATION
BP = msg("blood_pressure", systolic_mmhg=120, diastolic_mmhg=80)
POS = msg("position", lat=59.0, lon=18.0, accuracy_m=5.0)
LOCK = msg("lock", action="unlocked", method="app", key_id="k1")
REPLY = msg("reply", command_id="c1", ok=True)

INVALID: list[Any] = [
    # passive sensors (issue #20)
    pytest.param(E, msg("door", state="ajar"), SV, id="door-state-unknown"),
    pytest.param(E, msg("door"), SV, id="door-state-missing"),
    pytest.param(E, msg("motion", detected="true"), SV, id="motion-detected-string"),
    pytest.param(E, msg("bed", occupied=1), SV, id="bed-occupied-number"),
    pytest.param(E, msg("bed", occupied=True, image="x"), SV, id="bed-no-extra-fields"),
    pytest.param(E, msg("floor_mat"), SV, id="floor_mat-missing"),
    pytest.param(T, msg("bed", occupied=True), Reason.WRONG_CHANNEL, id="bed-on-telemetry"),
    # weight
    pytest.param(T, msg("weight", kg=0), SV, id="weight-kg-0"),
    pytest.param(T, msg("weight", kg=-1), SV, id="weight-kg-negative"),
    pytest.param(T, msg("weight", kg=500.01), SV, id="weight-kg-over-500"),
    pytest.param(T, msg("weight"), SV, id="weight-kg-missing"),
    pytest.param(T, msg("weight", kg=None), SV, id="weight-kg-null"),
    pytest.param(T, msg("weight", kg=70, kgs=70), SV, id="weight-extra-field"),
    # blood pressure
    pytest.param(T, {**BP, "systolic_mmhg": 80}, SV, id="bp-systolic-equals-diastolic"),
    pytest.param(T, {**BP, "systolic_mmhg": 70}, SV, id="bp-systolic-below-diastolic"),
    pytest.param(T, {**BP, "systolic_mmhg": 39, "diastolic_mmhg": 20}, SV, id="bp-systolic-low"),
    pytest.param(T, {**BP, "systolic_mmhg": 301}, SV, id="bp-systolic-high"),
    pytest.param(T, {**BP, "diastolic_mmhg": 19}, SV, id="bp-diastolic-low"),
    pytest.param(T, {**BP, "systolic_mmhg": 300, "diastolic_mmhg": 201}, SV, id="bp-diast-high"),
    pytest.param(T, {**BP, "pulse_bpm": 19}, SV, id="bp-pulse-low"),
    pytest.param(T, {**BP, "pulse_bpm": 301}, SV, id="bp-pulse-high"),
    pytest.param(T, {**BP, "systolic_mmhg": 120.5}, SV, id="bp-systolic-fraction"),
    pytest.param(T, without(BP, "diastolic_mmhg"), SV, id="bp-diastolic-missing"),
    # position
    pytest.param(T, {**POS, "lat": 90.0001}, SV, id="position-lat-high"),
    pytest.param(T, {**POS, "lat": -90.5}, SV, id="position-lat-low"),
    pytest.param(T, {**POS, "lon": 180.1}, SV, id="position-lon-high"),
    pytest.param(T, {**POS, "lon": -181}, SV, id="position-lon-low"),
    pytest.param(T, {**POS, "accuracy_m": -1}, SV, id="position-accuracy-negative"),
    pytest.param(T, {**POS, "accuracy_m": 100_001}, SV, id="position-accuracy-high"),
    pytest.param(T, without(POS, "accuracy_m"), SV, id="position-accuracy-missing"),
    pytest.param(T, without(POS, "lon"), SV, id="position-lon-missing"),
    # battery
    pytest.param(T, msg("battery", percent=101), SV, id="battery-over-100"),
    pytest.param(T, msg("battery", percent=-1), SV, id="battery-negative"),
    pytest.param(T, msg("battery", percent=50.5), SV, id="battery-fraction"),
    pytest.param(T, msg("battery"), SV, id="battery-missing"),
    # heartbeat
    pytest.param(H, msg("heartbeat", rssi_dbm=1), SV, id="heartbeat-rssi-positive"),
    pytest.param(H, msg("heartbeat", rssi_dbm=-151), SV, id="heartbeat-rssi-low"),
    pytest.param(H, msg("heartbeat", battery_percent=101), SV, id="heartbeat-battery-high"),
    pytest.param(H, msg("heartbeat", battery_percent=-1), SV, id="heartbeat-battery-low"),
    pytest.param(H, msg("heartbeat", uptime_s=5), SV, id="heartbeat-extra-field"),
    # alarm
    pytest.param(E, msg("alarm", kind="fall", lat=57.7), SV, id="alarm-lat-without-lon"),
    pytest.param(E, msg("alarm", kind="fall", lon=11.9), SV, id="alarm-lon-without-lat"),
    pytest.param(E, msg("alarm", kind="smoke"), SV, id="alarm-unknown-kind"),
    pytest.param(E, msg("alarm"), SV, id="alarm-kind-missing"),
    pytest.param(E, msg("alarm", kind="button", lat=91, lon=0), SV, id="alarm-lat-range"),
    # lock
    pytest.param(E, without(LOCK, "key_id"), SV, id="lock-app-without-key"),
    pytest.param(E, {**LOCK, "key_id": None}, SV, id="lock-app-key-null"),
    pytest.param(E, {**LOCK, "key_id": ""}, SV, id="lock-key-empty"),
    pytest.param(E, {**LOCK, "key_id": "k" * 65}, SV, id="lock-key-too-long"),
    pytest.param(E, {**LOCK, "action": "opened"}, SV, id="lock-unknown-action"),
    pytest.param(E, {**LOCK, "method": "bluetooth"}, SV, id="lock-unknown-method"),
    pytest.param(E, without(LOCK, "method"), SV, id="lock-method-missing"),
    # battery_low
    pytest.param(E, msg("battery_low", percent=101), SV, id="battery_low-over-100"),
    pytest.param(E, msg("battery_low"), SV, id="battery_low-missing"),
    # status
    pytest.param(S, {"v": 1, "type": "status", "state": "asleep"}, SV, id="status-bad-state"),
    pytest.param(S, {"v": 1, "type": "status"}, SV, id="status-state-missing"),
    pytest.param(S, msg("status", state="online", firmware=""), SV, id="status-firmware-empty"),
    pytest.param(S, {"v": 1, "type": "status", "state": "offline", "x": 1}, SV, id="status-extra"),
    # command
    pytest.param(C, msg("command", name="unlock"), SV, id="command-unlock-no-expires_at"),
    pytest.param(
        C, msg("command", name="unlock", expires_at=None), SV, id="command-unlock-expires-null"
    ),
    pytest.param(
        C,
        msg("command", name="unlock", expires_at="2025-06-01T12:00:30"),
        SV,
        id="command-expires_at-naive",
    ),
    pytest.param(C, msg("command", name="reboot"), SV, id="command-unknown-name"),
    pytest.param(C, msg("command", name="locate", args=[1]), SV, id="command-args-not-object"),
    # reply
    pytest.param(R, without(REPLY, "command_id"), SV, id="reply-command_id-missing"),
    pytest.param(R, without(REPLY, "ok"), SV, id="reply-ok-missing"),
    pytest.param(R, {**REPLY, "command_id": ""}, SV, id="reply-command_id-empty"),
    pytest.param(R, {**REPLY, "detail": "x" * 257}, SV, id="reply-detail-too-long"),
    # common envelope
    pytest.param(T, without(msg("weight", kg=70), "id"), SV, id="id-missing"),
    pytest.param(T, without(msg("weight", kg=70), "ts"), SV, id="ts-missing"),
    pytest.param(T, msg("weight", kg=70, id_=""), SV, id="id-empty"),
    pytest.param(T, msg("weight", kg=70, id_="a" * 65), SV, id="id-65-chars"),
    pytest.param(T, msg("weight", kg=70, id_="a b"), SV, id="id-space"),
    pytest.param(T, msg("weight", kg=70, id_="mätning"), SV, id="id-non-ascii"),
    pytest.param(T, msg("weight", kg=70, id_="a\n"), SV, id="id-newline"),
    pytest.param(T, {**msg("weight", kg=70), "id": 7}, SV, id="id-number"),
    pytest.param(T, msg("weight", kg=70, ts="2025-06-01T11:59:30"), SV, id="ts-without-offset"),
    pytest.param(T, msg("weight", kg=70, ts="2025-06-01"), SV, id="ts-date-only"),
    pytest.param(T, msg("weight", kg=70, ts="yesterday"), SV, id="ts-garbage"),
    pytest.param(T, {**msg("weight", kg=70), "ts": 1748779170}, SV, id="ts-unix-int"),
    pytest.param(T, {**msg("weight", kg=70), "ts": 1748779170.5}, SV, id="ts-unix-float"),
    pytest.param(T, {**msg("weight", kg=70), "ts": None}, SV, id="ts-null"),
    pytest.param(
        S, {"v": 1, "type": "status", "state": "online", "ts": 1748779170}, SV, id="status-ts-int"
    ),
    # timestamps outside the plausible window
    pytest.param(
        T, msg("weight", kg=70, ts="2025-06-02T12:00:00Z"), Reason.FUTURE_TIMESTAMP, id="ts-future"
    ),
    pytest.param(
        T,
        msg("weight", kg=70, ts="2025-06-01T12:05:01Z"),
        Reason.FUTURE_TIMESTAMP,
        id="ts-just-past-skew",
    ),
    pytest.param(
        S,
        msg("status", state="online", ts="2030-01-01T00:00:00Z"),
        Reason.FUTURE_TIMESTAMP,
        id="status-ts-future",
    ),
    pytest.param(
        T,
        msg("weight", kg=70, ts="1970-01-01T00:00:12Z"),
        Reason.IMPLAUSIBLE_TIMESTAMP,
        id="ts-1970",
    ),
    pytest.param(
        T,
        msg("weight", kg=70, ts="2019-12-31T23:59:59Z"),
        Reason.IMPLAUSIBLE_TIMESTAMP,
        id="ts-2019",
    ),
    pytest.param(
        H,
        msg("heartbeat", ts="2020-01-01T00:30:00+01:00"),
        Reason.IMPLAUSIBLE_TIMESTAMP,
        id="ts-2019-in-utc",
    ),
    # version
    pytest.param(T, {**msg("weight", kg=70), "v": 2}, Reason.UNSUPPORTED_VERSION, id="v-2"),
    pytest.param(T, {**msg("weight", kg=70), "v": 0}, Reason.UNSUPPORTED_VERSION, id="v-0"),
    pytest.param(T, without(msg("weight", kg=70), "v"), Reason.UNSUPPORTED_VERSION, id="v-missing"),
    pytest.param(T, {**msg("weight", kg=70), "v": True}, Reason.UNSUPPORTED_VERSION, id="v-true"),
    pytest.param(T, {**msg("weight", kg=70), "v": "1"}, Reason.UNSUPPORTED_VERSION, id="v-string"),
    pytest.param(T, {**msg("weight", kg=70), "v": None}, Reason.UNSUPPORTED_VERSION, id="v-null"),
    pytest.param(
        T, {"v": 2, "type": "no_such_type"}, Reason.UNSUPPORTED_VERSION, id="v-checked-before-type"
    ),
    # type
    pytest.param(T, msg("temperature", celsius=21.5), Reason.UNKNOWN_TYPE, id="type-unknown"),
    pytest.param(T, without(msg("weight", kg=70), "type"), Reason.UNKNOWN_TYPE, id="type-missing"),
    pytest.param(T, {**msg("weight", kg=70), "type": 3}, Reason.UNKNOWN_TYPE, id="type-number"),
    pytest.param(
        T, {**msg("weight", kg=70), "type": "Weight"}, Reason.UNKNOWN_TYPE, id="type-case"
    ),
    pytest.param(
        T, {**msg("weight", kg=70), "type": ["weight"]}, Reason.UNKNOWN_TYPE, id="type-list"
    ),
    # channel
    pytest.param(E, msg("weight", kg=70), Reason.WRONG_CHANNEL, id="weight-on-events"),
    pytest.param(T, msg("alarm", kind="fall"), Reason.WRONG_CHANNEL, id="alarm-on-telemetry"),
    pytest.param(T, msg("heartbeat"), Reason.WRONG_CHANNEL, id="heartbeat-on-telemetry"),
    pytest.param(H, msg("status", state="online"), Reason.WRONG_CHANNEL, id="status-on-heartbeat"),
    pytest.param(E, msg("battery", percent=5), Reason.WRONG_CHANNEL, id="battery-on-events"),
    pytest.param(T, msg("battery_low", percent=5), Reason.WRONG_CHANNEL, id="battery_low-on-tele"),
    pytest.param(R, msg("command", name="locate"), Reason.WRONG_CHANNEL, id="command-on-replies"),
    pytest.param(C, REPLY, Reason.WRONG_CHANNEL, id="reply-on-commands"),
    # framing
    pytest.param(T, b"not json", Reason.INVALID_JSON, id="not-json"),
    pytest.param(T, b"", Reason.INVALID_JSON, id="empty"),
    pytest.param(T, b'{"v":1,"type":"weight"', Reason.INVALID_JSON, id="truncated"),
    pytest.param(T, b"\xff\xfe{}", Reason.INVALID_JSON, id="not-utf8"),
    pytest.param(T, b"{'v': 1}", Reason.INVALID_JSON, id="single-quotes"),
    pytest.param(T, b'{"v":1,"kg":NaN}', Reason.INVALID_JSON, id="nan"),
    pytest.param(T, b"[" * 2000 + b"]" * 2000, Reason.INVALID_JSON, id="too-deep"),
    pytest.param(T, [msg("weight", kg=70)], Reason.NOT_AN_OBJECT, id="json-array"),
    pytest.param(T, "weight", Reason.NOT_AN_OBJECT, id="json-string"),
    pytest.param(T, 72.5, Reason.NOT_AN_OBJECT, id="json-number"),
    pytest.param(T, None, Reason.NOT_AN_OBJECT, id="json-null"),
    pytest.param(T, True, Reason.NOT_AN_OBJECT, id="json-true"),
    pytest.param(
        T, b"x" * (DEFAULT_MAX_BYTES + 1), Reason.PAYLOAD_TOO_LARGE, id="oversize-garbage"
    ),
    pytest.param(
        T,
        encode(msg("weight", kg=70)) + b" " * DEFAULT_MAX_BYTES,
        Reason.PAYLOAD_TOO_LARGE,
        id="oversize-valid-message",
    ),
]


@pytest.mark.parametrize(("channel", "payload", "reason"), INVALID)
def test_invalid_example_is_refused(channel: Channel, payload: Any, reason: Reason) -> None:
    assert refused(channel, payload).reason is reason


def test_every_type_has_an_invalid_example() -> None:
    seen = {
        p.values[1]["type"] for p in INVALID if isinstance(p.values[1], dict) and p.values[2] is SV
    }
    assert seen >= set(ALL_TYPES)


def test_every_reason_is_exercised() -> None:
    assert {p.values[2] for p in INVALID} == set(Reason)


def test_schema_violation_detail_names_the_field() -> None:
    error = refused(T, msg("weight", kg=-1))
    assert error.detail.startswith("kg:")
    error = refused(T, {**BP, "systolic_mmhg": 80})
    assert "systolic_mmhg must be greater than diastolic_mmhg" in error.detail
    error = refused(E, without(LOCK, "key_id"))
    assert "key_id is required" in error.detail
    error = refused(T, msg("weight", kg=70, extra=1))
    assert error.detail.startswith("extra:")


def test_wrong_channel_detail_lists_allowed_types() -> None:
    error = refused(E, msg("weight", kg=70))
    assert "alarm, battery_low, bed, door, floor_mat, lock, motion" in error.detail


def test_detail_is_bounded_for_huge_garbage() -> None:
    error = refused(T, {**msg("weight", kg=70), "type": "t" * 5000})
    assert error.reason is Reason.UNKNOWN_TYPE
    assert len(error.detail) <= 200
    many = {**msg("weight", kg=-1), **{f"f{i}": i for i in range(500)}}
    error = refused(T, many)
    assert error.reason is SV
    assert len(error.detail) <= 300


# --- limits and gateway time -----------------------------------------------------------


def test_max_bytes_boundary() -> None:
    body = encode(msg("weight", kg=70))
    exact = body + b" " * (DEFAULT_MAX_BYTES - len(body))
    assert len(exact) == DEFAULT_MAX_BYTES
    assert isinstance(decode(T, exact), Decoded)
    assert refused(T, exact + b" ").reason is Reason.PAYLOAD_TOO_LARGE
    assert refused(T, body, max_bytes=len(body) - 1).reason is Reason.PAYLOAD_TOO_LARGE
    assert isinstance(decode(T, body, max_bytes=len(body)), Decoded)


def test_default_skew_is_five_minutes() -> None:
    assert DEFAULT_MAX_SKEW.total_seconds() == 300
    at_limit = (NOW + DEFAULT_MAX_SKEW).isoformat()
    assert isinstance(decode(T, msg("weight", kg=70, ts=at_limit)), Decoded)
    beyond = (NOW + DEFAULT_MAX_SKEW + timedelta(milliseconds=1)).isoformat()
    assert refused(T, msg("weight", kg=70, ts=beyond)).reason is Reason.FUTURE_TIMESTAMP


def test_skew_is_configurable_and_relative_to_now() -> None:
    ahead = msg("weight", kg=70, ts=(NOW + timedelta(minutes=8)).isoformat())
    assert refused(T, ahead).reason is Reason.FUTURE_TIMESTAMP
    assert isinstance(decode(T, ahead, max_skew=timedelta(minutes=10)), Decoded)
    assert isinstance(decode(T, ahead, now=NOW + timedelta(minutes=4)), Decoded)
    assert refused(T, ahead, max_skew=timedelta(0)).reason is Reason.FUTURE_TIMESTAMP


def test_old_timestamps_are_accepted_down_to_2020() -> None:
    # Buffered readings may be old; the decoder only refuses never-set clocks.
    assert EARLIEST_PLAUSIBLE_TS.isoformat() == "2020-01-01T00:00:00+00:00"
    assert isinstance(decode(T, msg("weight", kg=70, ts="2020-01-01T00:00:00Z")), Decoded)
    assert isinstance(decode(T, msg("weight", kg=70, ts="2023-02-03T04:05:06Z")), Decoded)


def test_last_will_without_ts_skips_time_checks() -> None:
    will = {"v": 1, "type": "status", "state": "offline"}
    far_past = datetime(2000, 1, 1, tzinfo=UTC)
    result = decode(S, will, now=far_past)
    assert isinstance(result, Decoded)
    assert isinstance(result.message, Status)
    assert result.message.id is None
    assert result.message.ts is None


def test_extreme_but_valid_timestamps_do_not_raise() -> None:
    future = msg("weight", kg=70, ts="9999-12-31T23:59:59-23:59")
    assert refused(T, future).reason is Reason.FUTURE_TIMESTAMP
    past = msg("weight", kg=70, ts="0001-01-01T00:00:00+23:59")
    assert refused(T, past).reason is Reason.IMPLAUSIBLE_TIMESTAMP


def test_unlock_expiry_is_kept_as_aware_datetime() -> None:
    result = decode(C, msg("command", name="unlock", expires_at="2025-06-01T14:00:30+02:00"))
    assert isinstance(result, Decoded)
    assert isinstance(result.message, Command)
    assert result.message.expires_at == datetime(2025, 6, 1, 12, 0, 30, tzinfo=UTC)


# --- strictness: the decoder judges types as the exported JSON Schema does --------------


WRONG_JSON_TYPES = [
    pytest.param(T, msg("weight", kg="72.5"), id="kg-string"),
    pytest.param(T, msg("battery", percent=True), id="percent-true"),
    pytest.param(R, {**REPLY, "ok": "yes"}, id="ok-string"),
    pytest.param(R, {**REPLY, "ok": 1}, id="ok-int"),
]


def test_ts_as_numeric_string_is_refused() -> None:
    assert refused(T, msg("weight", kg=70, ts="1748779170")).reason is SV


def test_expires_at_as_number_is_refused() -> None:
    payload = {**msg("command", name="unlock"), "expires_at": 1748779230}
    assert refused(C, payload).reason is SV


@pytest.mark.parametrize(("channel", "payload"), WRONG_JSON_TYPES)
def test_wrong_json_types_are_refused(channel: Channel, payload: dict[str, Any]) -> None:
    assert refused(channel, payload).reason is SV


def test_device_id_with_trailing_newline_is_invalid() -> None:
    assert not is_valid_device_id("dev1\n")


# --- property-based --------------------------------------------------------------------

_ID_ALPHABET = "".join(chr(c) for c in range(0x21, 0x7F))
message_ids = st.text(alphabet=_ID_ALPHABET, min_size=1, max_size=64)
utc_offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@st.composite
def timestamps(draw: st.DrawFn) -> datetime:
    """Aware datetimes the decoder must accept for ``NOW``: 2020-01-01 .. NOW + skew."""
    instant = draw(
        st.datetimes(
            min_value=datetime(2020, 1, 1),  # naive here; read as UTC below
            max_value=(NOW + DEFAULT_MAX_SKEW).replace(tzinfo=None),
        )
    )
    return instant.replace(tzinfo=UTC).astimezone(draw(utc_offsets))


def envelope(draw: st.DrawFn, type_: str) -> tuple[dict[str, Any], datetime]:
    ts = draw(timestamps())
    return {"v": 1, "type": type_, "id": draw(message_ids), "ts": ts.isoformat()}, ts


def bounded_floats(lo: float, hi: float, *, exclude_min: bool = False) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=lo, max_value=hi, exclude_min=exclude_min, allow_nan=False, allow_infinity=False
    )


_OMIT = object()


@st.composite
def optional_field(draw: st.DrawFn, strategy: st.SearchStrategy[Any]) -> Any:
    """A value, an explicit null, or a marker for "omit the key"."""
    return draw(st.one_of(strategy, st.none(), st.just(_OMIT)))


@st.composite
def valid_messages(draw: st.DrawFn) -> tuple[Channel, dict[str, Any], datetime]:
    kind = draw(st.sampled_from(["weight", "blood_pressure", "position", "heartbeat"]))
    payload, ts = envelope(draw, kind)
    if kind == "weight":
        payload["kg"] = draw(bounded_floats(0.0, 500.0, exclude_min=True))
        return T, payload, ts
    if kind == "blood_pressure":
        diastolic = draw(st.integers(20, 200))
        payload["diastolic_mmhg"] = diastolic
        payload["systolic_mmhg"] = draw(st.integers(max(40, diastolic + 1), 300))
        pulse = draw(optional_field(st.integers(20, 300)))
        if pulse is not _OMIT:
            payload["pulse_bpm"] = pulse
        return T, payload, ts
    if kind == "position":
        payload["lat"] = draw(bounded_floats(-90.0, 90.0))
        payload["lon"] = draw(bounded_floats(-180.0, 180.0))
        payload["accuracy_m"] = draw(bounded_floats(0.0, 100_000.0))
        return T, payload, ts
    for key, strategy in (
        ("battery_percent", st.integers(0, 100)),
        ("rssi_dbm", st.integers(-150, 0)),
    ):
        value = draw(optional_field(strategy))
        if value is not _OMIT:
            payload[key] = value
    return H, payload, ts


@PROPERTY
@given(valid_messages())
def test_property_valid_messages_round_trip(
    generated: tuple[Channel, dict[str, Any], datetime],
) -> None:
    channel, payload, ts = generated
    result = decode_payload(channel, json.dumps(payload).encode(), now=NOW)
    assert isinstance(result, Decoded), (payload, result)
    message = result.message
    assert isinstance(message, (Weight, BloodPressure, Position, Heartbeat))
    assert message.ts == ts
    assert message.ts.utcoffset() == ts.utcoffset()
    for key, value in payload.items():
        if key != "ts":
            got = getattr(message, key)
            assert got == value, (key, got, value)
            assert type(got) is type(value), (key, got, value)
    for key in type(message).model_fields:
        if key not in payload:
            assert getattr(message, key) is None, key


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

_FIELD_NAMES = sorted(
    {name for model in ALL_TYPES.values() for name in model.model_fields} | {"args", "x"}
)


@st.composite
def near_miss_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects that pass the envelope checks and reach model validation."""
    type_ = draw(st.sampled_from(sorted(ALL_TYPES)))
    obj: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(_FIELD_NAMES), json_values, max_size=6)
    )
    obj.update(v=1, type=type_)
    if draw(st.booleans()):
        obj["ts"] = draw(
            st.one_of(
                st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
                st.datetimes().map(datetime.isoformat),
                st.text(alphabet=string.digits + "-:TZ+.", max_size=30),
            )
        )
    return obj


def _assert_total(result: object) -> None:
    assert isinstance(result, (Decoded, DecodeError))
    if isinstance(result, DecodeError):
        assert isinstance(result.reason, Reason)
        assert isinstance(result.detail, str)


@PROPERTY
@given(st.sampled_from(list(Channel)), st.binary(max_size=512))
def test_property_arbitrary_bytes_never_raise(channel: Channel, payload: bytes) -> None:
    _assert_total(decode_payload(channel, payload, now=NOW))


@PROPERTY
@given(st.sampled_from(list(Channel)), json_values)
def test_property_arbitrary_json_never_raises(channel: Channel, value: Any) -> None:
    _assert_total(decode_payload(channel, json.dumps(value).encode(), now=NOW))


@PROPERTY
@given(st.sampled_from(list(Channel)), near_miss_objects())
def test_property_near_miss_objects_never_raise(channel: Channel, obj: dict[str, Any]) -> None:
    result = decode_payload(channel, json.dumps(obj).encode(), now=NOW)
    _assert_total(result)
    if isinstance(result, DecodeError) and obj["type"] not in CHANNEL_TYPES[channel]:
        assert result.reason is Reason.WRONG_CHANNEL


@st.composite
def inverted_blood_pressure(draw: st.DrawFn) -> dict[str, Any]:
    payload, _ = envelope(draw, "blood_pressure")
    diastolic = draw(st.integers(-1000, 1000))
    payload["diastolic_mmhg"] = diastolic
    payload["systolic_mmhg"] = draw(st.integers(-1000, diastolic))
    pulse = draw(optional_field(st.integers(20, 300)))
    if pulse is not _OMIT:
        payload["pulse_bpm"] = pulse
    return payload


@PROPERTY
@given(inverted_blood_pressure())
def test_property_systolic_not_above_diastolic_is_refused(payload: dict[str, Any]) -> None:
    result = decode_payload(T, json.dumps(payload).encode(), now=NOW)
    assert isinstance(result, DecodeError)
    assert result.reason is Reason.SCHEMA_VIOLATION


# --- topics ----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", list(Channel))
def test_parse_device_topic_every_channel(channel: Channel) -> None:
    assert parse_device_topic(f"devices/scale-01/{channel.value}") == DeviceTopic(
        "scale-01", channel
    )


@pytest.mark.parametrize(
    "device_id",
    ["a", "0", "GPS_42", "se.kommun.lock-7", "A" * 64, "a" + "-._" * 21],
)
def test_parse_device_topic_valid_ids(device_id: str) -> None:
    assert parse_device_topic(f"devices/{device_id}/telemetry") == DeviceTopic(
        device_id, Channel.TELEMETRY
    )


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("device/scale-01/telemetry", id="prefix-singular"),
        pytest.param("Devices/scale-01/telemetry", id="prefix-case"),
        pytest.param("tenants/t1/alarms", id="operator-topic"),
        pytest.param("/devices/scale-01/telemetry", id="leading-slash"),
        pytest.param("devices/scale 01/telemetry", id="id-space"),
        pytest.param("devices/scale+01/telemetry", id="id-plus"),
        pytest.param("devices/+/telemetry", id="id-wildcard"),
        pytest.param("devices/#/telemetry", id="id-hash"),
        pytest.param("devices/väg-1/telemetry", id="id-non-ascii"),
        pytest.param("devices/-scale/telemetry", id="id-leading-dash"),
        pytest.param("devices/.scale/telemetry", id="id-leading-dot"),
        pytest.param("devices/_scale/telemetry", id="id-leading-underscore"),
        pytest.param("devices//telemetry", id="id-empty"),
        pytest.param(f"devices/{'a' * 65}/telemetry", id="id-65-chars"),
        pytest.param("devices/scale-01/alarms", id="channel-unknown"),
        pytest.param("devices/scale-01/Telemetry", id="channel-case"),
        pytest.param("devices/scale-01/", id="channel-empty"),
        pytest.param("devices/scale-01", id="channel-missing"),
        pytest.param("devices/scale-01/telemetry/extra", id="extra-level"),
        pytest.param("devices/scale-01/telemetry/", id="trailing-slash"),
        pytest.param("devices/a/b/telemetry", id="id-with-slash"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_device_topic_invalid(topic: str) -> None:
    assert parse_device_topic(topic) is None


@pytest.mark.parametrize("channel", list(Channel))
def test_device_topic_builds(channel: Channel) -> None:
    assert device_topic("lock-7", channel) == f"devices/lock-7/{channel.value}"
    assert device_topic("lock-7", channel.value) == f"devices/lock-7/{channel.value}"


@pytest.mark.parametrize("device_id", ["", "a b", "a/b", "+", "#", "-a", "å", "a" * 65, "a\x00"])
def test_device_topic_rejects_bad_ids(device_id: str) -> None:
    assert not is_valid_device_id(device_id)
    with pytest.raises(ValueError, match="invalid device id"):
        device_topic(device_id, Channel.TELEMETRY)


def test_device_topic_rejects_unknown_channel() -> None:
    with pytest.raises(ValueError, match="alarms"):
        device_topic("lock-7", "alarms")


def test_device_published_channels() -> None:
    assert set(Channel) - DEVICE_PUBLISHED == {Channel.COMMANDS}


def test_tenant_alarms_topic() -> None:
    assert tenant_alarms_topic("stockholm") == "tenants/stockholm/alarms"
    assert parse_device_topic(tenant_alarms_topic("stockholm")) is None


@PROPERTY
@given(
    st.from_regex(DEVICE_ID_PATTERN, fullmatch=True).filter(lambda s: not s.endswith("\n")),
    st.sampled_from(list(Channel)),
)
def test_property_topic_round_trip(device_id: str, channel: Channel) -> None:
    assert parse_device_topic(device_topic(device_id, channel)) == DeviceTopic(device_id, channel)


# --- JSON Schema export ----------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[Channel, dict[str, Any]]:
    directory: Path = tmp_path_factory.mktemp("contract-schemas")
    written = export(directory)
    assert sorted(p.name for p in written) == sorted(f"{c.value}.json" for c in Channel)
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in written)
    schemas = {}
    for channel in Channel:
        schema = json.loads((directory / f"{channel.value}.json").read_text())
        schemas[channel] = schema
    return schemas


def test_export_writes_one_valid_schema_per_channel(
    exported: dict[Channel, dict[str, Any]],
) -> None:
    for channel, schema in exported.items():
        assert schema["$schema"] == SCHEMA_DIALECT
        assert schema["x-topic"] == f"devices/{{device_id}}/{channel.value}"
        assert schema["x-device-id-pattern"] == DEVICE_ID_PATTERN
        assert schema == json.loads(json.dumps(channel_schema(channel)))
        jsonschema.Draft202012Validator.check_schema(schema)


def test_export_is_idempotent(tmp_path: Path) -> None:
    first = [p.read_text() for p in export(tmp_path / "out")]
    second = [p.read_text() for p in export(tmp_path / "out")]
    assert first == second


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(("channel", "payload"), VALID)
def test_valid_example_matches_exported_schema(
    exported: dict[Channel, dict[str, Any]], channel: Channel, payload: dict[str, Any]
) -> None:
    errors = list(_validator(exported[channel]).iter_errors(payload))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize(
    ("channel", "payload"),
    [
        pytest.param(T, msg("weight", kg=-1), id="kg-negative"),
        pytest.param(T, msg("weight", kg=0), id="kg-zero"),
        pytest.param(T, msg("weight", kg=70, kgs=70), id="extra-field"),
        pytest.param(T, msg("weight"), id="kg-missing"),
        pytest.param(T, {**POS, "lat": 91}, id="lat-range"),
        pytest.param(T, msg("battery", percent=101), id="percent-range"),
        pytest.param(H, msg("heartbeat", rssi_dbm=1), id="rssi-positive"),
        pytest.param(T, msg("temperature", celsius=20), id="unknown-type"),
        pytest.param(E, msg("weight", kg=70), id="wrong-channel"),
        pytest.param(T, {**msg("weight", kg=70), "v": 2}, id="v-2"),
        pytest.param(T, without(msg("weight", kg=70), "v"), id="v-missing"),
        pytest.param(T, {**msg("weight", kg=70), "v": True}, id="v-true"),
        pytest.param(T, msg("weight", kg=70, id_="a" * 65), id="id-too-long"),
        pytest.param(T, msg("weight", kg=70, id_=""), id="id-empty"),
        pytest.param(T, {**msg("weight", kg=70), "ts": 1748779170}, id="ts-number"),
        pytest.param(E, {**LOCK, "method": "bluetooth"}, id="lock-method"),
        pytest.param(S, {"v": 1, "type": "status", "state": "asleep"}, id="status-state"),
        pytest.param(T, [msg("weight", kg=70)], id="array"),
    ],
)
def test_invalid_example_fails_exported_schema(
    exported: dict[Channel, dict[str, Any]], channel: Channel, payload: Any
) -> None:
    assert not _validator(exported[channel]).is_valid(payload)
    assert isinstance(decode(channel, payload), DecodeError)


@pytest.mark.parametrize(
    ("channel", "payload"),
    [
        pytest.param(T, {**BP, "systolic_mmhg": 80}, id="systolic-not-above-diastolic"),
        pytest.param(E, msg("alarm", kind="fall", lat=57.7), id="lat-without-lon"),
        pytest.param(E, without(LOCK, "key_id"), id="app-without-key"),
        pytest.param(C, msg("command", name="unlock"), id="unlock-without-expiry"),
        pytest.param(T, msg("weight", kg=70, ts="2030-01-01T00:00:00Z"), id="future-ts"),
    ],
)
def test_cross_field_rules_are_only_in_the_decoder(
    exported: dict[Channel, dict[str, Any]], channel: Channel, payload: dict[str, Any]
) -> None:
    # JSON Schema cannot express these; docs/contract.md says decode_payload is the
    # reference. If the schema learns one of them, move the case to the test above.
    assert _validator(exported[channel]).is_valid(payload)
    assert isinstance(decode(channel, payload), DecodeError)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from _walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from _walk(child)


def _literal_values(model: type, field: str) -> set[Any]:
    annotation = model.model_fields[field].annotation  # type: ignore[attr-defined]
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {member.value for member in annotation}
    raise AssertionError(f"{model.__name__}.{field} is not a Literal or Enum: {annotation}")


def _schema_values(node: dict[str, Any]) -> set[Any]:
    if "const" in node:
        return {node["const"]}
    if "enum" in node:
        return set(node["enum"])
    if "$ref" in node:
        return {("$ref", node["$ref"])}
    found: set[Any] = set()
    for option in node.get("anyOf", []):
        found |= _schema_values(option)
    return found


def _object_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in _walk(schema) if isinstance(n.get("properties"), dict)]


def _model_schema(schema: dict[str, Any], model: type) -> dict[str, Any]:
    """The object schema of ``model``: in ``$defs`` for unions, else the root."""
    node = schema.get("$defs", {}).get(model.__name__)
    if node is None:
        assert "properties" in schema, f"{model.__name__} not found"
        node = schema
    return node


def _resolve(schema: dict[str, Any], values: set[Any]) -> set[Any]:
    out: set[Any] = set()
    for value in values:
        if isinstance(value, tuple) and value[0] == "$ref":
            name = value[1].rsplit("/", 1)[-1]
            out |= _schema_values(schema["$defs"][name])
        else:
            out.add(value)
    return out


@pytest.mark.parametrize("channel", list(Channel))
def test_schema_type_values_match_model_literals(
    exported: dict[Channel, dict[str, Any]], channel: Channel
) -> None:
    schema = exported[channel]
    consts = set()
    for node in _object_schemas(schema):
        if "type" in node["properties"]:
            consts |= _schema_values(node["properties"]["type"])
    expected = {
        value
        for model in CHANNEL_TYPES[channel].values()
        for value in _literal_values(model, "type")
    }
    assert consts == expected == set(CHANNEL_TYPES[channel])
    mapping = schema.get("discriminator", {}).get("mapping")
    if mapping is not None:
        assert set(mapping) == expected
    for node in _object_schemas(schema):
        assert node["properties"]["v"]["const"] == 1
        assert node.get("additionalProperties") is False


@pytest.mark.parametrize(
    ("channel", "model", "field"),
    [
        (E, Alarm, "kind"),
        (E, Lock, "action"),
        (E, Lock, "method"),
        (S, Status, "state"),
        (C, Command, "name"),
    ],
)
def test_schema_enums_match_model_literals(
    exported: dict[Channel, dict[str, Any]], channel: Channel, model: type, field: str
) -> None:
    schema = exported[channel]
    node = _model_schema(schema, model)
    assert _resolve(schema, _schema_values(node["properties"][field])) == _literal_values(
        model, field
    )


@pytest.mark.parametrize(
    ("model", "required"),
    [
        (Weight, {"v", "type", "id", "ts", "kg"}),
        (BloodPressure, {"v", "type", "id", "ts", "systolic_mmhg", "diastolic_mmhg"}),
        (Position, {"v", "type", "id", "ts", "lat", "lon", "accuracy_m"}),
        (Heartbeat, {"v", "type", "id", "ts"}),
        (Status, {"v", "type", "state"}),
        (Command, {"v", "type", "id", "ts", "name"}),
        (Reply, {"v", "type", "id", "ts", "command_id", "ok"}),
    ],
)
def test_schema_required_fields(
    exported: dict[Channel, dict[str, Any]], model: type, required: set[str]
) -> None:
    channel = next(ch for ch, types in CHANNEL_TYPES.items() if model in types.values())
    node = _model_schema(exported[channel], model)
    assert set(node["required"]) == required


@pytest.mark.parametrize(("channel", "payload"), WRONG_JSON_TYPES)
def test_schema_refuses_wrong_json_types(
    exported: dict[Channel, dict[str, Any]], channel: Channel, payload: dict[str, Any]
) -> None:
    # The decoder refuses these too (test above): one judgement for vendors and gateway.
    assert not _validator(exported[channel]).is_valid(payload)


@pytest.mark.parametrize(
    ("channel", "body"),
    [
        ("events", {"type": "lock", "action": "unlocked", "method": "app", "key_id": "a\u0000b"}),
        ("events", {"type": "lock", "action": "unlocked", "method": "app", "key_id": "a b"}),
        ("status", {"type": "status", "state": "online", "firmware": "2.4\u0000"}),
        ("status", {"type": "status", "state": "online", "firmware": "2.4\n"}),
        ("replies", {"type": "reply", "command_id": "c1", "ok": False, "detail": "x\u0000"}),
        ("replies", {"type": "reply", "command_id": "c1", "ok": False, "detail": "a\u001bb"}),
    ],
)
def test_control_characters_in_device_text_are_refused(channel: str, body: dict) -> None:
    """A NUL byte cannot be stored in PostgreSQL text; refuse it (and other control
    characters) at the contract, where the device learns why."""
    now = datetime.now(UTC)
    raw = json_bytes({"v": 1, "id": "m1", "ts": now.isoformat(), **body})
    result = decode_payload(Channel(channel), raw, now=now)
    assert isinstance(result, DecodeError)
    assert result.reason is Reason.SCHEMA_VIOLATION


def test_device_text_may_be_unicode_where_it_is_prose() -> None:
    now = datetime.now(UTC)
    raw = json_bytes({"v": 1, "id": "m1", "ts": now.isoformat(), "type": "reply",
                        "command_id": "c1", "ok": False, "detail": "utgången, för sent"})
    assert not isinstance(decode_payload(Channel.REPLIES, raw, now=now), DecodeError)


def json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()
