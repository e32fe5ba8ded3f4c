"""The TimescaleDB storage path, against PostgreSQL 17 + TimescaleDB 2.23 (PGlite, WebAssembly)
served over TCP by tests/timescale/server.mjs; and the native path's fallback on plain
PostgreSQL.

The vehicle has no COPY (a COPY closes the connection), so rows go in with the batch
writer's own staging INSERT ... SELECT ... ON CONFLICT DO NOTHING, filled by plain INSERTs
instead of binary COPY. It ignores the user name of a connection (always the superuser),
so the API role is taken with SET ROLE. It serves one connection at a time, and every
connection continues the same backend session (prepared statements, role, temp tables),
so each test connection starts by deallocating and resetting the role. Background jobs
do not run by themselves there: the tests run the policy jobs with run_job.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from gateway.settings import RetentionDays
from gateway.storage import partitions, timescale
from gateway.storage.api_queries import READING_QUERIES
from gateway.storage.migrate import migrate
from gateway.storage.rows import COLUMNS
from tests.conftest import API_PASSWORD
from tests.services import free_port

VEHICLE_DIR = Path(__file__).resolve().parents[1] / "timescale"
START_TIMEOUT_S = 60.0
SERIES = {t.name for t in partitions.TABLES}


class TimescaleVehicle:
    """node tests/timescale/server.mjs on a free loopback port, in memory."""

    def __init__(self, log_path: Path) -> None:
        node = shutil.which("node")
        if node is None or not (VEHICLE_DIR / "node_modules").is_dir():
            pytest.fail(
                "TimescaleDB test vehicle not installed: needs node and "
                "`npm ci --prefix tests/timescale` (scripts/test does this)"
            )
        self.port = free_port()
        self.url = f"postgresql://postgres:postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"
        self._log_path = log_path
        self._log = log_path.open("wb")
        self._proc = subprocess.Popen(
            [node, "server.mjs", str(self.port)],
            cwd=VEHICLE_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"vehicle exited {self._proc.returncode}: {self._tail()}")
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"vehicle not ready in {START_TIMEOUT_S}s: {self._tail()}"
                    ) from None
            time.sleep(0.1)  # poll interval while waiting for the port, not a synchronisation

    def connect(self) -> psycopg.Connection[Any]:
        """A connection with a clean session (see the module docstring)."""
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        conn.prepare_threshold = None
        conn.execute("deallocate all")
        conn.execute("reset role")
        return conn

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._log.close()

    def _tail(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")[-2000:]


@pytest.fixture
def vehicle(tmp_path: Path) -> Iterator[TimescaleVehicle]:
    server = TimescaleVehicle(tmp_path / "vehicle.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def fresh_deployment(vehicle: TimescaleVehicle) -> None:
    """Migrations, then partition maintenance as a gateway's first start without
    TimescaleDB leaves it: empty native partitions."""
    migrate(vehicle.url, api_password=API_PASSWORD)
    with vehicle.connect() as conn:
        partitions.maintain(conn, RetentionDays(), datetime.now(UTC))


def write(conn: psycopg.Connection[Any], table: str, rows: list[tuple[Any, ...]]) -> int:
    """The batch writer's statements (staging table, insert-select on conflict do
    nothing), with plain INSERTs into the staging table instead of its binary COPY."""
    columns = COLUMNS[table]
    column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    stage = sql.Identifier(f"stage_{table}")
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "create temp table if not exists {} (like {} including defaults)"
                " on commit delete rows"
            ).format(stage, sql.Identifier(table))
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("insert into {} ({}) values ({})").format(
                    stage, column_list, sql.SQL(", ").join(sql.Placeholder() * len(columns))
                ),
                rows,
            )
            cur.execute(
                sql.SQL("insert into {} ({}) select {} from {} on conflict do nothing").format(
                    sql.Identifier(table), column_list, column_list, stage
                )
            )
            return cur.rowcount


def position(tenant: str, person: uuid.UUID, msg: str, ts: datetime) -> tuple[Any, ...]:
    return (tenant, person, "gps-1", msg, ts, datetime.now(UTC), 59.61, 16.54, 8.0)


def weight(tenant: str, person: uuid.UUID, msg: str, ts: datetime) -> tuple[Any, ...]:
    return (tenant, person, "scale-1", msg, ts, datetime.now(UTC), "weight", 71.5, None, None,
            None)  # fmt: skip


def chunks(conn: psycopg.Connection[Any], table: str) -> list[tuple[datetime, bool]]:
    return [
        (row[0], row[1])
        for row in conn.execute(
            "select range_start, is_compressed from timescaledb_information.chunks"
            " where hypertable_name = %s order by range_start",
            (table,),
        )
    ]


def job(conn: psycopg.Connection[Any], table: str, proc: str) -> tuple[int, dict[str, Any]]:
    row = conn.execute(
        "select job_id, config from timescaledb_information.jobs"
        " where hypertable_name = %s and proc_name = %s",
        (table, proc),
    ).fetchall()
    assert len(row) == 1, f"{proc} on {table}: {row}"
    return row[0][0], row[0][1]


def run_job(conn: psycopg.Connection[Any], table: str, proc: str) -> None:
    job_id, _ = job(conn, table, proc)
    conn.execute("call run_job(%s)", (job_id,))


# --- pure ---------------------------------------------------------------------------------


def test_policies_follow_partition_widths_and_retention() -> None:
    wanted = {p.table: p for p in timescale.policies(RetentionDays(positions=14))}
    assert set(wanted) == SERIES
    for table in partitions.TABLES:
        assert wanted[table.name].chunk_interval == timedelta(days=table.interval_days)
    assert wanted["positions"].drop_after == timedelta(days=14)
    assert wanted["readings"].drop_after == timedelta(days=730)
    assert wanted["positions"].compress_after == timedelta(days=2)
    assert wanted["readings"].compress_after == timedelta(days=7)


def test_version_parsing() -> None:
    assert timescale.parse_version("2.23.0-dev") == (2, 23)
    assert timescale.parse_version("2.10.3") < timescale.MIN_VERSION <= (2, 11)
    assert timescale.parse_version("weird") == (0, 0)


# --- against TimescaleDB ------------------------------------------------------------------


def test_empty_partitioned_tables_become_compressed_hypertables(vehicle) -> None:
    fresh_deployment(vehicle)
    retention = RetentionDays(positions=14, device_health=60)
    with vehicle.connect() as conn:
        assert timescale.hypertables(conn) == set()
        assert timescale.setup(conn, "auto", retention) is True
        assert timescale.hypertables(conn) == SERIES

        dims = dict(
            conn.execute(
                "select hypertable_name, time_interval from timescaledb_information.dimensions"
                " where column_name = 'ts'"
            ).fetchall()
        )
        assert dims == {t.name: timedelta(days=t.interval_days) for t in partitions.TABLES}
        # the native partitions are gone; maintenance leaves hypertables alone
        assert conn.execute("select count(*) from pg_inherits").fetchone() == (0,)
        partitions.maintain(conn, retention, datetime.now(UTC))
        assert conn.execute("select count(*) from pg_inherits").fetchone() == (0,)

        compression = {
            (row[0], row[1]): (row[2], row[3], row[4])
            for row in conn.execute(
                "select hypertable_name, attname, segmentby_column_index,"
                " orderby_column_index, orderby_asc"
                " from timescaledb_information.compression_settings"
            )
        }
        for table in SERIES:
            assert compression[(table, "device_id")] == (1, None, None)
            assert compression[(table, "ts")] == (None, 1, False)

        for policy in timescale.policies(retention):
            _, config = job(conn, policy.table, "policy_retention")
            assert _days(conn, config["drop_after"]) == policy.drop_after.days
            _, config = job(conn, policy.table, "policy_compression")
            assert _days(conn, config["compress_after"]) == policy.compress_after.days
        _, config = job(conn, "positions", "policy_retention")
        assert _days(conn, config["drop_after"]) == 14
        _, config = job(conn, "device_health", "policy_retention")
        assert _days(conn, config["drop_after"]) == 60

        # indexes keep their names: the dedup index includes ts, as hypertables require
        indexes = dict(
            conn.execute(
                "select indexname, indexdef from pg_indexes where tablename = 'readings'"
            ).fetchall()
        )
        assert "UNIQUE" in indexes["readings_dedup"]
        assert "(device_id, msg_id, ts)" in indexes["readings_dedup"]
        assert "readings_person_time" in indexes
        # the API's views are back, still security barriers, still granted to wg_api only
        views = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "select c.relname, c.reloptions,"
                " has_table_privilege('wg_api', c.oid, 'select')"
                " from pg_class c where c.relkind = 'v' and c.relname like 'api_%'"
            )
        }
        for table in SERIES - {"command_replies"}:
            assert views[f"api_{table}"] == (["security_barrier=true"], True)
            assert conn.execute(
                "select has_table_privilege('wg_api', %s::regclass, 'select')", (table,)
            ).fetchone() == (False,)


def test_retention_change_updates_policies_on_start(vehicle) -> None:
    fresh_deployment(vehicle)
    with vehicle.connect() as conn:
        assert timescale.setup(conn, "auto", RetentionDays()) is True
        before = {t: job(conn, t, "policy_retention")[0] for t in SERIES}
        # unchanged settings: the same jobs stay
        assert timescale.setup(conn, "auto", RetentionDays()) is True
        assert {t: job(conn, t, "policy_retention")[0] for t in SERIES} == before
        # shorter position retention: only that policy is replaced
        assert timescale.setup(conn, "auto", RetentionDays(positions=7)) is True
        job_id, config = job(conn, "positions", "policy_retention")
        assert job_id != before["positions"]
        assert _days(conn, config["drop_after"]) == 7
        assert job(conn, "readings", "policy_retention")[0] == before["readings"]
        # "off" no longer converts anything, but keeps existing hypertables' policies right
        assert timescale.setup(conn, "off", RetentionDays(positions=5)) is True
        assert _days(conn, job(conn, "positions", "policy_retention")[1]["drop_after"]) == 5


def test_dedup_compression_and_retention_jobs(vehicle) -> None:
    fresh_deployment(vehicle)
    now = datetime.now(UTC)
    person = uuid.uuid4()
    with vehicle.connect() as conn:
        assert timescale.setup(conn, "auto", RetentionDays(positions=30)) is True
        rows = [
            position("kommun-a", person, f"p{age}", now - timedelta(days=age))
            for age in (0, 3, 10, 45)
        ]
        assert write(conn, "positions", rows) == 4
        assert write(conn, "positions", rows) == 0  # redelivery: stored once
        assert len(chunks(conn, "positions")) == 4

        run_job(conn, "positions", "policy_compression")
        compressed = {start.date(): done for start, done in chunks(conn, "positions")}
        assert compressed == {
            (now - timedelta(days=age)).date(): age >= 2 for age in (0, 3, 10, 45)
        }
        # a late duplicate into a compressed chunk is still refused; a new row goes in
        late = position("kommun-a", person, "p10", now - timedelta(days=10))
        assert write(conn, "positions", [late]) == 0
        newer = position("kommun-a", person, "p10b", now - timedelta(days=10))
        assert write(conn, "positions", [newer]) == 1

        run_job(conn, "positions", "policy_retention")
        kept = [r[0] for r in conn.execute("select msg_id from positions order by ts, msg_id")]
        assert kept == ["p10", "p10b", "p3", "p0"]
        assert len(chunks(conn, "positions")) == 3

        # partition maintenance still purges the (plain) quarantine table
        conn.execute(
            "insert into quarantine (received_at, topic, reason, detail, payload, payload_size)"
            " values (%s, 't', 'bad_json', 'x', '', 0), (%s, 't', 'bad_json', 'x', '', 0)",
            (now - timedelta(days=31), now),
        )
        partitions.maintain(conn, RetentionDays(), now)
        assert conn.execute("select count(*) from quarantine").fetchone() == (1,)


def test_api_views_filter_by_tenant_on_hypertables(vehicle) -> None:
    fresh_deployment(vehicle)
    now = datetime.now(UTC)
    anna, bo = uuid.uuid4(), uuid.uuid4()
    with vehicle.connect() as conn:
        assert timescale.setup(conn, "auto", RetentionDays()) is True
        old, recent = now - timedelta(days=20), now - timedelta(days=5)
        write(conn, "readings", [weight("kommun-a", anna, "w1", old)])
        write(conn, "readings", [weight("kommun-b", bo, "w2", old)])
        write(conn, "positions", [position("kommun-a", anna, "p1", recent)])
        write(conn, "positions", [position("kommun-b", bo, "p2", recent)])
        run_job(conn, "readings", "policy_compression")
        run_job(conn, "positions", "policy_compression")
        assert all(done for _, done in chunks(conn, "positions"))

    def api_read(tenant: str, person: uuid.UUID, what: str) -> list[tuple[Any, ...]]:
        query, kind = READING_QUERIES[what]
        params = dict.fromkeys(("from", "to", "after_ts", "after_device", "after_msg"))
        params.update(person=person, kind=kind, limit=10)
        with vehicle.connect() as api, api.transaction():
            api.execute("set local role wg_api")
            api.execute("select set_config('wg.tenant_id', %s, true)", (tenant,))
            return api.execute(query, params).fetchall()

    assert [r[2] for r in api_read("kommun-a", anna, "weight")] == ["w1"]
    assert [r[2] for r in api_read("kommun-a", anna, "position")] == ["p1"]
    assert api_read("kommun-a", bo, "position") == []  # another tenant's person
    assert api_read("kommun-b", anna, "weight") == []
    assert [r[2] for r in api_read("kommun-b", bo, "weight")] == ["w2"]

    with vehicle.connect() as api:
        api.execute("set role wg_api")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            api.execute("select count(*) from positions")
        assert api.execute("select count(*) from api_positions").fetchone() == (0,)  # no tenant
        # consented reads (SECURITY DEFINER functions) still resolve against the hypertable
        assert api.execute(
            "select count(*) from consented_readings(%s, '212000-0002', 'weight',"
            " null, null, null, null, null, 10)",
            (anna,),
        ).fetchone() == (0,)


def test_tables_holding_rows_stay_native(vehicle, caplog) -> None:
    fresh_deployment(vehicle)
    now = datetime.now(UTC)
    with vehicle.connect() as conn:
        assert timescale.setup(conn, "off", RetentionDays()) is False
        assert conn.execute(
            "select count(*) from pg_extension where extname = 'timescaledb'"
        ).fetchone() == (0,)
        write(conn, "positions", [position("kommun-a", uuid.uuid4(), "p1", now)])
        with caplog.at_level(logging.WARNING, logger="gateway.storage.timescale"):
            assert timescale.setup(conn, "auto", RetentionDays()) is False
        assert "native partitions" in caplog.text
        assert timescale.hypertables(conn) == set()
        assert all(partitions.natively_partitioned(conn, t) for t in SERIES)
        with pytest.raises(timescale.TimescaleError, match="already in native partitions"):
            timescale.setup(conn, "require", RetentionDays())
        assert conn.execute("select count(*) from positions").fetchone() == (1,)


# --- plain PostgreSQL (no extension): the native path ------------------------------------


def test_plain_postgres_keeps_native_partitions(database_url) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert timescale.setup(conn, "auto", RetentionDays()) is False
        assert timescale.setup(conn, "off", RetentionDays()) is False
        with pytest.raises(timescale.TimescaleError, match="not available"):
            timescale.setup(conn, "require", RetentionDays())
        assert timescale.hypertables(conn) == set()
        assert all(partitions.natively_partitioned(conn, t) for t in SERIES)
        before = conn.execute("select count(*) from pg_inherits").fetchone()
        partitions.maintain(conn, RetentionDays(), datetime.now(UTC))
        assert conn.execute("select count(*) from pg_inherits").fetchone() == before


def _days(conn: psycopg.Connection[Any], interval: str) -> int:
    row = conn.execute("select extract(day from %s::interval)::int", (interval,)).fetchone()
    assert row is not None
    return int(row[0])
