"""Persons' alarm rules in memory: pseudonymous reference, safe zones, vital-sign limits.

Loaded from the registry (``persons``, ``safe_zones``, ``person_limits``) and kept current
by ``LISTEN wg_rules``, so that rules are evaluated without the database.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from datetime import time, timedelta
from typing import Any
from uuid import UUID

import psycopg

from gateway.adapters.postgres import listen, queries
from gateway.domain.geofence import Circle, Polygon, SafeZone, TimeWindow
from gateway.domain.vitals import BloodPressureLimits, WeightGainLimit
from gateway.worker.alarms.engine import DEFAULT_BLOOD_PRESSURE, DEFAULT_WEIGHT_GAIN, PersonRules
from gateway.worker.fleet.canon import PERSON_IDS

_PERSONS = "select id, ref from persons"
_ZONES = "select id, person_id, name, shape, windows, timezone from safe_zones"
_LIMITS = "select person_id, blood_pressure, weight_gain from person_limits"

#: Most persons have the default limits: they all share these two (immutable) objects.
DEFAULT_LIMITS = (DEFAULT_BLOOD_PRESSURE, DEFAULT_WEIGHT_GAIN)


def zone_from_row(
    zone_id: str, name: str, shape: dict[str, Any], windows: list[Any], tz: str
) -> SafeZone:
    """The stored JSON of a safe zone (as the API validated it) to the domain's type."""
    if shape["type"] == "circle":
        geometry: Circle | Polygon = Circle(shape["lat"], shape["lon"], shape["radius_m"])
    else:
        geometry = Polygon(tuple((float(p[0]), float(p[1])) for p in shape["points"]))
    return SafeZone(
        zone_id=zone_id,
        name=name,
        shape=geometry,
        windows=tuple(
            TimeWindow(
                frozenset(w["weekdays"]),
                time.fromisoformat(w["start"]),
                time.fromisoformat(w["end"]),
            )
            for w in windows
        ),
        timezone=sys.intern(tz),
    )


def limits_from_row(
    bp: dict[str, Any] | None, weight: dict[str, Any] | None
) -> tuple[BloodPressureLimits, WeightGainLimit]:
    bp_limits = BloodPressureLimits(**bp) if bp else DEFAULT_LIMITS[0]
    weight_limit = (
        WeightGainLimit(weight["gain_kg"], timedelta(days=weight["window_days"]))
        if weight
        else DEFAULT_LIMITS[1]
    )
    return bp_limits, weight_limit


#: A person's rules as held: most persons have no safe zone and the default limits, and
#: are held by their reference alone (a ``PersonRules`` is made when asked for); a
#: ``PersonRules`` object is kept only for those with rules of their own.
Held = str | PersonRules


def _held(rules: PersonRules) -> Held:
    plain = not rules.zones and (rules.blood_pressure, rules.weight_gain) == DEFAULT_LIMITS
    return rules.ref if plain else rules


async def _load(
    conn: psycopg.AsyncConnection[Any],
    person_id: UUID | None,
    current: dict[UUID, Held] | None = None,
) -> dict[UUID, Held]:
    """Persons' rules (one person's, or everyone's); what equals what ``current`` holds is
    kept, not replaced. A person's id is the object the registry's assignments hold too
    (``canon.PERSON_IDS``). Persons' rows are converted one at a time as they are used, a
    chunk at a time (``queries.stream``)."""
    where = " where person_id = %s" if person_id else ""
    params = (person_id,) if person_id else ()
    zones: dict[UUID, list[SafeZone]] = defaultdict(list)
    for zid, pid, name, shape, windows, tz in await (
        await conn.execute(_ZONES + where, params)
    ).fetchall():
        zones[pid].append(zone_from_row(str(zid), name, shape, windows, tz))
    limits = {
        pid: limits_from_row(bp, weight)
        for pid, bp, weight in await (await conn.execute(_LIMITS + where, params)).fetchall()
    }
    current = current or {}
    out: dict[UUID, Held] = {}
    where = " where id = %s" if person_id else ""
    async for row_id, ref in queries.stream(conn, _PERSONS + where, params):
        pid = PERSON_IDS(row_id)
        rules = PersonRules(pid, ref, tuple(zones.pop(pid, ())), *limits.get(pid, DEFAULT_LIMITS))
        out[pid] = listen.kept(current, pid, _held(rules))
    return out


class PersonRulesCache:
    def __init__(self, url: str) -> None:
        self._url = url
        self._rules: dict[UUID, Held] = {}
        self._changes = listen.Subscription(url, "wg_rules", self._reload)

    def get(self, person_id: UUID) -> PersonRules | None:
        held = self._rules.get(person_id)
        if isinstance(held, str):
            return PersonRules(person_id, held, (), *DEFAULT_LIMITS)
        return held

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._rules = await _load(conn, None, self._rules)
        PERSON_IDS.sweep()  # ids of persons gone from both caches

    async def load(self) -> None:
        """Read every person's rules and listen for changes; ``follow`` goes on from there."""
        await self._changes.load()

    async def follow(self, stop: asyncio.Event) -> None:
        async def changed(payload: str) -> None:
            person_id = UUID(payload)
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                found = await _load(conn, person_id)
            if person_id in found:
                self._rules[person_id] = found[person_id]
            else:
                self._rules.pop(person_id, None)

        await self._changes.follow(changed, stop)
