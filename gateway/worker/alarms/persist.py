"""Ships the alarm journal into PostgreSQL, in order, idempotently; and reads it back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gateway.domain.alarms import Alarm
from gateway.support.backoff import Backoff
from gateway.worker.alarms.codec import alarm_from_dict
from gateway.worker.alarms.journal import AlarmJournal

log = logging.getLogger(__name__)

_UPSERT_ALARM = """
insert into alarms (id, tenant_id, kind, severity, device_id, person_id, person_ref, subject,
    state, raised_at, last_at, occurrences, condition, cleared_at, acknowledged_by,
    acknowledged_at, resolved_by, resolved_at, outcome, lat, lon, accuracy_m,
    escalation_level, escalated_at, detail, version)
values (%(id)s, %(tenant_id)s, %(kind)s, %(severity)s, %(device_id)s, %(person_id)s,
    %(person_ref)s, %(subject)s, %(state)s, %(raised_at)s, %(last_at)s, %(occurrences)s,
    %(condition)s, %(cleared_at)s, %(acknowledged_by)s, %(acknowledged_at)s, %(resolved_by)s,
    %(resolved_at)s, %(outcome)s, %(lat)s, %(lon)s, %(accuracy_m)s, %(escalation_level)s,
    %(escalated_at)s, %(detail)s, %(version)s)
on conflict (id) do update set
    severity = excluded.severity, state = excluded.state, last_at = excluded.last_at,
    occurrences = excluded.occurrences, condition = excluded.condition,
    cleared_at = excluded.cleared_at, acknowledged_by = excluded.acknowledged_by,
    acknowledged_at = excluded.acknowledged_at, resolved_by = excluded.resolved_by,
    resolved_at = excluded.resolved_at, outcome = excluded.outcome, lat = excluded.lat,
    lon = excluded.lon, accuracy_m = excluded.accuracy_m,
    escalation_level = excluded.escalation_level, escalated_at = excluded.escalated_at,
    detail = excluded.detail, version = excluded.version
where alarms.version < excluded.version
"""

_INSERT_EVENT = """
insert into alarm_events (id, alarm_id, tenant_id, seq, type, at, actor, snapshot)
values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict do nothing
"""

LOAD_OPEN = """
select id, tenant_id, kind, severity, device_id, person_id, person_ref, state, raised_at,
    last_at, occurrences, condition, cleared_at, acknowledged_by, acknowledged_at,
    resolved_by, resolved_at, outcome, lat, lon, accuracy_m, escalation_level, escalated_at,
    detail, version
from alarms where state <> 'resolved'
"""


def _params(record: dict[str, Any]) -> dict[str, Any]:
    alarm = alarm_from_dict(record)
    pos = alarm.position
    return {
        "id": alarm.id, "tenant_id": alarm.tenant_id, "kind": alarm.kind.value,
        "severity": alarm.severity.value, "device_id": alarm.device_id,
        "person_id": alarm.person_id, "person_ref": alarm.person_ref, "subject": alarm.subject,
        "state": alarm.state.value, "raised_at": alarm.raised_at, "last_at": alarm.last_at,
        "occurrences": alarm.occurrences, "condition": alarm.condition,
        "cleared_at": alarm.cleared_at, "acknowledged_by": alarm.acknowledged_by,
        "acknowledged_at": alarm.acknowledged_at, "resolved_by": alarm.resolved_by,
        "resolved_at": alarm.resolved_at, "outcome": alarm.outcome,
        "lat": pos.lat if pos else None, "lon": pos.lon if pos else None,
        "accuracy_m": pos.accuracy_m if pos else None,
        "escalation_level": alarm.escalation_level, "escalated_at": alarm.escalated_at,
        "detail": Jsonb(alarm.detail), "version": alarm.version,
    }  # fmt: skip


async def _write(cur: psycopg.AsyncCursor[Any], record: dict[str, Any]) -> None:
    await cur.execute(_UPSERT_ALARM, _params(record))
    await cur.execute(
        _INSERT_EVENT,
        (record["event_id"], record["alarm_id"], record["tenant_id"], record["seq"],
         record["event"], record["at"], record.get("actor"), Jsonb(record)),
    )  # fmt: skip


class JournalShipper:
    def __init__(self, journal: AlarmJournal, database_url: str) -> None:
        self._journal = journal
        self._url = database_url
        self._wake = asyncio.Event()
        self.shipped = 0
        self.failures = 0

    def wake(self) -> None:
        self._wake.set()

    async def ship_once(self, conn: psycopg.AsyncConnection[Any]) -> int:
        records, offset = self._journal.unshipped()
        if not records:
            return 0
        try:
            async with conn.transaction(), conn.cursor() as cur:
                for record in records:
                    await _write(cur, record)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
            # One record the database refuses (e.g. its tenant was removed) must not stop
            # the rest: write one by one and set the refused ones aside, loudly.
            for record in records:
                try:
                    async with conn.transaction(), conn.cursor() as cur:
                        await _write(cur, record)
                except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
                    self._journal.reject(record)
                    log.error(
                        "alarm event refused by the database; kept in rejected.jsonl",
                        extra={"event_id": record.get("event_id"), "error": type(exc).__name__},
                    )
        self._journal.mark_shipped(offset)
        self.shipped += len(records)
        return len(records)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(0.1, 5.0)
        conn: psycopg.AsyncConnection[Any] | None = None
        while True:
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=5)
                while await self.ship_once(conn):
                    pass
                backoff.reset()
            except (psycopg.Error, OSError) as exc:
                self.failures += 1
                retry_s = backoff.next()
                log.warning(
                    "alarm journal not shipped yet; database unavailable",
                    extra={"error": type(exc).__name__, "retry_s": retry_s},
                )
                if conn is not None:
                    await conn.close()
                    conn = None
                await asyncio.sleep(retry_s)
                continue
            if stop.is_set():
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
        if conn is not None:
            await conn.close()


async def load_open_alarms(url: str) -> list[Alarm]:
    """Open alarms from the database (ship the journal first so it is complete)."""
    alarms: dict[Any, Alarm] = {}
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(LOAD_OPEN)
        names = [c.name for c in cur.description or []]
        for row in await cur.fetchall():
            r = dict(zip(names, row, strict=True))
            record = {
                "alarm_id": str(r["id"]), "tenant_id": r["tenant_id"], "kind": r["kind"],
                "severity": r["severity"], "state": r["state"], "device_id": r["device_id"],
                "person_id": str(r["person_id"]) if r["person_id"] else None,
                "person_ref": r["person_ref"], "raised_at": r["raised_at"].isoformat(),
                "last_at": r["last_at"].isoformat(), "occurrences": r["occurrences"],
                "condition": {None: None, True: "active", False: "cleared"}[r["condition"]],
                "cleared_at": _iso(r["cleared_at"]), "acknowledged_by": r["acknowledged_by"],
                "acknowledged_at": _iso(r["acknowledged_at"]), "resolved_by": r["resolved_by"],
                "resolved_at": _iso(r["resolved_at"]), "outcome": r["outcome"],
                "position": (
                    {"lat": r["lat"], "lon": r["lon"], "accuracy_m": r["accuracy_m"]}
                    if r["lat"] is not None else None
                ),
                "escalation_level": r["escalation_level"],
                "escalated_at": _iso(r["escalated_at"]), "detail": r["detail"],
                "version": r["version"],
            }  # fmt: skip
            alarm = alarm_from_dict(record)
            alarms[alarm.id] = alarm
    return list(alarms.values())


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
