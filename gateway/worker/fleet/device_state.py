"""Per-device last-seen, battery, signal and firmware, kept in memory.

Updated on every accepted message without a database round trip; the batch writer
upserts the changed devices once per batch, in the batch's own transaction.

Held in columns (one array per field, a device's position in them the one the shared
``FleetIndex`` gives it) rather than as an object per device: a fleet's worth of
``DeviceState`` objects, each with two datetimes (and a time zone object per device
timestamp as the decoder makes them), cost about three times as much. ``DeviceState`` is
what goes in and out: a snapshot.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from datetime import datetime

from firmware_contracts.messages import Battery, BatteryLow, DeviceMessage, Heartbeat, Status
from gateway.domain.fleet_index import FleetIndex
from gateway.domain.instants import from_us, to_us

_NO_TIME = -(2**63)  # in the time columns: not known
_NO_INT = -(2**31)  # in the battery and signal columns (smallint in the database): not known
_NO_BOOL = -1


@dataclass(slots=True)
class DeviceState:
    tenant_id: str
    last_seen: datetime
    last_ts: datetime | None = None
    battery_percent: int | None = None
    rssi_dbm: int | None = None
    firmware: str | None = None
    online: bool | None = None


class DeviceStates:
    def __init__(self, index: FleetIndex | None = None) -> None:
        """``index``: the positions of devices the registry's table uses (its own if not
        given). A position whose last-seen time is ``_NO_TIME`` holds no device here."""
        self._index = index if index is not None else FleetIndex()
        self._count = 0
        self._tenant: list[str] = []
        self._seen = array("q")  # microseconds since the epoch
        self._ts = array("q")  # microseconds since the epoch, or _NO_TIME
        self._battery = array("i")
        self._rssi = array("i")
        self._firmware: list[str | None] = []
        self._online = array("b")
        self._dirty: set[str] = set()

    def get(self, device_id: str) -> DeviceState | None:
        """A snapshot of the device's state (changing it changes nothing here)."""
        i = self._held(device_id)
        return None if i is None else self._snapshot(i)

    def __len__(self) -> int:
        return self._count

    def items(self) -> list[tuple[str, DeviceState]]:
        seen, id_at = self._seen, self._index.id_at
        return [(id_at(i), self._snapshot(i)) for i in range(len(seen)) if seen[i] != _NO_TIME]

    def last_seen(self, device_id: str) -> datetime | None:
        i = self._held(device_id)
        return None if i is None else from_us(self._seen[i])

    def restore(self, device_id: str, state: DeviceState) -> None:
        seen = to_us(state.last_seen)
        i = self._slot(device_id, state.tenant_id, seen)
        self._tenant[i] = state.tenant_id
        self._seen[i] = seen
        self._ts[i] = _NO_TIME if state.last_ts is None else to_us(state.last_ts)
        self._battery[i] = _NO_INT if state.battery_percent is None else state.battery_percent
        self._rssi[i] = _NO_INT if state.rssi_dbm is None else state.rssi_dbm
        self._firmware[i] = state.firmware
        self._online[i] = _NO_BOOL if state.online is None else int(state.online)

    def observe(
        self, device_id: str, tenant_id: str, message: DeviceMessage, received_at: datetime
    ) -> None:
        seen = to_us(received_at)
        i = self._held(device_id)
        if i is None:
            i = self._slot(device_id, tenant_id, seen)
        else:
            self._tenant[i] = tenant_id
            if seen > self._seen[i]:
                self._seen[i] = seen
        ts = message.ts
        if ts is not None:
            ts_us = to_us(ts)
            if ts_us > self._ts[i]:  # _NO_TIME is below every time
                self._ts[i] = ts_us
        match message:
            case Heartbeat(battery_percent=battery, rssi_dbm=rssi):
                if battery is not None:
                    self._battery[i] = battery
                if rssi is not None:
                    self._rssi[i] = rssi
                self._online[i] = 1
            case Battery(percent=battery) | BatteryLow(percent=battery):
                self._battery[i] = battery
            case Status(state=online_state, firmware=firmware):
                self._online[i] = int(online_state == "online")
                if firmware is not None:
                    self._firmware[i] = sys.intern(firmware)  # a fleet runs few versions
            case _:
                self._online[i] = 1
        self._dirty.add(device_id)

    def take_dirty(self) -> list[tuple[str, DeviceState]]:
        """Snapshot of the devices changed since the last call (for the batch upsert)."""
        dirty = [(d, self._snapshot(self._index.add(d))) for d in self._dirty]
        self._dirty.clear()
        return dirty

    def mark_dirty(self, device_ids: list[str]) -> None:
        """Put devices back after a failed write so their state is written next time."""
        self._dirty.update(d for d in device_ids if self._held(d) is not None)

    def _held(self, device_id: str) -> int | None:
        """The device's position if this table holds it."""
        i = self._index.find(device_id)
        if i is None or i >= len(self._seen) or self._seen[i] == _NO_TIME:
            return None
        return i

    def _slot(self, device_id: str, tenant_id: str, seen: int) -> int:
        """The device's position in the columns, the device held from now on (with nothing
        known but ``tenant_id`` and ``seen``) if it was not. Devices are never dropped."""
        i = self._index.add(device_id)
        missing = i + 1 - len(self._seen)
        if missing > 0:
            self._tenant.extend([""] * missing)
            self._seen.extend([_NO_TIME] * missing)
            self._ts.extend([_NO_TIME] * missing)
            self._battery.extend([_NO_INT] * missing)
            self._rssi.extend([_NO_INT] * missing)
            self._firmware.extend([None] * missing)
            self._online.extend([_NO_BOOL] * missing)
        if self._seen[i] == _NO_TIME:
            self._count += 1
            self._tenant[i] = tenant_id
            self._seen[i] = seen
            self._ts[i] = _NO_TIME
            self._battery[i] = _NO_INT
            self._rssi[i] = _NO_INT
            self._firmware[i] = None
            self._online[i] = _NO_BOOL
        return i

    def _snapshot(self, i: int) -> DeviceState:
        ts, battery, rssi, online = self._ts[i], self._battery[i], self._rssi[i], self._online[i]
        return DeviceState(
            self._tenant[i],
            from_us(self._seen[i]),
            None if ts == _NO_TIME else from_us(ts),
            None if battery == _NO_INT else battery,
            None if rssi == _NO_INT else rssi,
            self._firmware[i],
            None if online == _NO_BOOL else bool(online),
        )
