"""Mutual TLS with certificates from ``welfare-gateway pki`` on a real Mosquitto: the
certificate's CN is the dynsec identity, revocation (CRL) and disabling both cut off."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.mosquitto import MosquittoTls
from gateway.entrypoints.cli import main
from gateway.support.pki import CertificateAuthority
from tests.conftest import DYNSEC_ADMIN
from tests.integration.harness import wait_for
from tests.integration.test_broker_access import (
    ADMINISTRATIVE_ACTION,
    GATEWAY,
    NOT_AUTHORIZED,
    Probe,
    admin,
    probe,
    refused_publish,
    tls_context,
)
from tests.services import Mosquitto


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    d = tmp_path / "pki"
    assert main(["pki", "init-ca", "--dir", str(d), "--tenant", "kommun-a"]) == 0
    assert main(["pki", "server-cert", "--dir", str(d), "--host", "localhost", "127.0.0.1"]) == 0
    for device in ("gps-1", "gps-2"):
        assert main(["pki", "device-cert", "--dir", str(d), "--device", device]) == 0
    return CertificateAuthority(d)


@pytest.fixture
def broker(tmp_path: Path, ca: CertificateAuthority):
    tls = MosquittoTls(
        cafile=ca.cert_path,
        certfile=ca.dir / "server" / "localhost.crt",
        keyfile=ca.dir / "server" / "localhost.key",
        crlfile=ca.crl_path,
    )
    m = Mosquitto(tmp_path / "mosquitto-mtls", dynsec_admin=DYNSEC_ADMIN, tls=tls).start()
    try:
        yield m
    finally:
        m.stop()


def device_tls(ca: CertificateAuthority, device: str):
    d = ca.dir / "devices"
    return tls_context(ca.cert_path, d / f"{device}.crt", d / f"{device}.key")


async def test_device_certificate_is_its_identity_and_revocation_works(broker, ca) -> None:
    access = admin(broker)
    await access.bootstrap(*GATEWAY)
    await access.register_device("gps-1")  # the password is not needed with a certificate
    port = broker.tls_port
    async with probe(port, "gps-1", tls=device_tls(ca, "gps-1")) as device:
        assert device.connected
        assert await device.publish("devices/gps-1/telemetry") < 0x80
        assert await device.subscribe("devices/gps-1/commands") == 1
        assert await device.subscribe("devices/gps-2/commands") == NOT_AUTHORIZED
    # The CN decides, whatever the device claims: gps-1's certificate cannot speak as gps-2.
    async with probe(port, "gps-1", tls=device_tls(ca, "gps-1")) as device:
        assert await device.publish("devices/gps-2/telemetry") == NOT_AUTHORIZED
    # No client certificate, or one from another CA: the TLS handshake fails.
    assert await Probe(port, "gps-1", tls=tls_context(ca.cert_path)).refused()
    other = CertificateAuthority(ca.dir.parent / "other-ca")
    other.init()
    other.device_cert("gps-1")
    foreign = tls_context(ca.cert_path, other.dir / "devices/gps-1.crt",
                          other.dir / "devices/gps-1.key")  # fmt: skip
    assert await Probe(port, "gps-1", tls=foreign).refused()

    assert main(["pki", "revoke", "--dir", str(ca.dir), "--device", "gps-1"]) == 0
    # Mosquitto 2.0 reads the CRL when the listener starts and again on SIGHUP.
    assert not await Probe(port, "gps-1", tls=device_tls(ca, "gps-1")).refused()
    broker.reload()

    async def refused_now() -> bool:
        return await Probe(port, "gps-1", tls=device_tls(ca, "gps-1")).refused()

    await wait_for(refused_now, 10, "the reloaded CRL to refuse gps-1")
    # Other devices of the same CA are unaffected.
    await access.register_device("gps-2")
    assert not await Probe(port, "gps-2", tls=device_tls(ca, "gps-2")).refused()


async def test_disabling_cuts_a_certificate_device_off_at_once(broker, ca) -> None:
    access = admin(broker)
    await access.bootstrap(*GATEWAY)
    await access.register_device("gps-1")
    port = broker.tls_port
    async with probe(port, "gps-1", tls=device_tls(ca, "gps-1")) as device:
        assert device.connected
        await access.suspend_device("gps-1")

        async def kicked() -> bool:
            return device.disconnect is not None

        await wait_for(kicked, 10, "the certificate session to be disconnected")
        assert device.disconnect is not None
        assert device.disconnect.value == ADMINISTRATIVE_ACTION
    # A certificate login skips the password check, so Mosquitto lets it connect again,
    # but the suspended identity has no role left: it may do nothing.
    assert await refused_publish(port, "gps-1", None, None, "devices/gps-1/telemetry",
                                 tls=device_tls(ca, "gps-1")) == NOT_AUTHORIZED  # fmt: skip
    await access.reinstate_device("gps-1")
    async with probe(port, "gps-1", tls=device_tls(ca, "gps-1")) as device:
        assert await device.publish("devices/gps-1/telemetry") < 0x80


async def test_a_certificate_cannot_take_over_another_devices_session(broker, ca) -> None:
    access = admin(broker)
    await access.bootstrap(*GATEWAY)
    pw1 = await access.register_device("gps-1")
    await access.register_device("gps-2")
    async with probe(broker.port, "gps-1", "gps-1", pw1) as victim:
        assert victim.connected
        # gps-2's certificate asks for client id "gps-1": the broker uses its CN instead.
        async with probe(broker.tls_port, "gps-1", tls=device_tls(ca, "gps-2")) as attacker:
            assert attacker.connected
            assert await attacker.publish("devices/gps-2/telemetry") < 0x80
        assert victim.connected
        assert await victim.publish("devices/gps-1/telemetry") < 0x80
    # use_username_as_clientid is the TLS listener's alone: on the password listener the
    # gateway keeps two sessions (ingest, alarms) under one identity.
    async with (
        probe(broker.port, "wg-test-gateway", *GATEWAY) as ingest,
        probe(broker.port, "wg-test-gateway-alarms", *GATEWAY) as alarms,
    ):
        assert await alarms.publish("tenants/kommun-a/alarms") < 0x80
        assert ingest.connected and alarms.connected
