"""Digital night supervision, passive alarms and their consent gate (issue #20), end to end
with real Mosquitto, PostgreSQL and HTTP, the sensors played by the simulators
(device_sims.sensors).

One night, three persons: Anna gets up before her check and does not return (retried, then
``supervision_not_ok`` with what was seen; her door opened in the night window raises
``door_opened_at_night``); Bertil's bed sensor dies before his check (``supervision_failed``);
Cecilia has no decision with consent, so her sensor states and positions are refused
(``no_supervision_consent``, counted) while her button alarm goes through. A withdrawal
takes effect at the gateway within 5 s. The night view shows it all. Waits are on
conditions.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import psycopg

from api.auth import Role, mint
from device_sims.runner import run_fleet
from device_sims.scenario import SCENARIO_DIR, parse_scenario
from device_sims.sensors import NightScript, SensorSim
from gateway.adapters.postgres import registry_repo as repo
from gateway.adapters.postgres import supervision_queries as q
from gateway.domain.supervision_consent import Service
from gateway.entrypoints.demo import DEMO_TENANT, seed
from tests.integration.harness import (
    Bearer,
    gateway_with_api,
    now_iso,
    operator,
    payload,
    publish,
    running_gateway,
    scalar,
    settings_for,
    wait_for,
)

SECRET = "supervision-test-secret-supervision-test"
TENANT = "kommun-s"
SENSOR_MODELS = [
    repo.DeviceModel("t-bed", "Acme", "Bed", "bed_sensor", 60),
    repo.DeviceModel("t-pir", "Acme", "PIR", "motion_sensor", 60),
    repo.DeviceModel("t-door", "Acme", "Door", "door_sensor", 60),
    repo.DeviceModel("t-gps", "Acme", "GPS", "gps_alarm", 60),
]
DEVICES = {
    "anna": ["s-bed-a", "s-pir-a", "s-door-a"],
    "bertil": ["s-bed-b"],
    "cecilia": ["s-bed-c", "s-gps-c"],
}
MODEL_OF = {"bed": "t-bed", "pir": "t-pir", "door": "t-door", "gps": "t-gps"}


def auth(tenant: str, role: Role, sub: str = "karin.berg") -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=sub, org=None, ttl_s=900
        )
    )


ADMIN = auth(TENANT, Role.TENANT_ADMIN)
OPERATOR = auth(TENANT, Role.OPERATOR, "nattpatrull-1")
OTHER = auth("kommun-other", Role.TENANT_ADMIN)


async def _seed(url: str) -> dict[str, UUID]:
    since = datetime.now(UTC) - timedelta(days=1)
    persons: dict[str, UUID] = {}
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await repo.create_tenant(conn, TENANT, "Kommun S", "municipality", "212000-0771")
        await repo.create_tenant(conn, "kommun-other", "Other", "municipality", "212000-0772")
        for model in SENSOR_MODELS:
            await repo.ensure_device_model(conn, model)
        for name, devices in DEVICES.items():
            person = persons[name] = await repo.create_person(conn, TENANT, f"S-{name}")
            for device in devices:
                await repo.register_device(conn, TENANT, device, MODEL_OF[device.split("-")[1]])
                await repo.assign_device(conn, device, person, since)
    return persons


def _local_hms(at: datetime) -> str:
    return at.astimezone(ZoneInfo("Europe/Stockholm")).strftime("%H:%M:%S")


async def _ok(r: httpx.Response, status: int = 201) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def test_a_night_not_ok_failed_and_refused(mosquitto, database_url) -> None:
    persons = await _seed(database_url)
    anna, bertil, cecilia = persons["anna"], persons["bertil"], persons["cecilia"]
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET,
                            supervision={"gate_positions": True})  # fmt: skip
    async with (
        gateway_with_api(settings) as (base, gw),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        operator(mosquitto.url, TENANT) as op,
    ):
        consent_at = (datetime.now(UTC) - timedelta(days=3)).isoformat()
        valid_from = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        decisions: dict[tuple[str, str], str] = {}
        for name, services in (("anna", ["night_supervision", "passive_alarms"]),
                               ("bertil", ["night_supervision"])):  # fmt: skip
            for service in services:
                body = await _ok(await http.post(
                    f"/api/v1/persons/{persons[name]}/supervision/decisions", headers=ADMIN,
                    json={"service": service, "valid_from": valid_from,
                          "person_consent_at": consent_at},
                ))  # fmt: skip
                decisions[(name, service)] = body["id"]
        # a decision awaiting a cohabitant's consent permits nothing yet
        waiting = await _ok(await http.post(
            f"/api/v1/persons/{cecilia}/supervision/decisions", headers=ADMIN,
            json={"service": "night_supervision", "person_consent_at": consent_at,
                  "has_cohabitant": True},
        ))  # fmt: skip
        listed = await _ok(await http.get(
            f"/api/v1/persons/{cecilia}/supervision/decisions", headers=OPERATOR), 200)  # fmt: skip
        assert [d["status"] for d in listed] == ["awaiting_cohabitant_consent"], listed
        assert waiting["id"] == listed[0]["id"]

        # the checks: in a few seconds (local time), retried after 3 s
        check_at = datetime.now(UTC) + timedelta(seconds=8)
        for person in (anna, bertil):
            await _ok(await http.put(
                f"/api/v1/persons/{person}/supervision/plan", headers=ADMIN,
                json={"check_times": [_local_hms(check_at)], "seen": "in_bed",
                      "retry_after_s": 3, "team": "night_team"},
            ))  # fmt: skip
        await _ok(await http.post(
            f"/api/v1/persons/{anna}/passive-rules", headers=ADMIN,
            json={"kind": "door_opened_at_night", "window_start": "00:00",
                  "window_end": "00:00"},
        ))  # fmt: skip

        for person in (anna, bertil):  # the decisions reached the workers (NOTIFY)
            await wait_for(lambda p=person: _allowed(gw, p), 10, "the decisions in memory")
        # the night, as the sensors see it (times in the last minute)
        t0 = datetime.now(UTC) - timedelta(seconds=60)
        night_a = NightScript(bed=SensorSim("s-bed-a", "bed_sensor"),
                              motion=SensorSim("s-pir-a", "motion_sensor"),
                              door=SensorSim("s-door-a", "door_sensor"))  # fmt: skip
        night_a.awake(t0).goes_to_bed(t0 + timedelta(seconds=10))
        night_a.gets_up(t0 + timedelta(seconds=40)).opens_door(t0 + timedelta(seconds=45))
        night_b = NightScript(bed=SensorSim("s-bed-b", "bed_sensor"))
        night_b.awake(t0).goes_to_bed(t0 + timedelta(seconds=10))
        night_b.bed_sensor_dies(t0 + timedelta(seconds=50))
        night_c = NightScript(bed=SensorSim("s-bed-c", "bed_sensor"))
        night_c.awake(t0).goes_to_bed(t0 + timedelta(seconds=10))
        sent = sorted([*night_a.messages(), *night_b.messages(), *night_c.messages()],
                      key=lambda s: s.at)  # fmt: skip
        await publish(mosquitto.url, [(s.topic, s.out.payload) for s in sent])

        # Cecilia: her bed's states and her position refused; her button goes through
        await publish(mosquitto.url, [
            ("devices/s-gps-c/telemetry",
             payload("position", "p-c-1", lat=59.6, lon=16.5, accuracy_m=5.0)),
            ("devices/s-gps-c/events", payload("alarm", "a-c-1", kind="button")),
        ])  # fmt: skip
        button = await op.wait(lambda m: m["kind"] == "button", "Cecilia's button alarm")
        assert button["person_id"] == str(cecilia)

        async def refused() -> bool:
            n = await scalar(
                database_url,
                "select count(*) from quarantine where reason = 'no_supervision_consent' "
                "and device_id in ('s-bed-c', 's-gps-c')",
            )
            return int(n) == 3  # two bed states, one position

        await wait_for(refused, 20, "Cecilia's sensor states and position quarantined")
        assert await scalar(database_url, "select count(*) from sensor_events "
                            "where device_id = 's-bed-c'") == 0  # fmt: skip
        assert await scalar(database_url, "select count(*) from positions "
                            "where device_id = 's-gps-c'") == 0  # fmt: skip

        async def annas() -> bool:  # her 7 states: stored (under her decisions)
            n = await scalar(database_url, "select count(*) from sensor_events "
                             "where device_id like 's-%%-a'")  # fmt: skip
            return int(n) == 7

        await wait_for(annas, 10, "Anna's sensor states stored")

        # the door opened in Anna's window
        door = await op.wait(lambda m: m["kind"] == "door_opened_at_night", "wandering alarm")
        assert door["person_id"] == str(anna) and door["device_id"] == "s-door-a"

        # Bertil's sensor is offline at his check: failed, at once
        failed = await op.wait(lambda m: m["kind"] == "supervision_failed", "failed check", 30)
        assert failed["person_id"] == str(bertil)
        assert failed["detail"]["reason"] == "sensor_offline"
        assert failed["detail"]["team"] == "night_team"
        # Anna is out of bed: retried, then not ok with what was seen
        not_ok = await op.wait(lambda m: m["kind"] == "supervision_not_ok", "not ok", 30)
        assert not_ok["person_id"] == str(anna) and not_ok["detail"]["attempt"] == 2
        seen = {s["kind"]: s["value"] for s in not_ok["detail"]["seen"]["sensors"]}
        assert seen["bed"] is False and seen["door"] == "open"
        assert not_ok["recipients"], not_ok

        async def stored() -> bool:
            n = await scalar(database_url, "select count(*) from supervision_checks")
            return int(n) == 3

        await wait_for(stored, 10, "the three checks stored")
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            rows = await (await conn.execute(
                "select person_id, attempt, result, alarm_id is not null, reason "
                "from supervision_checks order by person_id, attempt")).fetchall()  # fmt: skip
            counts = await q.check_counts(conn, TENANT, t0 - timedelta(hours=1),
                                          datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
        assert sorted(rows, key=lambda r: (str(r[0]), r[1])) == sorted([
            (anna, 1, "retried", False, None), (anna, 2, "not_ok", True, None),
            (bertil, 1, "failed", True, "sensor_offline"),
        ], key=lambda r: (str(r[0]), r[1]))  # fmt: skip
        assert counts == {"ok": 0, "retried": 0, "not_ok": 1, "failed": 1, "persons": 2}

        # the night view
        view = await _ok(await http.get("/api/v1/supervision/night", headers=OPERATOR), 200)
        by_person = {p["person_id"]: p for p in view["persons"]}
        assert by_person[str(anna)]["checks"][0]["status"] == "not_ok"
        assert [a["result"] for a in by_person[str(anna)]["checks"][0]["attempts"]] == [
            "retried", "not_ok"]  # fmt: skip
        assert by_person[str(bertil)]["checks"][0]["status"] == "failed"
        assert {a["kind"] for a in view["alarms"]} >= {
            "supervision_not_ok", "supervision_failed", "door_opened_at_night"}  # fmt: skip
        # another municipality sees none of it
        other = await _ok(await http.get("/api/v1/supervision/night", headers=OTHER), 200)
        assert other["persons"] == [] and other["alarms"] == []
        r = await http.get(f"/api/v1/persons/{anna}/supervision/decisions", headers=OTHER)
        assert r.status_code == 404, r.text

        # withdrawal: Bertil's consent withdrawn; within 5 s his sensor's states are refused
        r = await http.post(
            f"/api/v1/supervision/decisions/{decisions[('bertil', 'night_supervision')]}"
            "/withdraw", headers=ADMIN, json={"by": "person", "reason": "vill inte längre"},
        )  # fmt: skip
        assert (await _ok(r, 200))["status"] == "withdrawn"
        withdrawn, withdrawn_at = time.monotonic(), datetime.now(UTC)
        n = 0

        async def refused_now() -> bool:
            nonlocal n
            n += 1
            await publish(mosquitto.url, [("devices/s-bed-b/events", payload(
                "bed", f"bed-b-after-{n}", occupied=True))], client_id="test-pub-b")  # fmt: skip
            found = await scalar(
                database_url,
                "select count(*) from quarantine where device_id = 's-bed-b' "
                "and reason = 'no_supervision_consent'",
            )
            return int(found) > 0

        await wait_for(refused_now, 10, "Bertil's bed state refused after the withdrawal")
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            refused_at = await (await conn.execute(
                "select min(received_at) from quarantine where device_id = 's-bed-b'"
            )).fetchone()  # fmt: skip
        assert refused_at is not None
        assert time.monotonic() - withdrawn < 10
        # the first state received after the withdrawal that was refused: within 5 s of it
        assert (refused_at[0] - withdrawn_at).total_seconds() < 5, refused_at[0] - withdrawn_at
        # every change and read is in the access log
        logged = await scalar(database_url, "select count(*) from access_log where "
                              "categories = array['supervision'] and owner_tenant = %s",
                              (TENANT,))  # fmt: skip
        assert int(logged) >= 10
        assert gw.alarms.supervision is not None
        assert now_iso()


async def test_a_restarted_engine_checks_with_the_states_stored(mosquitto, database_url) -> None:
    """The sensors' states live in the engine's memory; a worker that (re)starts the engine
    reads their last states from storage: a resident in bed before the restart is seen in
    bed at the check after it, with only a heartbeat since."""
    persons = await _seed(database_url)
    bertil = persons["bertil"]
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET)
    bed = SensorSim("s-bed-b", "bed_sensor")
    async with (
        gateway_with_api(settings) as (base, first),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        await _ok(await http.post(
            f"/api/v1/persons/{bertil}/supervision/decisions", headers=ADMIN,
            json={"service": "night_supervision",
                  "valid_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                  "person_consent_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat()},
        ))  # fmt: skip
        await wait_for(lambda: _allowed(first, bertil), 10, "the decision in the workers")
        night = NightScript(bed=bed).awake(datetime.now(UTC) - timedelta(seconds=20))
        night.goes_to_bed(datetime.now(UTC) - timedelta(seconds=10))
        await publish(mosquitto.url, [(s.topic, s.out.payload) for s in night.messages()])

        async def in_bed() -> bool:
            n = await scalar(database_url, "select count(*) from sensor_events where "
                             "device_id = 's-bed-b' and state = 'true'")  # fmt: skip
            return int(n) == 1

        await wait_for(in_bed, 10, "the bed's state stored")
    # a new engine: nothing in memory but what storage holds
    async with (
        gateway_with_api(settings) as (base, gw),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        operator(mosquitto.url, TENANT) as op,
    ):
        assert gw.alarms.supervision is not None
        await wait_for(lambda: _seeded(gw, bertil), 10, "the stored states loaded")
        hb = bed.heartbeat(datetime.now(UTC))
        await publish(mosquitto.url, [(f"devices/s-bed-b/{hb.channel.value}", hb.payload)])
        check_at = datetime.now(UTC) + timedelta(seconds=4)
        await _ok(await http.put(
            f"/api/v1/persons/{bertil}/supervision/plan", headers=ADMIN,
            json={"check_times": [_local_hms(check_at)], "seen": "in_bed",
                  "retry_after_s": 2, "team": "night_team"},
        ))  # fmt: skip

        async def checked() -> bool:
            n = await scalar(database_url, "select count(*) from supervision_checks")
            return int(n) >= 1

        await wait_for(checked, 20, "the check made")
        assert await scalar(database_url, "select result from supervision_checks") == "ok"
        assert not [m for m in op.messages if m["kind"].startswith("supervision_")]


async def _allowed(gw: Any, person: UUID) -> bool:
    decisions = gw.alarms.supervision.cache.decisions()
    return bool(decisions.allows(person, Service.NIGHT_SUPERVISION, datetime.now(UTC)))


async def _seeded(gw: Any, person: UUID) -> bool:
    states = gw.alarms.supervision.states.get(person, {})
    state = states.get("s-bed-b")
    return state is not None and state.value is True


async def test_the_night_supervision_scenario_through_the_simulators(
    mosquitto, database_url
) -> None:
    """The shipped scenario's sensors (device_sims.sensors, run by the fleet runner as in
    ``welfare-gateway simulate``) against the gateway: the scripted door opening raises
    door_opened_at_night for the resident with a passive-alarms decision; the other door's
    resident has none, so that door's states are refused."""
    path = SCENARIO_DIR / "night_supervision.toml"
    scenario = parse_scenario(path.read_text().replace("speedup = 60", "speedup = 3000"))
    specs = scenario.device_specs()
    world = await seed(database_url, specs)
    doors = sorted(s.device_id for s in specs if s.device_type == "door_sensor")
    consenting, refusing = world.residents[doors[0]][0], world.residents[doors[1]][0]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "insert into supervision_decisions (tenant_id, person_id, service, valid_from,"
            " person_consent_at, recorded_by) values (%s, %s, 'passive_alarms',"
            " now() - interval '1 day', now() - interval '2 days', 'test')",
            (DEMO_TENANT, consenting),
        )
        for person in (consenting, refusing):
            await conn.execute(
                "insert into passive_rules (tenant_id, person_id, kind, window_start,"
                " window_end, created_by) values (%s, %s, 'door_opened_at_night', '00:00',"
                " '00:00', 'test')",
                (DEMO_TENANT, person),
            )
        await conn.commit()
    settings = settings_for(mosquitto.url, database_url)
    stop = asyncio.Event()
    async with running_gateway(settings), operator(mosquitto.url, DEMO_TENANT) as op:
        fleet = asyncio.create_task(run_fleet(
            specs, host="127.0.0.1", port=mosquitto.port, duration_s=60, stop=stop,
            seed=scenario.seed,
        ))  # fmt: skip
        try:
            alarm = await op.wait(
                lambda m: m["kind"] == "door_opened_at_night" and m["event"] == "raised",
                "the scripted door opening", timeout=45,
            )  # fmt: skip
            assert alarm["person_id"] == str(consenting) and alarm["device_id"] == doors[0]

            async def refused() -> bool:
                n = await scalar(database_url, "select count(*) from quarantine where "
                                 "device_id = %s and reason = 'no_supervision_consent'",
                                 (doors[1],))  # fmt: skip
                return int(n) >= 2

            await wait_for(refused, 20, "the other door's states refused")
        finally:
            stop.set()
            await fleet
    assert not [m for m in op.messages if m["person_id"] == str(refusing)]


async def test_a_retry_is_made_by_the_engine_that_takes_over(mosquitto, database_url) -> None:
    """A check retried by one engine whose worker stops before the retry: the next engine
    makes the retry (from supervision_checks), once."""
    persons = await _seed(database_url)
    bertil = persons["bertil"]
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET)
    bed = SensorSim("s-bed-b", "bed_sensor")
    async with (
        gateway_with_api(settings) as (base, first),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        await _ok(await http.post(
            f"/api/v1/persons/{bertil}/supervision/decisions", headers=ADMIN,
            json={"service": "night_supervision",
                  "valid_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                  "person_consent_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat()},
        ))  # fmt: skip
        await wait_for(lambda: _allowed(first, bertil), 10, "the decision in the workers")
        night = NightScript(bed=bed).awake(datetime.now(UTC) - timedelta(seconds=5))
        await publish(mosquitto.url, [(s.topic, s.out.payload) for s in night.messages()])
        check_at = datetime.now(UTC) + timedelta(seconds=4)
        await _ok(await http.put(
            f"/api/v1/persons/{bertil}/supervision/plan", headers=ADMIN,
            json={"check_times": [_local_hms(check_at)], "seen": "in_bed",
                  "retry_after_s": 12, "team": "night_team"},
        ))  # fmt: skip

        async def retried() -> bool:
            n = await scalar(database_url, "select count(*) from supervision_checks "
                             "where result = 'retried'")  # fmt: skip
            return int(n) == 1

        await wait_for(retried, 20, "the first attempt retried")
    # the worker stops before its retry; the resident goes to bed meanwhile
    async with gateway_with_api(settings) as (_base, gw):
        await wait_for(lambda: _allowed(gw, bertil), 10, "the decision in the workers")
        later = NightScript(bed=bed).goes_to_bed(datetime.now(UTC))
        await publish(mosquitto.url, [(s.topic, s.out.payload) for s in later.messages()])

        async def retry_made() -> bool:
            n = await scalar(database_url, "select count(*) from supervision_checks "
                             "where attempt = 2")  # fmt: skip
            return int(n) == 1

        await wait_for(retry_made, 30, "the retry made by the new engine")
        assert await scalar(database_url, "select result from supervision_checks "
                            "where attempt = 2") == "ok"  # fmt: skip
