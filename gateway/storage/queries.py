"""The gateway's SQL, in one place. Every query is parameterised."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg

from gateway.domain.registry import Assignment, DeviceRecord, DeviceStatus
from gateway.storage import listen

_DEVICES = """
    select d.id, d.tenant_id, d.status, m.device_type, m.heartbeat_interval_s
    from devices d join device_models m on m.id = d.model_id
"""
_ASSIGNMENTS = "select device_id, person_id, valid_from, valid_to from assignments"


def _records(
    device_rows: Iterable[Any], assignment_rows: Iterable[Any]
) -> Iterator[tuple[str, DeviceRecord]]:
    """Registry rows to records. Tenant ids and device types repeat across the fleet, so
    every record shares one string object for each (interned) instead of holding its own."""
    by_device: dict[str, list[Assignment]] = defaultdict(list)
    for device_id, person_id, valid_from, valid_to in assignment_rows:
        by_device[device_id].append(Assignment(person_id, valid_from, valid_to))
    for device_id, tenant_id, status, device_type, heartbeat_interval_s in device_rows:
        held = by_device.pop(device_id, [])
        yield (
            device_id,
            DeviceRecord(
                device_id=device_id,
                tenant_id=sys.intern(tenant_id),
                status=DeviceStatus(status),
                device_type=sys.intern(device_type),
                heartbeat_interval_s=heartbeat_interval_s,
                assignments=tuple(sorted(held, key=lambda a: a.valid_from)),
            ),
        )


async def load_registry(
    conn: psycopg.AsyncConnection[Any], current: dict[str, DeviceRecord] | None = None
) -> dict[str, DeviceRecord]:
    """The whole registry; records equal to those in ``current`` are kept, not replaced."""
    devices = await (await conn.execute(_DEVICES)).fetchall()
    assignments = await (await conn.execute(_ASSIGNMENTS)).fetchall()
    return listen.merged(current or {}, _records(devices, assignments))


async def load_device(conn: psycopg.AsyncConnection[Any], device_id: str) -> DeviceRecord | None:
    devices = await (await conn.execute(_DEVICES + " where d.id = %s", (device_id,))).fetchall()
    if not devices:
        return None
    assignments = await (
        await conn.execute(_ASSIGNMENTS + " where device_id = %s", (device_id,))
    ).fetchall()
    return dict(_records(devices, assignments)).get(device_id)


UPSERT_DEVICE_STATE = """
    insert into device_state
        (device_id, tenant_id, last_seen, last_ts, battery_percent, rssi_dbm, firmware, online)
    select * from unnest(
        %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[],
        %s::smallint[], %s::smallint[], %s::text[], %s::boolean[])
    on conflict (device_id) do update set
        tenant_id = excluded.tenant_id,
        last_seen = greatest(device_state.last_seen, excluded.last_seen),
        last_ts = greatest(device_state.last_ts, excluded.last_ts),
        battery_percent = coalesce(excluded.battery_percent, device_state.battery_percent),
        rssi_dbm = coalesce(excluded.rssi_dbm, device_state.rssi_dbm),
        firmware = coalesce(excluded.firmware, device_state.firmware),
        online = coalesce(excluded.online, device_state.online)
"""

LOAD_DEVICE_STATE = """
    select device_id, last_seen, last_ts, battery_percent, rssi_dbm, firmware, online
    from device_state
"""
