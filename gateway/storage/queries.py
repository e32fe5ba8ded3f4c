"""The gateway's SQL, in one place. Every query is parameterised."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg

from gateway.domain.registry import Assignment, DeviceRecord, DeviceStatus

_DEVICES = """
    select d.id, d.tenant_id, d.status, m.device_type, m.heartbeat_interval_s
    from devices d join device_models m on m.id = d.model_id
"""
_ASSIGNMENTS = "select device_id, person_id, valid_from, valid_to from assignments"


def _records(device_rows: list[Any], assignment_rows: list[Any]) -> dict[str, DeviceRecord]:
    by_device: dict[str, list[Assignment]] = defaultdict(list)
    for device_id, person_id, valid_from, valid_to in assignment_rows:
        by_device[device_id].append(Assignment(person_id, valid_from, valid_to))
    return {
        row[0]: DeviceRecord(
            device_id=row[0],
            tenant_id=row[1],
            status=DeviceStatus(row[2]),
            device_type=row[3],
            heartbeat_interval_s=row[4],
            assignments=tuple(sorted(by_device[row[0]], key=lambda a: a.valid_from)),
        )
        for row in device_rows
    }


async def load_registry(conn: psycopg.AsyncConnection[Any]) -> dict[str, DeviceRecord]:
    devices = await (await conn.execute(_DEVICES)).fetchall()
    assignments = await (await conn.execute(_ASSIGNMENTS)).fetchall()
    return _records(devices, assignments)


async def load_device(conn: psycopg.AsyncConnection[Any], device_id: str) -> DeviceRecord | None:
    devices = await (await conn.execute(_DEVICES + " where d.id = %s", (device_id,))).fetchall()
    if not devices:
        return None
    assignments = await (
        await conn.execute(_ASSIGNMENTS + " where device_id = %s", (device_id,))
    ).fetchall()
    return _records(devices, assignments)[device_id]


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
