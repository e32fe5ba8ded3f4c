"""The alarm engine's intake: device messages straight to the rules, ahead of storage.

The active engine reads every device's messages on sessions of its own
(:mod:`gateway.worker.alarms.engine_role`); storage reads them again on the workers' shared
session. Here a message is decoded, bound to the device's holder and handed to the alarm
service. Nothing is written: a message refused here (bad payload, unknown device, over
its allowance) is refused by the storage path too, which keeps it in quarantine.

Acknowledgement does not wait for a database commit: a message that raised nothing is
acknowledged at once; one that changed an alarm is acknowledged once the alarm event is
journalled and the broker has taken the event's publication (``after_sent``). A worker
that dies before that leaves the message unacknowledged on the engine's session, and the
engine that takes the session over evaluates it again (the alarm book recognises a press
it has already counted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import Histogram

from firmware_contracts.decode import DecodeError
from firmware_contracts.messages import DeviceMessage
from firmware_contracts.topics import DEVICE_PUBLISHED, parse_device_topic
from gateway.domain.rate_limit import TokenBuckets
from gateway.domain.registry import Binding, DeviceRecord, Refused
from gateway.domain.units import ResidentTags
from gateway.worker.consumer import AckToken, Inbound
from gateway.worker.ingest import ConsentGate, admit, limit_key
from gateway.worker.payload_decoder import PayloadDecoder

log = logging.getLogger(__name__)


class Engine(Protocol):
    """The alarm service as the intake sees it."""

    @property
    def dispatched(self) -> int: ...

    def observe(
        self, device: DeviceRecord, binding: Binding, message: DeviceMessage, at: datetime
    ) -> None: ...

    def after_sent(self, callback: Callable[[], None]) -> None: ...


class AlarmIntake:
    def __init__(
        self,
        *,
        resolve: Callable[[str], DeviceRecord | None],
        engine: Engine,
        ack: Callable[[Sequence[AckToken]], None],
        decode: PayloadDecoder,
        max_clock_skew: timedelta,
        device_limits: TokenBuckets | None = None,
        residents: Callable[[], ResidentTags] | None = None,
        consent: ConsentGate | None = None,
    ) -> None:
        self._resolve = resolve
        self._residents = residents  # resident tags of units' shared devices (#19.4)
        self._consent = consent  # supervision decisions with consent (#20)
        self._engine = engine
        self._ack = ack
        self._decode = decode
        self._max_skew = max_clock_skew
        self._limits = device_limits
        #: receipt -> alarm event taken by the broker (attached by the engine role)
        self.latency: Histogram | None = None

    async def handle(self, msg: Inbound) -> None:
        ack = msg.ack
        try:
            if self._evaluate(msg):
                received_at = msg.received_at
                self._engine.after_sent(lambda: self._sent(ack, received_at))
                return
        except Exception:  # a bug in a rule must not stop the engine's intake
            log.exception("alarm intake failed for a message")
        self._ack((ack,))

    def _sent(self, ack: AckToken, received_at: datetime) -> None:
        self._ack((ack,))
        if self.latency is not None:
            self.latency.observe(max(0.0, (datetime.now(UTC) - received_at).total_seconds()))

    def _evaluate(self, msg: Inbound) -> bool:
        """True when the message changed an alarm."""
        topic = parse_device_topic(msg.topic)
        if topic is None or topic.channel not in DEVICE_PUBLISHED:
            return False
        if self._limits is not None and not self._limits.allow(
            limit_key(topic.device_id, topic.channel), time.monotonic()
        ):
            return False
        decoded = self._decode(topic.channel, msg.payload, msg.received_at)
        if isinstance(decoded, DecodeError):
            return False
        message = decoded.message
        device = self._resolve(topic.device_id)
        # the storage path's judgement (gateway.worker.ingest.admit): an alarm binds to whoever
        # holds the device now, and one stamped before the current assignment began, or
        # of a kind the device's type never raises, reaches no one (storage quarantines it)
        bound = admit(
            device, message, message.ts, self._max_skew, self._residents, self._consent
        )
        if isinstance(bound, Refused) or device is None:
            return False
        before = self._engine.dispatched
        self._engine.observe(device, bound, message, msg.received_at)
        return self._engine.dispatched != before
