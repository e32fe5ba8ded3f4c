"""The follow-up report (issue #21.1), each figure computed from a known seeded history,
over HTTP (role wg_api) with real PostgreSQL, on native partitions and on TimescaleDB
(continuous aggregates): the same figures on both.

The history is put in place by the owner role (aged data: ingest refuses messages far in
the past), in a 27-day period ending two days ago (local dates, Europe/Stockholm).
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.adapters.postgres import report_queries
from gateway.domain.followup import ZONE, Period
from tests.conftest import API_PASSWORD, WORKER_PASSWORD
from tests.integration.harness import Bearer, gateway_with_api, scalar, seed, settings_for, wait_for

SECRET = "report-test-secret-report-test-secret"
TENANT = "kommun-a"
OTHER = "kommun-b"


def auth(tenant: str, role: Role) -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=f"{tenant}.{role.value}", org=None, ttl_s=900
        )
    )


ADMIN = auth(TENANT, Role.TENANT_ADMIN)
AUDITOR = auth(TENANT, Role.AUDITOR)


def the_period() -> Period:
    today = datetime.now(ZONE).date()
    return Period(today - timedelta(days=28), today - timedelta(days=1))


def at(period: Period, day: int, hour: int, minute: int = 0) -> datetime:
    local = datetime.combine(period.start + timedelta(days=day), datetime.min.time(), ZONE)
    return local.replace(hour=hour, minute=minute).astimezone(UTC)


DEVICES = {
    "gps-1": "t-gps",
    "gps-2": "t-gps",
    "gps-3": "t-gps",
    "lock-1": "t-lock",
    "scale-1": "t-scale",
    "bp-1": "t-bp",
}


async def history(url: str, period: Period) -> dict[str, Any]:
    """The seeded history (see the expectations in :func:`expected`)."""
    since = period.lo - timedelta(days=1)
    s = await seed(url, TENANT, "212000-0001", devices=DEVICES, since=since)
    await seed(url, OTHER, "212000-0002", devices={"gps-b": "t-gps"}, since=since)
    p = s.persons
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():

        async def put(table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
            marks = ", ".join(["%s"] * len(rows[0]))
            async with conn.cursor() as cur:
                await cur.executemany(f"insert into {table} ({columns}) values ({marks})", rows)

        pos = "tenant_id, person_id, device_id, msg_id, ts, received_at, lat, lon, accuracy_m"
        rows = [
            (TENANT, p["gps-1"], "gps-1", f"p1-{d}", at(period, d, 10), now, 59.6, 16.5, 8.0)
            for d in range(period.days)
        ]
        rows += [
            (TENANT, p["gps-2"], "gps-2", f"p2-{d}", at(period, d, 11), now, 59.6, 16.5, 8.0)
            for d in (0, 7, 14)
        ]
        # the other municipality's GPS alarm is worn every day (never in kommun-a's figures)
        rows += [
            (OTHER, uuid.uuid4(), "gps-b", f"pb-{d}", at(period, d, 9), now, 59.6, 16.5, 8.0)
            for d in range(period.days)
        ]
        await put("positions", pos, rows)
        health = "tenant_id, person_id, device_id, msg_id, ts, received_at, kind, battery_percent"
        await put(
            "device_health",
            health,
            [
                (TENANT, p["gps-3"], "gps-3", f"h3-{d}", at(period, d, 3), now, "battery", 80)
                for d in range(period.days)
            ],
        )
        await put(
            "readings",
            "tenant_id, person_id, device_id, msg_id, ts, received_at, kind, weight_kg",
            [(TENANT, p["scale-1"], "scale-1", "r1", at(period, 2, 8), now, "weight", 81.5)],
        )
        unlocks = [at(period, 15, 8, 5), at(period, 16, 9, 0), at(period, 17, 8, 10)]
        await put(
            "lock_events",
            "tenant_id, person_id, device_id, msg_id, ts, received_at, action, key_id, method",
            [
                (TENANT, p["lock-1"], "lock-1", f"l{n}", ts, now, "unlocked", "key-1", "app")
                for n, ts in enumerate(unlocks)
            ],
        )
        # bp-1 is returned on day 10: in use in the period, not at its end
        await conn.execute(
            "update assignments set valid_to = %s where device_id = 'bp-1'", (at(period, 10, 12),)
        )
        await put(
            "visits",
            "tenant_id, person_id, team, starts_at, ends_at, created_by",
            [
                (
                    TENANT,
                    p["lock-1"],
                    "hemtjanst-1",
                    at(period, d, 8),
                    at(period, d, 8, 30),
                    "planner",
                )
                for d in (15, 16, 17)
            ],
        )
        # weekly on the period's first weekday, for its first two weeks: 2 occurrences
        await put(
            "visit_slots",
            "tenant_id, person_id, team, weekdays, start_time, end_time,"
            " first_day, last_day, created_by",
            [
                (
                    TENANT,
                    p["lock-1"],
                    "hemtjanst-1",
                    [period.start.weekday()],
                    "19:00",
                    "19:30",
                    period.start,
                    period.start + timedelta(days=13),
                    "planner",
                )
            ],
        )

        cols = (
            "id, tenant_id, kind, severity, device_id, person_id, subject, state, raised_at,"
            " last_at, occurrences, condition, cleared_at, acknowledged_at, resolved_at,"
            " escalation_level, version"
        )

        def alarm(
            kind: str,
            device: str,
            raised: datetime,
            ack_s: float | None,
            level: int = 0,
            cleared: datetime | None = None,
        ) -> tuple[Any, ...]:
            acked = raised + timedelta(seconds=ack_s) if ack_s is not None else None
            technical = kind in ("device_silent", "battery_low")
            return (
                uuid.uuid4(),
                TENANT,
                kind,
                "high",
                device,
                p[device],
                f"device:{device}" if technical else f"person:{p[device]}",
                "resolved" if acked or cleared else "raised",
                raised,
                raised,
                1,
                (cleared is None) if technical else None,
                cleared,
                acked,
                cleared or acked,
                level,
                1,
            )

        alarms = [
            alarm("button", "gps-1", at(period, 3, 23, 10), 30),
            alarm("button", "gps-1", at(period, 4, 23, 40), 90, level=1),
            alarm("fall", "gps-2", at(period, 5, 2, 15), 45),
            alarm("fall", "gps-2", at(period, 6, 2, 30), 200, level=2),
            alarm("geofence_exit", "gps-1", at(period, 8, 14), 20),
            alarm("button", "gps-1", at(period, -2, 23), 10),  # before the period
            alarm(
                "device_silent",
                "gps-3",
                at(period, 9, 0),
                None,
                cleared=at(period, 9, 0) + timedelta(hours=6),
            ),
            alarm(
                "device_silent",
                "gps-3",
                at(period, 20, 0),
                None,
                cleared=at(period, 20, 0) + timedelta(hours=48),
            ),
            alarm("battery_low", "lock-1", at(period, 24, 12), None),
        ]
        await put("alarms", cols, alarms)

        # digital night supervision (#20): a plan for gps-1's resident, its checks
        plan = uuid.uuid4()
        await put("supervision_plans", "id, tenant_id, person_id, check_times, seen,"
                  " retry_after_s, team, created_at, created_by",
                  [(plan, TENANT, p["gps-1"], ["23:00"], "in_bed", 600, "natt",
                    since, "planner")])  # fmt: skip

        def check(day: int, attempt: int, result: str) -> tuple[Any, ...]:
            planned = at(period, day, 23)
            return (TENANT, p["gps-1"], plan, planned, "23:00", attempt, result,
                    planned + timedelta(minutes=10 * attempt))  # fmt: skip

        await put("supervision_checks", "tenant_id, person_id, plan_id, planned_at,"
                  " local_time, attempt, result, evaluated_at", [
            check(3, 1, "ok"), check(4, 1, "retried"), check(4, 2, "ok"),
            check(5, 1, "retried"), check(5, 2, "not_ok"), check(6, 1, "failed"),
            check(-3, 1, "failed"),
        ])  # fmt: skip
    return {
        "persons": {str(v) for v in p.values()},
        "refs": [f"{TENANT}-brukare-{n}" for n in range(1, len(DEVICES) + 1)],
    }


SENSORS = {"door_sensor": 0, "motion_sensor": 0, "bed_sensor": 0, "floor_mat": 0}


def expected(period: Period) -> dict[str, Any]:
    low_h = round((period.hi - at(period, 24, 12)).total_seconds() / 3600, 2)
    return {
        "tenant_id": TENANT,
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "target": {"ack_within_s": 60, "ack_share": 0.75},
        "devices_by_type": {
            "gps_alarm": 3,
            "door_lock": 1,
            "scale": 1,
            "blood_pressure_monitor": 1,
            **SENSORS,
        },
        "services": {  # devices, at the end, users
            "safety_alarm": (0, 0, 0, False),
            "gps_alarm": (3, 3, 3, True),
            "night_supervision": (0, 0, 1, True),  # gps-1's resident has a plan
            "keyless_locks": (1, 1, 1, True),
            "remote_self_monitoring": (2, 1, 2, True),
        },
        "unused_devices": {"gps_alarm": 1, "door_lock": 0, "scale": 1, "blood_pressure_monitor": 0},
        "gps_rarely_worn": 2,
        "gps_judged": 3,
        "response_by_kind": [
            {
                "key": "button",
                "alarms": 2,
                "ack_p50_s": 60.0,
                "ack_p90_s": 84.0,
                "share_within_target": 0.5,
                "meets_target": False,
            },
            {
                "key": "fall",
                "alarms": 2,
                "ack_p50_s": 122.5,
                "ack_p90_s": 184.5,
                "share_within_target": 0.5,
                "meets_target": False,
            },
            {
                "key": "geofence_exit",
                "alarms": 1,
                "ack_p50_s": 20.0,
                "ack_p90_s": 20.0,
                "share_within_target": 1.0,
                "meets_target": True,
            },
        ],
        "hours": {"23": (2, 60.0, 0.5), "02": (2, 122.5, 0.5), "14": (1, 20.0, 1.0)},
        "escalations": [
            {"kind": "button", "alarms": 2, "escalated": 1, "max_level": 1},
            {"kind": "fall", "alarms": 2, "escalated": 1, "max_level": 2},
            {"kind": "geofence_exit", "alarms": 1, "escalated": 0, "max_level": 0},
        ],
        "conditions": [
            {
                "kind": "device_silent",
                "spells": 2,
                "devices": 1,
                "hours_total": 54.0,
                "hours_p50": 27.0,
                "hours_max": 48.0,
                "open_at_end": 0,
            },
            {
                "kind": "battery_low",
                "spells": 1,
                "devices": 1,
                "hours_total": low_h,
                "hours_p50": low_h,
                "hours_max": low_h,
                "open_at_end": 1,
            },
        ],
        "visits": {"planned": 5, "opened": 2},
        # planned checks by their final result: ok; ok at the retry; not ok at the retry;
        # failed (the check before the period is not counted)
        "supervision": {
            "in_use": True,
            "users": 1,
            "checks_ok": 2,
            "checks_not_ok": 1,
            "checks_failed": 1,
            "checks_retried": 2,
        },
    }


def check_figures(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key in (
        "tenant_id",
        "from",
        "to",
        "target",
        "devices_by_type",
        "unused_devices",
        "gps_rarely_worn",
        "gps_judged",
        "response_by_kind",
        "escalations",
        "conditions",
        "visits",
    ):
        assert got[key] == want[key], key
    services = {
        s["service"]: (s["devices"], s["devices_at_end"], s["users"], s["in_use"])
        for s in got["services"]
    }
    assert services == want["services"]
    assert [s["service"] for s in got["services"]][:4] == [
        "safety_alarm",
        "gps_alarm",
        "night_supervision",
        "keyless_locks",
    ]
    hours = {
        h["key"]: (h["alarms"], h["ack_p50_s"], h["share_within_target"])
        for h in got["response_by_hour"]
        if h["alarms"]
    }
    assert hours == want["hours"]
    assert len(got["response_by_hour"]) == 24
    sup = {k: v for k, v in got["supervision"].items() if k != "note"}
    assert sup == want["supervision"]


async def report(base: str, period: Period, fmt: str = "json", headers: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.get(
            "/api/v1/reports/followup",
            headers=headers or ADMIN,
            params={"from": period.start.isoformat(), "to": period.end.isoformat(), "format": fmt},
        )
        assert r.status_code == 200, r.text
        return r.json() if fmt == "json" else r.text


async def set_target(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.put(
            "/api/v1/reports/target", headers=ADMIN, json={"ack_within_s": 60, "ack_share": 0.75}
        )
        assert r.status_code == 200, r.text


async def test_report_figures_from_a_seeded_history(database_url, mosquitto) -> None:
    period = the_period()
    seeded = await history(database_url, period)
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET)
    async with gateway_with_api(settings) as (base, _):
        # the worker's upkeep (at start, then hourly) rolled up the last week, today's
        # day too, which no report asked for
        today = datetime.now(ZONE).date()
        query = "select count(*) from report_days_done where tenant_id = %s and day = %s"

        async def rolled_today() -> bool:
            return bool(await scalar(database_url, query, (TENANT, today)))

        await wait_for(rolled_today, 20, "the workers' rollup of today")
        await set_target(base)
        got = await report(base, period)
        check_figures(got, expected(period))

        # CSV: the same figures, one a row
        text = await report(base, period, "csv")
        rows = {
            (r["section"], r["key"], r["figure"]): r["value"]
            for r in csv.DictReader(io.StringIO(text))
        }
        assert rows[("services", "gps_alarm", "users")] == "3"
        assert rows[("services", "safety_alarm", "in_use")] == "false"
        assert rows[("supervision", "night_supervision", "checks_not_ok")] == "1"
        assert rows[("unused_devices", "scale", "devices")] == "1"
        assert rows[("response_by_kind", "fall", "ack_p90_s")] == "184.5"
        assert rows[("visits", "keyless_locks", "opened")] == "2"
        assert rows[("target", "", "ack_within_s")] == "60"

        # HTML: charts drawn on the server, the target line at the municipality's 75 %
        html = await report(base, period, "html")
        assert html.count("<svg") >= 6 and "<script" not in html
        assert 'class="target-line" data-value="0.75"' in html
        assert 'data-chart="response-by-hour"' in html and 'data-label="23"' in html
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            r = await http.get("/api/v1/reports/followup", headers=ADMIN,
                               params={"month": "2026-01", "format": "html"})  # fmt: skip
            # the page's own policy (its style block by hash), not the console's
            assert r.headers["content-security-policy"].startswith("default-src 'none'; style")

        # counts only: no person id or reference anywhere, in any format
        for text in (str(got), await report(base, period, "csv"), html):
            for secret in (*seeded["persons"], *seeded["refs"]):
                assert secret not in text

        # the auditor reads it; an operator or an installer does not
        assert (await report(base, period, headers=AUDITOR))["gps_judged"] == 3
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for role in (Role.OPERATOR, Role.INSTALLER, Role.CLINICIAN):
                r = await http.get(
                    "/api/v1/reports/followup",
                    headers=auth(TENANT, role),
                    params={"month": "2026-01"},
                )
                assert r.status_code == 403, role

        # another municipality sees its own figures only (its one GPS alarm, worn daily)
        other = await report(base, period, headers=auth(OTHER, Role.TENANT_ADMIN))
        assert other["devices_by_type"]["gps_alarm"] == 1
        assert other["gps_rarely_worn"] == 0 and other["response_by_kind"] == []
        assert other["target"] is None


async def test_target_is_the_municipalitys_own(database_url, mosquitto) -> None:
    await seed(database_url, TENANT, "212000-0001", devices={"gps-1": "t-gps"})
    await seed(database_url, OTHER, "212000-0002", devices={"gps-b": "t-gps"})
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET)
    async with (
        gateway_with_api(settings) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        url = "/api/v1/reports/target"
        assert (await http.get(url, headers=ADMIN)).json()["target"] is None
        r = await http.put(url, headers=ADMIN, json={"ack_within_s": 120, "ack_share": 0.9})
        assert r.status_code == 200 and r.json()["target"] == {
            "ack_within_s": 120,
            "ack_share": 0.9,
        }
        assert r.json()["changed_by"] == f"{TENANT}.tenant_admin"
        other = auth(OTHER, Role.TENANT_ADMIN)
        assert (await http.get(url, headers=other)).json()["target"] is None
        for bad in (
            {"ack_within_s": 0, "ack_share": 0.9},
            {"ack_within_s": 60, "ack_share": 1.5},
            {"ack_within_s": 60},
            {"ack_within_s": 60, "ack_share": 0.9, "x": 1},
        ):
            r = await http.put(url, headers=ADMIN, json=bad)
            assert r.status_code == 422, bad
            assert r.headers["content-type"].startswith("application/problem+json")
        assert (
            await http.put(url, headers=AUDITOR, json={"ack_within_s": 60, "ack_share": 0.9})
        ).status_code == 403
        assert (await http.get(url, headers=AUDITOR)).json()["target"]["ack_within_s"] == 120
        assert (await http.delete(url, headers=ADMIN)).status_code == 204
        assert (await http.delete(url, headers=ADMIN)).status_code == 404
        # the report without a target: times, no target line, a note saying so
        r = await http.get(
            "/api/v1/reports/followup", headers=ADMIN, params={"month": "2026-11", "format": "html"}
        )
        assert r.status_code == 200 and "target-line" not in r.text
        for params in (
            {"month": "2026-13"},
            {"month": "nov"},
            {},
            {"from": "2026-11-10", "to": "2026-11-10"},
            {"from": "2025-01-01", "to": "2026-06-01"},
            {"month": "2026-11", "from": "2026-11-01"},
            {"month": "2026-11", "format": "pdf"},
        ):
            r = await http.get("/api/v1/reports/followup", headers=ADMIN, params=params)
            assert r.status_code == 422, params
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_rollup_is_incremental_and_kept_by_the_workers(database_url) -> None:
    """Days rolled up two days after their end are final (not rolled up again); the
    workers' upkeep (role wg_worker) rolls up the last week of every tenant."""
    period = the_period()
    await history(database_url, period)
    api = with_user(database_url, "wg_api", API_PASSWORD)
    async with await psycopg.AsyncConnection.connect(api) as conn, conn.transaction():
        await conn.execute("select set_config('wg.tenant_id', %s, true)", (TENANT,))
        assert await report_queries.roll_up(conn, period) == period.days
        # all but the days ended less than two days ago are final now
        today = datetime.now(ZONE).date()
        fresh = [d for d in range(period.days) if period.start + timedelta(days=d + 3) > today]
        assert await report_queries.roll_up(conn, period) == len(fresh) == 1
    with psycopg.connect(
        with_user(database_url, "wg_worker", WORKER_PASSWORD), autocommit=True
    ) as conn:
        assert report_queries.roll_up_recent(conn) > 0
        # another worker at it: this one skips its turn
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("select pg_advisory_lock(%s)", (report_queries.ROLLUP_UPKEEP,))
            assert report_queries.roll_up_recent(conn) == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "select report_rollup_tenant('kommun-a', %s, %s)",
                (date(2026, 1, 1), date(2026, 2, 1)),
            )


# --- TimescaleDB: the same figures from continuous aggregates -----------------------------

TS_OWNER, TS_OWNER_PASSWORD = "wg_owner", "test-owner-password"


@pytest.fixture
def ts_url(timescale_server: Any) -> str:
    return timescale_server.create_database(owner=TS_OWNER, owner_password=TS_OWNER_PASSWORD)


async def test_timescale_gives_the_same_figures(ts_url, mosquitto) -> None:
    """On hypertables the rollup reads the continuous aggregates (real-time, so before and
    after TimescaleDB materialises them): the figures equal the native backend's."""
    from gateway.adapters.postgres.migrate import migrate

    migrated = migrate(
        ts_url, api_password=API_PASSWORD, worker_password=WORKER_PASSWORD, timescaledb="require"
    )
    assert migrated.hypertables
    with psycopg.connect(ts_url, autocommit=True) as conn:
        caggs = {
            r[0]
            for r in conn.execute(
                "select view_name from timescaledb_information.continuous_aggregates"
            )
        }
        assert caggs == {
            f"report_days_{t}"
            for t in ("positions", "device_alarms", "readings", "lock_events", "device_health")
        }
    period = the_period()
    await history(ts_url, period)
    settings = settings_for(mosquitto.url, ts_url, jwt_secret=SECRET)
    async with gateway_with_api(settings) as (base, _):
        await set_target(base)
        check_figures(await report(base, period), expected(period))
        # materialised by TimescaleDB's refresh (its job, here called directly): unchanged
        with psycopg.connect(ts_url, autocommit=True) as conn:
            for name in caggs:
                conn.execute("call refresh_continuous_aggregate(%s, null, null)", (name,))
            # roll up again, now from the materialised rows
            conn.execute("delete from report_days_done")
            conn.execute("delete from report_device_days")
        check_figures(await report(base, period), expected(period))
