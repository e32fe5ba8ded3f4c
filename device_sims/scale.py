"""Bathroom scale for remote self-monitoring (pure simulation).

One weigh-in a day at ``weigh_in_time`` (local, +- ``jitter``), sometimes skipped, plus
scripted ``incidents`` (a weigh-in of a given weight at an offset) and ``memory_kg`` (the
weigh-ins of the days before the run, sent when the scale first connects). The
weight is the baseline plus measurement noise plus an optional trend: ``gain_kg`` added
linearly over ``gain_over`` from ``gain_starts_after``, the heart-failure warning sign
(about 2 kg in 3 days). With ``telemetry_interval`` set it weighs at that fixed interval
instead (load tests).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from device_sims.device import DeviceSim
from device_sims.envelope import Output, encode
from device_sims.params import ScaleGroup, ScaleIncident
from device_sims.schedule import jittered, next_daily
from firmware_contracts.messages import Weight
from firmware_contracts.topics import Channel


class ScaleSim(DeviceSim):
    device_type = "scale"

    def _setup(self) -> None:
        params = self.spec.params
        assert isinstance(params, ScaleGroup)
        self.scale = params
        self.zone = ZoneInfo(self.spec.timezone)
        self.gain_start = self.start + params.gain_starts_after
        self._on("weigh", self._weigh)
        if params.telemetry_interval is not None:
            self._schedule("weigh", self.start + self._phase(params.telemetry_interval))
        else:
            self.slot = next_daily(self.start, [params.weigh_in_time], self.zone)
            self._schedule("weigh", max(self.start, jittered(self.rng, self.slot, params.jitter)))
        if params.memory_kg:
            self._on("memory", self._memory)
            self._schedule("memory", self.start)
        for index, incident in enumerate(params.incidents):
            name = f"incident:{index}"
            self._on(name, partial(self._incident, incident))
            self._schedule(name, self.start + incident.at)

    def trend_kg(self, at: datetime) -> float:
        """The modelled change from baseline at ``at`` (without noise)."""
        elapsed = (at - self.gain_start) / self.scale.gain_over
        return self.scale.gain_kg * max(0.0, min(1.0, elapsed))

    def _next(self, at: datetime) -> None:
        params = self.scale
        if params.telemetry_interval is not None:
            self._schedule("weigh", at + params.telemetry_interval)
            return
        self.slot = next_daily(self.slot, [params.weigh_in_time], self.zone)
        self._schedule("weigh", max(at, jittered(self.rng, self.slot, params.jitter)))

    def _memory(self, at: datetime) -> list[Output]:
        """The stored weigh-ins of the previous days (oldest first), sent at ``at``."""
        local = at.astimezone(self.zone)
        out: list[Output] = []
        for days_ago, kg in zip(
            range(len(self.scale.memory_kg), 0, -1), self.scale.memory_kg, strict=True
        ):
            day = (local - timedelta(days=days_ago)).date()
            moment = datetime.combine(day, self.scale.weigh_in_time, self.zone)
            out.append(self._reading(moment, kg))
        return out

    def _incident(self, incident: ScaleIncident, at: datetime) -> list[Output]:
        return [self._reading(at, incident.kg, incident.resident_tag)]

    def _reading(self, at: datetime, kg: float, tag: str | None = None) -> Output:
        if tag is None and self.scale.resident_tags:  # a unit's shared scale
            tag = self.rng.choice(self.scale.resident_tags)
        fields = {"resident_tag": tag} if tag is not None else {}
        message = Weight(**self.envelope(at), type="weight", kg=round(max(1.0, kg), 1),
                         **fields)  # fmt: skip
        return encode(message, Channel.TELEMETRY)

    def _weigh(self, at: datetime) -> list[Output]:
        self._next(at)
        params = self.scale
        if params.telemetry_interval is None and self.rng.random() < params.skip_probability:
            return []
        kg = params.baseline_kg + self.trend_kg(at) + self.rng.gauss(0.0, params.noise_kg)
        return [self._reading(at, kg)]
