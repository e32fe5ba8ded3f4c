"""A payload is decoded once for a worker's two paths (storage and the alarm engine's
intake), and what waits for the second path is bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from firmware_contracts.decode import Decoded, DecodeError, Reason
from firmware_contracts.topics import Channel
from gateway.worker.payload_decoder import PayloadDecoder

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _weight(msg_id: str, ts: datetime = NOW) -> bytes:
    return orjson.dumps({"v": 1, "type": "weight", "id": msg_id, "ts": ts.isoformat(),
                         "kg": 71.5})  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _decoder(keep: int = 8, clock: Clock | None = None) -> PayloadDecoder:
    """As on a worker running the alarm engine: two paths meet each payload."""
    decode = PayloadDecoder(max_bytes=1024, max_skew=timedelta(minutes=5), keep=keep,
                            max_age_s=5.0, clock=clock or Clock())  # fmt: skip
    decode.sharing = True
    return decode


def test_the_second_path_gets_the_first_paths_result() -> None:
    decode = _decoder()
    first = decode(Channel.TELEMETRY, _weight("a"), NOW)
    second = decode(Channel.TELEMETRY, _weight("a"), NOW + timedelta(milliseconds=3))
    assert isinstance(first, Decoded) and second is first
    assert (decode.decoded, decode.shared) == (1, 1)
    third = decode(Channel.TELEMETRY, _weight("a"), NOW)  # a redelivery: decoded afresh
    assert third == first and third is not first
    assert (decode.decoded, decode.shared) == (2, 1)


def test_refusals_are_shared_alike_and_channels_are_apart() -> None:
    decode = _decoder()
    late = _weight("b", NOW + timedelta(hours=1))
    refused = decode(Channel.TELEMETRY, late, NOW)
    assert isinstance(refused, DecodeError) and refused.reason == Reason.FUTURE_TIMESTAMP
    # the second path judges by the first path's receive time: both refuse it alike
    assert decode(Channel.TELEMETRY, late, NOW + timedelta(hours=2)) is refused
    on_events = decode(Channel.EVENTS, _weight("c"), NOW)
    assert isinstance(on_events, DecodeError) and on_events.reason == Reason.WRONG_CHANNEL
    assert isinstance(decode(Channel.TELEMETRY, _weight("c"), NOW), Decoded)


def test_what_waits_is_bounded_and_the_oldest_goes_first() -> None:
    decode = _decoder(keep=4)
    for i in range(10):  # one path only (the other refused them over its allowance)
        decode(Channel.TELEMETRY, _weight(f"m{i}"), NOW)
    assert len(decode._waiting) == 4
    decode(Channel.TELEMETRY, _weight("m0"), NOW)  # dropped long ago: decoded again
    decode(Channel.TELEMETRY, _weight("m9"), NOW)  # still waiting: shared
    assert (decode.decoded, decode.shared) == (11, 1)


def test_an_oversized_payload_is_refused_unread_and_never_held() -> None:
    decode = _decoder()
    huge = b"{" + b" " * 4096 + b"}"
    refused = decode(Channel.TELEMETRY, huge, NOW)
    assert isinstance(refused, DecodeError) and refused.reason == Reason.PAYLOAD_TOO_LARGE
    assert decode._waiting == {} and decode.decoded == 0


def test_a_worker_without_the_engine_keeps_nothing() -> None:
    """Storage is then the only path: a decoding left for the engine would never be taken
    (4,096 of them, 3.5 MB and more, stayed on every such worker)."""
    decode = PayloadDecoder(max_bytes=1024, max_skew=timedelta(minutes=5))
    assert not decode.sharing
    first = decode(Channel.TELEMETRY, _weight("a"), NOW)
    assert len(decode) == 0
    assert decode(Channel.TELEMETRY, _weight("a"), NOW) is not first
    assert (decode.decoded, decode.shared) == (2, 0)


def test_the_engine_standing_down_lets_go_of_what_waits() -> None:
    decode = _decoder()
    decode(Channel.TELEMETRY, _weight("a"), NOW)
    assert len(decode) == 1
    decode.sharing = False
    assert len(decode) == 0


def test_what_the_other_path_has_passed_is_let_go() -> None:
    """After a burst in which storage fell more than ``keep`` behind, the engine's last
    decodings were dropped before storage came to them, and storage's own were left for
    an engine that had passed them: they went only when pushed out by new ones, so up to
    ``keep`` stayed for good. Now an entry older than ``max_age_s`` goes."""
    clock = Clock()
    decode = _decoder(keep=100, clock=clock)
    for i in range(50):
        decode(Channel.TELEMETRY, _weight(f"old{i}"), NOW)
    clock.now += 4.0
    decode(Channel.TELEMETRY, _weight("young"), NOW)
    assert len(decode) == 51  # none is older than 5 s yet
    clock.now += 1.5
    decode(Channel.TELEMETRY, _weight("new"), NOW)
    assert len(decode) == 2  # the 50 are 5.5 s old: gone; "young" (1.5 s) waits
    assert decode(Channel.TELEMETRY, _weight("young"), NOW) is not None
    assert decode.shared == 1
