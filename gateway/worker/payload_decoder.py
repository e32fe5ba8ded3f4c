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
timestamp. Decoded messages are frozen models, safe to share.

What waits here is bounded three ways, so a payload only one path meets (a message one
path refused over its allowance, or storage so far behind that the engine's decoding was
dropped before storage came to it) is decoded again at worst, never held for nothing:

- only while this worker runs the engine (``sharing``, set by the engine's role): on a
  worker that does not, storage is the only path and nothing is kept (it held 4,096
  decodings, 3.5 MB and more, that no one would ever take);
- at most ``keep`` entries, the oldest dropped first;
- at most ``max_age_s`` seconds: the paths normally meet a message within milliseconds
  of each other, so an older entry is one the other path has passed, or one storage,
  far behind (a database outage), will decode again (after a burst, up to ``keep``
  entries the engine had passed stayed for good). With two workers or more, the
  engine's worker stores only its share of the messages its engine reads: the
  decodings of the rest wait for nothing until they are this old: with 5 s, at
  ``bench.soak``'s 1,000 msgs/s over two workers, about 2,500 of them (2 MB at about
  0.85 KB a decoding; estimated from the rate), and the engine's worker grew by more
  than the soak's 10 % after it took the engine over.

A payload over the size limit is refused unread and never held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from firmware_contracts.decode import Decoded, DecodeError, decode_payload
from firmware_contracts.topics import Channel

#: payloads decoded by one path and not yet met by the other; about the storage session's
#: lag behind the engine's at saturation (its receive window and the writer's batch)
KEEP = 4_096
#: seconds a decoding waits for the other path at most: storage meets a message within
#: milliseconds of the engine, and at saturation within about 0.4 s (``KEEP`` messages)
MAX_AGE_S = 1.0


class PayloadDecoder:
    def __init__(
        self,
        *,
        max_bytes: int,
        max_skew: timedelta,
        keep: int = KEEP,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        self._max_skew = max_skew
        self._keep = keep
        self._max_age_s = max_age_s
        self._clock = clock
        #: (channel, payload) -> the decoding and when it was left, oldest first
        self._waiting: dict[tuple[Channel, bytes], tuple[Decoded | DecodeError, float]] = {}
        self._sharing = False
        self.decoded = 0  # decodings made (the rest were shared)
        self.shared = 0

    @property
    def sharing(self) -> bool:
        """Whether a second path (the alarm engine's intake) reads this worker's messages."""
        return self._sharing

    @sharing.setter
    def sharing(self, on: bool) -> None:
        self._sharing = on
        if not on:
            self._waiting.clear()

    def __call__(self, channel: Channel, payload: bytes, now: datetime) -> Decoded | DecodeError:
        if len(payload) > self._max_bytes:  # refused unread, and never held here
            return decode_payload(channel, payload, now=now, max_bytes=self._max_bytes)
        if not self._sharing:
            self.decoded += 1
            return decode_payload(
                channel, payload, now=now, max_bytes=self._max_bytes, max_skew=self._max_skew
            )
        key = (channel, payload)
        waiting = self._waiting
        found = waiting.pop(key, None)
        if found is not None:
            self.shared += 1
            return found[0]
        result = decode_payload(
            channel, payload, now=now, max_bytes=self._max_bytes, max_skew=self._max_skew
        )
        self.decoded += 1
        left_at = self._clock()
        if waiting:  # dicts keep insertion order: the oldest first
            too_old = left_at - self._max_age_s
            oldest = next(iter(waiting))
            while waiting[oldest][1] < too_old or len(waiting) >= self._keep:
                del waiting[oldest]
                if not waiting:
                    break
                oldest = next(iter(waiting))
        waiting[key] = (result, left_at)
        return result

    def __len__(self) -> int:
        """Decodings waiting for the other path."""
        return len(self._waiting)
