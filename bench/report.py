"""``python -m bench.report [--smoke] [--devices N] [--days D] [--out FILE]``: the
follow-up report (issue #21.1) for a year of a large fleet, timed through the API.

Seeded straight into a private PostgreSQL (pgserver, native partitions) by the owner, in
SQL (``generate_series``), so that seeding takes minutes, not hours:

* the registry: N devices (default 80,000: 40 % GPS alarms, 30 % door locks, 20 % scales,
  10 % blood-pressure monitors), one resident per device, assigned a month before the
  year; 5 % returned during it;
* the daily rollup ``report_device_days`` for D days (default 365): one row per device
  and day (every device reports its health daily), with use on most days (GPS alarms
  worn on 5 days of 7 but a quarter of them hardly at all; locks used daily; scales
  and monitors every other day but one scale in ten never); these days marked rolled up
  (final), as the workers' hourly upkeep leaves them;
* a year of alarms: 2 per GPS alarm a month (button, fall, geofence exit at every hour,
  acknowledged after 10-300 s, 5 % escalated), a silent spell per device every other
  month and a low battery per lock a quarter;
* planned visits: a daily weekly slot for one lock in ten, and a one-off visit a day for
  one in a hundred, with unlocks in the lock events for the last 30 days (the lock
  events' raw rows are what the visit figure reads).

Not seeded: a year of raw time series (80,000 devices' positions and heartbeats are
billions of rows); the report never reads them, it reads the rollup. What the rollup of
raw rows costs is measured apart: one day of raw rows (``--raw-per-device`` rows per
device, default 24) rolled up by ``report_rollup`` for that day.

Timed: ``GET /api/v1/reports/followup`` for the year as JSON, HTML (the SVG charts) and
CSV, each as a tenant admin over HTTP, after one warm-up; and a month. Prints one JSON
object. Target: a year renders in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from bench import machine
from bench.mosquitto import free_port
from gateway.adapters.embedded import EmbeddedPostgres, with_user
from gateway.adapters.postgres.migrate import migrate
from gateway.bootstrap import api_app
from gateway.config.settings import Settings
from gateway.domain.followup import ZONE

API_PASSWORD = "bench-api"
WORKER_PASSWORD = "bench-worker"
TENANT = "bench-report"
SECRET = "bench-report-secret-bench-report-secret"
TARGET_S = 10.0

# The seeding, in SQL (owner role). %(n)s devices, the year from %(start)s to %(end)s.
SEED_REGISTRY = """
insert into tenants (id, name, kind, org_number)
    values (%(tenant)s, 'Bench report', 'municipality', '212000-9997');
insert into device_models (id, vendor, model, device_type, heartbeat_interval_s) values
    ('bench-gps', 'Bench', 'GPS', 'gps_alarm', 60),
    ('bench-lock', 'Bench', 'Lock', 'door_lock', 120),
    ('bench-scale', 'Bench', 'Scale', 'scale', 3600),
    ('bench-bp', 'Bench', 'BP', 'blood_pressure_monitor', 3600)
    on conflict do nothing;
create temporary table bench_devices as
    select i, 'bd-' || lpad(i::text, 6, '0') as id, md5('person' || i)::uuid as person,
        case when i %% 10 < 4 then 'bench-gps' when i %% 10 < 7 then 'bench-lock'
             when i %% 10 < 9 then 'bench-scale' else 'bench-bp' end as model
    from generate_series(0, %(n)s - 1) i;
alter table assignments disable trigger user;
alter table devices disable trigger user;
alter table persons disable trigger user;
insert into persons (id, tenant_id, ref)
    select person, %(tenant)s, 'BENCH-' || i from bench_devices;
insert into devices (id, tenant_id, model_id, status)
    select id, %(tenant)s, model, 'active' from bench_devices;
insert into assignments (tenant_id, device_id, person_id, valid_from, valid_to)
    select %(tenant)s, id, person, %(lo)s::timestamptz - interval '30 days',
        case when i %% 20 = 7 then %(lo)s::timestamptz + (i %% 300) * interval '1 day' end
    from bench_devices;
alter table assignments enable trigger user;
alter table devices enable trigger user;
alter table persons enable trigger user;
"""

SEED_ROLLUP = """
alter table report_device_days drop constraint report_device_days_pkey;
insert into report_device_days (tenant_id, day, device_id, positions, device_alarms, readings,
                                lock_events, health)
select %(tenant)s, d.day, b.id,
    case when b.model = 'bench-gps' and (i %% 10 <> 3) and ((i + d.n) %% 7) < 5 then 24
         when b.model = 'bench-gps' and (i + d.n) %% 14 = 0 then 3 else 0 end,
    case when b.model = 'bench-gps' and (i + d.n) %% 15 = 0 then 1 else 0 end,
    case when b.model in ('bench-scale', 'bench-bp') and (i + d.n) %% 2 = 0 and i %% 20 <> 8
         then 1 else 0 end,
    case when b.model = 'bench-lock' then 4 else 0 end,
    24
from bench_devices b,
    (select g::date as day, row_number() over () as n
     from generate_series(%(start)s::date, %(end)s::date - 1, interval '1 day') g) d;
insert into report_days_done (tenant_id, day, rolled_at)
    select %(tenant)s, g::date, now()
    from generate_series(%(start)s::date, %(end)s::date - 1, interval '1 day') g;
alter table report_device_days add primary key (tenant_id, day, device_id);
"""

SEED_ALARMS = """
alter table alarms disable trigger user;
insert into alarms (id, tenant_id, kind, severity, device_id, person_id, subject, state,
    raised_at, last_at, occurrences, acknowledged_at, resolved_at, escalation_level, version)
select gen_random_uuid(), %(tenant)s,
    (array['button', 'fall', 'geofence_exit'])[1 + (b.i + k) %% 3], 'high', b.id, b.person,
    'person:' || b.person || ':' || k, 'resolved', t, t, 1,
    t + (10 + (b.i * 7 + k * 13) %% 290) * interval '1 second',
    t + interval '20 minutes', case when (b.i + k) %% 20 = 0 then 1 else 0 end, 1
from bench_devices b, generate_series(0, 23) k,
    lateral (select %(lo)s::timestamptz + (k * 15 + b.i %% 15) * interval '1 day'
                    + ((b.i * 37 + k * 11) %% 1440) * interval '1 minute' as t) x
where b.model = 'bench-gps';
insert into alarms (id, tenant_id, kind, severity, device_id, person_id, subject, state,
    raised_at, last_at, occurrences, condition, cleared_at, resolved_at, version)
select gen_random_uuid(), %(tenant)s, 'device_silent', 'high', b.id, b.person,
    'device:' || b.id || ':' || k, 'resolved', t, t, 1, false,
    t + (1 + b.i %% 40) * interval '1 hour', t + (1 + b.i %% 40) * interval '1 hour', 1
from bench_devices b, generate_series(0, 5) k,
    lateral (select %(lo)s::timestamptz + (k * 60 + b.i %% 60) * interval '1 day' as t) x;
insert into alarms (id, tenant_id, kind, severity, device_id, person_id, subject, state,
    raised_at, last_at, occurrences, condition, cleared_at, resolved_at, version)
select gen_random_uuid(), %(tenant)s, 'battery_low', 'medium', b.id, b.person,
    'device:' || b.id || ':b' || k, 'resolved', t, t, 1, false,
    t + (2 + b.i %% 70) * interval '1 hour', t + (2 + b.i %% 70) * interval '1 hour', 1
from bench_devices b, generate_series(0, 3) k,
    lateral (select %(lo)s::timestamptz + (k * 90 + b.i %% 90) * interval '1 day' as t) x
where b.model = 'bench-lock';
alter table alarms enable trigger user;
"""

SEED_VISITS = """
alter table visit_slots disable trigger user;
alter table visits disable trigger user;
insert into visit_slots (tenant_id, person_id, team, weekdays, start_time, end_time,
                         created_by)
    select %(tenant)s, person, 'hemtjanst', '{0,1,2,3,4,5,6}', '08:00', '08:30', 'bench'
    from bench_devices where model = 'bench-lock' and i %% 100 in (4, 14, 24);
insert into visits (tenant_id, person_id, team, starts_at, ends_at, created_by)
    select %(tenant)s, b.person, 'hemtjanst', t, t + interval '30 minutes', 'bench'
    from bench_devices b, generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz
                                          - interval '1 day', interval '1 day') t
    where b.model = 'bench-lock' and b.i %% 100 = 5;
alter table visit_slots enable trigger user;
alter table visits enable trigger user;
"""

# Unlocks at the slot visits of the last 30 days (lock events are kept a year; positions
# 30 days: the lock events for the year would be 2 a day per lock in ten).
SEED_UNLOCKS = """
insert into lock_events (tenant_id, person_id, device_id, msg_id, ts, received_at, action,
                         key_id, method)
select %(tenant)s, b.person, b.id, 'u' || g::date, t, t, 'unlocked', 'key-' || b.i, 'app'
from bench_devices b,
    generate_series(%(recent)s::date, %(end)s::date - 1, interval '1 day') g,
    lateral (select (g::date + time '08:05') at time zone 'Europe/Stockholm' as t) x
where b.model = 'bench-lock' and b.i %% 100 in (4, 14, 24)
    and (b.i + extract(doy from g)::int) %% 5 <> 0;
"""

# One day of raw rows for the fleet, then the rollup of that day from them.
SEED_RAW_DAY = """
insert into device_health (tenant_id, person_id, device_id, msg_id, ts, received_at, kind,
                           battery_percent)
select %(tenant)s, b.person, b.id, 'h' || k, t, t, 'battery', 80
from bench_devices b, generate_series(0, %(per)s - 1) k,
    lateral (select %(day)s::timestamptz + k * (interval '1 day' / %(per)s) as t) x;
insert into positions (tenant_id, person_id, device_id, msg_id, ts, received_at, lat, lon,
                       accuracy_m)
select %(tenant)s, b.person, b.id, 'p' || k, t, t, 59.6, 16.5, 8
from bench_devices b, generate_series(0, %(per)s - 1) k,
    lateral (select %(day)s::timestamptz + k * (interval '1 day' / %(per)s) as t) x
where b.model = 'bench-gps';
"""


def year(days: int) -> tuple[date, date]:
    """The period: ``days`` local days ending with yesterday (the rollup's raw day is
    today, so the year's days are final)."""
    end = datetime.now(ZONE).date()
    return end - timedelta(days=days), end


async def run(
    devices: int,
    days: int,
    raw_per_device: int,
    pgdata: Path,
    keep: bool,
    timescale: bool = False,
) -> dict[str, Any]:
    pg: Any
    if timescale:
        # Debian's PostgreSQL 15 with TimescaleDB preloaded, as tests/conftest.py starts it
        # (../shared/tools/install-timescaledb); its job scheduler off: the benchmark
        # refreshes the continuous aggregates itself, timed.
        import importlib

        services: Any = importlib.import_module("tests.services")  # a checkout's, not typed
        pg = services.DebianPostgres(
            preload=True, settings={"timescaledb.max_background_workers": "0"}
        ).start()
        url = await asyncio.to_thread(
            pg.create_database, owner="wg_bench_owner", owner_password="bench-owner"
        )
    else:
        pg = EmbeddedPostgres(pgdata, delete_on_stop=not keep)
        url = await asyncio.to_thread(pg.start)
    try:
        migrated = await asyncio.to_thread(
            migrate,
            url,
            api_password=API_PASSWORD,
            worker_password=WORKER_PASSWORD,
            timescaledb="require" if timescale else "off",
        )
        assert bool(migrated.hypertables) == timescale
        seeded = await asyncio.to_thread(_seed, url, devices, days, raw_per_device)
        queries = await _per_query(url, days)
        timings = await _measure(url, days)
    finally:
        await asyncio.to_thread(pg.stop)
    return {
        "devices": devices,
        "days": days,
        "backend": "timescaledb" if timescale else "native partitions",
        **seeded,
        "year_per_query_s": queries,
        **timings,
        "target_s": TARGET_S,
        "within_target": timings["year_json_s"] < TARGET_S and timings["year_html_s"] < TARGET_S,
        "machine": machine.describe(),
    }


def _seed(url: str, devices: int, days: int, per: int) -> dict[str, Any]:
    start, end = year(days)
    lo = datetime.combine(start, datetime.min.time(), ZONE)
    hi = datetime.combine(end, datetime.min.time(), ZONE)
    today = datetime.combine(end, datetime.min.time(), ZONE)
    params = {
        "tenant": TENANT,
        "n": devices,
        "start": start,
        "end": end,
        "lo": lo,
        "hi": hi,
        "recent": end - timedelta(days=30),
        "per": per,
        "day": today,
        "local_day": end,
    }
    took: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        seeded = _one(conn, f"select count(*) from tenants where id = '{TENANT}'")
        for name, statement in (
            ()
            if seeded
            else (
                ("registry", SEED_REGISTRY),
                ("rollup", SEED_ROLLUP),
                ("alarms", SEED_ALARMS),
                ("visits", SEED_VISITS),
                ("unlocks", SEED_UNLOCKS),
                ("raw_day", SEED_RAW_DAY),
            )
        ):
            started = time.perf_counter()
            with conn.transaction():
                for part in _statements(statement):
                    conn.execute(part.encode(), params)
            took[name] = round(time.perf_counter() - started, 1)
        conn.execute("vacuum analyze")
        counts = {
            table: _one(conn, f"select count(*) from {table}")
            for table in (
                "report_device_days",
                "alarms",
                "visits",
                "visit_slots",
                "lock_events",
                "device_health",
                "positions",
            )
        }
        # TimescaleDB: its refresh job materialises the raw day in the continuous aggregates
        # (here run by hand, timed); the rollup then reads them
        caggs = (
            [
                str(name)
                for (name,) in conn.execute(
                    "select view_name from timescaledb_information.continuous_aggregates"
                ).fetchall()
            ]
            if _one(conn, "select count(*) from pg_extension where extname = 'timescaledb'")
            else []
        )
        started = time.perf_counter()
        for name in caggs:
            conn.execute(
                "call refresh_continuous_aggregate(%s, %s, %s)",
                (name, today - timedelta(days=1), today + timedelta(days=1)),
            )
        refresh_s = time.perf_counter() - started
        # the rollup of one day of raw rows (what the workers' upkeep does each hour)
        conn.execute(
            "delete from report_days_done where tenant_id = %s and day = %s", (TENANT, end)
        )
        conn.execute("select set_config('wg.tenant_id', %s, false)", (TENANT,))
        started = time.perf_counter()
        row = conn.execute("select report_rollup(%s, %s)", (end, end + timedelta(days=1)))
        rolled = row.fetchone()[0]  # type: ignore[index]
        rollup_day_s = time.perf_counter() - started
    raw_rows = counts["device_health"] + counts["positions"]
    return {
        "seed_s": took,
        "rows": counts,
        "raw_rows_in_the_day": raw_rows,
        "rollup_of_one_raw_day_s": round(rollup_day_s, 2),
        "continuous_aggregates_refresh_of_the_day_s": round(refresh_s, 2) if caggs else None,
        "rollup_days": rolled,
    }


async def _per_query(url: str, days: int) -> dict[str, float]:
    """Each query of the year's report on the API's connection (role wg_api, the tenant
    set), timed alone after a warm-up run: where the time goes."""
    from gateway.adapters.postgres import report_queries as q
    from gateway.domain.followup import Period, Target

    start, end = year(days)
    period = Period(start, end)
    target = Target(60, 0.9)
    steps: dict[str, Any] = {
        "holdings": lambda c: q.holdings(c, period),
        "device_use": lambda c: q.device_use(c, period),
        "responses": lambda c: q.responses(c, period, target),
        "escalations": lambda c: q.escalations(c, period),
        "conditions": lambda c: q.conditions(c, period),
        "visits": lambda c: q.visits(c, period),
    }
    out: dict[str, float] = {}
    api = with_user(url, "wg_api", API_PASSWORD)
    async with await psycopg.AsyncConnection.connect(api) as conn:
        await conn.execute("select set_config('wg.tenant_id', %s, false)", (TENANT,))
        await conn.execute("set work_mem = '64MB'")  # as q.prepare does for the report
        for name, step in steps.items():
            await step(conn)
            started = time.perf_counter()
            await step(conn)
            out[name] = round(time.perf_counter() - started, 2)
    return out


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query.encode()).fetchone()
    return row[0] if row else None


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]


async def _measure(url: str, days: int) -> dict[str, Any]:
    settings = Settings(mode="development", jwt_secret=SECRET, database_url=url)
    app = api_app(
        settings,
        api_database_url=with_user(url, "wg_api", API_PASSWORD),
        metrics_registry=CollectorRegistry(),
    )
    token = mint(
        SECRET, tenant=TENANT, role=Role.TENANT_ADMIN, subject="bench", org=None, ttl_s=3600
    )
    headers = {"Authorization": f"Bearer {token}"}
    start, end = year(days)
    out: dict[str, Any] = {}
    async with _serving(app) as base, httpx.AsyncClient(base_url=base, timeout=600) as http:
        r = await http.put(
            "/api/v1/reports/target", headers=headers, json={"ack_within_s": 60, "ack_share": 0.9}
        )
        assert r.status_code == 200, r.text

        async def get(params: dict[str, str]) -> tuple[float, httpx.Response]:
            started = time.perf_counter()
            r = await http.get("/api/v1/reports/followup", headers=headers, params=params)
            took = time.perf_counter() - started
            assert r.status_code == 200, r.text[:2000]
            return round(took, 2), r

        period = {"from": start.isoformat(), "to": end.isoformat()}
        out["year_first_s"], _ = await get(period)  # cold: the rollup's last days, caches
        out["year_json_s"], r = await get(period)
        report = r.json()
        out["year_html_s"], r = await get({**period, "format": "html"})
        out["html_bytes"] = len(r.content)
        out["svg_charts"] = r.text.count("<svg")
        out["year_csv_s"], r = await get({**period, "format": "csv"})
        month_start = (
            end.replace(day=1) if end.day > 1 else (end - timedelta(days=1)).replace(day=1)
        )
        out["month_json_s"], _ = await get({"from": month_start.isoformat(), "to": end.isoformat()})
    out["figures"] = {
        "devices_by_type": report["devices_by_type"],
        "users": {s["service"]: s["users"] for s in report["services"]},
        "unused_devices": report["unused_devices"],
        "gps_rarely_worn": report["gps_rarely_worn"],
        "gps_judged": report["gps_judged"],
        "alarms": sum(k["alarms"] for k in report["response_by_kind"]),
        "visits": report["visits"],
    }
    return out


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("--smoke", action="store_true", help="500 devices, 60 days")
    parser.add_argument("--devices", type=int, default=None, help="default 80,000")
    parser.add_argument("--days", type=int, default=None, help="default 365")
    parser.add_argument(
        "--raw-per-device",
        type=int,
        default=24,
        help="raw rows per device (and per GPS alarm) in the rolled-up day",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--timescale",
        action="store_true",
        help="on TimescaleDB (Debian's PostgreSQL 15 with it preloaded) instead of pgserver",
    )
    parser.add_argument(
        "--pgdata",
        type=Path,
        default=None,
        help="keep the seeded database here and reuse it on the next run (same sizes)",
    )
    args = parser.parse_args(argv)
    devices = args.devices or (500 if args.smoke else 80_000)
    days = args.days or (60 if args.smoke else 365)
    if args.timescale:
        result = asyncio.run(run(devices, days, args.raw_per_device, Path(), False, True))
    elif args.pgdata:
        result = asyncio.run(run(devices, days, args.raw_per_device, args.pgdata, True))
    else:
        with tempfile.TemporaryDirectory(prefix="wg-bench-report-") as tmp:
            result = asyncio.run(run(devices, days, args.raw_per_device, Path(tmp) / "pg", False))
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
