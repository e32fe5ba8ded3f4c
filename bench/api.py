"""``python -m bench.api``: API read latency while background ingest runs at 2,500 msgs/s:
a person's readings (REST, one page of 100, read by the municipality's operator) and a
FHIR R4 Observation search (one searchset page of 100 vital-sign Observations, read by a
region's clinician under a valid consent, so the consent check, the SECURITY DEFINER query
and the mapping are all in the figure). Sequential requests over one keep-alive connection,
timed by the client; every read is also written to the hash-chained access log."""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from api.auth import Role, mint
from bench import machine
from bench.ingest import _loadgen, _percentile, _wait_all
from bench.mosquitto import free_port, port_open, wait_until
from bench.stack import TENANT, Stack, stack
from gateway.adapters.postgres import registry_repo as repo
from gateway.config.settings import Settings

TARGET_P99_MS = 50.0
REGION = "bench-region"
REGION_ORG = "232100-9999"


def run(requests: int, background_rate: int, workdir: Path) -> dict[str, Any]:
    with stack(workdir) as st:
        devices = 100
        st.seed("bench-", devices, repo.DeviceModel("bench-gps", "Bench", "GPS", "gps_alarm", 60))
        port = free_port()
        # the per-caller API rate limit would throttle a sequential benchmark client
        gw = st.start_gateway(WG_API_PORT=str(port), WG_LIMITS__API_REQUESTS_PER_MINUTE="10000000",
                              WG_LIMITS__API_BURST="10000000")  # fmt: skip
        wait_until(lambda: port_open(port), 30, "API listening")
        # history to read: a first round of positions for every device
        _wait_all(_loadgen(st.broker.port, 2, devices, 40, 0), 120)
        wait_until(lambda: st.count("select count(*) from positions") >= devices * 10, 60,
                   "history stored")  # fmt: skip
        person = str(_first_person(st.database_url))
        vitals_person = _vitals_history(st)
        secret = Settings().jwt_secret.get_secret_value()  # the gateway runs with the default
        token = mint(secret, tenant=TENANT, role=Role.OPERATOR, subject="bench", org=None,
                     ttl_s=3600)  # fmt: skip
        clinician = mint(secret, tenant=REGION, role=Role.CLINICIAN, subject="bench-dr",
                         org=REGION_ORG, ttl_s=3600)  # fmt: skip
        seconds = max(15.0, requests * 0.04)
        load = _loadgen(st.broker.port, 2, devices, int(background_rate * seconds / devices),
                        1_000_000, rate=background_rate / 2)  # fmt: skip
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            latencies, statuses = _timed(
                http, requests, f"/api/v1/persons/{person}/readings",
                {"category": "position", "limit": 100}, token,
            )  # fmt: skip
            fhir_latencies, fhir_statuses = _timed(
                http, requests, "/fhir/r4/Observation",
                {"patient": vitals_person, "_count": 100}, clinician,
            )  # fmt: skip
            page = http.get(
                "/fhir/r4/Observation", params={"patient": vitals_person, "_count": 100},
                headers={"Authorization": f"Bearer {clinician}"},
            )  # fmt: skip
            fhir_entries = len(page.json().get("entry", []))
        pubs = _wait_all(load, 600)
        offered = sum(p["published"] for p in pubs) / (
            max(p["finished"] for p in pubs) - min(p["started"] for p in pubs)
        )
        gw.terminate()
        gw.wait(60)
    p99 = _percentile(latencies, 0.99)
    fhir_p99 = _percentile(fhir_latencies, 0.99)
    all_ok = statuses == {"200": requests} and fhir_statuses == {"200": requests}
    meets = all_ok and p99 < TARGET_P99_MS and fhir_p99 < TARGET_P99_MS
    return {
        "api_read_ms": {
            "readings_page_of_100": {
                "p50": round(_percentile(latencies, 0.50), 2),
                "p99": round(p99, 2),
                "requests": requests,
                "statuses": statuses,
            },
            "fhir_observation_search_page_of_100": {
                "p50": round(_percentile(fhir_latencies, 0.50), 2),
                "p99": round(fhir_p99, 2),
                "requests": requests,
                "statuses": fhir_statuses,
                "entries_per_page": fhir_entries,
                "reader": "clinician under consent",
            },
            "background_msgs_per_s": round(offered),
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": meets,
        }
    }


def _timed(
    http: httpx.Client, requests: int, url: str, params: dict[str, Any], token: str
) -> tuple[list[float], dict[str, int]]:
    latencies = []
    statuses: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(requests):
        t0 = time.perf_counter()
        r = http.get(url, params=params, headers=headers)
        latencies.append((time.perf_counter() - t0) * 1000)
        code = str(r.status_code)
        statuses[code] = statuses.get(code, 0) + 1
    return latencies, statuses


def _vitals_history(st: Stack) -> str:
    """A resident with a scale and a blood-pressure monitor: 30 days of readings (three
    weights and three blood pressures a day, written straight to the table: ingest is not
    what is measured here), a region, and the resident's consent to that region."""
    import psycopg

    scale = st.seed("bench-scale-", 1, repo.DeviceModel("bench-scale", "Bench", "Scale",
                                                        "scale", 300))[0]  # fmt: skip
    now = datetime.now(UTC)
    with psycopg.connect(st.database_url) as conn:
        row = conn.execute(
            "select person_id from assignments where device_id = %s", (scale,)
        ).fetchone()
        assert row is not None
        person = row[0]
        conn.execute("select create_tenant(%s, 'Bench region', 'region', %s)",
                     (REGION, REGION_ORG))  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(
                "insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,"
                " kind, weight_kg, systolic_mmhg, diastolic_mmhg, pulse_bpm)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (TENANT, person, scale, f"v{i}", now - timedelta(hours=4 * i), now,
                     *(("weight", 80 + i % 7 / 10, None, None, None) if i % 2
                       else ("blood_pressure", None, 120 + i % 20, 80 + i % 10, 60 + i % 30)))
                    for i in range(180)
                ],
            )  # fmt: skip
        conn.execute(
            "insert into consents (tenant_id, person_id, recipient_org, purpose, categories,"
            " valid_from, legal_basis, recorded_by) values (%s, %s, %s, 'bench',"
            " array['weight', 'blood_pressure'], %s, 'samtycke', 'bench')",
            (TENANT, person, REGION_ORG, now - timedelta(days=60)),
        )
    return str(person)


def _first_person(url: str) -> Any:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select person_id from positions group by person_id order by count(*) desc limit 1"
        ).fetchone()
        assert row is not None
        return row[0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.api")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--background-rate", type=int, default=2500)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.background_rate = 50, 200
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        result = {**run(args.requests, args.background_rate, Path(tmp)),
                  "machine": machine.describe()}  # fmt: skip
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
