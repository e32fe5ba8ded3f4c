"""Per-device broker identities on a real Mosquitto running the dynamic security plugin.

The broker decides, so the tests read its answers: CONNACK, PUBACK and SUBACK reason codes
(MQTT v5) and DISCONNECT reasons, through ``Probe`` (paho directly: aiomqtt does not
expose PUBACK reason codes), and what a subscriber actually receives.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.adapters.mosquitto import dynsec
from gateway.adapters.mosquitto.client import (
    AdminEndpoint,
    BrokerRefused,
    BrokerUnavailable,
    DynsecClient,
)
from gateway.adapters.mosquitto.service import BrokerAccess
from tests.conftest import DYNSEC_ADMIN
from tests.integration.harness import wait_for
from tests.services import Mosquitto

NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86
ADMINISTRATIVE_ACTION = 0x98
GATEWAY = ("wg-gateway", "test-gateway-password-0123456789")


class Probe:
    """One MQTT v5 client whose broker answers are recorded (callbacks run on paho's
    thread; tests wait on them with ``wait_for``). No automatic reconnects."""

    def __init__(
        self,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.connack: ReasonCode | None = None
        self.disconnect: ReasonCode | None = None
        self.failed: str | None = None
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[tuple[str, bytes]] = []
        c = self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if username is not None:
            c.username_pw_set(username, password)
        if tls is not None:
            c.tls_set_context(tls)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc.value)
        c.on_subscribe = lambda _c, _u, mid, rcs, _p: self.subacks.__setitem__(
            mid, [r.value for r in rcs]
        )
        c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connack = rc

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.disconnect = rc

    @property
    def connected(self) -> bool:
        return self.connack is not None and self.connack.value == 0 and self.disconnect is None

    async def open(self) -> Probe:
        """Connect and wait for the broker's verdict (CONNACK, or the connection dropped)."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            self.failed = type(exc).__name__
            return self
        self.client.loop_start()

        async def answered() -> bool:
            return self.connack is not None or self.disconnect is not None

        await wait_for(answered, 10, "CONNACK or disconnect")
        return self

    async def refused(self) -> bool:
        await self.open()
        self.close()
        return not (self.connack is not None and self.connack.value == 0)

    async def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """PUBACK reason code (QoS 1): < 0x80 accepted, 0x87 not authorized."""
        info = self.client.publish(topic, payload, qos=1)

        async def acked() -> bool:
            return info.mid in self.pubacks or self.disconnect is not None

        await wait_for(acked, 10, f"PUBACK for {topic}")
        return self.pubacks.get(info.mid, -1)

    async def subscribe(self, topic: str) -> int:
        """SUBACK reason code: 0..2 granted QoS, 0x87 not authorized."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None

        async def acked() -> bool:
            return mid in self.subacks or self.disconnect is not None

        await wait_for(acked, 10, f"SUBACK for {topic}")
        return self.subacks.get(mid, [-1])[0]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@contextlib.asynccontextmanager
async def probe(port: int, client_id: str, *args: Any, **kwargs: Any) -> AsyncIterator[Probe]:
    p = Probe(port, client_id, *args, **kwargs)
    try:
        yield await p.open()
    finally:
        p.close()


async def refused_publish(
    port: int, client_id: str, user: str | None, pw: str | None, topic: str,
    tls: ssl.SSLContext | None = None,
) -> int:  # fmt: skip
    """PUBACK reason code of one publish on a fresh session. Mosquitto 2.0 answers a
    refused QoS 1 publish with PUBACK 0x87 and then closes the connection: asserted."""
    async with probe(port, client_id, user, pw, tls=tls) as p:
        assert p.connected
        code = await p.publish(topic, b"spoof")

        async def dropped() -> bool:
            return p.disconnect is not None

        if code == NOT_AUTHORIZED:
            await wait_for(dropped, 10, "the broker to close the offending session")
        return code


def admin(broker: Mosquitto, password: str = DYNSEC_ADMIN[1]) -> BrokerAccess:
    endpoint = AdminEndpoint("127.0.0.1", broker.port, DYNSEC_ADMIN[0], password)
    return BrokerAccess(DynsecClient(endpoint, timeout_s=5))


@pytest.fixture
async def access(dynsec_mosquitto: Mosquitto) -> BrokerAccess:
    a = admin(dynsec_mosquitto)
    await a.bootstrap(*GATEWAY)
    return a


async def test_device_publishes_only_as_itself(dynsec_mosquitto, access) -> None:
    port = dynsec_mosquitto.port
    pw1 = await access.register_device("gps-1")
    await access.register_device("gps-2")
    async with probe(port, "wg-test-gateway", *GATEWAY) as gateway:
        assert await gateway.subscribe("devices/#") == 1
        async with probe(port, "gps-1", "gps-1", pw1) as device:
            assert await device.publish("devices/gps-1/telemetry", b"own") < 0x80
        spoofs = [f"devices/gps-2/{ch}" for ch in ("telemetry", "events", "heartbeat",
                                                   "status", "replies")]  # fmt: skip
        for topic in [*spoofs, "devices/gps-1/commands", "tenants/kommun-a/alarms", "x"]:
            assert await refused_publish(port, "gps-1", "gps-1", pw1, topic) == NOT_AUTHORIZED
        async with probe(port, "gps-1", "gps-1", pw1) as device:
            assert await device.publish("devices/gps-1/heartbeat", b"own-2") < 0x80

        async def both_own() -> bool:
            return len(gateway.messages) >= 2

        await wait_for(both_own, 10, "the device's own messages at the gateway")
        # Nothing spoofed reached the gateway (per-session order: the last own message
        # was sent after every refused one).
        assert gateway.messages == [
            ("devices/gps-1/telemetry", b"own"),
            ("devices/gps-1/heartbeat", b"own-2"),
        ]


async def test_device_subscribes_only_to_its_own_commands(dynsec_mosquitto, access) -> None:
    port = dynsec_mosquitto.port
    pw1 = await access.register_device("gps-1")
    pw2 = await access.register_device("gps-2")
    async with (
        probe(port, "gps-1", "gps-1", pw1) as one,
        probe(port, "gps-2", "gps-2", pw2) as two,
        probe(port, "wg-test-gateway", *GATEWAY) as gateway,
    ):
        assert await one.subscribe("devices/gps-1/commands") == 1
        for topic in ("devices/gps-2/commands", "devices/+/commands", "devices/#", "#",
                      "tenants/kommun-a/alarms", "devices/gps-2/telemetry"):  # fmt: skip
            assert await one.subscribe(topic) == NOT_AUTHORIZED, topic
        assert await two.subscribe("devices/gps-2/commands") == 1
        assert await gateway.publish("devices/gps-2/commands", b"for-2") < 0x80
        assert await gateway.publish("devices/gps-1/commands", b"for-1") < 0x80

        async def delivered() -> bool:
            return bool(one.messages) and bool(two.messages)

        await wait_for(delivered, 10, "commands at both devices")
        assert one.messages == [("devices/gps-1/commands", b"for-1")]
        assert two.messages == [("devices/gps-2/commands", b"for-2")]


async def test_only_gateway_processes_use_the_control_channel(dynsec_mosquitto, access) -> None:
    """A device (or an operator) must not ask a worker to acknowledge an alarm or open a
    door, nor read the workers' answers; the gateway's identity (its API processes) can."""
    port = dynsec_mosquitto.port
    pw1 = await access.register_device("gps-1")
    for topic in ("gateway/control/requests", "gateway/workers/wg-test-gateway-1"):
        assert await refused_publish(port, "gps-1", "gps-1", pw1, topic) == NOT_AUTHORIZED
    async with (
        probe(port, "gps-1", "gps-1", pw1) as device,
        probe(port, "wg-test-gateway-1-control", *GATEWAY) as worker,
        probe(port, "wg-test-gateway-1-api-0", *GATEWAY) as api,
    ):
        for topic in ("gateway/#", "gateway/control/replies/+", "gateway/workers/+"):
            assert await device.subscribe(topic) == NOT_AUTHORIZED, topic
        assert await worker.subscribe("gateway/control/requests") == 1
        for topic in ("gateway/control/replies/wg-test-gateway-1-api-0", "gateway/workers/+",
                      "tenants/+/alarms"):  # fmt: skip
            assert await api.subscribe(topic) == 1, topic
        assert await api.publish("gateway/control/requests", b"ask") < 0x80
        assert await worker.publish("tenants/kommun-a/alarms", b"event") < 0x80

        async def delivered() -> bool:
            return bool(worker.messages) and bool(api.messages)

        await wait_for(delivered, 10, "the request at the worker, the event at the API")
        assert worker.messages == [("gateway/control/requests", b"ask")]
        assert api.messages == [("tenants/kommun-a/alarms", b"event")]


async def test_bootstrap_gives_an_older_gateway_role_the_control_topics(dynsec_mosquitto) -> None:
    """A broker set up by a version before the control channel: re-running the bootstrap
    adds the new topics to the existing role (and keeps the old ones)."""
    old = [a for a in dynsec.gateway_acls() if not a.topic.startswith(("gateway/", "tenants/"))]
    client = DynsecClient(AdminEndpoint("127.0.0.1", dynsec_mosquitto.port, *DYNSEC_ADMIN), 5)
    await client.execute([dynsec.create_role(dynsec.GATEWAY_ROLE, old)])
    await admin(dynsec_mosquitto).bootstrap(*GATEWAY)
    async with probe(dynsec_mosquitto.port, "wg-test-gateway-1-api-0", *GATEWAY) as api:
        for topic in ("gateway/workers/+", "tenants/+/alarms", "devices/#"):
            assert await api.subscribe(topic) == 1, topic


async def test_unknown_or_wrong_credentials_cannot_connect(dynsec_mosquitto, access) -> None:
    port = dynsec_mosquitto.port
    pw1 = await access.register_device("gps-1")
    assert await Probe(port, "nobody", "nobody", "x" * 43).refused()
    assert await Probe(port, "anonymous").refused()  # no username at all
    assert await Probe(port, "gps-1", "gps-1", "wrong-password").refused()
    # The client id is bound to the device: its password is no use under another id.
    assert await Probe(port, "gps-2", "gps-1", pw1).refused()
    p = await Probe(port, "nobody", "nobody", "x").open()
    p.close()
    assert p.connack is not None and p.connack.value in (NOT_AUTHORIZED, BAD_CREDENTIALS)
    assert not await Probe(port, "gps-1", "gps-1", pw1).refused()


async def test_returned_device_is_cut_off_at_once(dynsec_mosquitto, access) -> None:
    port = dynsec_mosquitto.port
    password = await access.register_device("gps-1")
    async with probe(port, "gps-1", "gps-1", password) as device:
        assert device.connected
        await access.suspend_device("gps-1")

        async def kicked() -> bool:
            return device.disconnect is not None

        await wait_for(kicked, 10, "the live session to be disconnected")
        assert device.disconnect is not None
        assert device.disconnect.value == ADMINISTRATIVE_ACTION
    assert await Probe(port, "gps-1", "gps-1", password).refused()

    # Re-issued after refurbishment: the same identity works again ...
    await access.reinstate_device("gps-1")
    await access.reinstate_device("gps-1")  # idempotent (assigning an in-stock device)
    async with probe(port, "gps-1", "gps-1", password) as device:
        assert device.connected
        assert await device.publish("devices/gps-1/telemetry") < 0x80
    # ... and a retired device is gone for good.
    await access.remove_device("gps-1")
    assert await Probe(port, "gps-1", "gps-1", password).refused()


async def test_operator_reads_only_its_own_tenants_alarms(dynsec_mosquitto, access) -> None:
    port = dynsec_mosquitto.port
    op_a = await access.register_operator("kommun-a", "op-kommun-a-1")
    async with (
        probe(port, "op-a", "op-kommun-a-1", op_a) as operator,
        probe(port, "wg-test-gateway-alarms", *GATEWAY) as gateway,
    ):
        assert await operator.subscribe("tenants/kommun-a/alarms") == 1
        for topic in ("tenants/kommun-b/alarms", "tenants/+/alarms", "tenants/#", "#",
                      "devices/#"):  # fmt: skip
            assert await operator.subscribe(topic) == NOT_AUTHORIZED, topic
        assert await gateway.publish("tenants/kommun-b/alarms", b"b") < 0x80
        assert await gateway.publish("tenants/kommun-a/alarms", b"a") < 0x80

        async def got() -> bool:
            return bool(operator.messages)

        await wait_for(got, 10, "tenant A's alarm")
        assert operator.messages == [("tenants/kommun-a/alarms", b"a")]
    alarms = "tenants/kommun-a/alarms"
    assert await refused_publish(port, "op-a", "op-kommun-a-1", op_a, alarms) == NOT_AUTHORIZED


async def test_gateway_identity_holds_both_of_its_sessions(dynsec_mosquitto, access) -> None:
    """The ingest and alarm sessions share the gateway identity under their own ids."""
    port = dynsec_mosquitto.port
    async with (
        probe(port, "wg-test-gateway", *GATEWAY) as ingest,
        probe(port, "wg-test-gateway-alarms", *GATEWAY) as alarms,
    ):
        assert await ingest.subscribe("$share/wg/devices/+/telemetry") == 1
        assert await alarms.publish("tenants/kommun-a/alarms") < 0x80
        assert ingest.connected and alarms.connected
    topic = "devices/x-1/telemetry"
    assert await refused_publish(port, "wg-test-gateway", *GATEWAY, topic) == NOT_AUTHORIZED


async def test_failures_are_clear_errors(dynsec_mosquitto, access) -> None:
    await access.register_device("gps-1")
    client = DynsecClient(
        AdminEndpoint("127.0.0.1", dynsec_mosquitto.port, *DYNSEC_ADMIN), timeout_s=5
    )
    with pytest.raises(BrokerRefused, match="createClient 'gps-1': Client already exists"):
        await client.execute([dynsec.create_client("gps-1", "pw")])
    with pytest.raises(BrokerUnavailable, match="cannot reach the broker as admin"):
        await admin(dynsec_mosquitto, password="wrong").register_device("gps-2")
    # The gateway's own identity is no admin: it may not read the control topic.
    not_admin = DynsecClient(AdminEndpoint("127.0.0.1", dynsec_mosquitto.port, *GATEWAY))
    with pytest.raises(BrokerUnavailable, match="may not read"):
        await not_admin.execute([dynsec.get_client("gps-1")])
    dynsec_mosquitto.stop()
    with pytest.raises(BrokerUnavailable):
        await access.register_device("gps-3")


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_cli_bootstraps_the_gateway_and_adds_an_operator(dynsec_mosquitto) -> None:
    """`welfare-gateway broker bootstrap | operator`: the passwords are printed once and
    work; the operator reads only its tenant's alarms."""
    import asyncio
    import os
    import sys

    port = dynsec_mosquitto.port
    env = {**os.environ, "WG_BROKER_ACCESS__ENABLED": "true",
           "WG_BROKER_ACCESS__ADMIN_PASSWORD": DYNSEC_ADMIN[1],
           "WG_MQTT_URL": f"mqtt://127.0.0.1:{port}"}  # fmt: skip
    env.pop("WG_BROKER_GATEWAY_PASSWORD", None)

    async def cli(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "broker", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return out.decode().strip()

    gateway_password = await cli("bootstrap", "--username", "wg-gw-cli")
    operator_password = await cli("operator", "--tenant", "kommun-a", "--username", "op-cli")
    assert len(gateway_password) >= 43 and len(operator_password) >= 43
    async with (
        probe(port, "wg-gw-cli-1", "wg-gw-cli", gateway_password) as gateway,
        probe(port, "op-cli-1", "op-cli", operator_password) as operator,
    ):
        assert await gateway.subscribe("$share/wg/devices/#") == 1
        assert await operator.subscribe("tenants/kommun-a/alarms") == 1
        assert await operator.subscribe("tenants/kommun-b/alarms") == NOT_AUTHORIZED
