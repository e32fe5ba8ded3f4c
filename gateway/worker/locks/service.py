"""Keyless-lock access, wired: the rule judged from memory, remote unlock commands, and
reported unlocks checked and written to the access log.

* :meth:`LockService.judge` applies :func:`gateway.domain.lock_access.decide` to what is
  in memory (staff keys and visits from :class:`LockAccessCache`, open alarms from the
  alarm book): no database on the way.
* :meth:`LockService.prepare` checks an operator's remote unlock (the device, the key or
  the staff member's keys) and judges it; an allowed one is held as a prepared command
  until :meth:`LockService.send` sends it (after the API has logged the decision):
  ``unlock`` with a short ``expires_at``, waiting for the lock's reply until shortly after
  that expiry.
* :meth:`LockService.observe` sees every accepted device message on the alarm path:
  replies complete waiting commands; an ``unlocked`` event by a key is judged, the
  decision queued for the access log, and returned so the alarm engine can raise
  ``unauthorised_unlock`` when it is a refusal.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID, uuid4

from firmware_contracts.messages import Command, DeviceMessage, Lock, Reply
from gateway.adapters.postgres.access_log import AccessEntry
from gateway.config.settings import LockSettings
from gateway.domain.alarms import Alarm
from gateway.domain.lock_access import (
    AccessPolicy,
    Decision,
    OpenAlarm,
    Reason,
    UnlockRequest,
    decide,
)
from gateway.domain.registry import Binding, DeviceRecord, DeviceStatus
from gateway.worker.locks.audit import AccessLogWriter
from gateway.worker.locks.cache import LockAccessCache
from gateway.worker.locks.commands import CommandChannel, NotConnected

log = logging.getLogger(__name__)

#: The access-log category of an entry into a home.
CATEGORY = "home_entry"
RECENT_EVENT_IDS = 64

Status = Literal["done", "refused_by_device", "expired", "timed_out", "not_sent"]


@dataclass(frozen=True)
class UnlockOutcome:
    status: Status
    command_id: str
    expires_at: datetime
    detail: str | None = None


class UnlockRefused(Exception):
    """The unlock cannot even be judged: no such lock in the tenant (404), not a lock
    (422), not in service (409)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PreparedUnlock:
    """A judged remote unlock: what the access log needs, and the command, sent by
    :meth:`LockService.send` only if ``decision.allowed``."""

    tenant_id: str
    person_id: UUID | None
    key_id: str
    decision: Decision
    command: Command


def policy_from(settings: LockSettings) -> AccessPolicy:
    return AccessPolicy(
        margin_before=timedelta(seconds=settings.margin_before_s),
        margin_after=timedelta(seconds=settings.margin_after_s),
        alarm_kinds=frozenset(settings.alarm_kinds),
    )


def describe(decision: Decision) -> str:
    """The access log's ``reason`` for a decision: the rule's reason, and what allowed it."""
    if decision.visit_id:
        return f"{decision.reason.value} {decision.visit_id}"
    if decision.alarm_id:
        return f"{decision.reason.value} {decision.alarm_id}"
    return decision.reason.value


class LockService:
    def __init__(
        self,
        settings: LockSettings,
        *,
        database_url: str,
        mqtt_url: str,
        client_id: str,
        open_alarms: Callable[[str], Sequence[Alarm]],
        resolve: Callable[[str], Awaitable[DeviceRecord | None]],
    ) -> None:
        self.settings = settings
        self.policy = policy_from(settings)
        self.ttl = timedelta(seconds=settings.command_ttl_s)
        self.reply_grace = timedelta(seconds=settings.reply_grace_s)
        self.cache = LockAccessCache(database_url)
        self.commands = CommandChannel(mqtt_url, f"{client_id}-commands")
        self.audit = AccessLogWriter(database_url)
        self._open_alarms = open_alarms
        self.resolve = resolve  # device id -> registry record (memory, then database)
        self._recent: dict[str, deque[str]] = {}
        #: allowed commands waiting for the API's decision log, by command id, until expiry
        self._prepared: dict[str, tuple[DeviceRecord, Command]] = {}

    # --- the rule, from memory ----------------------------------------------------------
    def judge(
        self,
        device: DeviceRecord,
        person_id: UUID | None,
        key_id: str | None,
        at: datetime,
        expires_at: datetime | None = None,
        unit_id: UUID | None = None,
    ) -> Decision:
        # the key of the lock's tenant only: another tenant's key of that id is as unknown
        # here as any (key ids are per tenant; saying "another tenant's" would tell this
        # tenant's operators that some other municipality uses that id)
        key = self.cache.key(key_id, device.tenant_id) if key_id else None
        staff = self.cache.staff(key.staff_id) if key else None
        alarms = [
            OpenAlarm(str(a.id), a.kind.value)
            for a in self._open_alarms(device.tenant_id)
            if person_id is not None and a.person_id == person_id
        ]
        request = UnlockRequest(
            key_id=key_id, lock_tenant=device.tenant_id, person_id=person_id, at=at,
            key=key, staff=staff, visits=self.cache.visits(person_id) if person_id else (),
            open_alarms=alarms, expires_at=expires_at, unit_id=unit_id,
        )  # fmt: skip
        return decide(request, self.policy)

    def keys_of(self, tenant_id: str, subject: str) -> list[str]:
        """Key ids of the staff member with login ``subject`` in ``tenant_id``."""
        return self.cache.keys_of_subject(tenant_id, subject)

    # --- remote unlock --------------------------------------------------------------------
    def new_command(self, key_id: str, now: datetime) -> Command:
        return Command(
            v=1, type="command", id=f"unlock-{uuid4().hex}", ts=now, name="unlock",
            args={"key_id": key_id}, expires_at=now + self.ttl,
        )  # fmt: skip

    async def prepare(
        self, tenant_id: str, device_id: str, key_id: str | None, staff_subject: str | None
    ) -> PreparedUnlock:
        """Judge an operator's unlock of ``device_id`` with ``key_id``, or with any key of
        the staff member ``staff_subject`` (the first that is allowed, else the first)."""
        device = await self.resolve(device_id)
        if device is None or device.tenant_id != tenant_id:
            raise UnlockRefused("device not found", 404)
        if device.device_type != "door_lock":
            raise UnlockRefused("device is not a door lock", 422)
        if device.status is not DeviceStatus.ACTIVE:
            raise UnlockRefused(f"device is {device.status.value}", 409)
        now = datetime.now(UTC)
        person = device.holder_at(now)
        unit = device.unit_at(now)  # a unit's door (#19.4)
        keys = [key_id] if key_id else self.keys_of(tenant_id, staff_subject or "")
        expires_at = now + self.ttl
        judged = [(k, self.judge(device, person, k, now, expires_at, unit)) for k in keys]
        chosen, decision = next(
            ((k, d) for k, d in judged if d.allowed),
            judged[0] if judged else (staff_subject or "", Decision(False, Reason.KEY_UNKNOWN)),
        )
        command = self.new_command(chosen, now)
        self._prepared = {
            c: held
            for c, held in self._prepared.items()
            if held[1].expires_at and held[1].expires_at > now
        }
        if decision.allowed:
            self._prepared[command.id] = (device, command)
        return PreparedUnlock(device.tenant_id, person, chosen, decision, command)

    async def send(self, command_id: str) -> UnlockOutcome | None:
        """Send a command :meth:`prepare` allowed (once); None if there is no such
        command here (never prepared, already sent, or expired before it was asked for)."""
        held = self._prepared.pop(command_id, None)
        if held is None:
            return None
        return await self.unlock(*held)

    async def unlock(self, device: DeviceRecord, command: Command) -> UnlockOutcome:
        """Send ``command`` and wait for the lock's reply until ``expires_at`` plus the
        reply grace; the lock itself refuses it after ``expires_at``."""
        assert command.expires_at is not None
        wait = (command.expires_at + self.reply_grace - datetime.now(UTC)).total_seconds()
        try:
            reply = await self.commands.send(device.device_id, command, max(0.0, wait))
        except NotConnected as exc:
            return UnlockOutcome("not_sent", command.id, command.expires_at, str(exc)[:200])
        if reply is None:
            return UnlockOutcome("timed_out", command.id, command.expires_at)
        if reply.ok:
            return UnlockOutcome("done", command.id, command.expires_at, reply.detail)
        status: Status = "expired" if reply.detail == "expired" else "refused_by_device"
        return UnlockOutcome(status, command.id, command.expires_at, reply.detail)

    # --- what locks report ------------------------------------------------------------------
    def observe(
        self, device: DeviceRecord, binding: Binding, message: DeviceMessage, at: datetime
    ) -> Decision | None:
        """Replies go to waiting commands. An ``unlocked`` event is judged (once per
        message id) and logged; the decision is returned (None for anything else)."""
        if isinstance(message, Reply):
            self.commands.on_reply(device.device_id, message)
            return None
        if not isinstance(message, Lock) or message.action != "unlocked":
            return None
        recent = self._recent.setdefault(device.device_id, deque(maxlen=RECENT_EVENT_IDS))
        if message.id in recent:
            return None  # a redelivery: judged and logged already
        recent.append(message.id)
        what = f"lock {device.device_id} reported unlocked ({message.method}) msg {message.id}"
        if message.method == "manual":  # from inside or a mechanical key: logged only
            self._log(device, binding, None, "allowed", "manual", what)
            return None
        decision = self.judge(
            device, binding.person_id, message.key_id, message.ts, unit_id=binding.unit_id
        )
        staff = self.cache.staff(decision.staff_id) if decision.staff_id else None
        self._log(
            device, binding, staff.subject if staff else None,
            "allowed" if decision.allowed else "denied", describe(decision),
            f"{what} key {message.key_id or '-'}",
        )  # fmt: skip
        if not decision.allowed:
            log.warning(
                "unauthorised unlock reported",
                extra={"device_id": device.device_id, "tenant_id": device.tenant_id,
                       "reason": decision.reason.value},
            )  # fmt: skip
        return decision

    def _log(
        self, device: DeviceRecord, binding: Binding, actor: str | None, outcome: str,
        reason: str, request: str,
    ) -> None:  # fmt: skip
        self.audit.submit(
            AccessEntry(
                actor=actor or "lock-reported", actor_org=None, actor_role="staff_key",
                actor_tenant=device.tenant_id, owner_tenant=device.tenant_id,
                person_id=binding.person_id, categories=[CATEGORY],
                purpose="unlock reported by the lock", outcome=outcome, reason=reason,
                request=request,
            )
        )  # fmt: skip

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self.cache.load()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self.cache.follow(stop), self.commands.run(stop), self.audit.run(stop))
