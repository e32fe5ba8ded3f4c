"""The common firmware of every simulated device (pure: no I/O, no real clock).

A :class:`DeviceSim` is driven by two inputs only:

* :meth:`DeviceSim.advance` with a *simulated* instant: every scheduled process due by
  then runs in time order (readings, events, heartbeats, battery, scripted faults) and
  the resulting :data:`~device_sims.envelope.Output` items are returned;
* :meth:`DeviceSim.handle_command` with the device's *wall clock* (real time): commands
  are live, so their replies and effects carry real time, and ``expires_at`` is checked
  against the device's own clock (real time plus its skew).

Everything random comes from one ``random.Random`` seeded by (run seed, device id), so a
device's messages are a deterministic function of its spec, the seed and the clock.

Heartbeats are live-only: they start when simulated time has caught up with real time
(``clock.live_from``) and are not produced while a scripted connection loss lasts.
Readings and events produced while the device is offline are handed out as usual and
buffered by the session (:mod:`device_sims.session`), then replayed with their original
ids and timestamps. Every timestamp is the simulated instant plus the device's clock skew.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from device_sims.battery import Battery
from device_sims.clock import SimClock
from device_sims.envelope import LinkDown, LinkUp, MessageIds, Outgoing, Output, encode
from device_sims.params import ConnectionLoss, DeviceType
from device_sims.scenario import DeviceSpec
from device_sims.schedule import Scheduler
from firmware_contracts.decode import DecodeError, decode_payload
from firmware_contracts.messages import (
    Battery as BatteryReading,
)
from firmware_contracts.messages import (
    BatteryLow,
    Command,
    Heartbeat,
    Reply,
    Status,
)
from firmware_contracts.topics import Channel

logger = logging.getLogger(__name__)

Handler = Callable[[datetime], list[Output]]
Setting = Callable[[float], None]

#: Range accepted for interval settings of a ``configure`` command, in seconds.
SETTING_RANGE_S = (1.0, 86_400.0)


class DeviceSim:
    device_type: ClassVar[DeviceType]

    def __init__(self, spec: DeviceSpec, *, seed: int, clock: SimClock) -> None:
        if spec.device_type != self.device_type:
            raise ValueError(f"{type(self).__name__} cannot simulate a {spec.device_type}")
        params = spec.params
        self.spec = spec
        self.device_id = spec.device_id
        self.rng = random.Random(f"{seed}:{spec.device_id}")
        self.ids = MessageIds(spec.device_id, seed, clock.real_start)
        self.start = clock.start
        self.live_from = clock.live_from
        self.now = clock.start
        self.skew = timedelta(seconds=params.clock_skew_s)
        self.heartbeat_interval = timedelta(seconds=params.heartbeat_interval_s)
        self.battery = Battery(params.battery, clock.start)
        self.dead = False
        self.offline_until: datetime | None = None
        self._scheduler = Scheduler()
        self._handlers: dict[str, Handler] = {}

        self._on("heartbeat", self._heartbeat)
        self._schedule("heartbeat", self.live_from + self._phase(self.heartbeat_interval))
        self._on("battery", self._battery_due)
        self._schedule("battery", self.start)
        report = params.battery.report_interval
        self._on("battery_report", self._battery_report)
        self._schedule("battery_report", self.start + self._phase(report))
        self._on("link_up", self._link_up)
        for index, fault in enumerate(params.faults):
            name = f"fault:{index}"
            self._on(name, self._connection_loss_handler(fault))
            self._schedule(name, self.start + fault.at)
        self._setup()

    # --- to be extended by device types ------------------------------------------------

    def _setup(self) -> None:
        """Register and schedule the device type's own processes."""

    def _settings(self) -> dict[str, Setting]:
        """Settings a ``configure`` command may change, by argument name."""
        return {"heartbeat_interval_s": self._set_heartbeat_interval}

    def _locate(self, now: datetime) -> tuple[bool, str, list[Outgoing]]:
        return False, "unsupported", []

    def _unlock(self, command: Command, now: datetime) -> tuple[bool, str, list[Outgoing]]:
        return False, "unsupported", []

    # --- scheduling --------------------------------------------------------------------

    def _on(self, name: str, handler: Handler) -> None:
        self._handlers[name] = handler

    def _schedule(self, name: str, at: datetime) -> None:
        self._scheduler.set(name, at)

    def _cancel(self, name: str) -> None:
        self._scheduler.cancel(name)

    def _phase(self, interval: timedelta) -> timedelta:
        """A random offset in [0, interval) so a fleet does not act in lockstep."""
        return timedelta(seconds=self.rng.uniform(0.0, interval.total_seconds()))

    def next_due(self) -> datetime | None:
        """Simulated instant of the next scheduled process (None: nothing, e.g. dead)."""
        return None if self.dead else self._scheduler.next_due()

    def advance(self, until: datetime) -> list[Output]:
        """Run every process due at or before simulated instant ``until``, in order."""
        out: list[Output] = []
        while not self.dead:
            item = self._scheduler.pop_due(until)
            if item is None:
                break
            at, name = item
            self.now = max(self.now, at)
            self.battery.update(at)
            if self.battery.empty:
                out.extend(self._die(at))
                break
            out.extend(self._handlers[name](at))
            out.extend(self._battery_followup(at))
        if not self.dead:
            self.now = max(self.now, until)
        return out

    # --- envelope helpers --------------------------------------------------------------

    def stamp(self, at: datetime) -> datetime:
        """The device's timestamp for instant ``at``: its clock skew applied, in ms."""
        moment = at + self.skew
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def envelope(self, at: datetime) -> dict[str, Any]:
        return {"v": 1, "id": self.ids.next(), "ts": self.stamp(at)}

    def rssi(self) -> int:
        params = self.spec.params
        value = round(self.rng.gauss(params.rssi_dbm, params.rssi_jitter_db))
        return max(-150, min(0, value))

    def status(self, state: str, now: datetime) -> Outgoing:
        """The retained online/offline status, stamped with wall-clock ``now``."""
        message = Status(
            **self.envelope(now), type="status", state=state, firmware=self.spec.params.firmware
        )
        return encode(message, Channel.STATUS, retain=True, buffered=False)

    # --- common processes --------------------------------------------------------------

    def _heartbeat(self, at: datetime) -> list[Output]:
        self._schedule("heartbeat", at + self.heartbeat_interval)
        if self.offline_until is not None:
            return []
        message = Heartbeat(
            **self.envelope(at),
            type="heartbeat",
            battery_percent=self.battery.reported,
            rssi_dbm=self.rssi(),
        )
        return [encode(message, Channel.HEARTBEAT, buffered=False)]

    def _battery_report(self, at: datetime) -> list[Output]:
        self._schedule("battery_report", at + self.spec.params.battery.report_interval)
        message = BatteryReading(**self.envelope(at), type="battery", percent=self.battery.reported)
        return [encode(message, Channel.TELEMETRY)]

    def _battery_due(self, at: datetime) -> list[Output]:
        return []  # the follow-up after every process does the work

    def _battery_followup(self, at: datetime) -> list[Output]:
        out: list[Output] = []
        if self.battery.low and not self.battery.low_reported:
            self.battery.low_reported = True
            message = BatteryLow(
                **self.envelope(at), type="battery_low", percent=self.battery.reported
            )
            out.append(encode(message, Channel.EVENTS))
        if self.battery.empty:
            out.extend(self._die(at))
            return out
        level = 0.0 if self.battery.low_reported else self.battery.spec.low_threshold_percent
        next_check = self.battery.time_to(level)
        if next_check is not None:
            self._schedule("battery", max(next_check, self.now))
        else:
            self._cancel("battery")
        return out

    def _die(self, at: datetime) -> list[Output]:
        logger.info("%s: battery flat at %s, going silent", self.device_id, at.isoformat())
        self.dead = True
        self._scheduler.clear()
        return [LinkDown(mode=self.spec.params.battery.death, until=None)]

    def _connection_loss_handler(self, fault: ConnectionLoss) -> Handler:
        def lose_connection(at: datetime) -> list[Output]:
            until = at + fault.duration
            already_offline = self.offline_until is not None
            self.offline_until = max(until, self.offline_until or until)
            self._schedule("link_up", self.offline_until)
            return [] if already_offline else [LinkDown(mode=fault.mode, until=until)]

        return lose_connection

    def _link_up(self, at: datetime) -> list[Output]:
        self.offline_until = None
        return [LinkUp()]

    # --- commands ----------------------------------------------------------------------

    def handle_command_payload(self, payload: bytes, now: datetime) -> list[Output]:
        """Decode a payload received on ``devices/{id}/commands`` and obey it."""
        result = decode_payload(Channel.COMMANDS, payload, now=now + self.skew)
        if isinstance(result, DecodeError):
            logger.warning("%s: ignoring bad command: %s", self.device_id, result.detail)
            return []
        command = result.message
        assert isinstance(command, Command)  # the commands channel decodes commands only
        return self.handle_command(command, now)

    def handle_command(self, command: Command, now: datetime) -> list[Output]:
        """Obey ``command`` at wall-clock ``now``; returns its effects, then the reply."""
        if self.dead:
            return []
        out: list[Output] = []
        if command.expires_at is not None and command.expires_at <= now + self.skew:
            ok, detail = False, "expired"
        elif command.name == "configure":
            ok, detail = self._configure(command.args)
        elif command.name == "locate":
            ok, detail, effects = self._locate(now)
            out.extend(effects)
        else:
            ok, detail, effects = self._unlock(command, now)
            out.extend(effects)
        reply = Reply(
            **self.envelope(now), type="reply", command_id=command.id, ok=ok, detail=detail
        )
        out.append(encode(reply, Channel.REPLIES))
        # An operation may have cost the last of the battery.
        out.extend(self._battery_followup(now))
        return out

    def _configure(self, args: dict[str, Any]) -> tuple[bool, str]:
        settings = self._settings()
        low, high = SETTING_RANGE_S
        if not args:
            return False, "nothing to configure"
        for key, value in args.items():
            if key not in settings:
                return False, f"unknown setting {key!r}"[:256]
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False, f"{key} must be a number"
            if not low <= value <= high:
                return False, f"{key} must be between {low:.0f} and {high:.0f}"
        for key, value in args.items():
            settings[key](float(value))
        return True, "applied " + ", ".join(f"{k}={v}" for k, v in args.items())[:240]

    def _set_heartbeat_interval(self, seconds: float) -> None:
        self.heartbeat_interval = timedelta(seconds=seconds)
        self._schedule("heartbeat", max(self.now, self.live_from) + self.heartbeat_interval)
