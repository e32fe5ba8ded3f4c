"""SQL of the follow-up report (issue #21.1; migration 0021, docs/report.md).

Every query runs on the API's tenant-scoped connection (role wg_api: row-level security
and the tenant-filtered views). The use of devices comes from the daily rollup
(``report_device_days``), which :func:`roll_up` brings up to date for the period first
(from TimescaleDB's continuous aggregates or the native partitions, in the database);
alarms, escalations and conditions from the alarms table; visits from the planned visits
and the lock events. Every query returns counts, never a person. The figures themselves
are :mod:`gateway.domain.followup`'s.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg

from gateway.domain.followup import (
    CONDITION_KINDS,
    TECHNICAL_KINDS,
    ConditionSpell,
    DeviceUse,
    Escalations,
    Holding,
    Period,
    ResponseGroup,
    SupervisionCounts,
    Target,
    Visits,
)

AsyncConn = psycopg.AsyncConnection[Any]

ZONE = "Europe/Stockholm"


async def roll_up(conn: AsyncConn, period: Period) -> int:
    """Roll up the period's days not yet final (this tenant); returns how many."""
    cur = await conn.execute("select report_rollup(%s, %s)", (period.start, period.end))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


# One index probe a day (the lateral LIMIT keeps the planner from scanning the rollup).
MISSING_DAYS = """
    select min(d), max(d)
    from (select g::date as d
          from generate_series(%(from)s::date, %(last)s::date, interval '1 day') g) days
    left join lateral (
        select 1 as found from report_device_days r
        where r.tenant_id = current_setting('wg.tenant_id', true) and r.day = days.d
        limit 1) x on true
    where x.found is null and d <= (now() at time zone 'Europe/Stockholm')::date
"""


async def roll_up_missing(conn: AsyncConn, period: Period) -> int:
    """What the report does first: roll up the period's days that have no rollup yet (a
    period before the workers' upkeep began, or older than its week). Days already there
    are the workers' to keep up to date (hourly, until final), so a report never re-reads
    the raw rows of recent days itself."""
    params = {"from": period.start, "last": period.end - timedelta(days=1)}
    row = await (await conn.execute(MISSING_DAYS, params)).fetchone()
    if row is None or row[0] is None:
        return 0
    cur = await conn.execute("select report_rollup(%s, %s)", (row[0], row[1] + timedelta(days=1)))
    done = await cur.fetchone()
    return int(done[0]) if done else 0


async def prepare(conn: AsyncConn) -> None:
    """Memory for the report's sorts and groups (tens of thousands of devices, a year of
    alarms) in this transaction only, so they do not spill to disk."""
    await conn.execute("set local work_mem = '64MB'")


#: advisory lock of the workers' rollup upkeep ("WGRP"): one worker at a time does it
ROLLUP_UPKEEP = 0x57_47_52_50


def roll_up_recent(conn: psycopg.Connection[Any]) -> int:
    """The workers' upkeep: roll up the last week of every tenant (role wg_worker,
    ``conn`` in autocommit). A worker that finds another at it skips its turn (0)."""
    got = conn.execute("select pg_try_advisory_lock(%s)", (ROLLUP_UPKEEP,)).fetchone()
    if not (got and got[0]):
        return 0
    try:
        row = conn.execute("select report_rollup_recent()").fetchone()
        return int(row[0]) if row else 0
    finally:
        if not conn.closed:
            conn.execute("select pg_advisory_unlock(%s)", (ROLLUP_UPKEEP,))


async def target(conn: AsyncConn) -> tuple[Target, Any, str] | None:
    """The tenant's answering target, when and by whom it was set."""
    cur = await conn.execute(
        "select ack_within_s, ack_share, changed_at, changed_by from report_targets"
        " where tenant_id = current_setting('wg.tenant_id', true)"
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Target(int(row[0]), float(row[1])), row[2], str(row[3])


async def set_target(conn: AsyncConn, new: Target, actor: str) -> None:
    await conn.execute(
        "insert into report_targets (tenant_id, ack_within_s, ack_share, changed_by)"
        " values (current_setting('wg.tenant_id', true), %s, %s, %s)"
        " on conflict (tenant_id) do update set ack_within_s = excluded.ack_within_s,"
        " ack_share = excluded.ack_share, changed_by = excluded.changed_by, changed_at = now()",
        (new.ack_within_s, Decimal(str(new.ack_share)), actor),
    )


async def clear_target(conn: AsyncConn) -> bool:
    cur = await conn.execute(
        "delete from report_targets where tenant_id = current_setting('wg.tenant_id', true)"
    )
    return cur.rowcount > 0


HOLDINGS = """
    select a.device_id, m.device_type, a.person_id::text, a.valid_from, a.valid_to
    from assignments a
    join devices d on d.id = a.device_id
    join device_models m on m.id = d.model_id
    where a.valid_from < %(hi)s and (a.valid_to is null or a.valid_to > %(lo)s)
"""


async def holdings(conn: AsyncConn, period: Period) -> list[Holding]:
    cur = await conn.execute(HOLDINGS, {"lo": period.lo, "hi": period.hi})
    return [Holding(*row) for row in await cur.fetchall()]


# The last WORN_WINDOW_DAYS days of the period only (an index range of the rollup): a
# year's report reads four weeks of daily rows, not 365.
DEVICE_USE = """
    select device_id,
        count(*) filter (where positions + device_alarms > 0),
        count(*) filter (where day >= %(recent)s
                         and positions + device_alarms + readings + lock_events > 0)
    from report_device_days
    where tenant_id = current_setting('wg.tenant_id', true)
      and day >= %(from)s and day < %(to)s
    group by device_id
"""


async def device_use(conn: AsyncConn, period: Period) -> list[DeviceUse]:
    params = {"from": period.worn_from, "to": period.end, "recent": period.unused_from}
    cur = await conn.execute(DEVICE_USE, params)
    return [DeviceUse(*row) for row in await cur.fetchall()]


# Response times of the alarms raised in the period, by kind and by local hour. An alarm
# still unacknowledged counts against the target once it has been open longer than the
# target (as in GET /stats); with no target set, only the times are given.
RESPONSES = """
    with a as (
        select kind,
            extract(hour from raised_at at time zone %(zone)s)::integer as hour,
            extract(epoch from acknowledged_at - raised_at) as to_ack,
            extract(epoch from least(now(), %(hi)s) - raised_at) as age
        from alarms
        where raised_at >= %(lo)s and raised_at < %(hi)s and not (kind = any (%(technical)s))
    )
    select kind, hour, count(*),
        count(*) filter (where to_ack is not null or age > %(target)s),
        count(*) filter (where to_ack <= %(target)s),
        percentile_cont(0.5) within group (order by to_ack),
        percentile_cont(0.9) within group (order by to_ack)
    from a group by grouping sets ((kind), (hour))
"""


async def responses(
    conn: AsyncConn, period: Period, target: Target | None
) -> tuple[list[ResponseGroup], list[ResponseGroup]]:
    """(by kind, by local hour 0-23), each sorted."""
    params = {
        "zone": ZONE,
        "lo": period.lo,
        "hi": period.hi,
        "technical": sorted(TECHNICAL_KINDS),
        "target": target.ack_within_s if target else 0,
    }
    cur = await conn.execute(RESPONSES, params)
    by_kind: list[ResponseGroup] = []
    by_hour: dict[int, ResponseGroup] = {}

    def secs(value: Any) -> float | None:
        return round(float(value), 1) if value is not None else None

    for kind, hour, n, judged, within, p50, p90 in await cur.fetchall():
        if target is None:
            judged = within = 0
        if kind is not None:
            by_kind.append(ResponseGroup(kind, n, judged, within, secs(p50), secs(p90)))
        elif hour is not None:
            by_hour[hour] = ResponseGroup(f"{hour:02d}", n, judged, within, secs(p50), secs(p90))
    hours = [by_hour.get(h, ResponseGroup(f"{h:02d}", 0, 0, 0, None, None)) for h in range(24)]
    return sorted(by_kind, key=lambda g: g.key), hours


ESCALATIONS = """
    select kind, count(*), count(*) filter (where escalation_level > 0),
        coalesce(max(escalation_level), 0)
    from alarms
    where raised_at >= %(lo)s and raised_at < %(hi)s and not (kind = any (%(technical)s))
    group by kind order by kind
"""


async def escalations(conn: AsyncConn, period: Period) -> list[Escalations]:
    params = {"lo": period.lo, "hi": period.hi, "technical": sorted(TECHNICAL_KINDS)}
    cur = await conn.execute(ESCALATIONS, params)
    return [Escalations(*row) for row in await cur.fetchall()]


# Spells of a technical condition raised in the period: from raised until the condition
# cleared (or the alarm was resolved), clipped to the period's end or now.
CONDITIONS = """
    with s as (
        select kind, device_id,
            extract(epoch from least(coalesce(cleared_at, resolved_at, 'infinity'),
                                     %(hi)s, now()) - raised_at) / 3600.0 as hours,
            coalesce(cleared_at, resolved_at) is null
                or coalesce(cleared_at, resolved_at) >= %(hi)s as open_at_end
        from alarms
        where raised_at >= %(lo)s and raised_at < %(hi)s and kind = any (%(kinds)s)
    )
    select kind, count(*), count(distinct device_id), coalesce(sum(hours), 0),
        percentile_cont(0.5) within group (order by hours), max(hours),
        count(*) filter (where open_at_end)
    from s group by kind
"""


async def conditions(conn: AsyncConn, period: Period) -> list[ConditionSpell]:
    params = {"lo": period.lo, "hi": period.hi, "kinds": list(CONDITION_KINDS)}
    cur = await conn.execute(CONDITIONS, params)
    found = {}
    for kind, spells, devices, total, p50, longest, still in await cur.fetchall():
        found[kind] = ConditionSpell(
            kind,
            spells,
            devices,
            round(float(total), 2),
            round(float(p50), 2) if p50 is not None else None,
            round(float(longest), 2) if longest is not None else None,
            still,
        )
    return [found.get(k, ConditionSpell(k, 0, 0, 0.0, None, None, 0)) for k in CONDITION_KINDS]


# Planned visits in the period (one-off visits starting in it, and each local day's
# occurrence of a weekly slot), and how many of them saw the home's lock unlocked within
# the visit's time. A visit lasts at most 24 hours, so an unlock that opens it falls on
# its local start day or the next: the unlocks are joined to the visits by (resident,
# start day) in one hash join, then checked against the visit's times.
VISITS = """
    with planned as (
        select row_number() over () as id, person_id, starts_at, ends_at,
            (starts_at at time zone %(zone)s)::date as day
        from (
            select person_id, starts_at, ends_at from visits
            where starts_at >= %(lo)s and starts_at < %(hi)s
            union all
            select s.person_id, (g::date + s.start_time) at time zone s.timezone,
                (g::date + s.end_time + case when s.end_time < s.start_time
                                              then interval '1 day' else interval '0' end)
                    at time zone s.timezone
            from visit_slots s,
                generate_series(greatest(%(from)s::date, coalesce(s.first_day, %(from)s::date)),
                                least(%(last)s::date, coalesce(s.last_day, %(last)s::date)),
                                interval '1 day') g
            where (extract(isodow from g)::integer - 1)::smallint = any (s.weekdays)
        ) v
    ),
    unlocks as (
        select e.person_id, e.ts, (e.ts at time zone %(zone)s)::date - k as day
        from api_lock_events e, (values (0), (1)) days (k)
        where e.action = 'unlocked' and e.ts >= %(lo)s - interval '1 day'
          and e.ts < %(hi)s + interval '25 hours'
    )
    select (select count(*) from planned),
        (select count(distinct p.id) from planned p
         join unlocks u on u.person_id = p.person_id and u.day = p.day
         where u.ts >= p.starts_at and u.ts < p.ends_at)
"""


async def visits(conn: AsyncConn, period: Period) -> Visits:
    last = period.end - timedelta(days=1)
    params = {"lo": period.lo, "hi": period.hi, "from": period.start, "last": last, "zone": ZONE}
    cur = await conn.execute(VISITS, params)
    row = await cur.fetchone()
    return Visits(int(row[0]), int(row[1])) if row else Visits(0, 0)


# Digital night supervision (issue #20; migration 0023): the residents with a plan in the
# period, and each planned check in it by its final attempt (the retry's when made).
SUPERVISION = """
    with final as (
        select distinct on (plan_id, planned_at) result, attempt
        from supervision_checks
        where planned_at >= %(lo)s and planned_at < %(hi)s
        order by plan_id, planned_at, attempt desc
    )
    select (select count(distinct person_id) from supervision_plans
            where created_at < %(hi)s and (ended_at is null or ended_at > %(lo)s)),
        count(*) filter (where result = 'ok'), count(*) filter (where result = 'not_ok'),
        count(*) filter (where result = 'failed'), count(*) filter (where attempt = 2)
    from final
"""


async def supervision(conn: AsyncConn, period: Period) -> SupervisionCounts:
    cur = await conn.execute(SUPERVISION, {"lo": period.lo, "hi": period.hi})
    row = await cur.fetchone()
    return SupervisionCounts(*(int(v or 0) for v in row)) if row else SupervisionCounts()
