"""The in-memory caches (registry, person rules, lock access) read the database once at
start and then follow its notifications: a change made between the start-up load and the
follower taking over is not missed, and a lost connection is followed by a full reload.
A follower stops at once, and one with nothing to hear leaves the event loop alone
(issue #22: a worker holds seven, and psycopg's own wait for a notification woke the loop
ten times a second each)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateway.adapters.postgres import queries
from gateway.adapters.postgres import registry_repo as repo
from gateway.adapters.postgres.listen import Subscription
from gateway.support.metrics import IngestMetrics
from gateway.worker.alarms.person_rules import PersonRulesCache
from gateway.worker.fleet.registry_cache import RegistryCache
from tests.integration.harness import seed, wait_for


async def _register(url: str, tenant: str, device_id: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await repo.register_device(conn, tenant, device_id, "t-scale")


#: The database's other client connections (here: the cache's).
_OTHERS = """
    select count(*) from pg_stat_activity
    where datname = current_database() and pid <> pg_backend_pid()
      and backend_type = 'client backend'
"""


async def _others(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute(_OTHERS)).fetchone()
        return int(row[0]) if row else -1


async def test_registry_loads_once_and_misses_nothing_between_load_and_follow(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await seed(database_url)
    full_loads = 0
    load_registry = queries.load_registry

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal full_loads
        full_loads += 1
        return await load_registry(*args, **kwargs)

    monkeypatch.setattr(queries, "load_registry", counted)
    cache = RegistryCache(database_url, IngestMetrics())
    await cache.load()
    assert full_loads == 1 and cache.get("scale-1") is not None
    # registered after the load, before anyone follows: the notification waits on the
    # connection that listened before loading
    await _register(database_url, s.tenant, "scale-late")
    stop = asyncio.Event()
    follower = asyncio.create_task(cache.follow(stop))
    try:
        await wait_for(lambda: _has(cache, "scale-late"), 10, "the late device")
        assert full_loads == 1  # the follower went on from the start-up load

        # the database drops the follower's connection: it reconnects and reloads, and a
        # device registered meanwhile is there
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            await c.execute(_OTHERS.replace("count(*)", "pg_terminate_backend(pid)"))
            await _register(database_url, s.tenant, "scale-later")
        await wait_for(lambda: _has(cache, "scale-later"), 15, "the device after reconnect")
        assert full_loads >= 2
    finally:
        stop.set()
        await follower
        await cache.close()


async def _has(cache: RegistryCache, device_id: str) -> bool:
    return cache.get(device_id) is not None


async def test_a_follower_stopped_before_it_ran_closes_the_start_up_connection(
    database_url: str,
) -> None:
    await seed(database_url)
    cache = RegistryCache(database_url, IngestMetrics())
    await cache.load()
    # listening since the load: the registry, and its units and resident tags (#19.4)
    assert await _others(database_url) == 2
    stop = asyncio.Event()
    stop.set()
    await cache.follow(stop)

    async def closed() -> bool:
        return await _others(database_url) == 0

    await wait_for(closed, 5, "the listening connection closed")
    await cache.close()


async def test_registry_and_person_rules_hold_one_object_per_person_id(database_url: str) -> None:
    """Both caches read a person's id from the database; they keep one object for it. A
    device's past holders come in time order, however the rows arrive."""
    s = await seed(database_url, since=datetime.now(UTC) - timedelta(days=30))
    returned = datetime.now(UTC) - timedelta(days=20)
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        await repo.return_device(conn, "scale-1", returned)
        await repo.assign_device(conn, "scale-1", s.persons["bp-1"], returned)
    registry = RegistryCache(database_url, IngestMetrics())
    rules = PersonRulesCache(database_url)
    await registry.load()
    await rules.load()
    try:
        for device_id, person in s.persons.items():
            record = registry.get(device_id)
            assert record is not None
            holder = record.assignments[-1].person_id
            held_by = s.persons["bp-1"] if device_id == "scale-1" else person
            assert holder == held_by
            assert rules.get(held_by) is not None
            # the rules are held under the very object the registry holds
            assert next(k for k in rules._rules if k == holder) is holder
        history = registry.get("scale-1")
        assert history is not None
        assert [a.person_id for a in history.assignments] == [
            s.persons["scale-1"],
            s.persons["bp-1"],
        ]
        assert history.assignments[0].valid_to == returned
    finally:
        stop = asyncio.Event()
        stop.set()
        await rules.follow(stop)  # closes the start-up connection
        await registry.close()


CHANNEL = "wg_test_listen"


async def _notify(url: str, payload: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("select pg_notify(%s, %s)", (CHANNEL, payload))


class _Heard:
    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.reloads = 0
        self.changed = asyncio.Event()

    async def reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("select 1")
        self.reloads += 1

    async def on_change(self, payload: str) -> None:
        self.payloads.append(payload)
        self.changed.set()

    async def next_change(self) -> str:
        await asyncio.wait_for(self.changed.wait(), 10)
        self.changed.clear()
        return self.payloads[-1]


async def _following(url: str) -> tuple[_Heard, asyncio.Event, asyncio.Task[None]]:
    """A follower of CHANNEL started (loaded once), what it hears, and its stop."""
    heard = _Heard()
    sub = Subscription(url, CHANNEL, heard.reload)
    await sub.load()
    stop = asyncio.Event()
    return heard, stop, asyncio.create_task(sub.follow(heard.on_change, stop))


async def test_a_follower_hears_changes_and_stops_at_once(database_url: str) -> None:
    heard, stop, task = await _following(database_url)
    await _notify(database_url, "one")
    assert await heard.next_change() == "one"
    await _notify(database_url, "two")
    await _notify(database_url, "three")
    assert await heard.next_change() in ("two", "three")
    if heard.payloads[-1] != "three":
        assert await heard.next_change() == "three"
    assert heard.payloads == ["one", "two", "three"]
    assert heard.reloads == 1  # loaded once, at start; not again on the same connection
    stop.set()
    await asyncio.wait_for(task, 2)  # not after a polling interval or the full reload


async def test_an_idle_follower_schedules_no_wake_ups(database_url: str) -> None:
    """Waiting for a notification costs no timer: the loop wakes when one comes (or the
    periodic full reload is due), not to look and find nothing."""
    heard, stop, task = await _following(database_url)
    await _notify(database_url, "ready")
    assert await heard.next_change() == "ready"  # the follower is waiting now

    loop = asyncio.get_running_loop()
    scheduled: list[float] = []
    call_at = loop.call_at

    def counting_call_at(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        scheduled.append(when)
        return call_at(when, *args, **kwargs)

    loop.call_at = counting_call_at  # type: ignore[method-assign]
    try:
        await asyncio.sleep(1.0)  # a window to observe, not to wait for anything
    finally:
        loop.call_at = call_at  # type: ignore[method-assign]
    # the test's own sleep is the one timer in the window
    assert len(scheduled) <= 1, f"{len(scheduled)} timers scheduled by an idle follower"

    await _notify(database_url, "after")
    assert await heard.next_change() == "after"
    stop.set()
    await asyncio.wait_for(task, 2)
