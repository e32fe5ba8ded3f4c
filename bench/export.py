"""``python -m bench.export [--smoke] [--devices N] [--per-device R] [--out FILE]``: the
full export (issue #19.6, docs/export.md) of one tenant with a synthetic registry of N
devices (80,000 by default; ``--smoke``: 400), each held by a resident with a personal
identity number (stored encrypted), R messages per device (12 by default: weights,
blood pressures with pulse, positions or lock events by device type, and heartbeats),
consents, resolved alarms with their history and an access log, bulk-loaded into a
private PostgreSQL (pgserver) as the owner.

The export runs as ``welfare-gateway export --out FILE.zip`` in a process of its own (role
wg_api, the same streaming writer as ``GET /api/v1/export``), so its peak resident memory
is the exporting process's own. Then (unless ``--no-restore``) ``welfare-gateway restore``
loads the zip into a new database of the same server, also in a process of its own.
Prints one JSON object: rows and bytes written, rows/s, MB/s (uncompressed CSV/JSON, and
the zip), the exporting process's peak RSS and CPU time, that the manifest's row counts
equal the database's, and the restore's time, rows/s, peak RSS and whether the restored
database holds every row.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import orjson
import psycopg

from bench import machine
from gateway.adapters.embedded import EmbeddedPostgres
from gateway.adapters.postgres.migrate import migrate
from gateway.domain.export import TABLES
from gateway.support.pii import PinCipher

API_PASSWORD = "bench-api"
WORKER_PASSWORD = "bench-worker"
TENANT = "bench-export"
SECRET = "bench-export-secret-bench-export-secret"
PII_KEY = base64.b64encode(b"b" * 32).decode()
MODELS = ("demo-gps", "demo-scale", "demo-bp", "demo-lock")  # device i: MODELS[i % 4]

DEVICE = "'bench-' || lpad(i::text, 6, '0')"
PERSON = "md5('bench-person-' || i)::uuid"
AT = "now() - j * interval '1 hour'"
LOAD = [
    f"""insert into devices (id, tenant_id, model_id, serial, status, registered_at,
                             status_changed_at)
        select {DEVICE}, %(t)s,
               (array['demo-gps', 'demo-scale', 'demo-bp', 'demo-lock'])[i %% 4 + 1],
               'SN-' || i, 'active', now() - interval '30 days', now() - interval '30 days'
        from generate_series(0, %(n)s - 1) i""",
    f"""insert into assignments (tenant_id, device_id, person_id, valid_from)
        select %(t)s, {DEVICE}, {PERSON}, now() - interval '30 days'
        from generate_series(0, %(n)s - 1) i""",
    f"""insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at, kind,
                              weight_kg)
        select %(t)s, {PERSON}, {DEVICE}, 'w' || j, {AT}, {AT} + interval '1 second',
               'weight', 60 + i %% 40 + j / 10.0
        from generate_series(1, %(n)s - 1, 4) i, generate_series(1, %(r)s) j""",
    f"""insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at, kind,
                              systolic_mmhg, diastolic_mmhg, pulse_bpm)
        select %(t)s, {PERSON}, {DEVICE}, 'b' || j, {AT}, {AT} + interval '1 second',
               'blood_pressure', 110 + i %% 40, 70 + j %% 20, 60 + j %% 30
        from generate_series(2, %(n)s - 1, 4) i, generate_series(1, %(r)s) j""",
    f"""insert into positions (tenant_id, person_id, device_id, msg_id, ts, received_at, lat,
                               lon, accuracy_m)
        select %(t)s, {PERSON}, {DEVICE}, 'p' || j, {AT}, {AT} + interval '1 second',
               59.6 + (i %% 1000) / 10000.0, 16.5 + j / 1000.0, 8
        from generate_series(0, %(n)s - 1, 4) i, generate_series(1, %(r)s) j""",
    f"""insert into lock_events (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                 action, key_id, method)
        select %(t)s, {PERSON}, {DEVICE}, 'l' || j, {AT}, {AT} + interval '1 second',
               case when j %% 2 = 0 then 'locked' else 'unlocked' end, 'key-' || (i %% 50),
               'app'
        from generate_series(3, %(n)s - 1, 4) i, generate_series(1, %(r)s) j""",
    f"""insert into device_health (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                   kind, battery_percent, rssi_dbm)
        select %(t)s, {PERSON}, {DEVICE}, 'h' || j, {AT}, {AT} + interval '1 second',
               'heartbeat', 90 - j, -70
        from generate_series(0, %(n)s - 1) i, generate_series(1, greatest(%(r)s / 4, 1)) j""",
    f"""insert into device_state (device_id, tenant_id, last_seen, last_ts, battery_percent,
                                  rssi_dbm, online)
        select {DEVICE}, %(t)s, now(), now(), 89, -70, true
        from generate_series(0, %(n)s - 1) i""",
    f"""insert into consents (tenant_id, person_id, recipient_org, purpose, categories,
                              valid_from, legal_basis, recorded_by)
        select %(t)s, {PERSON}, '232100-0172', 'uppföljning', array['weight'],
               now() - interval '30 days', 'samtycke', 'bench'
        from generate_series(1, %(n)s - 1, 40) i""",
    f"""insert into alarms (id, tenant_id, kind, severity, device_id, person_id, person_ref,
                            subject, state, raised_at, last_at, occurrences,
                            acknowledged_by, acknowledged_at, resolved_by, resolved_at,
                            outcome, lat, lon, accuracy_m, detail, version)
        select md5('bench-alarm-' || i)::uuid, %(t)s, 'button', 'critical', {DEVICE},
               {PERSON}, 'BENCH-' || i, {DEVICE}, 'resolved', now() - interval '2 hours',
               now() - interval '2 hours', 1, 'olle', now() - interval '119 minutes',
               'olle', now() - interval '100 minutes', 'false_alarm', 59.6, 16.5, 8,
               '{{"source": "bench"}}', 3
        from generate_series(0, %(n)s - 1, 20) i""",
    """insert into alarm_events (id, alarm_id, tenant_id, seq, type, at, actor, snapshot)
        select md5('bench-event-' || a.id || s)::uuid, a.id, a.tenant_id, s,
               (array['raised', 'acknowledged', 'resolved'])[s],
               a.raised_at + (s - 1) * interval '10 minutes', case when s > 1 then 'olle' end,
               jsonb_build_object('state', (array['raised', 'acknowledged', 'resolved'])[s])
        from alarms a, generate_series(1, 3) s where a.tenant_id = %(t)s""",
    """select count(append_access_log('olle', null, 'operator', %(t)s, %(t)s, null,
            array['position'], 'larm', 'allowed', 'by role', 'GET /api/v1/alarms'))
        from generate_series(1, greatest(%(n)s / 80, 10))""",
]


def person_id(i: int) -> UUID:
    return UUID(hashlib.md5(f"bench-person-{i}".encode()).hexdigest())


async def load(url: str, devices: int, per_device: int) -> None:
    cipher = PinCipher.from_settings({"bench": PII_KEY}, None)
    assert cipher is not None
    params = {"t": TENANT, "n": devices, "r": per_device}
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await conn.execute(
            "insert into tenants (id, name, kind, org_number)"
            " values (%s, 'Bench', 'municipality', '212000-9997')",
            (TENANT,),
        )
        copy_persons = ("copy persons (id, tenant_id, ref, pin_ciphertext, pin_key_id,"
                        " care_notes) from stdin")  # fmt: skip
        async with conn.cursor().copy(copy_persons) as copy:
            for i in range(devices):
                pid = person_id(i)
                pin = f"19{40 + i % 50:02d}{i % 12 + 1:02d}{i % 28 + 1:02d}{i % 10000:04d}"
                blob, key_id = cipher.encrypt(pin, str(pid))
                await copy.write_row((pid, TENANT, f"BENCH-{i}", blob, key_id,
                                      f"Nyckel i nyckelgömma {i}, port {i % 7}"))  # fmt: skip
        for statement in LOAD:
            await conn.execute(statement, params)


async def counts(url: str) -> dict[str, int]:
    """The tenant's rows per table, as the export selects them."""
    from psycopg import sql

    from gateway.adapters.postgres import export_queries as q

    out = {}
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await conn.execute(q.SET_TENANT, (TENANT,))
        for table in TABLES:
            query = sql.SQL("select count(*) from ({}) s").format(q.select_rows(table))
            row = await (await conn.execute(query, {"tenant": TENANT})).fetchone()
            out[table.name] = int(row[0]) if row else 0
    return out


def child(argv: list[str]) -> None:
    """In the exporting process: run the command, then report its own peak RSS."""
    from gateway.entrypoints.cli import main

    started = time.perf_counter()
    code = main(argv)
    took = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"code": code, "export_s": took, "peak_rss_mb": usage.ru_maxrss / 1024,
                      "cpu_s": usage.ru_utime + usage.ru_stime}))  # fmt: skip


def run(devices: int, per_device: int, workdir: Path, *, restore: bool) -> dict[str, Any]:
    pg = EmbeddedPostgres(workdir / "pg", delete_on_stop=True)
    url = pg.start()
    try:
        migrate(url, api_password=API_PASSWORD, worker_password=WORKER_PASSWORD)
        started = time.perf_counter()
        asyncio.run(load(url, devices, per_device))
        load_s = time.perf_counter() - started
        stored = asyncio.run(counts(url))
        config = _config(workdir / "bench.toml", url, workdir / "data")
        out = workdir / "export.zip"
        report = _in_a_process(["export", "--tenant", TENANT, "--out", str(out),
                                "--config", str(config)])  # fmt: skip
        restored: dict[str, Any] = {}
        if restore:  # into a second database of the same server, as a new supplier would
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("create database restored")
            parts = urlsplit(url)
            target = urlunsplit(parts._replace(path="/restored"))
            config2 = _config(workdir / "restore.toml", target, workdir / "data2")
            restored = _in_a_process(["restore", "--from", str(out), "--config", str(config2)])
            restored["counts"] = asyncio.run(counts(target))
        with zipfile.ZipFile(out) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            files = manifest["files"]
            zip_names = archive.namelist()
        rows = {f["path"].removesuffix(".csv"): f["rows"] for f in files
                if f["path"].endswith(".csv")}  # fmt: skip
        observations = sum(f["rows"] for f in files if f["path"].startswith("fhir/"))
        total_rows = sum(rows.values()) + observations
        raw_bytes = sum(f["bytes"] for f in files)
        zip_bytes = out.stat().st_size
        export_s = report["export_s"]
    finally:
        pg.stop()
    return {
        "devices": devices, "per_device": per_device, "load_s": round(load_s, 1),
        "rows": total_rows, "csv_rows": sum(rows.values()), "fhir_observations": observations,
        "files": len(zip_names), "bytes": raw_bytes, "zip_bytes": zip_bytes,
        "export_s": round(export_s, 2),
        "rows_per_s": round(total_rows / export_s),
        "mb_per_s": round(raw_bytes / 2**20 / export_s, 1),
        "zip_mb_per_s": round(zip_bytes / 2**20 / export_s, 1),
        "peak_rss_mb": round(report["peak_rss_mb"], 1),
        # CPU time of the exporting process (its imports included): steadier than the
        # wall clock on a shared machine
        "export_cpu_s": round(report["cpu_s"], 1),
        "rows_per_cpu_s": round(total_rows / report["cpu_s"]),
        # the access log gains one row: the export's own entry, written before it starts
        "rows_match_database": all(
            rows.get(t) == n + (t == "access_log") for t, n in stored.items()
        ),
        "rows_per_table": rows,
        **(_restore_figures(restored, stored, sum(rows.values())) if restored else {}),
        "machine": machine.describe(),
    }  # fmt: skip


def _restore_figures(
    restored: dict[str, Any], stored: dict[str, int], csv_rows: int
) -> dict[str, Any]:
    """The restore's figures (migration of the empty database included)."""
    got = restored["counts"]
    restored_tables = {t.name for t in TABLES if t.not_restored is None}
    return {
        "restore_s": round(restored["export_s"], 2),
        "restore_rows_per_s": round(csv_rows / restored["export_s"]),
        "restore_cpu_s": round(restored["cpu_s"], 1),
        "restore_peak_rss_mb": round(restored["peak_rss_mb"], 1),
        # the restored database holds every row, and the access log the export's and the
        # restore's own entries besides
        "restored_rows_match": all(
            got[t] == n + 2 * (t == "access_log") for t, n in stored.items() if t in restored_tables
        ),
    }


def _config(path: Path, url: str, data_dir: Path) -> Path:
    path.write_text(
        f'database_url = "{url}"\napi_db_password = "{API_PASSWORD}"\n'
        f'worker_db_password = "{WORKER_PASSWORD}"\njwt_secret = "{SECRET}"\n'
        f'data_dir = "{data_dir}"\nmode = "development"\n'
        f'[pii_keys]\nbench = "{PII_KEY}"\n'
    )
    return path


def _in_a_process(argv: list[str]) -> dict[str, Any]:
    """``welfare-gateway ARGV`` in a process of its own: its time, CPU and peak RSS."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.export", "--child", json.dumps(argv)],
        capture_output=True, text=True, check=False, env={**os.environ},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr[-3000:]}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.export")
    parser.add_argument("--smoke", action="store_true", help="400 devices instead of 80,000")
    parser.add_argument("--devices", type=int, default=None)
    parser.add_argument("--per-device", type=int, default=None,
                        help="messages per device (default 12; --smoke: 4)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--no-restore", action="store_true",
                        help="export only (default: also restore into a new database)")  # fmt: skip
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(json.loads(args.child))
        return {}
    devices = args.devices or (400 if args.smoke else 80_000)
    per_device = args.per_device or (4 if args.smoke else 12)
    with tempfile.TemporaryDirectory(prefix="wg-bench-export-") as tmp:
        result = run(devices, per_device, Path(tmp), restore=not args.no_restore)
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
