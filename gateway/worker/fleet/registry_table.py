"""The registry's devices in memory, in columns.

Each field is a column (an array or a list) and a device's values sit at its position in
the ``FleetIndex`` that the device states and the silence deadlines share. A
``DeviceRecord`` is made when one is asked for. An object per device (a record, the tuple
of its assignments, the assignment, its start time) cost about 230 bytes a device; the
columns cost about 40. The ids, tenants, device types and persons' ids are the objects the
index and the loader share, not copies.

Pure: filled and read by the registry cache (``gateway.worker.fleet.registry_cache``).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from uuid import UUID

from gateway.domain.fleet_index import FleetIndex
from gateway.domain.registry import Assignment, DeviceRecord, DeviceStatus

_STATUSES = tuple(DeviceStatus)
_STATUS_CODE = {status: code for code, status in enumerate(_STATUSES)}
_ABSENT = -1  # in the status column: no such device (never registered, or removed)
_new_record = tuple.__new__


class RegistryTable:
    def __init__(self, index: FleetIndex | None = None) -> None:
        self.index = index if index is not None else FleetIndex()
        self._status = array("b")
        self._tenant: list[str] = []
        self._type: list[str] = []
        self._heartbeat = array("i")
        self._holder: list[UUID | None] = []
        self._held_since = array("q")
        self._history: dict[int, tuple[Assignment, ...]] = {}  # devices not in the common shape
        self._count = 0

    def get(self, device_id: str) -> DeviceRecord | None:
        i = self.index.find(device_id)
        if i is None or i >= len(self._status) or self._status[i] == _ABSENT:
            return None
        return self._record(i)

    def put(self, record: DeviceRecord) -> None:
        """Add the device, or replace what is held for it."""
        i = self.index.add(record.device_id)
        self._reach(i)
        if self._status[i] == _ABSENT:
            self._count += 1
        self._status[i] = _STATUS_CODE[record.status]
        self._tenant[i] = record.tenant_id
        self._type[i] = record.device_type
        self._heartbeat[i] = record.heartbeat_interval_s
        self._holder[i] = record.holder
        self._held_since[i] = record.held_since_us
        if record.history:
            self._history[i] = record.history
        else:
            self._history.pop(i, None)

    def remove(self, device_id: str) -> None:
        i = self.index.find(device_id)
        if i is None or i >= len(self._status) or self._status[i] == _ABSENT:
            return
        self._status[i] = _ABSENT
        self._holder[i] = None
        self._history.pop(i, None)
        self._count -= 1

    def fresh(self) -> RegistryTable:
        """An empty table on the same index, to load a full reload into while this one
        goes on serving; then ``adopt`` it."""
        return RegistryTable(self.index)

    def adopt(self, other: RegistryTable) -> None:
        """Take ``other``'s contents (a full reload), all at once."""
        if other.index is not self.index:
            raise ValueError("a table can only adopt one made on its own index")
        self._status, self._tenant, self._type = other._status, other._tenant, other._type
        self._heartbeat, self._holder = other._heartbeat, other._holder
        self._held_since, self._history = other._held_since, other._history
        self._count = other._count

    def device_ids(self) -> Iterator[str]:
        """The ids of the devices held."""
        status, id_at = self._status, self.index.id_at
        return (id_at(i) for i in range(len(status)) if status[i] != _ABSENT)

    def records(self) -> Iterator[DeviceRecord]:
        status = self._status
        return (self._record(i) for i in range(len(status)) if status[i] != _ABSENT)

    def __len__(self) -> int:
        return self._count

    def _record(self, i: int) -> DeviceRecord:
        # once per message: the tuple made directly (see DeviceRecord), no call of ours
        return _new_record(DeviceRecord, (
            self.index.id_at(i), self._tenant[i], _STATUSES[self._status[i]], self._type[i],
            self._heartbeat[i], self._holder[i], self._held_since[i], self._history.get(i, ()),
        ))  # fmt: skip

    def _reach(self, i: int) -> None:
        """Grow the columns to cover position ``i`` (positions other tables took since are
        absent here)."""
        missing = i + 1 - len(self._status)
        if missing > 0:
            self._status.extend([_ABSENT] * missing)
            self._tenant.extend([""] * missing)
            self._type.extend([""] * missing)
            self._heartbeat.extend([0] * missing)
            self._holder.extend([None] * missing)
            self._held_since.extend([0] * missing)
