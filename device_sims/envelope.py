"""What a simulated device hands to its transport: encoded messages and link actions.

Simulators build contract models (:mod:`firmware_contracts.messages`), so a message that
breaks the contract fails where it is made; :func:`encode` turns one into an
:class:`Outgoing` (channel + JSON bytes). :class:`LinkDown` / :class:`LinkUp` tell the
transport that the device's connection ends (abruptly or cleanly) or comes back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import BaseModel

from device_sims.params import DisconnectMode
from firmware_contracts.messages import Status
from firmware_contracts.topics import Channel

#: The MQTT last will of every simulated device (retained, QoS 1, on the status channel).
LAST_WILL_PAYLOAD = orjson.dumps(
    Status(v=1, type="status", state="offline").model_dump(exclude_none=True)
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to publish on ``devices/{id}/{channel}``.

    ``buffered``: kept while the device is offline and published on reconnect with its
    original id and timestamp (readings, events). Live-only signals (heartbeats) are
    dropped instead: a heartbeat from an hour ago says nothing.
    """

    channel: Channel
    msg_type: str
    payload: bytes
    retain: bool = False
    buffered: bool = True


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The device's connection ends now; ``until`` is when it returns (None: never)."""

    mode: DisconnectMode
    until: datetime | None


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The device reconnects now (after a :class:`LinkDown` with ``until``)."""


Output = Outgoing | LinkDown | LinkUp


def encode(
    model: BaseModel, channel: Channel, *, retain: bool = False, buffered: bool = True
) -> Outgoing:
    payload = orjson.dumps(model.model_dump(exclude_none=True))
    msg_type = str(getattr(model, "type", "unknown"))
    return Outgoing(channel, msg_type, payload, retain=retain, buffered=buffered)


def last_will() -> Outgoing:
    return Outgoing(Channel.STATUS, "status", LAST_WILL_PAYLOAD, retain=True, buffered=False)


class MessageIds:
    """Message ids unique per device: ``{boot id}-{counter}``.

    The boot id is derived from the device id, the run's seed and the real start of the
    run, so two runs never reuse ids (the gateway would drop them as duplicates) while a
    given (seed, start) still reproduces every message exactly.
    """

    __slots__ = ("_boot", "_next")

    def __init__(self, device_id: str, seed: int, real_start: datetime) -> None:
        digest = hashlib.blake2s(
            f"{device_id}|{seed}|{real_start.isoformat()}".encode(), digest_size=4
        )
        self._boot = digest.hexdigest()
        self._next = 1

    @property
    def boot_id(self) -> str:
        return self._boot

    def next(self) -> str:
        value = f"{self._boot}-{self._next}"
        self._next += 1
        return value
