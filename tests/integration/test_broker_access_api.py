"""Device identities through the API, end to end: register -> password shown once -> the
device connects and its telemetry is stored by a gateway with its own broker identity;
return cuts it off; a broker failure answers 503 and leaves nothing half-registered."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.bootstrap import api_app
from tests.conftest import API_PASSWORD, DYNSEC_ADMIN
from tests.integration.harness import (
    payload,
    running_gateway,
    scalar,
    seed,
    serving,
    settings_for,
    wait_count,
    wait_for,
)
from tests.integration.test_broker_access import (
    ADMINISTRATIVE_ACTION,
    GATEWAY,
    Probe,
    admin,
    probe,
)

SECRET = "test-secret-test-secret-test-secret"


def gateway_url(port: int) -> str:
    return f"mqtt://{GATEWAY[0]}:{GATEWAY[1]}@127.0.0.1:{port}"


def settings(port: int, database_url: str, **extra: Any) -> Any:
    return settings_for(
        gateway_url(port), database_url, jwt_secret=SECRET,
        broker_access={"enabled": True, "admin_username": DYNSEC_ADMIN[0],
                       "admin_password": DYNSEC_ADMIN[1], "timeout_s": 3},
        **extra,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def api(port: int, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = api_app(
        settings(port, database_url),
        api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
        metrics_registry=CollectorRegistry(),
    )
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=20) as http:
        yield http


def auth(tenant: str, role: Role) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject="installer-1", org=None, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


async def test_register_connect_store_return(
    dynsec_mosquitto, database_url, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = dynsec_mosquitto.port
    await admin(dynsec_mosquitto).bootstrap(*GATEWAY)
    await seed(database_url, devices={"gps-0": "t-gps"})  # tenant kommun-a and the models
    installer = auth("kommun-a", Role.TENANT_ADMIN)
    async with (
        api(port, database_url) as http,
        running_gateway(settings(port, database_url)) as gateway,
    ):
        r = await http.post("/api/v1/devices", headers=installer,
                            json={"id": "scale-9", "model_id": "t-scale"})  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        password = body["mqtt_password"]
        assert body["mqtt_username"] == "scale-9" and len(password) >= 43  # 256 bits
        r = await http.post("/api/v1/persons", headers=installer, json={"ref": "brukare-9"})
        person = r.json()["id"]
        r = await http.post("/api/v1/devices/scale-9/assign", headers=installer,
                            json={"person_id": person})  # fmt: skip
        assert r.status_code == 204, r.text

        async def known() -> bool:  # registered *and* assigned (two notifications)
            record = gateway.registry.get("scale-9")
            return record is not None and record.status == "active" and bool(record.assignments)

        await wait_for(known, 10, "the gateway to learn the new device and its assignment")
        async with probe(port, "scale-9", "scale-9", password) as device:
            assert device.connected
            code = await device.publish(
                "devices/scale-9/telemetry", payload("weight", "w-1", kg=72.4)
            )
            assert code < 0x80
            await wait_count(database_url, "select count(*) from readings", 1)

            r = await http.post("/api/v1/devices/scale-9/return", headers=installer, json={})
            assert r.status_code == 204, r.text

            async def kicked() -> bool:
                return device.disconnect is not None

            await wait_for(kicked, 10, "the returned device's session to be cut")
            assert device.disconnect is not None
            assert device.disconnect.value == ADMINISTRATIVE_ACTION
        assert await Probe(port, "scale-9", "scale-9", password).refused()
    # The password was shown once and never logged.
    assert all(password not in record.getMessage() for record in caplog.records)
    assert all(password not in str(record.__dict__) for record in caplog.records)


async def test_retired_device_loses_its_identity_for_good(dynsec_mosquitto, database_url) -> None:
    port = dynsec_mosquitto.port
    await admin(dynsec_mosquitto).bootstrap(*GATEWAY)
    await seed(database_url, devices={"gps-0": "t-gps"})
    installer = auth("kommun-a", Role.TENANT_ADMIN)
    async with api(port, database_url) as http:
        r = await http.post("/api/v1/devices", headers=installer,
                            json={"id": "bp-7", "model_id": "t-bp"})  # fmt: skip
        assert r.status_code == 201, r.text
        password = r.json()["mqtt_password"]
        person = (await http.post("/api/v1/persons", headers=installer,
                                  json={"ref": "brukare-7"})).json()["id"]  # fmt: skip
        r = await http.post("/api/v1/devices/bp-7/assign", headers=installer,
                            json={"person_id": person})  # fmt: skip
        assert r.status_code == 204, r.text
        async with probe(port, "bp-7", "bp-7", password) as device:
            assert device.connected
            r = await http.post("/api/v1/devices/bp-7/retire", headers=installer)
            assert r.status_code == 204, r.text

            async def kicked() -> bool:
                return device.disconnect is not None

            await wait_for(kicked, 10, "the retired device's session to be cut")
        assert await Probe(port, "bp-7", "bp-7", password).refused()
        listed = (await http.get("/api/v1/devices", headers=installer,
                                 params={"status": "retired"})).json()  # fmt: skip
        assert [d["id"] for d in listed] == ["bp-7"]
        # retired is final: no second retirement, no new assignment
        again = await http.post("/api/v1/devices/bp-7/retire", headers=installer)
        assert again.status_code == 409, again.text
        r = await http.post("/api/v1/devices/bp-7/assign", headers=installer,
                            json={"person_id": person})  # fmt: skip
        assert r.status_code == 409, r.text
    assert await scalar(
        database_url, "select count(*) from assignments where device_id = 'bp-7'"
        " and valid_to is null"
    ) == 0  # fmt: skip


async def test_a_device_named_like_the_gateway_cannot_take_its_identity(
    dynsec_mosquitto, database_url
) -> None:
    """Device ids and service usernames share the broker's namespace: registering a device
    called like the gateway must not replace (or cut off) the gateway's identity."""
    port = dynsec_mosquitto.port
    await admin(dynsec_mosquitto).bootstrap(*GATEWAY)
    await seed(database_url, devices={"gps-0": "t-gps"})
    installer = auth("kommun-a", Role.TENANT_ADMIN)
    async with (
        api(port, database_url) as http,
        running_gateway(settings(port, database_url)) as gateway,
    ):
        for name in (GATEWAY[0], DYNSEC_ADMIN[0]):
            r = await http.post("/api/v1/devices", headers=installer,
                                json={"id": name, "model_id": "t-scale"})  # fmt: skip
            assert r.status_code == 409, r.text
            assert "mqtt_password" not in r.text
        listed = (await http.get("/api/v1/devices", headers=installer)).json()
        assert {d["id"] for d in listed} == {"gps-0"}  # nothing half-registered
        # the gateway's identity is untouched: its session is up, and it can still log in
        assert gateway.consumer.connected.is_set()
        assert not await Probe(port, "gw-probe", *GATEWAY).refused()
        assert not await Probe(port, "admin-probe", *DYNSEC_ADMIN).refused()


async def test_broker_down_answers_503_and_registers_nothing(dynsec_mosquitto, database_url):
    await admin(dynsec_mosquitto).bootstrap(*GATEWAY)
    await seed(database_url, devices={"gps-0": "t-gps"})
    installer = auth("kommun-a", Role.TENANT_ADMIN)
    count = "select count(*) from devices where id = 'scale-9'"
    async with api(dynsec_mosquitto.port, database_url) as http:
        dynsec_mosquitto.stop()
        r = await http.post("/api/v1/devices", headers=installer,
                            json={"id": "scale-9", "model_id": "t-scale"})  # fmt: skip
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "broker identity not updated" in r.json()["detail"]
        assert await scalar(database_url, count) == 0

        dynsec_mosquitto.start()  # same port and dynsec state
        r = await http.post("/api/v1/devices", headers=installer,
                            json={"id": "scale-9", "model_id": "t-scale"})  # fmt: skip
        assert r.status_code == 201, r.text
        assert await scalar(database_url, count) == 1
        password = r.json()["mqtt_password"]
        assert not await Probe(dynsec_mosquitto.port, "scale-9", "scale-9", password).refused()

        # A duplicate is refused by the registry before the broker is asked: the live
        # identity (and its password) stay as they are.
        r = await http.post("/api/v1/devices", headers=installer,
                            json={"id": "scale-9", "model_id": "t-scale"})  # fmt: skip
        assert r.status_code == 409
        assert not await Probe(dynsec_mosquitto.port, "scale-9", "scale-9", password).refused()


async def test_without_broker_access_nothing_changes(mosquitto, database_url) -> None:
    await seed(database_url, devices={"gps-0": "t-gps"})
    app = api_app(
        settings_for(mosquitto.url, database_url, jwt_secret=SECRET),
        api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
        metrics_registry=CollectorRegistry(),
    )
    assert app.state.broker_access is None
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/api/v1/devices", headers=auth("kommun-a", Role.TENANT_ADMIN),
                            json={"id": "scale-9", "model_id": "t-scale"})  # fmt: skip
        assert r.status_code == 201
        assert r.json() == {"id": "scale-9"}
