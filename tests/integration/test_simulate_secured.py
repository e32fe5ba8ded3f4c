"""``welfare-gateway simulate`` against secured real Mosquitto brokers: per-device
credentials from a file, one login in the URL, mutual TLS with ``welfare-gateway pki``
certificates, ``--register`` through the real API, and failing loudly (exit 1, one line
on stderr, no traceback) when the broker does not take the fleet.

The command runs as a subprocess, as an operator runs it; every wait is for a condition
(messages seen, rows stored, the process ended), bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import orjson
import pytest

from api.auth import Role
from bench.mosquitto import MosquittoTls
from device_sims.credentials import Credential, load_credentials, save_credentials
from gateway.entrypoints.cli import main
from gateway.support.pki import CertificateAuthority
from tests.conftest import DYNSEC_ADMIN
from tests.integration.harness import password_broker, running_gateway, scalar, wait_for
from tests.integration.test_broker_access import GATEWAY, admin
from tests.integration.test_broker_access_api import api, auth, settings
from tests.services import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0

SCENARIO = """
name = "secured"
id_prefix = "sec"
seed = 4

[[devices]]
type = "scale"
count = 2
heartbeat_interval_s = 1
telemetry_interval = "1s"

[[devices]]
type = "blood_pressure_monitor"
count = 1
heartbeat_interval_s = 1
telemetry_interval = "1s"
"""
DEVICES = ("sec-scale-00001", "sec-scale-00002", "sec-bp-00001")


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "secured.toml"
    path.write_text(SCENARIO)
    return path


# --- the command as a process ------------------------------------------------------------


class Simulation:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.code: int | None = None
        self.out = ""
        self.err = ""

    async def finish(self, timeout: float = WAIT_S) -> Simulation:
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"simulate did not end within {timeout}s") from None
        self.code, self.out, self.err = self.proc.returncode, out.decode(), err.decode()
        return self

    async def stop(self) -> Simulation:
        """SIGTERM: the fleet sends its offline statuses and the command exits."""
        self.proc.send_signal(signal.SIGTERM)
        return await self.finish()


async def start(*args: str) -> Simulation:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "simulate", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=os.environ.copy(),
    )  # fmt: skip
    return Simulation(proc)


async def simulate(*args: str) -> Simulation:
    return await (await start(*args)).finish()


def assert_one_line_failure(run: Simulation, *words: str) -> None:
    assert run.code == 1, (run.code, run.out, run.err)
    assert "Traceback" not in run.err and "Traceback" not in run.out
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    for word in words:
        assert word in lines[0], (word, lines[0])


# --- what reaches the broker -------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.types: dict[str, set[str]] = {}

    def add(self, topic: str, payload: bytes) -> None:
        device = topic.split("/")[1]
        with contextlib.suppress(ValueError):
            self.types.setdefault(device, set()).add(orjson.loads(payload)["type"])

    async def each_sent(self, devices: tuple[str, ...], *types: str) -> None:
        async def all_seen() -> bool:
            return all(set(types) <= self.types.get(d, set()) for d in devices)

        await wait_for(all_seen, WAIT_S, f"{types} from each of {devices}")


@contextlib.asynccontextmanager
async def watching(port: int) -> AsyncIterator[Seen]:
    """devices/# as the gateway's broker identity sees it (the broker's ACLs apply)."""
    seen = Seen()
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="wg-test-watcher", username=GATEWAY[0], password=GATEWAY[1]
    ) as client:
        await client.subscribe("devices/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                if isinstance(message.payload, bytes):
                    seen.add(str(message.topic), message.payload)

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def device_identities(broker: Mosquitto) -> dict[str, Credential]:
    """The gateway's identity, and one broker identity per device, as the API makes them."""
    access = admin(broker)
    await access.bootstrap(*GATEWAY)
    return {d: Credential(d, await access.register_device(d)) for d in DEVICES}


# --- per-device credentials --------------------------------------------------------------


async def test_each_device_logs_in_with_its_own_credentials_from_the_file(
    dynsec_mosquitto: Mosquitto, scenario: Path, tmp_path: Path
) -> None:
    creds = tmp_path / "credentials.json"
    save_credentials(creds, await device_identities(dynsec_mosquitto))
    assert creds.stat().st_mode & 0o777 == 0o600
    port = dynsec_mosquitto.port
    async with watching(port) as seen:
        run = await start("--scenario", str(scenario), "--broker", f"mqtt://127.0.0.1:{port}",
                          "--credentials", str(creds))  # fmt: skip
        await seen.each_sent(DEVICES, "status", "heartbeat")
        await seen.each_sent(DEVICES[:2], "weight")
        await seen.each_sent(DEVICES[2:], "blood_pressure")
        await run.stop()
    assert run.code == 0, run.err
    assert "3 devices (3 connected)" in run.out
    assert run.err == ""


async def test_a_wrong_password_fails_loudly_with_one_line(
    dynsec_mosquitto: Mosquitto, scenario: Path, tmp_path: Path
) -> None:
    identities = await device_identities(dynsec_mosquitto)
    creds = tmp_path / "credentials.json"
    save_credentials(creds, {d: Credential(d, "not-the-password") for d in identities})
    url = f"mqtt://127.0.0.1:{dynsec_mosquitto.port}"
    run = await simulate("--scenario", str(scenario), "--broker", url, "--credentials",
                         str(creds), "--connect-timeout", "3")  # fmt: skip
    assert_one_line_failure(run, "no device connected", url, "not authorised", "fix:",
                            "--credentials")  # fmt: skip
    assert "not-the-password" not in run.err

    # Some in, some refused: the summary says how many and why, and the exit code is 1.
    save_credentials(creds, {**identities, DEVICES[2]: Credential(DEVICES[2], "wrong")})
    run = await simulate("--scenario", str(scenario), "--broker", url, "--credentials",
                         str(creds), "--duration", "2")  # fmt: skip
    assert run.code == 1, (run.out, run.err)
    assert "3 devices (2 connected)" in run.out
    assert "1 never connected: 1 not authorised" in run.out
    assert_one_line_failure(run, "1 of 3 devices could not connect", url, "not authorised")


async def test_nothing_listening_or_a_plain_client_on_a_tls_port_fail_loudly(
    mosquitto: Mosquitto, scenario: Path
) -> None:
    port = mosquitto.port
    mosquitto.stop()
    run = await simulate("--scenario", str(scenario), "--broker", f"mqtt://127.0.0.1:{port}",
                         "--connect-timeout", "2")  # fmt: skip
    assert_one_line_failure(run, "connection refused", f"mqtt://127.0.0.1:{port}", "fix:")
    # A usage error is said before anything is tried: exit 2, one line.
    run = await simulate("--scenario", str(scenario), "--broker", f"mqtt://127.0.0.1:{port}",
                         "--cert-dir", str(scenario.parent))  # fmt: skip
    assert run.code == 2 and "mqtts://" in run.err and len(run.err.strip().splitlines()) == 1


async def test_one_login_in_the_broker_url_serves_every_device(
    tmp_path: Path, scenario: Path
) -> None:
    with password_broker(tmp_path, "fleet", "fleet-pw") as broker:
        url = f"mqtt://fleet:fleet-pw@127.0.0.1:{broker.port}"
        run = await simulate("--scenario", str(scenario), "--broker", url, "--duration", "1.5")
        assert run.code == 0, run.err
        assert "3 devices (3 connected)" in run.out
        bad = f"mqtt://fleet:wrong@127.0.0.1:{broker.port}"
        run = await simulate("--scenario", str(scenario), "--broker", bad,
                             "--connect-timeout", "2")  # fmt: skip
        assert_one_line_failure(run, "not authorised", f"mqtt://127.0.0.1:{broker.port}")
        assert "wrong" not in run.err  # the URL is named without its password


# --- mutual TLS with welfare-gateway pki certificates ------------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    d = tmp_path / "pki"
    assert main(["pki", "init-ca", "--dir", str(d), "--tenant", "kommun-a"]) == 0
    assert main(["pki", "server-cert", "--dir", str(d), "--host", "localhost", "127.0.0.1"]) == 0
    for device in DEVICES:
        assert main(["pki", "device-cert", "--dir", str(d), "--device", device]) == 0
    return CertificateAuthority(d)


@pytest.fixture
def tls_broker(tmp_path: Path, ca: CertificateAuthority):
    tls = MosquittoTls(
        cafile=ca.cert_path,
        certfile=ca.dir / "server" / "localhost.crt",
        keyfile=ca.dir / "server" / "localhost.key",
        crlfile=ca.crl_path,
    )
    broker = Mosquitto(tmp_path / "mosquitto-mtls", dynsec_admin=DYNSEC_ADMIN, tls=tls).start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_mutual_tls_with_each_devices_certificate(
    tls_broker: Mosquitto, ca: CertificateAuthority, scenario: Path
) -> None:
    await device_identities(tls_broker)  # the certificate's CN is the identity; no password
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}"
    async with watching(tls_broker.port) as seen:
        run = await start("--scenario", str(scenario), "--broker", url,
                          "--ca-file", str(ca.cert_path), "--cert-dir", str(ca.dir))  # fmt: skip
        await seen.each_sent(DEVICES, "status", "heartbeat")
        await run.stop()
    assert run.code == 0, run.err
    assert "3 devices (3 connected)" in run.out

    # No client certificate: the broker refuses the TLS session; said in one line.
    run = await simulate("--scenario", str(scenario), "--broker", url,
                         "--ca-file", str(ca.cert_path), "--connect-timeout", "3")  # fmt: skip
    assert_one_line_failure(run, "TLS error", url, "certificate required",
                            "wants a client certificate", "--cert-dir")  # fmt: skip
    # The server's certificate is not trusted without its CA.
    devices = str(ca.dir / "devices")
    run = await simulate("--scenario", str(scenario), "--broker", url,
                         "--cert-dir", devices, "--connect-timeout", "3")  # fmt: skip
    assert_one_line_failure(run, "TLS error", "the broker's certificate", "--ca-file")
    # A plain client on the TLS port, a TLS client on the plain port.
    plain = f"mqtt://127.0.0.1:{tls_broker.tls_port}"
    run = await simulate("--scenario", str(scenario), "--broker", plain,
                         "--connect-timeout", "3")  # fmt: skip
    assert_one_line_failure(run, "closed by the broker", "a TLS port needs mqtts://")
    run = await simulate("--scenario", str(scenario), "--broker",
                         f"mqtts://127.0.0.1:{tls_broker.port}", "--ca-file", str(ca.cert_path),
                         "--connect-timeout", "3")  # fmt: skip
    assert_one_line_failure(run, "A plain port needs mqtt://")


def test_wrong_files_are_usage_errors_before_anything_is_tried(
    ca: CertificateAuthority, scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str) -> tuple[int, str]:
        code = main(["simulate", "--scenario", str(scenario), *args])
        return code, capsys.readouterr().err

    assert main(["simulate", "--scenario", str(scenario), "--list-devices"]) == 0
    assert capsys.readouterr().out.split() == list(DEVICES)
    broken = tmp_path / "broken.json"
    broken.write_text('{"sec-scale-00001": {"username": "x"}}')
    code, err = run("--credentials", str(broken))
    assert code == 2 and "sec-scale-00001" in err and len(err.strip().splitlines()) == 1
    code, err = run("--credentials", str(tmp_path / "missing.json"))
    assert code == 2 and "no such file" in err
    lonely = tmp_path / "certs"
    lonely.mkdir()
    code, err = run("--broker", "mqtts://127.0.0.1:1", "--cert-dir", str(lonely))
    assert code == 2 and "pki device-cert" in err and "sec-scale-00001" in err
    code, err = run("--broker", "127.0.0.1:1883")
    assert code == 2 and "mqtt://" in err
    code, err = run("--register", "--api", "http://127.0.0.1:1", "--token", "t")
    assert code == 2 and "--credentials" in err


# --- --register through the real API -----------------------------------------------------


async def test_register_through_the_api_then_run_and_again_idempotently(
    dynsec_mosquitto: Mosquitto, database_url: str, scenario: Path, tmp_path: Path
) -> None:
    port = dynsec_mosquitto.port
    await admin(dynsec_mosquitto).bootstrap(*GATEWAY)
    creds = tmp_path / "fleet-credentials.json"
    broker = f"mqtt://127.0.0.1:{port}"
    async with (
        api(port, database_url) as http,
        running_gateway(settings(port, database_url)),
    ):
        r = await http.post("/api/v1/tenants", headers=auth("platform", Role.PLATFORM_ADMIN),
                            json={"id": "kommun-sim", "name": "Sim", "kind": "municipality",
                                  "org_number": "212000-0099"})  # fmt: skip
        assert r.status_code == 201, r.text
        admin_token = auth("kommun-sim", Role.TENANT_ADMIN)["Authorization"].split()[1]
        command = ("--scenario", str(scenario), "--broker", broker, "--register",
                   "--api", str(http.base_url), "--token", admin_token,
                   "--credentials", str(creds))  # fmt: skip

        async def stored_from_each_since(since: datetime) -> bool:
            query = "select count(distinct device_id) from readings where received_at > %s"
            return await scalar(database_url, query, (since,)) == len(DEVICES)

        first = datetime.now(UTC)
        run = await start(*command)
        await wait_for(lambda: stored_from_each_since(first), WAIT_S, "readings of each device")
        await run.stop()
        assert run.code == 0, run.err
        assert "registered 3 devices (0 already registered), assigned 3" in run.out
        assert "broker credentials for 3" in run.out and "3 devices (3 connected)" in run.out
        saved = load_credentials(creds)
        assert sorted(saved) == sorted(DEVICES)
        assert all(c.username == d for d, c in saved.items())
        assert creds.stat().st_mode & 0o777 == 0o600
        listed = (await http.get("/api/v1/devices",
                                 headers=auth("kommun-sim", Role.TENANT_ADMIN))).json()  # fmt: skip
        assert sorted(d["id"] for d in listed) == sorted(DEVICES)
        assert all(d["status"] == "active" and d["person_id"] for d in listed)

        # Again: nothing registered twice, the same passwords still let the devices in.
        second = datetime.now(UTC)
        run = await start(*command)
        await wait_for(lambda: stored_from_each_since(second), WAIT_S, "readings again")
        await run.stop()
        assert run.code == 0, run.err
        assert "registered 0 devices (3 already registered), assigned 0" in run.out
        assert load_credentials(creds) == saved
        assert await scalar(database_url, "select count(*) from persons") == len(DEVICES)
        assert json.loads(creds.read_text()).keys() == set(DEVICES)

    # The API gone: registration fails in one line, nothing is run.
    run = await simulate(*command)
    assert_one_line_failure(run, "registering the devices failed", "cannot reach the API")
