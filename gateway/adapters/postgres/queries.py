"""The gateway's SQL, in one place. Every query is parameterised."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from gateway.domain.registry import Assignment, DeviceRecord, DeviceStatus, device_record
from gateway.worker.fleet.canon import PERSON_IDS
from gateway.worker.fleet.registry_table import RegistryTable

#: A device and its assignments, one row per assignment (one row with no person if none).
_REGISTRY = """
    select d.id, d.tenant_id, d.status, m.device_type, m.heartbeat_interval_s,
           a.person_id, a.valid_from, a.valid_to, a.tenant_id, a.continues_id is not null,
           a.unit_id
    from devices d join device_models m on m.id = d.model_id
    left join assignments a on a.device_id = d.id
"""

#: Heartbeat intervals seen (a model's setting: a handful of values across any fleet).
_INTERVALS: dict[int, int] = {}

#: Rows fetched from the server at a time by ``stream`` (libpq 17 and later; one at a time
#: before).
STREAM_CHUNK = 500


async def stream(
    conn: psycopg.AsyncConnection[Any], query: str, params: tuple[Any, ...] = ()
) -> AsyncIterator[Any]:
    """The rows of ``query``, fetched from the server a chunk at a time as they are used.

    For the caches loaded at start-up (registry, persons' rules, device states). Neither
    ``fetchall`` nor iterating an executed cursor: both hold the whole result (libpq's
    copy of every row) until the last row is read, so the objects kept would be made
    among a whole result's worth of memory that is freed after, leaving the heap with
    holes it cannot give back (measured with 10,000 devices: 2 MB of the worker's
    resident memory)."""
    size = STREAM_CHUNK if psycopg.pq.version() >= 170000 else 1
    async for row in conn.cursor().stream(query, params, size=size):
        yield row


def _record(rows: list[Any]) -> DeviceRecord:
    """A device's rows (see ``_REGISTRY``) to a record. Tenant ids, device types and
    heartbeat intervals repeat across the fleet, so every record shares one object for
    each (an int above 256 is an object of its own too) instead of holding its own; a
    person's id is the object the person rules hold too (``canon.PERSON_IDS``)."""
    device_id, tenant_id, status, device_type, heartbeat_interval_s = rows[0][:5]
    return device_record(
        device_id,
        sys.intern(tenant_id),
        DeviceStatus(status),
        sys.intern(device_type),
        _INTERVALS.setdefault(heartbeat_interval_s, heartbeat_interval_s),
        [Assignment(PERSON_IDS(r[5]), r[6], r[7],
                    None if r[8] == tenant_id else sys.intern(r[8]), r[9])
         if r[10] is None else Assignment(None, r[6], r[7], None, False, r[10])  # a unit's
         for r in rows if r[6] is not None],
    )


async def load_registry(conn: psycopg.AsyncConnection[Any], into: RegistryTable) -> None:
    """The whole registry, put into ``into`` (an empty table). The rows come ordered by
    device, so each device is made from its rows as they arrive: nothing is held for all
    devices but the table itself."""
    rows: list[Any] = []
    async for row in stream(conn, _REGISTRY + " order by d.id"):
        if rows and row[0] != rows[0][0]:
            into.put(_record(rows))
            rows = []
        rows.append(row)
    if rows:
        into.put(_record(rows))


async def load_device(conn: psycopg.AsyncConnection[Any], device_id: str) -> DeviceRecord | None:
    rows = await (await conn.execute(_REGISTRY + " where d.id = %s", (device_id,))).fetchall()
    return _record(rows) if rows else None


#: the changed devices' states, copied (binary) into the session's stage table first:
#: psycopg dumps a Python list parameter element by element, a copied row in C
DEVICE_STATE_TYPES = ("text", "text", "timestamptz", "timestamptz", "int2", "int2", "text", "bool")
STAGE_DEVICE_STATE = """
    create temp table if not exists stage_device_state (like device_state)
    on commit delete rows
"""
COPY_DEVICE_STATE = """
    copy stage_device_state
        (device_id, tenant_id, last_seen, last_ts, battery_percent, rssi_dbm, firmware, online)
    from stdin (format binary)
"""
UPSERT_DEVICE_STATE = """
    insert into device_state
        (device_id, tenant_id, last_seen, last_ts, battery_percent, rssi_dbm, firmware, online)
    select device_id, tenant_id, last_seen, last_ts, battery_percent, rssi_dbm, firmware, online
    from stage_device_state
    on conflict (device_id) do update set
        tenant_id = excluded.tenant_id,
        last_seen = greatest(device_state.last_seen, excluded.last_seen),
        last_ts = greatest(device_state.last_ts, excluded.last_ts),
        battery_percent = coalesce(excluded.battery_percent, device_state.battery_percent),
        rssi_dbm = coalesce(excluded.rssi_dbm, device_state.rssi_dbm),
        firmware = coalesce(excluded.firmware, device_state.firmware),
        online = coalesce(excluded.online, device_state.online)
"""

LOAD_LAST_SEEN = "select device_id, last_seen from device_state"

#: the rule state an engine taking over rebuilds from storage: recent weights per person,
#: and each door still unlocked with its first unlock since it was last locked (the door
#: counts from it, as in the engine) unless a door_unlocked alarm followed that unlock, with
#: when it was received (a lock's backlog is timed on its own timeline)
LOAD_RECENT_WEIGHTS = """
    select person_id, ts, weight_kg from readings
    where kind = 'weight' and weight_kg is not null and ts > now() - interval '14 days'
    order by ts
"""
LOAD_OPEN_DOORS = """
    with open_since as (
        select distinct on (u.device_id) u.device_id, u.ts, u.received_at from lock_events u
        where u.action = 'unlocked' and u.ts > now() - interval '2 days'
          and not exists (
            select 1 from lock_events l
            where l.device_id = u.device_id and l.action = 'locked' and l.ts >= u.ts)
        order by u.device_id, u.ts
    )
    select o.device_id, o.ts, o.received_at from open_since o
    where not exists (
        select 1 from alarms a
        where a.kind = 'door_unlocked' and a.device_id = o.device_id and a.raised_at >= o.ts)
"""

LOAD_DEVICE_STATE = """
    select device_id, last_seen, last_ts, battery_percent, rssi_dbm, firmware, online
    from device_state
"""
