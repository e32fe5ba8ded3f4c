"""``welfare-gateway doctor``: the configuration checked against the running services.

Each check returns :class:`Finding` lines (ok, warn, fail) with the fix for anything not
ok: unsafe settings, the database (reachable, schema current, roles and their
privileges, TimescaleDB state, clock), and the broker (reachable with the gateway's
identity, and its ACLs as ``welfare-gateway broker bootstrap`` sets them). The service
commands run the reachability checks before they start (:func:`require_reachable`), so a
wrong URL or password stops them with one line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiomqtt
import psycopg

from gateway.adapters.mqtt import internals
from gateway.adapters.mqtt.connection import BrokerAddress
from gateway.config.settings import Settings
from gateway.config.unsafe_settings import findings as unsafe_findings

Status = Literal["ok", "warn", "fail"]
CONNECT_TIMEOUT_S = 5
CLOCK_WARN_S = 2.0
CLOCK_FAIL_S = 30.0


class Unreachable(Exception):
    """A service the command needs refused it; the message is one line with the fix."""


@dataclass(frozen=True)
class Finding:
    status: Status
    area: str
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> {self.fix}" if self.fix else ""
        return f"{self.status.upper():<4} {self.area}: {self.message}{fix}"


# --- explaining connection failures (pure) ------------------------------------------------


def where(url: str) -> str:
    """host:port/database of a URL, never its password."""
    parts = urlsplit(url)
    host = parts.hostname or re.sub(r".*host=([^&]+).*", r"\1", parts.query) or "local socket"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # (an unencoded character in the password): say nothing of it
        return "an unparsable URL (percent-encode / ? # @ : in its password)"
    path = parts.path.lstrip("/")
    return f"{host}{port}" + (f"/{path}" if path else "")


def explain_database(exc: BaseException, url: str, setting: str) -> str:
    """One line: what went wrong reaching PostgreSQL at ``url`` and what to change."""
    text = str(exc).strip()
    user = urlsplit(url).username or "(default user)"
    at = where(url)
    if "password authentication failed" in text or "no password supplied" in text:
        return (
            f"PostgreSQL at {at} refused role {user}: wrong or missing password (check {setting})"
        )
    match = re.search(r'role "([^"]+)" does not exist', text)
    if match:
        return (
            f"PostgreSQL at {at} has no role {match.group(1)}: run `welfare-gateway "
            f"migrate` (it creates the service roles) or create it (docs/deploy.md)"
        )
    match = re.search(r'database "([^"]+)" does not exist', text)
    if match:
        return (
            f"PostgreSQL at {at} has no database {match.group(1)}: create it "
            f"(CREATE DATABASE {match.group(1)} OWNER <owner role>) or fix {setting}"
        )
    if "pg_hba.conf" in text:
        return (
            f"PostgreSQL at {at} does not let role {user} in from here: add a "
            f"pg_hba.conf line for it (scram-sha-256) and reload"
        )
    if "Connection refused" in text or "No such file or directory" in text:
        return (
            f"PostgreSQL unreachable at {at}: connection refused (is it running? check {setting})"
        )
    if "timeout" in text.lower():
        return (
            f"PostgreSQL unreachable at {at}: no answer in {CONNECT_TIMEOUT_S} s (firewall? host?)"
        )
    if "translate host name" in text or "Name or service not known" in text:
        return f"PostgreSQL host in {setting} not found: {at}"
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"PostgreSQL at {at}: {first} (check {setting})"


def explain_broker(exc: BaseException, url: str) -> str:
    """One line: what went wrong reaching the MQTT broker and what to change."""
    address = BrokerAddress.parse(url)
    at = f"{address.host}:{address.port}"
    text = str(exc)
    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    if isinstance(exc, ssl.SSLError) or "SSL" in text or "certificate" in text:
        return (
            f"MQTT broker at {at}: TLS failed ({text.strip() or type(exc).__name__}); "
            "check mqtts:// and the broker's certificate and CA"
        )
    if code in (4, 5, 134, 135) or "not authori" in text.lower() or "user name or password" in text:
        who = address.username or "anonymous"
        return (
            f"MQTT broker at {at} refused {who}: bad user name or password, or not "
            "authorised (check mqtt_url; `welfare-gateway broker bootstrap` creates the "
            "gateway's identity)"
        )
    if "refused" in text.lower() or "Errno 111" in text:
        return (
            f"MQTT broker unreachable at {at}: connection refused "
            "(is Mosquitto running? check mqtt_url)"
        )
    if isinstance(exc, TimeoutError) or "timed out" in text.lower():
        return f"MQTT broker at {at}: no answer in {CONNECT_TIMEOUT_S} s (firewall? host? port?)"
    return f"MQTT broker at {at}: {text.strip() or type(exc).__name__} (check mqtt_url)"


# --- the checks ------------------------------------------------------------------------------


def _connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)


def check_settings(settings: Settings) -> list[Finding]:
    status: Status = "fail" if settings.mode == "production" else "warn"
    found = [
        Finding(status, f"setting {f.setting}", f.problem, f.fix) for f in unsafe_findings(settings)
    ]
    return found or [Finding("ok", "settings", f"{settings.mode} mode, no unsafe defaults")]


def check_database(settings: Settings, urls: dict[str, tuple[str, str]]) -> list[Finding]:
    """``urls``: label -> (url, setting name) for owner, worker and API roles."""
    from gateway.adapters.postgres import migrate, partitions, timescale

    out: list[Finding] = []
    owner_url, owner_setting = urls["owner"]
    try:
        conn = _connect(owner_url)
    except psycopg.Error as exc:
        return [Finding("fail", "database", explain_database(exc, owner_url, owner_setting))]
    with conn:
        version = conn.execute("show server_version").fetchone()
        out.append(
            Finding(
                "ok",
                "database",
                f"reachable at {where(owner_url)} (PostgreSQL {version[0] if version else '?'})",
            )
        )
        missing = migrate.pending(conn)
        if missing:
            out.append(
                Finding(
                    "fail",
                    "schema",
                    f"migrations {missing} not applied",
                    "run `welfare-gateway migrate` as the owner role",
                )
            )
        else:
            out.append(Finding("ok", "schema", "all migrations applied"))
        out.extend(_extension(conn, settings.timescaledb, timescale, partitions))
    with _connect(owner_url) as conn:  # the probe of an unloaded extension may close it
        out.extend(_clock(conn))
        if not missing:
            out.extend(_role_privileges(conn))
    for label, role in (("worker", "wg_worker"), ("api", "wg_api")):
        url, setting = urls[label]
        try:
            with _connect(url) as conn:
                user = conn.execute("select current_user").fetchone()
            out.append(Finding("ok", f"role {role}", f"logs in as {user[0] if user else '?'}"))
        except psycopg.Error as exc:
            out.append(Finding("fail", f"role {role}", explain_database(exc, url, setting)))
    return out


def _extension(
    conn: psycopg.Connection[Any], mode: str, timescale: Any, partitions: Any
) -> Iterator[Finding]:
    row = conn.execute(
        "select exists (select 1 from pg_available_extensions where name = 'timescaledb'),"
        " exists (select 1 from pg_extension where extname = 'timescaledb')"
    ).fetchone()
    available, installed = row if row else (False, False)
    try:
        got = conn.execute(
            "select current_setting('shared_preload_libraries') ~ 'timescaledb'"
        ).fetchone()
        preloaded: bool | None = bool(got and got[0])
    except psycopg.errors.InsufficientPrivilege:  # needs pg_read_all_settings
        preloaded = None
    if installed:
        try:
            timescale.require_loaded(conn)
        except timescale.TimescaleError as exc:
            yield Finding("fail", "timescaledb", str(exc))
            return
    hyper = timescale.hypertables(conn) if installed else set()
    tables = {t.name for t in partitions.TABLES}
    if hyper == tables:
        yield Finding("ok", "timescaledb", "time series are hypertables (compression, retention)")
        failed = conn.execute(
            "select count(*) from timescaledb_information.job_stats"
            " where hypertable_schema = current_schema() and last_run_status = 'Failed'"
        ).fetchone()
        if failed and failed[0]:
            yield Finding(
                "warn", "timescaledb jobs",
                f"{failed[0]} compression/retention job(s) failed their last run",
                "see the server log; if it says `cannot drop portal`, run the jobs from cron "
                "(docs/operations.md, TimescaleDB)",
            )  # fmt: skip
        return
    if mode == "off":
        yield Finding("ok", "timescaledb", "off: time series in native partitions")
        return
    if available and preloaded is False:
        fix = f"add {timescale.PRELOAD_LINE} to postgresql.conf, restart, run migrate"
        yield Finding(
            "fail" if mode == "require" else "warn",
            "timescaledb",
            "installed on the server but not preloaded: native partitions",
            fix,
        )
    elif available and not installed:
        yield Finding(
            "fail" if mode == "require" else "warn",
            "timescaledb",
            "available on the server but not created in this database: native partitions",
            f"with {timescale.PRELOAD_LINE} in postgresql.conf, run `welfare-gateway "
            "migrate` (the database owner may create it)",
        )
    elif not available:
        yield Finding(
            "fail" if mode == "require" else "warn",
            "timescaledb",
            "extension not installed: native partitions",
            'install TimescaleDB for compression (docs/deploy.md), or set timescaledb = "off"',
        )
    else:
        yield Finding(
            "fail" if mode == "require" else "warn",
            "timescaledb",
            f"time series not hypertables ({sorted(tables - hyper)})",
            "run `welfare-gateway migrate`; tables holding rows stay native",
        )


def _clock(conn: psycopg.Connection[Any]) -> Iterator[Finding]:
    before = time.time()
    row = conn.execute("select now()").fetchone()
    after = time.time()
    if row is None:
        return
    skew = abs(row[0].timestamp() - (before + after) / 2)
    status: Status = "ok" if skew < CLOCK_WARN_S else "warn" if skew < CLOCK_FAIL_S else "fail"
    yield Finding(
        status,
        "clock",
        f"this host and the database differ by {skew:.1f} s",
        ""
        if status == "ok"
        else "run time synchronisation (chrony or "
        "systemd-timesyncd) on both: device timestamps are judged by it",
    )


def _role_privileges(conn: psycopg.Connection[Any]) -> Iterator[Finding]:
    rows = conn.execute(
        "select rolname, rolsuper, rolbypassrls from pg_roles"
        " where rolname in ('wg_worker', 'wg_api')"
    ).fetchall()
    attrs = {r[0]: (r[1], r[2]) for r in rows}
    for role in ("wg_worker", "wg_api"):
        if role not in attrs:
            yield Finding("fail", f"role {role}", "missing", "run `welfare-gateway migrate`")
            continue
        superuser, bypass = attrs[role]
        if superuser or bypass:
            yield Finding(
                "fail",
                f"role {role}",
                "is superuser or bypasses row security",
                f"ALTER ROLE {role} NOSUPERUSER NOBYPASSRLS",
            )
    checks = [
        ("wg_worker", "has_schema_privilege(%s, 'public', 'CREATE')", "may create objects"),
        (
            "wg_worker",
            "has_table_privilege(%s, 'access_log', 'UPDATE')",
            "may update the access log",
        ),
        (
            "wg_worker",
            "has_table_privilege(%s, 'access_log', 'DELETE')",
            "may delete the access log",
        ),
        ("wg_api", "has_schema_privilege(%s, 'public', 'CREATE')", "may create objects"),
        ("wg_api", "has_table_privilege(%s, 'readings', 'SELECT')", "reads time series unfiltered"),
    ]
    wrong = []
    for role, test, what in checks:
        if role in attrs:
            got = conn.execute(f"select {test}", (role,)).fetchone()
            if got and got[0]:
                wrong.append(
                    Finding(
                        "fail", f"role {role}", what, "revoke it (docs/deploy.md, Database roles)"
                    )
                )
    yield from wrong or [Finding("ok", "roles", "wg_worker and wg_api least privileged")]


async def check_broker(settings: Settings) -> list[Finding]:
    """Connect as the gateway and subscribe to what it needs; with broker admin access,
    compare the gateway role's ACLs with those bootstrap sets."""
    if settings.mqtt_url is None:
        return [Finding("warn", "broker", "embedded (demo only)", "set mqtt_url")]
    url = settings.mqtt_url
    group = settings.mqtt_shared_group
    filters = [
        f"$share/{group}/devices/+/telemetry" if group else "devices/+/telemetry",
        "gateway/workers/+",
        "tenants/+/alarms",
    ]
    out: list[Finding] = []
    try:
        granted = await _subscribe_probe(settings, filters)
    except (aiomqtt.MqttError, OSError, TimeoutError, ssl.SSLError) as exc:
        return [Finding("fail", "broker", explain_broker(exc, url))]
    out.append(
        Finding(
            "ok",
            "broker",
            f"reachable at {where(url)} as {BrokerAddress.parse(url).username or 'anonymous'}",
        )
    )
    refused = [f for f, code in zip(filters, granted, strict=True) if code >= 0x80]
    if refused:
        out.append(
            Finding(
                "fail",
                "broker acl",
                f"the gateway may not subscribe to {refused}",
                "run `welfare-gateway broker bootstrap` (the one source of the gateway's ACLs)",
            )
        )
    else:
        out.append(Finding("ok", "broker acl", "the gateway may subscribe to what it needs"))
    out.extend(await _bootstrap_acls(settings))
    return out


async def _subscribe_probe(settings: Settings, filters: list[str]) -> list[int]:
    address = BrokerAddress.parse(settings.mqtt_url or "")
    async with asyncio.timeout(CONNECT_TIMEOUT_S + 1):
        async with internals.Client(
            **address.client_kwargs(),
            identifier=f"{settings.mqtt_client_id}-doctor",
            protocol=aiomqtt.ProtocolVersion.V5
            if settings.mqtt_protocol == 5
            else aiomqtt.ProtocolVersion.V311,
            timeout=CONNECT_TIMEOUT_S,
        ) as client:
            codes = []
            for topic in filters:
                result = await client.subscribe(topic, qos=1)
                value = result[0] if isinstance(result, (list, tuple)) else result
                codes.append(value if isinstance(value, int) else int(value.value))
                await client.unsubscribe(topic)
            return codes


async def _bootstrap_acls(settings: Settings) -> list[Finding]:
    from gateway.adapters.mosquitto.client import BrokerAccessError
    from gateway.adapters.mosquitto.service import BrokerAccess

    access = BrokerAccess.from_settings(settings)
    if access is None:
        return []
    try:
        missing = await access.missing_gateway_acls()
    except BrokerAccessError as exc:
        return [
            Finding(
                "fail", "broker admin", str(exc), "check broker_access.admin_password and admin_url"
            )
        ]
    if missing:
        return [
            Finding(
                "fail",
                "broker acl",
                f"the gateway's role lacks {len(missing)} ACLs of this version (e.g. {missing[0]})",
                "run `welfare-gateway broker bootstrap`",
            )
        ]
    return [Finding("ok", "broker acl", "the gateway's role has this version's ACLs")]


def database_urls(settings: Settings) -> dict[str, tuple[str, str]]:
    from gateway.entrypoints.runtime import api_database_url, worker_database_url

    owner = settings.database_url or ""
    return {
        "owner": (owner, "database_url (WG_DATABASE_URL)"),
        "worker": (
            worker_database_url(settings, owner),
            "worker_database_url or worker_db_password",
        ),
        "api": (api_database_url(settings, owner), "api_database_url or api_db_password"),
    }


async def diagnose(settings: Settings) -> list[Finding]:
    out = check_settings(settings)
    if settings.database_url:
        out += await asyncio.to_thread(check_database, settings, database_urls(settings))
    out += await check_broker(settings)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    out.append(Finding("ok", "doctor", f"checked at {now}"))
    return out


async def require_reachable(
    settings: Settings, *, database: str | None, database_setting: str, broker: bool
) -> None:
    """What a service command needs before it starts: raise :class:`Unreachable`."""
    if database:

        def probe() -> None:
            with _connect(database) as conn:
                conn.execute("select 1")

        try:
            await asyncio.to_thread(probe)
        except psycopg.Error as exc:
            raise Unreachable(explain_database(exc, database, database_setting)) from None
    if broker and settings.mqtt_url:
        try:
            await _subscribe_probe(settings, [])
        except (aiomqtt.MqttError, OSError, TimeoutError, ssl.SSLError) as exc:
            raise Unreachable(explain_broker(exc, settings.mqtt_url)) from None
