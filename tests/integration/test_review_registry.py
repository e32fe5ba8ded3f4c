"""Security review #17, findings 1 and 5: who owns device models, device ids and staff key
ids. Each test performs the attack the review describes, over real HTTP on a real
PostgreSQL as role wg_api (docs/security.md, "review #17.1" and "review #17.5")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.adapters.mosquitto.client import IdentityTaken
from gateway.adapters.postgres import queries
from gateway.bootstrap import api_app
from gateway.config.settings import LockSettings, Settings
from gateway.domain.lock_access import Reason
from gateway.entrypoints import demo
from gateway.worker.locks.service import LockService
from tests.conftest import API_PASSWORD
from tests.integration.harness import scalar, seed, serving

SECRET = "review-17-secret-review-17-secret-1"
A, B = "kommun-a", "kommun-b"
A_ORG, B_ORG = "212000-0001", "212000-0002"
PLATFORM = ("platform", Role.PLATFORM_ADMIN)
VIVAGO_GPS = {"id": "vivago-gps2", "vendor": "Vivago", "model": "GPS 2",
              "device_type": "gps_alarm", "heartbeat_interval_s": 300}  # fmt: skip
AS_SCALE = {**VIVAGO_GPS, "device_type": "scale", "heartbeat_interval_s": 86_400}


def auth(tenant: str, role: Role) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=f"{tenant}-{role.value}", org=None,
                 ttl_s=600)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


class FakeBroker:
    """Broker access (the dynsec client) as the API sees it: what it was asked to do, and
    the names that are a service's (the gateway's, an operator's)."""

    def __init__(self, services: tuple[str, ...] = ()) -> None:
        self.services = services
        self.calls: list[tuple[str, str]] = []

    async def register_device(self, device_id: str) -> str:
        if device_id in self.services:
            raise IdentityTaken(f"{device_id!r} is the name of another broker identity")
        self.calls.append(("register", device_id))
        return f"password-of-{device_id}-{len(self.calls)}"

    async def remove_device(self, device_id: str) -> None:
        self.calls.append(("remove", device_id))

    async def suspend_device(self, device_id: str) -> None:
        self.calls.append(("suspend", device_id))

    async def reinstate_device(self, device_id: str) -> None:
        self.calls.append(("reinstate", device_id))


@contextlib.asynccontextmanager
async def api(database_url: str, broker: FakeBroker | None = None) -> AsyncIterator[Any]:
    settings = Settings(database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD)
    app = api_app(settings, api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
                     metrics_registry=CollectorRegistry())  # fmt: skip
    app.state.broker_access = broker
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        yield http


@pytest.fixture
async def tenants(database_url: str) -> str:
    """Kommun A and kommun B, each with a lock held by a resident (the harness's models)."""
    await seed(database_url, tenant=A, org=A_ORG, devices={"a-lock": "t-lock"})
    await seed(database_url, tenant=B, org=B_ORG, devices={"b-lock": "t-lock"})
    return database_url


# --- finding 1: device models were global and writable by every tenant -------------------


async def test_a_tenant_cannot_define_or_redefine_a_device_model(tenants: str) -> None:
    """The review's attack: A registers vivago-gps2 as a scale with a day's heartbeat, B
    then "registers" it as a GPS alarm (201) and gets a scale that never falls silent."""
    async with api(tenants) as http:
        for tenant in (A, B):
            for role in (Role.TENANT_ADMIN, Role.INSTALLER, Role.OPERATOR):
                r = await http.post("/api/v1/device-models", headers=auth(tenant, role),
                                    json=AS_SCALE if tenant == A else VIVAGO_GPS)  # fmt: skip
                assert r.status_code == 403, f"{tenant} {role}: {r.status_code} {r.text}"
        assert await scalar(tenants, "select count(*) from device_models"
                                     " where id = 'vivago-gps2'") == 0  # fmt: skip

        # the platform curates it; the same model again is idempotent, other values 409
        r = await http.post("/api/v1/device-models", headers=auth(*PLATFORM), json=VIVAGO_GPS)
        assert (r.status_code, r.json()) == (201, {"id": "vivago-gps2"})
        r = await http.post("/api/v1/device-models", headers=auth(*PLATFORM), json=VIVAGO_GPS)
        assert (r.status_code, r.json()) == (200, {"id": "vivago-gps2"})
        r = await http.post("/api/v1/device-models", headers=auth(*PLATFORM), json=AS_SCALE)
        assert r.status_code == 409, r.text
        assert "device_type, heartbeat_interval_s" in r.json()["detail"]
        r = await http.post("/api/v1/device-models", headers=auth(*PLATFORM),
                            json={**VIVAGO_GPS, "id": "vivago-gps2-copy"})  # fmt: skip
        assert r.status_code == 409 and "registered" in r.json()["detail"]

        b_admin = auth(B, Role.TENANT_ADMIN)
        r = await http.post("/api/v1/devices", headers=b_admin,
                            json={"id": "b-watch", "model_id": "vivago-gps2"})  # fmt: skip
        assert r.status_code == 201, r.text
        # A tries again, as the review did: nothing changes for B's device
        r = await http.post("/api/v1/device-models", headers=auth(A, Role.TENANT_ADMIN),
                            json=AS_SCALE)  # fmt: skip
        assert r.status_code == 403
        listed = (await http.get("/api/v1/devices", headers=b_admin)).json()
        assert {d["id"]: d["device_type"] for d in listed}["b-watch"] == "gps_alarm"
        # every tenant reads the same catalogue
        for tenant in (A, B):
            models = (await http.get("/api/v1/device-models",
                                     headers=auth(tenant, Role.INSTALLER))).json()  # fmt: skip
            assert {**VIVAGO_GPS} in models
    # what the gateway judges B's device by: a GPS alarm silent after 300 s, not a scale
    async with await psycopg.AsyncConnection.connect(tenants) as conn:
        record = await queries.load_device(conn, "b-watch")
    assert record is not None
    assert (record.tenant_id, record.device_type, record.heartbeat_interval_s) == (
        B, "gps_alarm", 300)  # fmt: skip


async def test_only_a_platform_admin_changes_a_model_for_every_device_of_it(
    tenants: str,
) -> None:
    change = {k: v for k, v in VIVAGO_GPS.items() if k != "id"}
    async with api(tenants) as http:
        assert (await http.post("/api/v1/device-models", headers=auth(*PLATFORM),
                                json=VIVAGO_GPS)).status_code == 201  # fmt: skip
        for tenant in (A, B):
            r = await http.post(
                "/api/v1/devices",
                headers=auth(tenant, Role.TENANT_ADMIN),
                json={"id": f"{tenant}-watch", "model_id": "vivago-gps2"},
            )
            assert r.status_code == 201, r.text
        r = await http.put("/api/v1/device-models/vivago-gps2",
                           headers=auth(A, Role.TENANT_ADMIN),
                           json={**change, "heartbeat_interval_s": 86_400})  # fmt: skip
        assert r.status_code == 403
        r = await http.put("/api/v1/device-models/vivago-gps2", headers=auth(*PLATFORM),
                           json={**change, "heartbeat_interval_s": 600})  # fmt: skip
        assert (r.status_code, r.json()) == (200, {"id": "vivago-gps2", "devices": 2})
        r = await http.put("/api/v1/device-models/vivago-gps2", headers=auth(*PLATFORM),
                           json={**change, "device_type": "scale"})  # fmt: skip
        assert r.status_code == 409 and "cannot change" in r.json()["detail"]
        r = await http.put("/api/v1/device-models/nope", headers=auth(*PLATFORM), json=change)
        assert r.status_code == 404
    assert await scalar(tenants, "select heartbeat_interval_s || device_type from device_models"
                                 " where id = 'vivago-gps2'") == "600gps_alarm"  # fmt: skip


async def test_the_api_role_cannot_write_device_models_itself(tenants: str) -> None:
    """Below the API: wg_api reads the catalogue and writes it only through the functions
    the platform routes call."""
    url = with_user(tenants, "wg_api", API_PASSWORD)
    for statement in (
        "insert into device_models values ('x', 'X', 'X', 'scale', 60)",
        "update device_models set heartbeat_interval_s = 86400",
        "delete from device_models",
    ):
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute("select set_config('wg.tenant_id', %s, false)", (A,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement)


async def test_the_catalogue_holds_the_demos_models(database_url: str) -> None:
    """Migration 0011 adds the demo's models, so the simulator registers with a tenant
    admin's token on any installation; they are exactly gateway/entrypoints/demo.py's."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = await (await conn.execute(
            "select id, vendor, model, device_type, heartbeat_interval_s from device_models"
            " where id like 'demo-%' order by id")).fetchall()  # fmt: skip
    assert rows == sorted(
        (m.id, m.vendor, m.model, m.device_type, m.heartbeat_interval_s)
        for m in demo.MODELS.values()
    )


# --- finding 5: global ids leaked and could be squatted ------------------------------------


async def test_a_taken_device_id_answers_the_same_wherever_it_is_taken(tenants: str) -> None:
    """Registering B's device id as A, re-registering one's own, and a device id that is a
    broker service's name: the same status and body (nothing says where, or whose)."""
    broker = FakeBroker(services=("wg-operator-kommun-b",))
    async with api(tenants, broker) as http:
        a_admin, b_admin = auth(A, Role.TENANT_ADMIN), auth(B, Role.TENANT_ADMIN)
        r = await http.post("/api/v1/devices", headers=b_admin,
                            json={"id": "vivago-123", "model_id": "t-gps"})  # fmt: skip
        assert r.status_code == 201, r.text
        elsewhere = await http.post("/api/v1/devices", headers=a_admin,
                                    json={"id": "vivago-123", "model_id": "t-gps"})  # fmt: skip
        here = await http.post("/api/v1/devices", headers=b_admin,
                               json={"id": "vivago-123", "model_id": "t-gps"})  # fmt: skip
        other_model = await http.post(
            "/api/v1/devices", headers=a_admin, json={"id": "vivago-123", "model_id": "t-scale"}
        )
        service = await http.post(
            "/api/v1/devices",
            headers=a_admin,
            json={"id": "wg-operator-kommun-b", "model_id": "t-gps"},
        )

        def seen(r: httpx.Response, device_id: str = "vivago-123") -> tuple[Any, ...]:
            return r.status_code, r.headers["content-type"], r.text.replace(device_id, "ID")

        assert seen(elsewhere) == seen(here) == seen(other_model)
        assert elsewhere.headers["content-length"] == here.headers["content-length"]
        assert seen(service, "wg-operator-kommun-b") == seen(here)
        assert elsewhere.status_code == 409 and B not in elsewhere.text
        assert broker.calls == [("register", "vivago-123")]  # nothing for the refused ones


async def test_a_platform_admin_sees_and_releases_a_squatted_device_id(tenants: str) -> None:
    """A registers B's device id first (and hands it to a resident, to look used); B is
    refused. A platform admin finds the holder and hands the id to B; A keeps its record
    and history under an archive id; both tenants' auditors can see it in the access log."""
    broker = FakeBroker()
    async with api(tenants, broker) as http:
        a_admin, b_admin = auth(A, Role.TENANT_ADMIN), auth(B, Role.TENANT_ADMIN)
        person = (await http.post("/api/v1/persons", headers=a_admin,
                                  json={"ref": "decoy"})).json()["id"]  # fmt: skip
        r = await http.post("/api/v1/devices", headers=a_admin,
                            json={"id": "vivago-123", "model_id": "t-gps"})  # fmt: skip
        assert r.status_code == 201
        squatter_password = r.json()["mqtt_password"]
        since = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        r = await http.post("/api/v1/devices/vivago-123/assign", headers=a_admin,
                            json={"person_id": person, "valid_from": since})  # fmt: skip
        assert r.status_code == 204
        r = await http.post("/api/v1/devices", headers=b_admin,
                            json={"id": "vivago-123", "model_id": "t-gps"})  # fmt: skip
        assert r.status_code == 409

        # only a platform admin may ask, or release
        path = "/api/v1/platform/device-ids/vivago-123"
        for tenant in (A, B):
            for role in Role:
                if role is Role.PLATFORM_ADMIN:
                    continue
                assert (await http.get(path, headers=auth(tenant, role))).status_code == 403
                r = await http.post(f"{path}/release", headers=auth(tenant, role),
                                    json={"reason": "mine", "to_tenant": tenant})  # fmt: skip
                assert r.status_code == 403
        r = await http.get(path, headers=auth(*PLATFORM))
        assert r.status_code == 200, r.text
        held = r.json()
        assert (held["registered"], held["tenant_id"], held["status"], held["assignments"]) == (
            True, A, "active", 1)  # fmt: skip

        r = await http.post(f"{path}/release", headers=auth(*PLATFORM),
                            json={"reason": "ärende 2024-17: B:s inköpta enhet",
                                  "to_tenant": B})  # fmt: skip
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["released_from"], out["to_tenant"], out["mqtt_username"]) == (
            A, B, "vivago-123")  # fmt: skip
        assert out["mqtt_password"] != squatter_password
        assert r.headers["cache-control"] == "no-store"
        archived = out["archived_as"]
        assert archived.startswith("vivago-123.released.")
        assert broker.calls[-2:] == [("remove", "vivago-123"), ("register", "vivago-123")]

        b_devices = {d["id"]: d for d in (await http.get("/api/v1/devices",
                                                         headers=b_admin)).json()}  # fmt: skip
        assert b_devices["vivago-123"]["status"] == "in_stock"
        assert b_devices["vivago-123"]["person_id"] is None
        a_devices = {d["id"]: d for d in (await http.get("/api/v1/devices",
                                                         headers=a_admin)).json()}  # fmt: skip
        assert "vivago-123" not in a_devices
        assert a_devices[archived]["status"] == "retired"
        # A's history stays A's: the assignment, ended now, under the archive id
        assert await scalar(
            tenants, "select count(*) from assignments where device_id = %s and tenant_id = %s"
            " and valid_to is not null", (archived, A)) == 1  # fmt: skip
        # and A cannot take it back
        r = await http.post("/api/v1/devices", headers=a_admin,
                            json={"id": "vivago-123", "model_id": "t-gps"})  # fmt: skip
        assert r.status_code == 409
        r = await http.post("/api/v1/devices/vivago-123/assign", headers=a_admin,
                            json={"person_id": person})  # fmt: skip
        assert r.status_code == 404

        # released without a new holder: free for whoever registers it next
        r = await http.post(f"{path}/release", headers=auth(*PLATFORM),
                            json={"reason": "B returned it to the vendor"})  # fmt: skip
        assert r.status_code == 200 and "to_tenant" not in r.json()
        assert (await http.get(path, headers=auth(*PLATFORM))).json() == {
            "device_id": "vivago-123", "registered": False}  # fmt: skip
        r = await http.post(f"{path}/release", headers=auth(*PLATFORM), json={"reason": "x"})
        assert r.status_code == 404
        r = await http.post("/api/v1/devices", headers=b_admin,
                            json={"id": "vivago-123", "model_id": "t-gps"})  # fmt: skip
        assert r.status_code == 201

    # every look and release is in the access log, for the tenants concerned
    async with await psycopg.AsyncConnection.connect(tenants) as conn:
        rows = await (await conn.execute(
            "select owner_tenant, actor_role, categories, reason from access_log"
            " where categories = '{device_registry}' order by id")).fetchall()  # fmt: skip
    owners = [r[0] for r in rows]
    assert owners == [A, A, B, B, None]
    assert all(r[1] == "platform_admin" for r in rows)
    assert "released from kommun-a" in rows[1][3] and "registered in kommun-b" in rows[1][3]


async def test_staff_key_ids_are_per_tenant(tenants: str) -> None:
    """A key id is what a lock reports, and a lock belongs to one tenant: B registering
    the key id A uses neither fails, nor tells B it exists, nor touches A's key."""
    async with api(tenants) as http:
        ids: dict[str, str] = {}
        for tenant in (A, B):
            admin = auth(tenant, Role.TENANT_ADMIN)
            r = await http.post(
                "/api/v1/staff",
                headers=admin,
                json={"subject": f"anna-{tenant}", "display_name": "Anna"},
            )
            assert r.status_code == 201, r.text
            ids[tenant] = r.json()["id"]
            r = await http.post(f"/api/v1/staff/{ids[tenant]}/keys", headers=admin,
                                json={"key_id": "tag-0042"})  # fmt: skip
            assert r.status_code == 201, f"{tenant}: {r.text}"
        # within one tenant a key id is still unique
        r = await http.post(f"/api/v1/staff/{ids[A]}/keys", headers=auth(A, Role.TENANT_ADMIN),
                            json={"key_id": "tag-0042"})  # fmt: skip
        assert r.status_code == 409
        # B revokes its key; A's is untouched
        r = await http.post("/api/v1/staff-keys/tag-0042/revoke",
                            headers=auth(B, Role.TENANT_ADMIN))  # fmt: skip
        assert r.status_code == 204
    revoked = "select tenant_id, revoked_at is not null from staff_keys order by tenant_id"
    async with await psycopg.AsyncConnection.connect(tenants) as conn:
        assert await (await conn.execute(revoked)).fetchall() == [(A, False), (B, True)]
        # the gateway judges a lock's key in the lock's own tenant
        locks = LockService(
            LockSettings(), database_url=tenants, mqtt_url="mqtt://127.0.0.1:1",
            client_id="review-17", open_alarms=lambda _: [], resolve=_never,
        )  # fmt: skip
        await locks.cache._reload(conn)
        a_lock = await queries.load_device(conn, "a-lock")
        b_lock = await queries.load_device(conn, "b-lock")
    assert a_lock is not None and b_lock is not None
    now = datetime.now(UTC)
    on_a = locks.judge(a_lock, a_lock.holder_at(now), "tag-0042", now)
    on_b = locks.judge(b_lock, b_lock.holder_at(now), "tag-0042", now)
    assert (on_a.reason, str(on_a.staff_id)) == (Reason.NO_VISIT, ids[A])
    assert (on_b.reason, str(on_b.staff_id)) == (Reason.KEY_REVOKED, ids[B])
    assert locks.judge(a_lock, None, "tag-9999", now).reason is Reason.KEY_UNKNOWN


async def _never(_: str) -> None:
    return None
