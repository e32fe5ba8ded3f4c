"""Ingest for storage: decode -> validate -> bind to the registry -> batch writer.

The alarm rules do not run here: the alarm engine reads every device's messages on
sessions of its own (:mod:`gateway.worker.alarms.intake`), so neither waits for the other.

Everything a message can be refused for becomes a quarantine row with a reason; nothing
here raises on bad input, so a flood of garbage costs a decode attempt and a row each and
never stops the loop. Refusals go through the same batch and the same ack-after-commit as
good messages, so a refused message is acknowledged only once its quarantine row is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from firmware_contracts.decode import DecodeError
from firmware_contracts.device_types import wrong_device_type
from firmware_contracts.messages import DeviceMessage
from firmware_contracts.topics import DEVICE_PUBLISHED, Channel, parse_device_topic
from gateway.adapters.postgres.partitions import retention_windows
from gateway.config.settings import RetentionDays
from gateway.domain.rate_limit import TokenBuckets
from gateway.domain.registry import Binding, DeviceRecord, Refusal, Refused, bind
from gateway.domain.units import ResidentTags, ResidentUnknown, identify_resident
from gateway.support.metrics import IngestMetrics
from gateway.worker.consumer import AckToken, Inbound
from gateway.worker.fleet.device_state import DeviceStates
from gateway.worker.payload_decoder import PayloadDecoder
from gateway.worker.rows import PERSONAL_TYPES, Row, message_row, quarantine_row

log = logging.getLogger(__name__)

#: the consent check of digital supervision (#20): None, or why a message is refused
ConsentGate = Callable[[Binding, DeviceMessage, datetime | None], Refused | None]
LIMIT_SAMPLE_WINDOW_S = 60.0


class Ingest:
    def __init__(
        self,
        *,
        resolve: Callable[[str], Awaitable[DeviceRecord | None]],
        put: Callable[[Row | None, AckToken | None], Awaitable[None]],
        states: DeviceStates,
        metrics: IngestMetrics,
        retention: RetentionDays,
        decode: PayloadDecoder,
        quarantine_payload_bytes: int,
        max_clock_skew: timedelta,
        device_limits: TokenBuckets | None = None,
        residents: Callable[[], ResidentTags] | None = None,
        consent: ConsentGate | None = None,
    ) -> None:
        self._resolve = resolve
        self._residents = residents  # resident tags of units' shared devices (#19.4)
        self._consent = consent  # supervision decisions with consent (#20)
        self._put = put
        self._states = states
        self._metrics = metrics
        self._kept_for = retention_windows(retention)  # by table name
        self._decode = decode
        self._quarantine_cap = quarantine_payload_bytes
        self._max_skew = max_clock_skew
        self._limits = device_limits
        self._limit_sampled: dict[str, float] = {}
        self._received = {ch: metrics.received.labels(ch.value) for ch in DEVICE_PUBLISHED}

    async def handle(self, msg: Inbound) -> None:
        if not msg.topic.startswith("devices/"):
            # Not from a subscription of ours: the embedded demo broker (amqtt) hands a
            # connecting client retained messages of other topics (a worker's presence).
            # Nothing a device sent; acknowledged in order, not kept.
            await self._put(None, msg.ack)
            return
        topic = parse_device_topic(msg.topic)
        if topic is None or topic.channel not in DEVICE_PUBLISHED:
            await self._quarantine(msg, None, None, "unknown_topic", "not devices/{id}/{channel}")
            return
        self._received[topic.channel].inc()
        if self._limits is not None:
            key = limit_key(topic.device_id, topic.channel)
            now = time.monotonic()
            if not self._limits.allow(key, now):
                await self._refuse_over_limit(msg, topic.device_id, key, now)
                return
        decoded = self._decode(topic.channel, msg.payload, msg.received_at)
        if isinstance(decoded, DecodeError):
            device = await self._resolve(topic.device_id)
            tenant = device.tenant_id if device else None
            await self._quarantine(msg, topic.device_id, tenant, decoded.reason, decoded.detail)
            return
        message = decoded.message
        device = await self._resolve(topic.device_id)
        ts = message.ts
        bound = admit(device, message, ts, self._max_skew, self._residents, self._consent)
        if isinstance(bound, Refused):
            await self._quarantine(
                msg, topic.device_id, bound.tenant_id, bound.reason, bound.detail
            )
            return
        assert device is not None
        row = message_row(message, topic.device_id, bound, msg.received_at)
        kept_for = self._kept_for.get(row.table)
        if ts is not None and kept_for is not None:
            if ts < msg.received_at - kept_for:
                await self._quarantine(
                    msg, topic.device_id, bound.tenant_id, "older_than_retention",
                    f"ts older than the {row.table} retention",
                )  # fmt: skip
                return
            self._metrics.device_lag.observe(max(0.0, (msg.received_at - ts).total_seconds()))
        # keyed by the registry's string: one per device, not one per device's first message
        self._states.observe(device.device_id, bound.tenant_id, message, msg.received_at)
        await self._put(row, msg.ack)

    async def _refuse_over_limit(self, msg: Inbound, device_id: str, key: str, now: float) -> None:
        """Excess over a device's allowance is counted and refused, not decoded. The first
        refused message of a device and channel class in each window is kept in
        quarantine as evidence; the rest are only counted (metric), so a flooding device
        cannot fill the database either. Acknowledged in order, after earlier messages."""
        self._metrics.rate_limited.inc()
        assert self._limits is not None
        sampled_at = self._limit_sampled.get(key)
        if sampled_at is not None and now - sampled_at < LIMIT_SAMPLE_WINDOW_S:
            await self._put(None, msg.ack)
            return
        if len(self._limit_sampled) > 100_000:
            self._limit_sampled.clear()
        self._limit_sampled[key] = now
        # under the device's tenant, so its municipality sees the flood (issue #19.7);
        # looked up once a window, not per refused message
        device = await self._resolve(device_id)
        await self._quarantine(
            msg, device_id, device.tenant_id if device else None, "rate_limited",
            f"over {self._limits.rate:g} msgs/s (burst {self._limits.burst:g}) for this "
            f"device and channel class; further excess within {LIMIT_SAMPLE_WINDOW_S:g} s "
            "is counted (wg_ingest_rate_limited_total), not kept",
        )  # fmt: skip

    async def _quarantine(
        self,
        msg: Inbound,
        device_id: str | None,
        tenant_id: str | None,
        reason: str,
        detail: str,
    ) -> None:
        self._metrics.quarantined.labels(reason).inc()
        row = quarantine_row(
            received_at=msg.received_at,
            topic=msg.topic,
            device_id=device_id,
            tenant_id=tenant_id,
            reason=str(reason),
            detail=detail,
            payload=msg.payload,
            payload_cap=self._quarantine_cap,
        )
        await self._put(row, msg.ack)


def admit(
    device: DeviceRecord | None,
    message: DeviceMessage,
    ts: datetime | None,
    grace: timedelta = timedelta(0),
    residents: Callable[[], ResidentTags] | None = None,
    consent: ConsentGate | None = None,
) -> Binding | Refused:
    """Whose a decoded message is, or why it is refused: the one judgement the storage
    path and the alarm engine's intake both make (gateway.worker.alarms.intake), so the engine
    never acts on what storage refuses.

    A message type the device's type does not send is ``wrong_device_type``
    (firmware_contracts.device_types). Personal data (``PERSONAL_TYPES``: readings,
    positions, alarms, lock events) binds to the current holder only, and only if stamped
    at or after the current assignment began (less ``grace``, the clock tolerance, when
    no one held the device then); else ``before_current_assignment``
    (gateway.domain.registry.bind). Device health binds whatever its time. Two set
    look-ups and one comparison of integers on the common path.

    A unit's shared device (issue #19.4, gateway.domain.units): bound to the unit; a
    message carrying a ``resident_tag`` known at its time (``residents``: the tenants'
    resident tags) is that person's; a resident's reading (weight, blood pressure,
    position) without one is refused as ``no_resident_identified`` or
    ``unknown_resident_tag``.

    Digital supervision (issue #20, ``consent``: gateway.worker.supervision): a passive
    sensor's state (and a position, when positions are gated) of a person without a
    decision in force with consent for the service is refused as
    ``no_supervision_consent``: a memory look-up, after the binding says whose it is."""
    if device is not None:
        wrong = wrong_device_type(device.device_type, message)
        if wrong is not None:
            return Refused(Refusal.WRONG_DEVICE_TYPE, wrong, device.tenant_id)
    bound = bind(device, ts, needs_person=message.type in PERSONAL_TYPES, grace=grace)
    if isinstance(bound, Refused):
        if bound.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT:
            return Refused(bound.reason, f"{message.type} {bound.detail}", bound.tenant_id)
        return bound
    if bound.unit_id is not None:
        bound = _resident(bound, message, ts, residents)
    if consent is not None and not isinstance(bound, Refused):
        return consent(bound, message, ts) or bound
    return bound


def _resident(
    bound: Binding,
    message: DeviceMessage,
    ts: datetime | None,
    residents: Callable[[], ResidentTags] | None,
) -> Binding | Refused:
    """A message of a unit's device: the unit's, or the resident's its tag names."""
    tag = getattr(message, "resident_tag", None)
    tags = residents() if residents is not None else ResidentTags()
    whose = identify_resident(tags, bound.tenant_id, message.type, tag, ts)
    if isinstance(whose, ResidentUnknown):
        return Refused(Refusal(whose.reason.value), whose.detail, bound.tenant_id)
    if whose is None:
        return bound
    return Binding(bound.tenant_id, whose, bound.unit_id)


_SAFETY_CHANNELS = frozenset({Channel.EVENTS, Channel.STATUS})


def limit_key(device_id: str, channel: Channel) -> str:
    """Alarm events and status (the last will) have their own allowance: a device flooding
    telemetry cannot use up the budget of its own button press or offline notice."""
    return f"{device_id}/{'safety' if channel in _SAFETY_CHANNELS else 'data'}"
