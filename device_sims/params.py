"""Per-group device parameters of a scenario file (pydantic models, pure).

One ``[[devices]]`` table of a scenario describes a group of identical devices; its
``type`` key selects the model below. Every model forbids unknown keys, so a typo in a
scenario file is an error naming the key, never a silently ignored setting.

Times of day (``weigh_in_time``, ``visits``...) are local times in the scenario's
``timezone``; offsets (``at``, ``gain_starts_after``) count from the start of simulated
time (see :mod:`device_sims.clock`).
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device_sims.durations import Duration, PositiveDuration

DeviceType = Literal[
    "gps_alarm", "scale", "blood_pressure_monitor", "door_lock",
    # passive sensors (issue #20, device_sims.sensors)
    "door_sensor", "motion_sensor", "bed_sensor", "floor_mat",
]  # fmt: skip
DEVICE_TYPES: tuple[DeviceType, ...] = (
    "gps_alarm", "scale", "blood_pressure_monitor", "door_lock",
    "door_sensor", "motion_sensor", "bed_sensor", "floor_mat",
)  # fmt: skip

#: Clock skew a healthy device may have: well inside the gateway's 5-minute tolerance.
MAX_HEALTHY_SKEW_S = 240.0

DisconnectMode = Literal["abrupt", "clean"]
"""``abrupt``: the socket dies without DISCONNECT, so the broker publishes the last will.
``clean``: an MQTT DISCONNECT is sent, so the will is discarded and the device just goes
quiet (only missing heartbeats reveal it)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatterySpec(_Strict):
    start_percent: float = Field(default=100.0, gt=0.0, le=100.0)
    drain_percent_per_day: float = Field(default=1.0, ge=0.0, le=100_000.0)
    per_operation_percent: float = Field(
        default=0.0, ge=0.0, le=100.0, description="Extra drain per lock operation."
    )
    low_threshold_percent: float = Field(default=15.0, ge=0.0, le=100.0)
    report_interval: PositiveDuration = Field(
        default=timedelta(hours=6), description="Interval of `battery` telemetry."
    )
    death: DisconnectMode = Field(
        default="abrupt", description="How the connection ends when the battery is flat."
    )


class ConnectionLoss(_Strict):
    """The device loses its connection at ``at`` for ``duration``, buffering readings."""

    kind: Literal["connection_loss"] = "connection_loss"
    at: Duration
    duration: PositiveDuration
    mode: DisconnectMode = "abrupt"


class _GroupBase(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    count: int = Field(default=1, ge=0, le=1_000_000)
    firmware: str = Field(default="sim-1.0.0", min_length=1, max_length=64)
    heartbeat_interval_s: float = Field(default=60.0, ge=1.0, le=86_400.0)
    rssi_dbm: int = Field(default=-75, ge=-140, le=-10)
    rssi_jitter_db: float = Field(default=4.0, ge=0.0, le=30.0)
    battery: BatterySpec = BatterySpec()
    clock_skew_s: float = Field(
        default=0.0,
        ge=-3.0e9,
        le=3.0e9,
        description="Added to every timestamp the device writes (-1.8e9 is a 1970 clock).",
    )
    bad_clock: bool = Field(
        default=False,
        description="Allow a skew outside the contract (to test the gateway's refusal).",
    )
    telemetry_interval: PositiveDuration | None = Field(
        default=None,
        description="Load-test mode: emit the device's telemetry at this fixed interval "
        "instead of its natural schedule.",
    )
    faults: list[ConnectionLoss] = Field(default_factory=list)

    @model_validator(mode="after")
    def _healthy_clock(self) -> _GroupBase:
        if not self.bad_clock and abs(self.clock_skew_s) > MAX_HEALTHY_SKEW_S:
            raise ValueError(
                f"clock_skew_s={self.clock_skew_s} is outside +-{MAX_HEALTHY_SKEW_S:.0f} s; "
                "set bad_clock = true to simulate a device with a wrong clock"
            )
        return self


class GpsIncident(_Strict):
    """A scripted incident at offset ``at`` from the start of simulated time."""

    at: Duration
    kind: Literal["button", "fall", "wander"]
    duration: PositiveDuration | None = Field(
        default=None, description="How long a wander lasts (default: wander_duration)."
    )


class GpsAlarmGroup(_GroupBase):
    type: Literal["gps_alarm"]
    home_lat: float = Field(ge=-89.0, le=89.0)
    home_lon: float = Field(ge=-180.0, le=180.0)
    home_spread_m: float = Field(
        default=0.0, ge=0.0, le=200_000.0, description="Homes are spread around home_lat/lon."
    )
    safe_zone_radius_m: float = Field(default=200.0, gt=0.0, le=100_000.0)
    position_interval: PositiveDuration = timedelta(seconds=60)
    geofence_alarm: bool = Field(
        default=True, description="The device itself raises geofence_exit alarms."
    )
    walks_per_day: float = Field(default=2.0, ge=0.0, le=1000.0)
    walk_duration: PositiveDuration = timedelta(minutes=30)
    button_per_day: float = Field(default=0.1, ge=0.0, le=10_000.0)
    fall_per_day: float = Field(default=0.02, ge=0.0, le=10_000.0)
    wander_per_day: float = Field(default=0.05, ge=0.0, le=1000.0)
    wander_duration: PositiveDuration = timedelta(minutes=45)
    wander_distance_factor: float = Field(
        default=2.5, gt=1.0, le=100.0, description="How far out a wander goes, x radius."
    )
    incidents: list[GpsIncident] = Field(default_factory=list)


class ScaleIncident(_Strict):
    """A scripted weigh-in at offset ``at`` from the start of simulated time."""

    at: Duration
    kg: float = Field(ge=20.0, le=300.0)
    resident_tag: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
        description="On a unit's shared scale: whose weigh-in it is (docs/units.md).",
    )


class ScaleGroup(_GroupBase):
    type: Literal["scale"]
    baseline_kg: float = Field(default=80.0, ge=20.0, le=300.0)
    noise_kg: float = Field(default=0.2, ge=0.0, le=5.0)
    weigh_in_time: time = time(7, 15)
    jitter: Duration = timedelta(minutes=15)
    skip_probability: float = Field(default=0.05, ge=0.0, le=1.0)
    gain_kg: float = Field(default=0.0, ge=-30.0, le=30.0)
    gain_over: PositiveDuration = timedelta(days=3)
    gain_starts_after: Duration = timedelta(0)
    memory_kg: list[Annotated[float, Field(ge=20.0, le=300.0)]] = Field(
        default_factory=list,
        description="Weigh-ins of the days before simulated time starts, oldest first, one "
        "a day at weigh_in_time: the scale's memory, sent when it first connects.",
    )
    resident_tags: list[Annotated[str, Field(min_length=1, max_length=64,
                                             pattern=r"^[\x21-\x7e]+$")]] = Field(
        default_factory=list,
        description="A unit's shared scale (docs/units.md): each weigh-in is by one of "
        "these residents, picked at random, and carries their resident_tag.",
    )  # fmt: skip
    incidents: list[ScaleIncident] = Field(default_factory=list)


class BloodPressureIncident(_Strict):
    """A scripted reading at offset ``at`` from the start of simulated time."""

    at: Duration
    systolic_mmhg: int = Field(ge=70, le=260)
    diastolic_mmhg: int = Field(ge=40, le=180)
    pulse_bpm: int = Field(ge=35, le=180)

    @model_validator(mode="after")
    def _plausible(self) -> BloodPressureIncident:
        if self.systolic_mmhg <= self.diastolic_mmhg:
            raise ValueError("systolic_mmhg must be above diastolic_mmhg")
        return self


class BloodPressureGroup(_GroupBase):
    type: Literal["blood_pressure_monitor"]
    systolic_mmhg: float = Field(default=128.0, ge=70.0, le=260.0)
    diastolic_mmhg: float = Field(default=82.0, ge=40.0, le=180.0)
    pulse_bpm: float = Field(default=68.0, ge=35.0, le=180.0)
    systolic_noise: float = Field(default=7.0, ge=0.0, le=40.0)
    diastolic_noise: float = Field(default=5.0, ge=0.0, le=30.0)
    pulse_noise: float = Field(default=5.0, ge=0.0, le=30.0)
    systolic_rise_per_day: float = Field(default=0.0, ge=-20.0, le=20.0)
    reading_times: list[time] = Field(default_factory=lambda: [time(7, 30), time(20, 0)])
    jitter: Duration = timedelta(minutes=20)
    skip_probability: float = Field(default=0.05, ge=0.0, le=1.0)
    incidents: list[BloodPressureIncident] = Field(default_factory=list)

    @model_validator(mode="after")
    def _plausible(self) -> BloodPressureGroup:
        if self.systolic_mmhg < self.diastolic_mmhg + 15:
            raise ValueError("systolic_mmhg must be at least 15 above diastolic_mmhg")
        if not self.reading_times:
            raise ValueError("reading_times must not be empty")
        return self


class LockIncident(_Strict):
    """A scripted visit at offset ``at`` from the start of simulated time: the staff
    member with key ``staff_key`` (an index into the group's keys) opens the door and,
    unless ``leave_unlocked``, locks it again after ``duration``."""

    at: Duration
    kind: Literal["visit"] = "visit"
    staff_key: int = Field(default=0, ge=0)
    duration: PositiveDuration = timedelta(minutes=10)
    leave_unlocked: bool = False


class DoorLockGroup(_GroupBase):
    type: Literal["door_lock"]
    staff_key_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, description="Keys of the home-care staff (default: staff_count keys)."
    )
    staff_count: int = Field(default=4, ge=1, le=1000)
    visits: list[time] = Field(
        default_factory=lambda: [time(7, 30), time(12, 0), time(16, 30), time(21, 30)],
        description="Planned home-care visits, local times of day.",
    )
    visit_duration: PositiveDuration = timedelta(minutes=20)
    visit_jitter: Duration = timedelta(minutes=10)
    denied_probability: float = Field(default=0.05, ge=0.0, le=1.0)
    tamper_per_day: float = Field(default=0.0, ge=0.0, le=1000.0)
    auto_lock_after: PositiveDuration = Field(
        default=timedelta(minutes=2), description="Relock delay after a remote unlock."
    )
    battery: BatterySpec = BatterySpec(drain_percent_per_day=0.3, per_operation_percent=0.02)
    incidents: list[LockIncident] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_visits(self) -> DoorLockGroup:
        if not self.visits:
            raise ValueError("visits must not be empty")
        if self.staff_key_ids is not None and not self.staff_key_ids:
            raise ValueError("staff_key_ids must not be empty when given")
        keys = len(self.staff_key_ids) if self.staff_key_ids is not None else self.staff_count
        for incident in self.incidents:
            if incident.staff_key >= keys:
                raise ValueError(f"incident staff_key {incident.staff_key} >= {keys} keys")
        return self


class SensorIncident(_Strict):
    """A scripted state at offset ``at``: a door's ``"open"``/``"closed"``, or true/false
    (bed occupied, movement, mat stepped on); ``dies``: the sensor's connection ends (its
    last will) and it sends nothing more."""

    at: Duration
    state: bool | Literal["open", "closed"] | None = None
    dies: bool = False

    @model_validator(mode="after")
    def _one(self) -> SensorIncident:
        if (self.state is None) == (not self.dies):
            raise ValueError("an incident has a state or dies, one of them")
        return self


class SensorGroup(_GroupBase):
    """Passive sensors in a person's home (issue #20, docs/supervision.md), following one
    daily routine: to bed at ``bedtime``, up at ``wake_time`` (local, +- ``jitter``), up in
    the night ``night_getups`` times on average for about ``time_up``, and sometimes not
    back (``not_back_probability``) until morning."""

    type: Literal["door_sensor", "motion_sensor", "bed_sensor", "floor_mat"]
    bedtime: time = time(22, 0)
    wake_time: time = time(7, 0)
    jitter: Duration = timedelta(minutes=30)
    night_getups: float = Field(default=1.0, ge=0.0, le=50.0)
    time_up: PositiveDuration = timedelta(minutes=5)
    not_back_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    door_opens_per_day: float = Field(default=4.0, ge=0.0, le=1000.0)
    night_door_probability: float = Field(
        default=0.0, ge=0.0, le=1.0, description="A get-up that opens the door (wandering)."
    )
    movements_per_hour: float = Field(default=3.0, ge=0.0, le=3600.0)
    incidents: list[SensorIncident] = Field(default_factory=list)

    @model_validator(mode="after")
    def _states_of_the_type(self) -> SensorGroup:
        for incident in self.incidents:
            if incident.state is None:
                continue
            door = self.type == "door_sensor"
            if door != isinstance(incident.state, str):
                raise ValueError(f"incident state {incident.state!r} is not a {self.type}'s")
        return self


DeviceGroup = Annotated[
    GpsAlarmGroup | ScaleGroup | BloodPressureGroup | DoorLockGroup | SensorGroup,
    Field(discriminator="type"),
]
AnyGroup = GpsAlarmGroup | ScaleGroup | BloodPressureGroup | DoorLockGroup | SensorGroup
