"""A device message's payload decoded once for both of a worker's paths.

A worker that runs the alarm engine receives every device message twice: on the
engine's sessions (the rules, acknowledged at once) and on its storage session
(acknowledged after commit). Both need the same decoding and validation
(:func:`firmware_contracts.decode.decode_payload`, with the deployment's limits). The
first path to meet a payload decodes it and leaves the result here; the second takes it,
so each message is validated once (issue #22: decoding was a sixth of the worker's time).

The result is a function of the channel and the payload bytes alone, but for the
future-timestamp check, which uses the receive time of the first path: both paths then
judge the message alike, so the engine never acts on what storage quarantines for its
timestamp. Decoded messages are frozen models, safe to share. What waits here is bounded
(``keep`` entries, oldest dropped first): a payload only one path meets (a worker that
does not run the engine, a message one path refused over its allowance) costs a slot,
never memory without bound, and a dropped entry is only decoded again. A payload over
the size limit is refused unread and never held.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from firmware_contracts.decode import Decoded, DecodeError, decode_payload
from firmware_contracts.topics import Channel

#: payloads decoded by one path and not yet met by the other; about the storage session's
#: lag behind the engine's at saturation (its receive window and the writer's batch)
KEEP = 4_096


class PayloadDecoder:
    def __init__(self, *, max_bytes: int, max_skew: timedelta, keep: int = KEEP) -> None:
        self._max_bytes = max_bytes
        self._max_skew = max_skew
        self._keep = keep
        self._waiting: dict[tuple[Channel, bytes], Decoded | DecodeError] = {}
        self.decoded = 0  # decodings made (the rest were shared)
        self.shared = 0

    def __call__(self, channel: Channel, payload: bytes, now: datetime) -> Decoded | DecodeError:
        if len(payload) > self._max_bytes:  # refused unread, and never held here
            return decode_payload(channel, payload, now=now, max_bytes=self._max_bytes)
        key = (channel, payload)
        waiting = self._waiting
        found = waiting.pop(key, None)
        if found is not None:
            self.shared += 1
            return found
        result = decode_payload(
            channel, payload, now=now, max_bytes=self._max_bytes, max_skew=self._max_skew
        )
        self.decoded += 1
        if len(waiting) >= self._keep:
            del waiting[next(iter(waiting))]  # the oldest: dicts keep insertion order
        waiting[key] = result
        return result
