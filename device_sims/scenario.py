"""Scenario files: TOML parsed and validated into a :class:`Scenario`, and device specs.

A scenario names a fleet: groups of devices (``[[devices]]`` tables, see
:mod:`device_sims.params`), the simulated clock (``[clock]``, see
:mod:`device_sims.clock`) and the time zone of local times of day::

    name = "heart_failure"
    description = "One person with heart failure gaining weight"
    timezone = "Europe/Stockholm"   # default
    id_prefix = "sim"               # device ids: sim-scale-00001, sim-gps-00001, ...
    seed = 0                        # suggested default seed for the run

    [clock]
    history = "6d"    # simulated time starts 6 days before the real start ...
    speedup = 7200    # ... and runs 7200x until it has caught up with real time

    [[devices]]
    type = "scale"
    count = 1
    baseline_kg = 84.0
    gain_kg = 3.2

:meth:`Scenario.device_specs` turns the groups into one :class:`DeviceSpec` per device
with a deterministic id; the gateway registers exactly these ids before a run.
A bad file raises :class:`ScenarioError` whose message names the file and the key, e.g.
``devices[0].scale.baseline_kg: Input should be greater than or equal to 20``.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from device_sims.clock import ClockSpec
from device_sims.geo import GeoPoint, offset
from device_sims.params import AnyGroup, DeviceGroup, DeviceType, DoorLockGroup, GpsAlarmGroup
from firmware_contracts.topics import is_valid_device_id

SCENARIO_DIR = Path(__file__).parent / "scenarios"

#: Short type names used in device ids.
ID_PARTS: dict[DeviceType, str] = {
    "gps_alarm": "gps",
    "scale": "scale",
    "blood_pressure_monitor": "bp",
    "door_lock": "lock",
    "door_sensor": "door",
    "motion_sensor": "pir",
    "bed_sensor": "bed",
    "floor_mat": "mat",
}


class ScenarioError(ValueError):
    """A scenario file could not be read or is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated device: everything a run (and the gateway's registry) needs."""

    device_id: str
    device_type: DeviceType
    group: str
    params: AnyGroup = field(repr=False)  # the group's validated settings
    clock: ClockSpec = field(repr=False)
    timezone: str = "Europe/Stockholm"
    home_lat: float | None = None
    home_lon: float | None = None
    safe_zone_radius_m: float | None = None
    staff_key_ids: tuple[str, ...] = ()
    username: str | None = None  # per-device broker credentials (not used yet)
    password: str | None = None

    @property
    def home(self) -> GeoPoint | None:
        if self.home_lat is None or self.home_lon is None:
            return None
        return GeoPoint(self.home_lat, self.home_lon)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    timezone: str = "Europe/Stockholm"
    id_prefix: str = Field(default="sim", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")
    seed: int = 0
    clock: ClockSpec = ClockSpec()
    devices: list[DeviceGroup] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def group_counts(self, devices: int | None = None) -> list[int]:
        """Devices per group; ``devices`` rescales the fleet to that total."""
        counts = [group.count for group in self.devices]
        if devices is None:
            return counts
        if devices < 0:
            raise ValueError("devices must not be negative")
        total = sum(counts)
        if total == 0:
            raise ValueError(f"scenario {self.name!r} has no devices to scale")
        shares = [devices * count / total for count in counts]
        result = [math.floor(share) for share in shares]
        # Largest remainder; ties go to the earlier group, so the split is deterministic.
        order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - result[i]), i))
        for i in order[: devices - sum(result)]:
            result[i] += 1
        return result

    def device_specs(self, devices: int | None = None) -> list[DeviceSpec]:
        """One spec per device, ids numbered per type in file order (deterministic)."""
        specs: list[DeviceSpec] = []
        numbers: dict[str, int] = {}
        for index, (group, count) in enumerate(
            zip(self.devices, self.group_counts(devices), strict=True)
        ):
            group_name = group.name or f"{group.type}-{index}"
            for _ in range(count):
                numbers[group.type] = numbers.get(group.type, 0) + 1
                device_id = f"{self.id_prefix}-{ID_PARTS[group.type]}-{numbers[group.type]:05d}"
                if not is_valid_device_id(device_id):
                    raise ScenarioError(f"id_prefix makes an invalid device id {device_id!r}")
                specs.append(self._spec(device_id, group_name, group))
        return specs

    def _spec(self, device_id: str, group_name: str, group: AnyGroup) -> DeviceSpec:
        common: dict[str, Any] = {
            "device_id": device_id,
            "device_type": group.type,
            "group": group_name,
            "params": group,
            "clock": self.clock,
            "timezone": self.timezone,
        }
        if isinstance(group, GpsAlarmGroup):
            home = self._home(device_id, group)
            return DeviceSpec(
                **common,
                home_lat=home.lat,
                home_lon=home.lon,
                safe_zone_radius_m=group.safe_zone_radius_m,
            )
        if isinstance(group, DoorLockGroup):
            return DeviceSpec(**common, staff_key_ids=staff_key_ids(self.id_prefix, group))
        return DeviceSpec(**common)

    def _home(self, device_id: str, group: GpsAlarmGroup) -> GeoPoint:
        centre = GeoPoint(group.home_lat, group.home_lon)
        if group.home_spread_m == 0:
            return GeoPoint(round(centre.lat, 6), round(centre.lon, 6))
        rng = random.Random(f"home:{self.name}:{device_id}")
        radius = group.home_spread_m * math.sqrt(rng.random())
        angle = rng.uniform(0.0, 2.0 * math.pi)
        home = offset(centre, radius * math.cos(angle), radius * math.sin(angle))
        return GeoPoint(round(home.lat, 6), round(home.lon, 6))


def staff_key_ids(id_prefix: str, group: DoorLockGroup) -> tuple[str, ...]:
    if group.staff_key_ids is not None:
        return tuple(group.staff_key_ids)
    return tuple(f"{id_prefix}-staff-{k:03d}" for k in range(1, group.staff_count + 1))


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {_describe(exc)}") from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; raises :class:`ScenarioError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror or exc}") from None
    return parse_scenario(text, source=str(path))


def shipped_scenarios() -> dict[str, Path]:
    """The scenarios shipped with the package, by name (file stem)."""
    return {path.stem: path for path in sorted(SCENARIO_DIR.glob("*.toml"))}


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        problems.append(f"{_key(error['loc'])}: {error['msg']}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else part
    return key or "(file)"
