"""GPS alarm worn by a person with dementia (pure simulation).

The wearer mostly stays at home (indoor fixes with poor accuracy), goes for walks inside
the safe zone, and now and then wanders: walks away from home well beyond the safe-zone
radius, lingers, then heads back. The device reports its position every
``position_interval``, raises ``alarm`` events for a button press or a fall (with the
current fix) and, if ``geofence_alarm`` is set, a ``geofence_exit`` alarm when a fix is
the first one outside the safe zone. A ``locate`` command publishes a fix at once.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import partial
from typing import Literal

from device_sims.device import DeviceSim, Setting
from device_sims.envelope import Outgoing, Output, encode
from device_sims.geo import GeoPoint, distance_m, offset
from device_sims.params import GpsAlarmGroup, GpsIncident
from device_sims.schedule import poisson_delay
from firmware_contracts.messages import Alarm, AlarmKind, Position
from firmware_contracts.topics import Channel

Mode = Literal["home", "walk", "wander", "return"]
_STEP = timedelta(seconds=30)
_WALK_SPEED = 1.0  # m/s
_WANDER_SPEED = 0.8
_LINGER_SPEED = 0.3
_HOME_RADIUS_M = 15.0


class GpsAlarmSim(DeviceSim):
    device_type = "gps_alarm"

    def _setup(self) -> None:
        params = self.spec.params
        assert isinstance(params, GpsAlarmGroup)
        assert self.spec.home is not None
        assert self.spec.safe_zone_radius_m is not None
        self.gps = params
        self.home: GeoPoint = self.spec.home
        self.radius = self.spec.safe_zone_radius_m
        self.position_interval = params.telemetry_interval or params.position_interval
        self.east = 0.0
        self.north = 0.0
        self.heading = self.rng.uniform(0.0, 2 * math.pi)
        self.mode: Mode = "home"
        self.mode_until: datetime | None = None
        self.away_heading = 0.0
        self.wander_target_m = 0.0
        self.moved_at = self.start
        self.outside = False
        self.fix = self.home
        self.accuracy_m = 25.0

        self._on("position", self._report_position)
        self._schedule("position", self.start + self._phase(self.position_interval))
        self._on("button", partial(self._alarm_process, AlarmKind.BUTTON, params.button_per_day))
        self._on("fall", partial(self._alarm_process, AlarmKind.FALL, params.fall_per_day))
        self._on("walk", self._walk_process)
        self._on("wander", self._wander_process)
        for name, per_day in (
            ("button", params.button_per_day),
            ("fall", params.fall_per_day),
            ("walk", params.walks_per_day),
            ("wander", params.wander_per_day),
        ):
            self._schedule_poisson(name, self.start, per_day)
        for index, incident in enumerate(params.incidents):
            name = f"incident:{index}"
            self._on(name, partial(self._incident, incident))
            self._schedule(name, self.start + incident.at)

    def _schedule_poisson(self, name: str, after: datetime, per_day: float) -> None:
        delay = poisson_delay(self.rng, per_day)
        if delay is not None:
            self._schedule(name, after + delay)

    # --- movement ----------------------------------------------------------------------

    @property
    def distance_from_home_m(self) -> float:
        return math.hypot(self.east, self.north)

    def _move_to(self, at: datetime) -> None:
        while self.moved_at < at:
            step = min(_STEP, at - self.moved_at)
            self.moved_at += step
            if self.mode_until is not None and self.moved_at >= self.mode_until:
                self.mode, self.mode_until = "return", None
            self._step(step.total_seconds())

    def _step(self, seconds: float) -> None:
        home_bearing = math.atan2(-self.north, -self.east)
        distance = self.distance_from_home_m
        if self.mode == "home":
            return
        if self.mode == "walk":
            self.heading += self.rng.gauss(0.0, 0.4)
            if distance > 0.7 * self.radius:
                self.heading = home_bearing + self.rng.gauss(0.0, 0.3)
            speed = _WALK_SPEED
        elif self.mode == "wander":
            if distance < self.wander_target_m:
                self.heading = self.away_heading + self.rng.gauss(0.0, 0.25)
                speed = _WANDER_SPEED
            else:
                self.heading += self.rng.gauss(0.0, 1.0)
                speed = _LINGER_SPEED
        else:  # return
            self.heading = home_bearing
            speed = _WALK_SPEED
            if distance <= speed * seconds + _HOME_RADIUS_M:
                self.east = self.north = 0.0
                self.mode = "home"
                return
        self.east += math.cos(self.heading) * speed * seconds
        self.north += math.sin(self.heading) * speed * seconds

    def _take_fix(self) -> None:
        if self.mode == "home":
            self.accuracy_m = round(self.rng.uniform(15.0, 35.0), 1)
        else:
            self.accuracy_m = round(self.rng.uniform(4.0, 12.0), 1)
        noise = self.accuracy_m / 3.0
        point = offset(
            self.home,
            self.east + self.rng.gauss(0.0, noise),
            self.north + self.rng.gauss(0.0, noise),
        )
        self.fix = GeoPoint(round(point.lat, 6), round(point.lon, 6))

    def _position(self, at: datetime) -> Outgoing:
        message = Position(
            **self.envelope(at),
            type="position",
            lat=self.fix.lat,
            lon=self.fix.lon,
            accuracy_m=self.accuracy_m,
        )
        return encode(message, Channel.TELEMETRY)

    def _alarm(self, kind: AlarmKind, at: datetime) -> Outgoing:
        message = Alarm(
            **self.envelope(at),
            type="alarm",
            kind=kind,
            lat=self.fix.lat,
            lon=self.fix.lon,
            accuracy_m=self.accuracy_m,
        )
        return encode(message, Channel.EVENTS)

    # --- processes ---------------------------------------------------------------------

    def _report_position(self, at: datetime) -> list[Output]:
        self._schedule("position", at + self.position_interval)
        self._move_to(at)
        self._take_fix()
        out: list[Output] = [self._position(at)]
        outside = distance_m(self.home, self.fix) > self.radius
        if outside and not self.outside and self.gps.geofence_alarm:
            out.append(self._alarm(AlarmKind.GEOFENCE_EXIT, at))
        self.outside = outside
        return out

    def _alarm_process(self, kind: AlarmKind, per_day: float, at: datetime) -> list[Output]:
        self._schedule_poisson(kind.value, at, per_day)
        return self._raise(kind, at)

    def _raise(self, kind: AlarmKind, at: datetime) -> list[Output]:
        self._move_to(at)
        self._take_fix()
        return [self._alarm(kind, at)]

    def _walk_process(self, at: datetime) -> list[Output]:
        self._schedule_poisson("walk", at, self.gps.walks_per_day)
        self._move_to(at)
        if self.mode == "home":
            self.mode = "walk"
            self.mode_until = at + self.gps.walk_duration * self.rng.uniform(0.5, 1.5)
        return []

    def _wander_process(self, at: datetime) -> list[Output]:
        self._schedule_poisson("wander", at, self.gps.wander_per_day)
        self._move_to(at)
        if self.mode in ("home", "walk"):
            self._start_wander(at, self.gps.wander_duration * self.rng.uniform(0.7, 1.3))
        return []

    def _start_wander(self, at: datetime, duration: timedelta) -> None:
        self.mode = "wander"
        self.mode_until = at + duration
        self.away_heading = self.rng.uniform(0.0, 2 * math.pi)
        factor = self.gps.wander_distance_factor * self.rng.uniform(0.8, 1.2)
        self.wander_target_m = self.radius * max(1.2, factor)

    def _incident(self, incident: GpsIncident, at: datetime) -> list[Output]:
        if incident.kind == "wander":
            self._move_to(at)
            self._start_wander(at, incident.duration or self.gps.wander_duration)
            return []
        return self._raise(AlarmKind(incident.kind), at)

    # --- commands ----------------------------------------------------------------------

    def _locate(self, now: datetime) -> tuple[bool, str, list[Outgoing]]:
        self._take_fix()
        return True, "located", [self._position(now)]

    def _settings(self) -> dict[str, Setting]:
        return {**super()._settings(), "position_interval_s": self._set_position_interval}

    def _set_position_interval(self, seconds: float) -> None:
        self.position_interval = timedelta(seconds=seconds)
        self._schedule("position", self.now + self.position_interval)
