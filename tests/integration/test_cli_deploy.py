"""The commands as a municipality's IT meets them: unsafe defaults refused, one-line errors
instead of tracebacks, ``--config`` on either side of the subcommand, service commands
that say where they listen, and ``doctor`` against real PostgreSQL and Mosquitto."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.adapters.embedded import with_user
from tests.conftest import API_PASSWORD, DYNSEC_ADMIN, WORKER_PASSWORD
from tests.services import free_port

PRODUCTION = {
    "WG_MODE": "production",
    "WG_JWT_SECRET": secrets.token_urlsafe(48),
    "WG_API_DB_PASSWORD": API_PASSWORD,
    "WG_WORKER_DB_PASSWORD": WORKER_PASSWORD,
    "WG_FHIR_ID_KEY": secrets.token_urlsafe(48),
    "WG_ACCESS_LOG__KEYS": f'{{"seal-1": "{secrets.token_hex(32)}"}}',  # hex is base64 too
    "WG_SUPERVISION__GATE_POSITIONS": "true",
}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """``welfare-gateway ARGS`` in a process of its own, with only WG_* from ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WG_")}
    base["WG_DATA_DIR"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "wg-cli-test")
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(result: Any) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_production_refuses_each_unsafe_default_by_name() -> None:
    result = cli("worker", env={"WG_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
                                "WG_MQTT_URL": "mqtt://127.0.0.1:1"})  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for setting in ("jwt_secret", "api_db_password", "worker_db_password", "fhir_id_key"):
        assert f"\n  {setting}: " in result.stderr, result.stderr
    # dev tokens beside OIDC, and a short secret
    oidc = '{"issuer":"https://idp.example","jwks_url":"https://idp.example/k","audience":"wg"}'
    result = cli("api", env={**PRODUCTION, "WG_OIDC": oidc, "WG_JWT_SECRET": "short",
                             "WG_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
                             "WG_MQTT_URL": "mqtt://127.0.0.1:1"})  # fmt: skip
    assert result.returncode == 2
    assert "dev_tokens: on beside [oidc]" in result.stderr
    assert "jwt_secret: shorter than 32 characters" in result.stderr
    # a default-secret token cannot be minted in production either
    assert cli("token", "--tenant", "t", "--role", "platform_admin").returncode == 2


def test_development_mode_keeps_the_defaults_and_says_so_once(database_url) -> None:
    result = cli("migrate", env={"WG_MODE": "development", "WG_DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "development mode" in line]
    assert len(notices) == 1 and "jwt_secret" in notices[0]
    assert "already up to date" in result.stdout


def test_config_before_or_after_the_subcommand(tmp_path: Path, database_url) -> None:
    config = tmp_path / "wg.toml"
    config.write_text(f'mode = "development"\ndatabase_url = "{database_url}"\n')
    for args in (("--config", str(config), "migrate"), ("migrate", "--config", str(config))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert "migrated" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('mode = "development"\nbatch_max_rows = "many"\n')
    result = cli("migrate", "--config", str(bad))
    assert result.returncode == 2 and f"{bad}:2" in result.stderr


def test_unreachable_database_and_broker_are_one_line(database_url, mosquitto) -> None:
    closed = free_port()
    line = one_line_error(cli("migrate", env={
        **PRODUCTION, "WG_DATABASE_URL": f"postgresql://wg@127.0.0.1:{closed}/wg"}))  # fmt: skip
    assert "PostgreSQL unreachable" in line and "connection refused" in line
    assert line.startswith("welfare-gateway migrate: ")
    line = one_line_error(cli("migrate", env={
        **PRODUCTION, "WG_DATABASE_URL": database_url.replace("/wg_test", "/nosuch")}))  # fmt: skip
    assert "has no database" in line and "CREATE DATABASE" in line
    line = one_line_error(cli("worker", env={
        **PRODUCTION, "WG_DATABASE_URL": database_url,
        "WG_MQTT_URL": f"mqtt://127.0.0.1:{closed}"}))  # fmt: skip
    assert "MQTT broker unreachable" in line and f"127.0.0.1:{closed}" in line
    line = one_line_error(cli("api", env={
        **PRODUCTION, "WG_DATABASE_URL": database_url, "WG_MQTT_URL": mosquitto.url,
        "WG_API_DATABASE_URL": "postgresql://wg_api@127.0.0.1:1/x"}))  # fmt: skip
    assert "PostgreSQL unreachable" in line and "api_database_url" in line


def test_a_missing_ca_directory_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(cli("pki", "crl", "--dir", str(tmp_path / "no-ca")))
    assert "no-ca" in line or "CA" in line


def test_worker_refuses_a_schema_behind_its_version(database_url, mosquitto) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("delete from schema_migrations where version = 9")
    line = one_line_error(cli("worker", env={
        **PRODUCTION, "WG_DATABASE_URL": database_url, "WG_MQTT_URL": mosquitto.url,
        "WG_METRICS_PORT": str(free_port())}))  # fmt: skip
    assert "not applied" in line and "welfare-gateway migrate" in line


def test_worker_says_where_it_listens_and_stops_cleanly(database_url, mosquitto) -> None:
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WG_")}, **PRODUCTION,
           "WG_DATABASE_URL": database_url, "WG_MQTT_URL": mosquitto.url,
           "WG_METRICS_PORT": str(port)}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "worker"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("welfare-gateway worker wg-gateway-1: metrics on "
                                f"http://127.0.0.1:{port}/metrics; production mode")  # fmt: skip
        assert "password" not in first and WORKER_PASSWORD not in first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the uvicorn-free worker log is JSON lines without terminal colour codes
    assert "\x1b[" not in (proc.stderr.read() if proc.stderr else "")


def test_api_on_any_free_port_says_which(database_url, mosquitto) -> None:
    """``api_port = 0``: the start line names the port chosen, and the API answers there."""
    import re

    import httpx

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WG_")}, **PRODUCTION,
           "WG_DATABASE_URL": database_url, "WG_MQTT_URL": mosquitto.url,
           "WG_API_PORT": "0"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "api"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"API and console on http://127\.0\.0\.1:(\d+)/", first)
        assert found and found.group(1) != "0", first
        url = f"http://127.0.0.1:{found.group(1)}/healthz"
        deadline = time.monotonic() + 30
        while True:  # the line comes before the server has bound: wait for it to answer
            try:
                assert httpx.get(url, timeout=5).status_code in (200, 503)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None, "no API there"
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_port_in_use_is_one_line(database_url, mosquitto) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(cli("worker", env={
            **PRODUCTION, "WG_DATABASE_URL": database_url, "WG_MQTT_URL": mosquitto.url,
            "WG_METRICS_PORT": str(port)}))  # fmt: skip
    assert f"cannot listen on 127.0.0.1:{port}" in line and "metrics_port" in line


def test_doctor_finds_what_is_wrong_and_says_the_fix(database_url, dynsec_mosquitto) -> None:
    user, password = DYNSEC_ADMIN
    gateway_password = secrets.token_urlsafe(16)
    broker_url = f"mqtt://wg-gateway:{gateway_password}@127.0.0.1:{dynsec_mosquitto.port}"
    env = {**PRODUCTION, "WG_DATABASE_URL": database_url, "WG_MQTT_URL": broker_url,
           "WG_BROKER_ACCESS__ENABLED": "true", "WG_BROKER_ACCESS__ADMIN_USERNAME": user,
           "WG_BROKER_ACCESS__ADMIN_PASSWORD": password}  # fmt: skip
    # before bootstrap: the gateway's identity does not exist
    result = cli("doctor", env=env)
    assert result.returncode == 1, result.stdout
    assert any(line.startswith("FAIL broker:") and "broker bootstrap" in line
               for line in result.stdout.splitlines()), result.stdout  # fmt: skip
    assert "OK   schema: all migrations applied" in result.stdout
    assert "OK   roles: wg_worker and wg_api least privileged" in result.stdout
    boot = cli("broker", "bootstrap",
               env={**env, "WG_BROKER_GATEWAY_PASSWORD": gateway_password})  # fmt: skip
    assert boot.returncode == 0, boot.stderr
    result = cli("doctor", env=env)
    assert result.returncode == 0, result.stdout
    assert "OK   broker acl: the gateway's role has this version's ACLs" in result.stdout
    # a worker role given DDL rights, and unsafe settings, are found
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("grant create on schema public to wg_worker")
        conn.execute("grant update on access_log to wg_worker")
    try:
        result = cli("doctor", env={**env, "WG_JWT_SECRET": "short"})
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("revoke create on schema public from wg_worker")
            conn.execute("revoke update on access_log from wg_worker")
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL role wg_worker: may create objects" in out
    assert "FAIL role wg_worker: may update the access log" in out
    assert "FAIL setting jwt_secret: shorter than 32 characters" in out
    # wrong API password for its role (pgserver trusts local sockets, so use a bad URL)
    result = cli("doctor", env={**env, "WG_API_DATABASE_URL": with_user(
        database_url.replace("/wg_test", "/nosuch"), "wg_api", API_PASSWORD)})  # fmt: skip
    assert any(line.startswith("FAIL role wg_api:") and "has no database" in line
               for line in result.stdout.splitlines()), result.stdout  # fmt: skip


def test_bad_arguments_are_refused_with_usage() -> None:
    result = cli("simulate-nonsense")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WG_CONFIG", raising=False)
