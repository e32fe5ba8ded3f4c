"""Keyless door lock in a home-care recipient's home (pure simulation).

Home-care staff visit at the planned local ``visits`` times (+- ``visit_jitter``): a
staff member's app unlocks the door (``lock`` event, action ``unlocked``, method
``app``, their ``key_id``), and when they leave after about ``visit_duration`` the same
key locks it again. Now and then an attempt is ``denied`` (a key the lock does not
know) before the visit goes ahead. Scripted ``incidents`` are visits at an offset by a
given staff key, possibly leaving the door unlocked; no daily visit relocks a door an
incident left unlocked (the scenario's story plays as written: the night team's alarm,
whatever the time of day the run starts). Every operation costs battery.

An ``unlock`` command opens the door only if its ``expires_at`` has not passed on the
lock's own clock (else the reply is ok=false, detail "expired"); on success the lock
reports ``unlocked`` with method ``remote`` and relocks itself after ``auto_lock_after``
(reported as ``locked``, method ``remote``: the remote opening session ends).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Literal
from zoneinfo import ZoneInfo

from device_sims.device import DeviceSim
from device_sims.envelope import Outgoing, Output, encode
from device_sims.params import DoorLockGroup, LockIncident
from device_sims.schedule import jittered, next_daily, poisson_delay
from firmware_contracts.messages import Alarm, AlarmKind, Battery, Command, Lock
from firmware_contracts.topics import Channel


class DoorLockSim(DeviceSim):
    device_type = "door_lock"

    def _setup(self) -> None:
        params = self.spec.params
        assert isinstance(params, DoorLockGroup)
        self.lock = params
        self.zone = ZoneInfo(self.spec.timezone)
        self.staff_keys = self.spec.staff_key_ids
        self.locked = True
        self.left_unlocked = False  # by a scripted incident: daily visits keep away
        self.visitor: str | None = None
        self.remote_key: str | None = None

        self._on("visit", self._visit)
        self._on("enter", self._enter)
        self._on("leave", self._leave)
        self._on("auto_lock", self._auto_lock)
        self._on("tamper", self._tamper)
        self.slot = next_daily(self.start, params.visits, self.zone)
        self._schedule("visit", max(self.start, jittered(self.rng, self.slot, params.visit_jitter)))
        self._schedule_tamper(self.start)
        for index, incident in enumerate(params.incidents):
            name = f"incident:{index}"
            self._on(name, partial(self._incident, incident))
            self._schedule(name, self.start + incident.at)
        if params.telemetry_interval is not None:
            self._on("telemetry", self._telemetry)
            self._schedule("telemetry", self.start + self._phase(params.telemetry_interval))

    def _event(
        self,
        at: datetime,
        action: Literal["unlocked", "locked", "denied"],
        method: Literal["app", "remote", "manual"],
        key_id: str | None,
    ) -> Outgoing:
        self.battery.spend(self.lock.battery.per_operation_percent)
        message = Lock(
            **self.envelope(at), type="lock", action=action, method=method, key_id=key_id
        )
        return encode(message, Channel.EVENTS)

    def _visit(self, at: datetime) -> list[Output]:
        self.slot = next_daily(self.slot, self.lock.visits, self.zone)
        self._schedule("visit", max(at, jittered(self.rng, self.slot, self.lock.visit_jitter)))
        if self.left_unlocked:
            return []
        self.visitor = self.rng.choice(self.staff_keys)
        if self.rng.random() < self.lock.denied_probability:
            unknown = f"unknown-key-{self.rng.getrandbits(16):04x}"
            self._schedule("enter", at + timedelta(seconds=self.rng.uniform(60.0, 180.0)))
            return [self._event(at, "denied", "app", unknown)]
        return self._enter(at)

    def _incident(self, incident: LockIncident, at: datetime) -> list[Output]:
        key = self.staff_keys[incident.staff_key]
        self.locked = False
        self.visitor = key
        if incident.leave_unlocked:
            self.left_unlocked = True
            self._cancel("leave")
        else:
            self._schedule("leave", at + incident.duration)
        return [self._event(at, "unlocked", "app", key)]

    def _enter(self, at: datetime) -> list[Output]:
        assert self.visitor is not None
        self.locked = False
        stay = self.lock.visit_duration * self.rng.uniform(0.7, 1.3)
        self._schedule("leave", at + stay)
        return [self._event(at, "unlocked", "app", self.visitor)]

    def _leave(self, at: datetime) -> list[Output]:
        assert self.visitor is not None
        self.locked = True
        key, self.visitor = self.visitor, None
        return [self._event(at, "locked", "app", key)]

    def _auto_lock(self, at: datetime) -> list[Output]:
        self.locked = True
        self.left_unlocked = False
        return [self._event(at, "locked", "remote", self.remote_key)]

    def _schedule_tamper(self, after: datetime) -> None:
        delay = poisson_delay(self.rng, self.lock.tamper_per_day)
        if delay is not None:
            self._schedule("tamper", after + delay)

    def _tamper(self, at: datetime) -> list[Output]:
        self._schedule_tamper(at)
        message = Alarm(**self.envelope(at), type="alarm", kind=AlarmKind.TAMPER)
        return [encode(message, Channel.EVENTS)]

    def _telemetry(self, at: datetime) -> list[Output]:
        assert self.lock.telemetry_interval is not None
        self._schedule("telemetry", at + self.lock.telemetry_interval)
        message = Battery(**self.envelope(at), type="battery", percent=self.battery.reported)
        return [encode(message, Channel.TELEMETRY)]

    def _unlock(self, command: Command, now: datetime) -> tuple[bool, str, list[Outgoing]]:
        key = command.args.get("key_id")
        self.remote_key = key if isinstance(key, str) and 0 < len(key) <= 64 else None
        self.locked = False
        self._schedule("auto_lock", max(self.now, now) + self.lock.auto_lock_after)
        return True, "unlocked", [self._event(now, "unlocked", "remote", self.remote_key)]
