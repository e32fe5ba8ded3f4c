"""Passive sensors in a home (issue #20, docs/supervision.md): a door contact, a motion or
presence sensor, a bed occupancy sensor and a floor mat (pure simulation).

In a scenario (``[[devices]]`` with ``type = "bed_sensor"`` etc., :class:`SensorGroup`)
each sensor is a :class:`DeviceSim` like the other devices (heartbeat, battery, last will,
faults): :class:`PassiveSensorSim` follows the person's daily routine (to bed, up in the
night and back or not, up in the morning, the door during the day) and reports what its
type sees of it, plus scripted ``incidents`` (a state at an offset, or the sensor dying).

A :class:`SensorSim` is one sensor: it sends its state when it changes (``door``,
``motion``, ``bed``, ``floor_mat`` on ``events``), a heartbeat at its interval and its
battery, and can die (its last will: ``status`` offline, retained). A :class:`NightScript`
is one person's night told as what their sensors see (goes to bed, gets up, comes back or
not, the bed sensor's battery runs out): :meth:`NightScript.messages` gives each sensor's
messages in time order, so a test or a demo replays a night against a gateway.

Only states: a sensor never sends an image, a sound or anything beyond its state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from itertools import count
from zoneinfo import ZoneInfo

from device_sims.device import DeviceSim
from device_sims.envelope import LAST_WILL_PAYLOAD, LinkDown, Outgoing, Output, encode
from device_sims.params import SensorGroup, SensorIncident
from device_sims.schedule import jittered, next_daily, poisson_delay
from firmware_contracts.device_types import SENSOR_DEVICE_TYPES
from firmware_contracts.messages import Bed, Door, FloorMat, Heartbeat, Motion
from firmware_contracts.topics import Channel

#: device type -> the state message type it sends
STATE_TYPE: dict[str, str] = {
    "door_sensor": "door",
    "motion_sensor": "motion",
    "bed_sensor": "bed",
    "floor_mat": "floor_mat",
}


class SensorSim:
    """One passive sensor. ``state`` builds the contract message for a state."""

    def __init__(self, device_id: str, device_type: str, *, resident_tag: str | None = None):
        if device_type not in SENSOR_DEVICE_TYPES:
            raise ValueError(f"not a sensor device type: {device_type}")
        self.device_id = device_id
        self.device_type = device_type
        self.resident_tag = resident_tag
        self._ids = count(1)
        self.alive = True

    def _envelope(self, at: datetime) -> dict[str, object]:
        return {"v": 1, "id": f"{self.device_id}-{next(self._ids)}", "ts": at}

    def state(self, at: datetime, value: bool | str) -> Outgoing:
        """The sensor's state now: a door ``"open"``/``"closed"``; motion detected, bed
        occupied, mat stepped on: ``True``/``False``."""
        head = self._envelope(at)
        tag = self.resident_tag
        match self.device_type:
            case "door_sensor":
                assert value in ("open", "closed")
                message: Door | Motion | Bed | FloorMat = Door(
                    **head, type="door", state=value, resident_tag=tag
                )
            case "motion_sensor":
                message = Motion(**head, type="motion", detected=bool(value), resident_tag=tag)
            case "bed_sensor":
                message = Bed(**head, type="bed", occupied=bool(value), resident_tag=tag)
            case _:
                message = FloorMat(
                    **head, type="floor_mat", stepped_on=bool(value), resident_tag=tag
                )
        return encode(message, Channel.EVENTS)

    def heartbeat(self, at: datetime, battery_percent: int | None = None) -> Outgoing:
        message = Heartbeat(**self._envelope(at), type="heartbeat",
                            battery_percent=battery_percent)  # fmt: skip
        return encode(message, Channel.HEARTBEAT)

    def dies(self) -> Outgoing:
        """The sensor's connection ends: the broker publishes its last will."""
        self.alive = False
        return Outgoing(Channel.STATUS, "status", LAST_WILL_PAYLOAD, retain=True, buffered=False)


@dataclass(frozen=True)
class Sent:
    """One message of a night: when, by which sensor, what."""

    at: datetime
    device_id: str
    out: Outgoing

    @property
    def topic(self) -> str:
        return f"devices/{self.device_id}/{self.out.channel.value}"


@dataclass
class NightScript:
    """One person's night as their sensors see it. ``bed`` and ``motion`` (and optionally
    ``door``, ``mat``) are the person's sensors; times are instants."""

    bed: SensorSim
    motion: SensorSim | None = None
    door: SensorSim | None = None
    mat: SensorSim | None = None
    steps: list[Sent] = field(default_factory=list)

    def _add(self, at: datetime, sensor: SensorSim, out: Outgoing) -> None:
        self.steps.append(Sent(at, sensor.device_id, out))

    def all_sensors(self) -> list[SensorSim]:
        return [s for s in (self.bed, self.motion, self.door, self.mat) if s is not None]

    def awake(self, at: datetime) -> NightScript:
        """Every sensor says what it sees now: heartbeats and initial states."""
        for sensor in self.all_sensors():
            self._add(at, sensor, sensor.heartbeat(at, 90))
        self._add(at, self.bed, self.bed.state(at, False))
        if self.door is not None:
            self._add(at, self.door, self.door.state(at, "closed"))
        return self

    def goes_to_bed(self, at: datetime) -> NightScript:
        if self.motion is not None:
            self._add(at - timedelta(seconds=1), self.motion, self.motion.state(at, True))
        self._add(at, self.bed, self.bed.state(at, True))
        return self

    def gets_up(self, at: datetime, *, steps_on_mat: bool = False) -> NightScript:
        self._add(at, self.bed, self.bed.state(at, False))
        if self.mat is not None and steps_on_mat:
            self._add(at, self.mat, self.mat.state(at, True))
        if self.motion is not None:
            self._add(at, self.motion, self.motion.state(at, True))
        return self

    def opens_door(self, at: datetime) -> NightScript:
        assert self.door is not None
        self._add(at, self.door, self.door.state(at, "open"))
        return self

    def heartbeats(self, at: datetime) -> NightScript:
        for sensor in self.all_sensors():
            if sensor.alive:
                self._add(at, sensor, sensor.heartbeat(at))
        return self

    def bed_sensor_dies(self, at: datetime) -> NightScript:
        self._add(at, self.bed, self.bed.dies())
        return self

    def messages(self) -> list[Sent]:
        return sorted(self.steps, key=lambda s: s.at)


# --- in scenarios ---------------------------------------------------------------------------


class PassiveSensorSim(DeviceSim):
    """One sensor of a scenario, following :class:`SensorGroup` 's routine."""

    def _setup(self) -> None:
        params = self.spec.params
        assert isinstance(params, SensorGroup)
        self.routine = params
        self.zone = ZoneInfo(self.spec.timezone)
        self.asleep = False
        self.up_in_night = False
        self._on("bedtime", self._bedtime)
        self._on("wake", self._wake)
        self._on("getup", self._getup)
        self._on("back", self._back)
        self._on("day", self._day)
        self._on("released", self._released)
        self._schedule("bedtime", self._daily(self.start, params.bedtime))
        self._schedule("wake", self._daily(self.start, params.wake_time))
        self._on("state", self._state_now)
        self._schedule("state", self.live_from)  # the state after connecting
        self._schedule_day(self.start)
        for index, incident in enumerate(params.incidents):
            name = f"incident:{index}"
            self._on(name, partial(self._incident, incident))
            self._schedule(name, self.start + incident.at)

    def _daily(self, after: datetime, at: object) -> datetime:
        slot = next_daily(after, [at], self.zone)  # type: ignore[list-item]
        return max(after, jittered(self.rng, slot, self.routine.jitter))

    # --- what each type sees -------------------------------------------------------
    def _message(self, at: datetime, value: bool | str) -> Outgoing:
        head = self.envelope(at)
        match self.device_type:
            case "door_sensor":
                assert value in ("open", "closed")
                message: Door | Motion | Bed | FloorMat = Door(**head, type="door", state=value)
            case "motion_sensor":
                message = Motion(**head, type="motion", detected=bool(value))
            case "bed_sensor":
                message = Bed(**head, type="bed", occupied=bool(value))
            case _:
                message = FloorMat(**head, type="floor_mat", stepped_on=bool(value))
        return encode(message, Channel.EVENTS)

    def _sees(self, at: datetime, event: str) -> list[Output]:
        """The person's ``event`` as this sensor sees it."""
        match self.device_type, event:
            case "bed_sensor", "to_bed" | "back":
                return [self._message(at, True)]
            case "bed_sensor", "up" | "getup":
                return [self._message(at, False)]
            case "motion_sensor", "getup" | "up" | "moves" | "back":
                return [self._message(at, True)]
            case "motion_sensor", "to_bed":
                return [self._message(at, False)]
            case "floor_mat", "getup" | "up" | "back":
                self._schedule("released", at + timedelta(seconds=5))
                return [self._message(at, True)]
            case "door_sensor", "door":
                self._schedule("released", at + timedelta(seconds=self.rng.uniform(20, 120)))
                return [self._message(at, "open")]
        return []

    def _state_now(self, at: datetime) -> list[Output]:
        match self.device_type:
            case "door_sensor":
                return [self._message(at, "closed")]
            case "bed_sensor":
                return [self._message(at, self.asleep)]
        return []

    def _released(self, at: datetime) -> list[Output]:
        if self.device_type == "door_sensor":
            return [self._message(at, "closed")]
        return [self._message(at, False)]

    # --- the routine -----------------------------------------------------------------
    def _bedtime(self, at: datetime) -> list[Output]:
        self._schedule("bedtime", self._daily(at + timedelta(hours=1), self.routine.bedtime))
        self.asleep, self.up_in_night = True, False
        self._cancel("day")
        night = self.routine.night_getups
        if night > 0:
            hours = 8.0
            delay = poisson_delay(self.rng, night * 24.0 / hours)
            if delay is not None:
                self._schedule("getup", at + delay)
        return self._sees(at, "to_bed")

    def _getup(self, at: datetime) -> list[Output]:
        if not self.asleep:
            return []
        self.asleep, self.up_in_night = False, True
        out = self._sees(at, "getup")
        if self.rng.random() < self.routine.night_door_probability:
            out += self._sees(at + timedelta(seconds=30), "door")
        if self.rng.random() >= self.routine.not_back_probability:
            self._schedule("back", at + self.routine.time_up * self.rng.uniform(0.5, 1.5))
        return out

    def _back(self, at: datetime) -> list[Output]:
        if not self.up_in_night:
            return []
        self.asleep, self.up_in_night = True, False
        delay = poisson_delay(self.rng, self.routine.night_getups * 3.0)
        if delay is not None:
            self._schedule("getup", at + delay)
        return self._sees(at, "back")

    def _wake(self, at: datetime) -> list[Output]:
        self._schedule("wake", self._daily(at + timedelta(hours=1), self.routine.wake_time))
        self._cancel("getup")
        self._cancel("back")
        was_in_bed = self.asleep
        self.asleep = self.up_in_night = False
        self._schedule_day(at)
        return self._sees(at, "up") if was_in_bed else []

    def _schedule_day(self, at: datetime) -> None:
        rate = (self.routine.door_opens_per_day if self.device_type == "door_sensor"
                else self.routine.movements_per_hour * 16.0)  # fmt: skip
        delay = poisson_delay(self.rng, rate)
        if delay is not None:
            self._schedule("day", at + delay)

    def _day(self, at: datetime) -> list[Output]:
        self._schedule_day(at)
        if self.asleep or self.up_in_night:
            return []
        if self.device_type == "door_sensor":
            return self._sees(at, "door")
        return self._sees(at, "moves")

    def _incident(self, incident: SensorIncident, at: datetime) -> list[Output]:
        if incident.dies:
            self.dead = True
            self._scheduler.clear()
            return [LinkDown(mode="abrupt", until=None)]
        assert incident.state is not None
        return [self._message(at, incident.state)]


class DoorSensorSim(PassiveSensorSim):
    device_type = "door_sensor"


class MotionSensorSim(PassiveSensorSim):
    device_type = "motion_sensor"


class BedSensorSim(PassiveSensorSim):
    device_type = "bed_sensor"


class FloorMatSim(PassiveSensorSim):
    device_type = "floor_mat"
