"""Blood-pressure monitor for remote self-monitoring (pure simulation).

Readings at the local ``reading_times`` (morning and evening by default, +- ``jitter``),
sometimes skipped. Values scatter around the group's systolic/diastolic/pulse, with a
small morning rise and an optional daily systolic trend; a hypertensive scenario simply
sets high baselines. Systolic always stays above diastolic, as the contract requires.
Scripted ``incidents`` are readings of given values at an offset.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

from device_sims.device import DeviceSim
from device_sims.envelope import Output, encode
from device_sims.params import BloodPressureGroup, BloodPressureIncident
from device_sims.schedule import jittered, next_daily
from firmware_contracts.messages import BloodPressure
from firmware_contracts.topics import Channel

_MORNING_RISE_MMHG = 5.0


class BloodPressureSim(DeviceSim):
    device_type = "blood_pressure_monitor"

    def _setup(self) -> None:
        params = self.spec.params
        assert isinstance(params, BloodPressureGroup)
        self.bp = params
        self.zone = ZoneInfo(self.spec.timezone)
        self._on("measure", self._measure)
        if params.telemetry_interval is not None:
            self._schedule("measure", self.start + self._phase(params.telemetry_interval))
        else:
            self.slot = next_daily(self.start, params.reading_times, self.zone)
            self._schedule("measure", max(self.start, jittered(self.rng, self.slot, params.jitter)))
        for index, incident in enumerate(params.incidents):
            name = f"incident:{index}"
            self._on(name, partial(self._incident, incident))
            self._schedule(name, self.start + incident.at)

    def _incident(self, incident: BloodPressureIncident, at: datetime) -> list[Output]:
        message = BloodPressure(
            **self.envelope(at),
            type="blood_pressure",
            systolic_mmhg=incident.systolic_mmhg,
            diastolic_mmhg=incident.diastolic_mmhg,
            pulse_bpm=incident.pulse_bpm,
        )
        return [encode(message, Channel.TELEMETRY)]

    def _next(self, at: datetime) -> None:
        params = self.bp
        if params.telemetry_interval is not None:
            self._schedule("measure", at + params.telemetry_interval)
            return
        self.slot = next_daily(self.slot, params.reading_times, self.zone)
        self._schedule("measure", max(at, jittered(self.rng, self.slot, params.jitter)))

    def _measure(self, at: datetime) -> list[Output]:
        self._next(at)
        params = self.bp
        if params.telemetry_interval is None and self.rng.random() < params.skip_probability:
            return []
        days = (at - self.start).total_seconds() / 86_400.0
        morning = at.astimezone(self.zone).hour < 12
        systolic = (
            params.systolic_mmhg
            + params.systolic_rise_per_day * days
            + (_MORNING_RISE_MMHG if morning else 0.0)
            + self.rng.gauss(0.0, params.systolic_noise)
        )
        diastolic = params.diastolic_mmhg + self.rng.gauss(0.0, params.diastolic_noise)
        pulse = params.pulse_bpm + self.rng.gauss(0.0, params.pulse_noise)
        sys_i = max(70, min(260, round(systolic)))
        dia_i = max(40, min(180, sys_i - 15, round(diastolic)))
        message = BloodPressure(
            **self.envelope(at),
            type="blood_pressure",
            systolic_mmhg=sys_i,
            diastolic_mmhg=dia_i,
            pulse_bpm=max(35, min(180, round(pulse))),
        )
        return [encode(message, Channel.TELEMETRY)]
