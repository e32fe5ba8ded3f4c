"""Security review #17.6: the access log rewritten by the database owner.

The chain is an unkeyed SHA-256, so the owner could edit a row, recompute every later hash
and `access-log verify` said "intact" (the first test, run before the fix, showed it).
Now workers seal the head at an interval with an HMAC under a key the database never sees,
and keep each seal outside the database too; verify checks them. Real PostgreSQL, real
roles (wg_worker seals, wg_api appends), a real worker for the interval."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from fastapi import FastAPI, Request
from pydantic import SecretStr

from gateway.adapters.embedded import with_user
from gateway.adapters.postgres.access_log import verify
from gateway.adapters.postgres.access_log_seal import (
    AccessLogSealer,
    Seal,
    SealKeys,
    read_anchors,
    seal_once,
)
from gateway.config.settings import AccessLogSettings, Settings, SettingsError, load_settings
from gateway.config.unsafe_settings import findings
from gateway.support.logs import JsonFormatter
from tests.conftest import API_PASSWORD, WORKER_PASSWORD
from tests.integration.harness import running_gateway, scalar, serving, settings_for, wait_for


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


K1, K2 = new_key(), new_key()


def keys(**by_id: str) -> SealKeys:
    settings = AccessLogSettings(keys={k: SecretStr(v) for k, v in by_id.items()})
    found = SealKeys.from_settings(settings)
    assert found is not None
    return found


def append(url: str, n: int) -> None:
    """Reads logged as the API logs them: through append_access_log, as wg_api."""
    with psycopg.connect(with_user(url, "wg_api", API_PASSWORD), autocommit=True) as conn:
        for i in range(n):
            conn.execute(
                "select append_access_log(%s, null, 'operator', 'kommun-a', 'kommun-a', null,"
                " array['weight'], null, 'allowed', 'by role', 'GET /x')",
                (f"staff-{i}",),
            )


def seal(url: str, with_keys: SealKeys) -> Seal:
    """One seal as the workers make it (role wg_worker)."""
    with psycopg.connect(with_user(url, "wg_worker", WORKER_PASSWORD), autocommit=True) as conn:
        made = seal_once(conn, with_keys)
    assert made is not None
    return made


def rewrite_as_owner(url: str, row_id: int) -> None:
    """The attack: edit one row and recompute every later hash with plain SHA-256, as
    append_access_log does (the owner owns the table: no privilege stops it)."""
    with psycopg.connect(url) as conn:
        conn.execute("update access_log set reason = 'nothing to see' where id = %s", (row_id,))
        rows = conn.execute(
            "select id, access_log_row_bytes(a) from access_log a order by id"
        ).fetchall()
        prev = b""
        for rid, row_bytes in rows:
            digest = hashlib.sha256(prev + bytes(row_bytes)).digest()
            if rid >= row_id:
                conn.execute(
                    "update access_log set prev_hash = %s, hash = %s where id = %s",
                    (prev, digest, rid),
                )
            prev = digest


def cli_verify(url: str, *args: str, **env_keys: str) -> subprocess.CompletedProcess[str]:
    """`welfare-gateway access-log verify` as an auditor runs it (the owner's URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WG_")}
    env.update({"WG_MODE": "development", "WG_DATABASE_URL": url,
                "WG_MQTT_URL": "mqtt://127.0.0.1:1"})  # fmt: skip
    if env_keys:
        env["WG_ACCESS_LOG__KEYS"] = orjson.dumps(env_keys).decode()
    return subprocess.run(
        [sys.executable, "-m", "gateway", "access-log", "verify", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_owner_rewrites_row_2_and_verify_notices(database_url) -> None:
    # Before the fix there was no seal, and after this attack the command printed
    # "access log intact: 5 rows, hash chain verified" and exited 0.
    append(database_url, 5)
    made = seal(database_url, keys(k1=K1))
    assert (made.last_id, made.row_count, made.key_id) == (5, 5, "k1")
    before = cli_verify(database_url, k1=K1)
    assert before.returncode == 0, before.stdout + before.stderr
    assert "access log intact: 5 rows" in before.stdout and "match it up to row 5" in before.stdout

    rewrite_as_owner(database_url, 2)

    result = verify(database_url, keys(k1=K1))
    assert not result.ok and result.tampered and result.first_bad_id == 5
    assert "no longer matches the seal #1" in (result.problem or "")
    assert "a row in 1..5 was changed" in (result.problem or "")
    after = cli_verify(database_url, k1=K1)
    assert after.returncode == 1
    assert after.stdout.startswith("access log TAMPERED at row 5: the log up to row 5 no longer")
    # without the key nothing can be said: not "intact"
    blind = cli_verify(database_url)
    assert blind.returncode == 1 and "NOT VERIFIED" in blind.stdout, blind.stdout


def test_rows_after_the_last_seal_are_only_as_safe_as_the_database(database_url) -> None:
    """The documented limit: a rewrite of rows sealed by no seal yet is not found."""
    append(database_url, 3)
    seal(database_url, keys(k1=K1))
    append(database_url, 2)
    rewrite_as_owner(database_url, 5)
    result = verify(database_url, keys(k1=K1))
    assert result.ok and result.unsealed_rows == 2
    # the next seal covers them: an edit of row 4 after it is found
    seal(database_url, keys(k1=K1))
    rewrite_as_owner(database_url, 4)
    assert verify(database_url, keys(k1=K1)).first_bad_id == 5


def test_the_external_anchor_finds_a_rewrite_even_with_the_seals_deleted(
    database_url, tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    settings = AccessLogSettings(keys={"k1": SecretStr(K1)}, anchor_file=anchors)
    sealer = AccessLogSealer.from_settings(
        settings, with_user(database_url, "wg_worker", WORKER_PASSWORD)
    )
    assert sealer is not None
    append(database_url, 4)
    first = asyncio.run(sealer.seal())
    assert first is not None and read_anchors(anchors) == [first]
    assert verify(database_url, keys(k1=K1), read_anchors(anchors)).ok

    # the owner covers the tracks in the database: the rewrite, and the seals gone
    rewrite_as_owner(database_url, 2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("delete from access_log_seals")
    assert verify(database_url, keys(k1=K1)).ok  # the database alone no longer tells
    result = verify(database_url, keys(k1=K1), read_anchors(anchors))
    assert not result.ok and result.first_bad_id == 4
    assert f"anchor {anchors}:1" in (result.problem or "")
    cli = cli_verify(database_url, "--anchors", str(anchors), k1=K1)
    assert cli.returncode == 1 and cli.stdout.startswith("access log TAMPERED at row 4")

    # a seal rewritten to the new head (without the key) is a forgery
    with psycopg.connect(database_url, autocommit=True) as conn:
        head = conn.execute("select hash from access_log where id = 4").fetchone()
        assert head is not None
        conn.execute(
            "insert into access_log_seals (sealed_at, last_id, row_count, head_hash, key_id,"
            " mac) values (now(), 4, 4, %s, 'k1', %s)",
            (head[0], hashlib.sha256(b"no key").digest()),
        )
    result = verify(database_url, keys(k1=K1))
    assert not result.ok and result.tampered and "forged or altered" in (result.problem or "")


def test_removed_seals_or_sealed_rows_are_found(database_url, tmp_path: Path) -> None:
    append(database_url, 5)
    made = seal(database_url, keys(k1=K1))
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_bytes(orjson.dumps(made.to_json()) + b"\n")
    # the seals removed while the log is as it was: the anchor says so
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("delete from access_log_seals")
    result = verify(database_url, keys(k1=K1), read_anchors(anchors))
    assert not result.ok and "missing from access_log_seals" in (result.problem or "")
    # the newest sealed rows removed (the chain alone cannot tell)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("delete from access_log where id > 3")
    assert verify(database_url).ok
    result = verify(database_url, keys(k1=K1), read_anchors(anchors))
    assert result.first_bad_id == 5 and "rows were removed" in (result.problem or "")


def test_key_rotation(database_url) -> None:
    append(database_url, 2)
    seal(database_url, keys(k1=K1))
    append(database_url, 2)
    rotated = SealKeys.from_settings(
        AccessLogSettings(keys={"k1": SecretStr(K1), "k2": SecretStr(K2)}, active_key="k2")
    )
    assert rotated is not None and rotated.active == "k2"
    assert seal(database_url, rotated).key_id == "k2"
    result = verify(database_url, rotated)
    assert result.ok and result.seals == 2 and result.last_sealed is not None
    assert result.last_sealed.key_id == "k2"
    # the retired key removed: its seals cannot be checked (said, not "intact")
    result = verify(database_url, keys(k2=K2))
    assert (
        not result.ok and not result.tampered and "'k1' is not configured" in (result.problem or "")
    )
    # a key id with another key behind it: the seals do not verify
    result = verify(database_url, keys(k1=new_key(), k2=K2))
    assert not result.ok and result.tampered and "forged or altered" in (result.problem or "")


@pytest.mark.parametrize("role", ["wg_worker", "wg_api"])
def test_the_service_roles_cannot_change_the_log_or_its_seals(database_url, role: str) -> None:
    append(database_url, 2)
    seal(database_url, keys(k1=K1))
    password = WORKER_PASSWORD if role == "wg_worker" else API_PASSWORD
    refused = [
        "update access_log set reason = 'edited'",
        "delete from access_log",
        "truncate access_log",
        "insert into access_log (at, actor, actor_role, actor_tenant, categories, outcome,"
        " reason, request, prev_hash, hash)"
        " values (now(), 'x', 'x', 'x', '{}', 'allowed', 'x', 'x', '', '')",
        "update access_log_seals set head_hash = '\\x00'",
        "delete from access_log_seals",
        "truncate access_log_seals",
    ]
    if role == "wg_worker":
        refused.append("select reason from access_log")  # it seals the head only
    else:
        refused += [
            "select * from access_log_seals",
            "insert into access_log_seals (sealed_at, last_id, row_count, head_hash, key_id,"
            " mac) values (now(), 1, 1, '\\x00', 'k1', '\\x00')",
            "select * from access_log_head()",
        ]
    with psycopg.connect(with_user(database_url, role, password)) as conn:
        conn.execute("select set_config('wg.tenant_id', 'kommun-a', false)")
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    assert verify(database_url, keys(k1=K1)).ok


async def test_a_running_worker_seals_at_its_interval(
    database_url, mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[dict[str, Any]] = []
    receiver = FastAPI()

    @receiver.post("/anchors")
    async def take(request: Request) -> dict[str, str]:
        received.append(orjson.loads(await request.body()))
        return {}

    caplog.set_level(logging.INFO, logger="gateway.adapters.postgres.access_log_seal")
    anchors = tmp_path / "anchors.jsonl"
    sealed = "select coalesce(max(last_id), 0) from access_log_seals"

    async def sealed_up_to(n: int) -> bool:
        return bool(await scalar(database_url, sealed) == n)

    async with serving(receiver) as base:
        settings = settings_for(mosquitto.url, database_url, access_log={
            "keys": {"k1": K1}, "seal_interval_s": 0.3, "anchor_file": str(anchors),
            "anchor_webhook": f"{base}/anchors"})  # fmt: skip
        async with running_gateway(settings):
            append(database_url, 3)
            await wait_for(lambda: sealed_up_to(3), what="a seal of rows 1-3")
            append(database_url, 2)
            await wait_for(lambda: sealed_up_to(5), what="a seal of rows 4-5")
            await wait_for(lambda: _true(len(received) == 2), what="the webhook's anchors")

    assert await scalar(database_url, "select count(*) from access_log_seals") == 2
    from_file = read_anchors(anchors)
    assert [s.last_id for s in from_file] == [3, 5]
    assert [Seal.from_json(body) for body in received] == from_file
    # the log lines are anchors too (a JSON log handed to verify)
    records = [r for r in caplog.records if r.getMessage() == "access log sealed"]
    log_file = tmp_path / "journal.jsonl"
    log_file.write_text("\n".join(JsonFormatter().format(r) for r in records) + "\nnoise\n")
    assert read_anchors(log_file) == from_file
    result = verify(database_url, keys(k1=K1), from_file)
    assert result.ok and result.anchors == 2 and result.unsealed_rows == 0


async def _true(value: bool) -> bool:
    return value


def test_settings_of_the_seal_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WG_ACCESS_LOG__KEYS", orjson.dumps({"seal-1": K1}).decode())
    monkeypatch.setenv("WG_ACCESS_LOG__ACTIVE_KEY", "seal-1")
    loaded = load_settings()
    assert loaded.access_log.keys["seal-1"].get_secret_value() == K1
    assert "access_log.keys" not in {f.setting for f in findings(loaded)}
    monkeypatch.delenv("WG_ACCESS_LOG__ACTIVE_KEY")
    for bad, says in (
        ({"seal-1": base64.b64encode(b"short").decode()}, "at least 32 bytes"),
        ({"seal-1": "not base64!"}, "must be base64"),
        ({"bad id": K1}, "key id"),
    ):
        monkeypatch.setenv("WG_ACCESS_LOG__KEYS", orjson.dumps(bad).decode())
        with pytest.raises(SettingsError, match=says):
            load_settings()
    monkeypatch.setenv("WG_ACCESS_LOG__KEYS", orjson.dumps({"seal-1": K1}).decode())
    monkeypatch.setenv("WG_ACCESS_LOG__ACTIVE_KEY", "seal-2")
    with pytest.raises(SettingsError, match=r"not among access_log\.keys"):
        load_settings()
    # production without a seal key is unsafe, by name
    monkeypatch.delenv("WG_ACCESS_LOG__KEYS")
    monkeypatch.delenv("WG_ACCESS_LOG__ACTIVE_KEY")
    unsealed = Settings(mode="production")
    assert "access_log.keys" in {f.setting for f in findings(unsealed)}


def test_verify_fails_when_sealing_is_configured_but_no_seal_is_left(database_url) -> None:
    """Review: an owner who deleted every seal (and no anchor file was given) got exit 0
    with 'NOT SEALED'; with keys configured, no seal over existing rows is a failure."""
    import subprocess
    import sys

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("select append_access_log('a', null, 'operator', 'kommun-a', 'kommun-a',"
                     " null, array['weight'], 'care', 'allowed', 'test', 'GET /x')")  # fmt: skip
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("WG_")}
    env |= {"WG_MODE": "development", "WG_DATABASE_URL": database_url,
            "WG_ACCESS_LOG__KEYS": '{"seal-1": "' + "A" * 43 + '="}'}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "gateway", "access-log", "verify"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT SEALED" in done.stdout
