"""An engine taking over rebuilds its door timers from storage (``LOAD_OPEN_DOORS``) as
the engine before it kept them: a door counts from its first unlock since it was last
locked (a second staff key does not restart its 15 minutes), and a door whose
door_unlocked alarm was raised after that unlock is not timed again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import psycopg

from gateway.adapters.postgres import queries


def test_open_doors_count_from_the_first_unlock_since_the_last_lock(database_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ago = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    person = uuid4()
    events = [
        ("twice", ago(20), "unlocked"), ("twice", ago(10), "unlocked"),
        ("relocked", ago(20), "unlocked"), ("relocked", ago(15), "locked"),
        ("relocked", ago(5), "unlocked"),
        ("closed", ago(9), "unlocked"), ("closed", ago(8), "locked"),
        ("alarmed", ago(30), "unlocked"), ("alarmed", ago(20), "unlocked"),
        ("denied", ago(3), "denied"),
    ]  # fmt: skip
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("insert into tenants (id, name, kind, org_number)"
                     " values ('kommun-d', 'D', 'municipality', '212000-0009')")  # fmt: skip
        for n, (device, ts, action) in enumerate(events):
            conn.execute(
                "insert into lock_events (tenant_id, person_id, device_id, msg_id, ts,"
                " received_at, action, key_id, method)"
                " values ('kommun-d', %s, %s, %s, %s, %s, %s, 'k1', 'app')",
                (person, device, f"m{n}", ts, ts + timedelta(seconds=n), action),
            )
        conn.execute(
            "insert into alarms (id, tenant_id, kind, severity, device_id, person_id, subject,"
            " state, raised_at, last_at, occurrences, version)"
            " values (%s, 'kommun-d', 'door_unlocked', 'high', 'alarmed', %s, 'alarmed',"
            " 'raised', %s, %s, 1, 1)",
            (uuid4(), person, ago(15), ago(15)),
        )
        found = {d: (ts, received) for d, ts, received in conn.execute(queries.LOAD_OPEN_DOORS)}
    # with when that unlock was received: a late one is timed on its lock's own timeline
    assert found == {"twice": (ago(20), ago(20)),  # its first event, received at once
                     "relocked": (ago(5), ago(5) + timedelta(seconds=4))}  # fmt: skip
