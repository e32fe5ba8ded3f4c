"""Per-device last-seen, battery, signal and firmware, kept in memory.

Updated on every accepted message without a database round trip; the batch writer
upserts the changed devices once per batch, in the batch's own transaction.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from firmware_contracts.messages import Battery, BatteryLow, Heartbeat, Status


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
    def __init__(self) -> None:
        self._states: dict[str, DeviceState] = {}
        self._dirty: set[str] = set()

    def get(self, device_id: str) -> DeviceState | None:
        return self._states.get(device_id)

    def __len__(self) -> int:
        return len(self._states)

    def items(self) -> list[tuple[str, DeviceState]]:
        return list(self._states.items())

    def restore(self, device_id: str, state: DeviceState) -> None:
        self._states[device_id] = state

    def observe(self, device_id: str, tenant_id: str, message: Any, received_at: datetime) -> None:
        state = self._states.get(device_id)
        if state is None:
            state = self._states[device_id] = DeviceState(tenant_id, received_at)
        state.tenant_id = tenant_id
        if received_at > state.last_seen:
            state.last_seen = received_at
        ts = getattr(message, "ts", None)
        if ts is not None and (state.last_ts is None or ts > state.last_ts):
            state.last_ts = ts
        match message:
            case Heartbeat(battery_percent=battery, rssi_dbm=rssi):
                if battery is not None:
                    state.battery_percent = battery
                if rssi is not None:
                    state.rssi_dbm = rssi
                state.online = True
            case Battery(percent=battery) | BatteryLow(percent=battery):
                state.battery_percent = battery
            case Status(state=online_state, firmware=firmware):
                state.online = online_state == "online"
                if firmware is not None:
                    state.firmware = sys.intern(firmware)  # a fleet runs few versions
            case _:
                state.online = True
        self._dirty.add(device_id)

    def take_dirty(self) -> list[tuple[str, DeviceState]]:
        """Snapshot of the devices changed since the last call (for the batch upsert)."""
        dirty = [(d, _copy(self._states[d])) for d in self._dirty]
        self._dirty.clear()
        return dirty

    def mark_dirty(self, device_ids: list[str]) -> None:
        """Put devices back after a failed write so their state is written next time."""
        self._dirty.update(d for d in device_ids if d in self._states)


def _copy(state: DeviceState) -> DeviceState:
    return DeviceState(
        state.tenant_id,
        state.last_seen,
        state.last_ts,
        state.battery_percent,
        state.rssi_dbm,
        state.firmware,
        state.online,
    )
