"""Passive sensors in a home (issue #20, docs/supervision.md): a door contact, a motion or
presence sensor, a bed occupancy sensor and a floor mat (pure simulation).

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
from itertools import count

from device_sims.envelope import LAST_WILL_PAYLOAD, Outgoing, encode
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
