"""The ``welfare-gateway`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway import __version__
from gateway.config.settings import Settings, SettingsError, load_settings
from gateway.domain.roles import Role


class StartupError(Exception):
    """A command cannot start; the message is one line with the cause and the fix."""


def _settings(args: argparse.Namespace) -> Settings:
    config = getattr(args, "config", None) or os.environ.get("WG_CONFIG")
    return load_settings(Path(config) if config else None)


def _service_settings(args: argparse.Namespace) -> Settings:
    """Settings for a command that serves or changes the deployment: production refuses
    unsafe defaults (naming each); development says in one line that it keeps them."""
    from gateway.config.unsafe_settings import development_notice, refuse_unsafe

    settings = _settings(args)
    refuse_unsafe(settings)
    notice = development_notice(settings)
    if notice:
        print(f"welfare-gateway: {notice}", file=sys.stderr)
    return settings


def _cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.entrypoints.doctor import require_reachable, where
    from gateway.entrypoints.runtime import endpoints, migrate_database
    from gateway.support import logs

    settings = _service_settings(args)
    logs.configure("WARNING")
    if settings.database_url is None:  # the embedded database: migrated as it starts

        async def embedded() -> None:
            async with endpoints(settings):
                print(f"embedded database migrated in {settings.data_dir / 'pg'}")

        asyncio.run(embedded())
        return 0
    url = settings.database_url
    asyncio.run(require_reachable(settings, database=url,
                                  database_setting="database_url", broker=False))  # fmt: skip
    done = migrate_database(settings, url)
    applied = f"applied {done.applied}" if done.applied else "already up to date"
    print(f"database {where(url)} migrated: {applied}; time series: {done.time_series}; "
          "roles wg_worker and wg_api granted")  # fmt: skip
    for note in done.notes:
        print(f"note: {note}")
    return 0


def _until_signalled(work: Any) -> None:
    """Run ``work(stop)`` until SIGINT or SIGTERM sets ``stop``."""

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    asyncio.run(go())


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.entrypoints.runtime import embedded_overrides, endpoints, serve
    from gateway.support import logs

    settings = _service_settings(args)
    if settings.mode == "production":
        from gateway.config.unsafe_settings import embedded_services

        embedded = embedded_services(settings)
        if embedded:
            raise SettingsError(
                "refusing to run in production mode with embedded services:\n  "
                + "\n  ".join(f.line() for f in embedded)
            )
    settings = embedded_overrides(settings)
    settings = _with_api_port(settings)
    _require_port_free(settings.api_host, settings.api_port, "api_port")
    logs.configure(settings.log_level)

    async def work(stop: asyncio.Event) -> None:
        await _require_services(settings, settings.database_url, "database_url")
        async with endpoints(settings) as ep:
            _announce(
                "run", settings,
                f"API and console on http://{settings.api_host}:{settings.api_port}/ "
                "(metrics at /metrics)",
            )  # fmt: skip
            await serve(settings, ep, stop, settings.api_port)

    _until_signalled(work)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from gateway.entrypoints.runtime import serve_worker, split_endpoints
    from gateway.support import logs

    settings = _service_settings(args)
    ep = split_endpoints(settings)  # both URLs given
    _require_port_free(settings.api_host, settings.metrics_port, "metrics_port")
    logs.configure(settings.log_level)

    async def work(stop: asyncio.Event) -> None:
        await _require_services(
            settings, ep.worker_database_url, "worker_database_url or worker_db_password"
        )
        _announce(
            f"worker {settings.mqtt_client_id}", settings,
            f"metrics on http://{settings.api_host}:{settings.metrics_port}/metrics",
        )  # fmt: skip
        await serve_worker(settings, ep, stop)  # the schema is migrate's job

    _until_signalled(work)
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    from gateway.entrypoints.runtime import serve_api, split_endpoints
    from gateway.support import logs

    settings = _service_settings(args)
    ep = split_endpoints(settings)
    settings = _with_api_port(settings)
    _require_port_free(settings.api_host, settings.api_port, "api_port")
    logs.configure(settings.log_level)

    async def work(stop: asyncio.Event) -> None:
        await _require_services(
            settings, ep.api_database_url, "api_database_url or api_db_password"
        )
        _announce(
            "api", settings,
            f"API and console on http://{settings.api_host}:{settings.api_port}/ "
            "(metrics at /metrics)",
        )  # fmt: skip
        await serve_api(settings, ep, stop)

    _until_signalled(work)
    return 0


def _with_api_port(settings: Settings) -> Settings:
    """``api_port = 0`` (any free port): choose it now, so the start line tells the truth."""
    if settings.api_port:
        return settings
    from gateway.entrypoints.runtime import free_port

    return settings.model_copy(update={"api_port": free_port()})


def _require_port_free(host: str, port: int, setting: str) -> None:
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port}: {exc.strerror} (another process there? "
                f"set {setting} or api_host)"
            ) from None


async def _require_services(settings: Settings, database: str | None, setting: str) -> None:
    from gateway.entrypoints.doctor import Unreachable, require_reachable

    try:
        await require_reachable(settings, database=database, database_setting=setting,
                                broker=True)  # fmt: skip
    except Unreachable as exc:
        raise StartupError(str(exc)) from None


def _announce(what: str, settings: Settings, listening: str) -> None:
    """One line on stdout: where a service listens, its mode, and what it uses."""
    from gateway.adapters.mqtt.connection import BrokerAddress
    from gateway.entrypoints.doctor import where

    database = where(settings.database_url) if settings.database_url else "embedded"
    broker = "embedded"
    if settings.mqtt_url:
        address = BrokerAddress.parse(settings.mqtt_url)
        broker = f"{'mqtts' if address.tls else 'mqtt'}://{address.host}:{address.port}"
    print(f"welfare-gateway {what}: {listening}; {settings.mode} mode; database {database}; "
          f"broker {broker}", flush=True)  # fmt: skip


def _cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.entrypoints.doctor import diagnose

    settings = _settings(args)
    found = asyncio.run(diagnose(settings))
    for finding in found:
        print(finding.line())
    failed = sum(1 for f in found if f.status == "fail")
    print(f"{failed} problem(s) to fix" if failed else "no problems found")
    return 1 if failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.entrypoints.demo import run_demo
    from gateway.support import logs

    settings = _settings(args)
    logs.configure("WARNING")
    return asyncio.run(
        run_demo(settings, duration=args.duration, devices=args.devices, scenario=args.scenario)
    )


def _cmd_contract_export(args: argparse.Namespace) -> int:
    from firmware_contracts.schema import export_all

    for path in export_all(Path(args.directory)):
        print(path)
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from api.auth import mint

    settings = _service_settings(args)
    if not settings.dev_tokens:
        raise StartupError(
            "dev_tokens is off: sign in through the identity provider ([oidc]); "
            "development tokens would be refused"
        )
    print(
        mint(
            settings.jwt_secret.get_secret_value(),
            tenant=args.tenant,
            role=Role(args.role),
            subject=args.subject,
            org=args.org,
            ttl_s=args.ttl,
        )
    )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    """The fleet and its messages live in device_sims.command; here: the broker URL (as
    the gateway parses it) and, for --register, the demo's device models."""
    from dataclasses import asdict

    from device_sims.command import Broker, SimulateOptions, simulate
    from gateway.adapters.mqtt.connection import BrokerAddress

    if urlsplit(args.broker).scheme not in ("mqtt", "mqtts"):
        print(f"welfare-gateway simulate: --broker {args.broker!r}: expected "
              "mqtt://[user:password@]host:port or mqtts://...", file=sys.stderr)  # fmt: skip
        return 2
    address = BrokerAddress.parse(args.broker)
    models = None
    if args.register:
        from gateway.entrypoints.demo import MODELS

        models = {kind: asdict(model) for kind, model in MODELS.items()}
    path = args.credentials, args.ca_file, args.cert_dir, args.cert_file, args.key_file
    credentials, ca_file, cert_dir, cert_file, key_file = (Path(p) if p else None for p in path)
    options = SimulateOptions(
        scenario=Path(args.scenario), devices=args.devices, duration_s=args.duration,
        broker=Broker(address.host, address.port, address.tls, address.username,
                      address.password),
        credentials=credentials, ca_file=ca_file, cert_dir=cert_dir, cert_file=cert_file,
        key_file=key_file, connect_timeout_s=args.connect_timeout, register=args.register,
        api_url=args.api, token=args.token or os.environ.get("WG_API_TOKEN"),
        list_devices=args.list_devices,
    )  # fmt: skip
    return simulate(options, models=models)


def _cmd_access_log_verify(args: argparse.Namespace) -> int:
    from gateway.adapters.postgres.access_log import verify
    from gateway.adapters.postgres.access_log_seal import SealKeys, read_anchors
    from gateway.entrypoints.doctor import require_reachable
    from gateway.entrypoints.runtime import endpoints

    settings = _settings(args)
    keys = SealKeys.from_settings(settings.access_log)
    files = [Path(p) for p in args.anchors or ()]
    configured = settings.access_log.anchor_file
    if not files and configured is not None and configured.exists():
        files = [configured]
    try:
        anchors = [seal for path in files for seal in read_anchors(path)]
    except ValueError as exc:
        raise StartupError(f"anchor file {exc}") from None

    async def check() -> Any:
        if settings.database_url:  # read as it is: verifying changes nothing, not even schema
            await require_reachable(settings, database=settings.database_url,
                                    database_setting="database_url", broker=False)  # fmt: skip
            return await asyncio.to_thread(verify, settings.database_url, keys, anchors)
        async with endpoints(settings) as ep:  # the embedded database, started for this
            return await asyncio.to_thread(verify, ep.database_url, keys, anchors)

    result = asyncio.run(check())
    print(_verification_line(result, files))
    if result.ok and keys is not None and result.rows and result.last_sealed is None:
        # sealing is configured, yet no seal is left: deleted, or never made (a worker
        # seals every access_log.seal_interval_s); either way not verified
        return 1
    return 0 if result.ok else 1


def _verification_line(result: Any, files: list[Path]) -> str:
    if not result.ok:
        if not result.tampered:
            return f"access log NOT VERIFIED: {result.problem}"
        at = f" at row {result.first_bad_id}" if result.first_bad_id is not None else ""
        return f"access log TAMPERED{at}: {result.problem}"
    line = f"access log intact: {result.rows} rows, hash chain verified"
    sealed = result.last_sealed
    if sealed is None:
        return (f"{line}; NOT SEALED (no seal yet, or no access_log.keys): a rewrite by the "
                "database owner would not be detected")  # fmt: skip
    where = f" from {', '.join(map(str, files))}" if files else " (no anchor file given)"
    return (f"{line}; {result.seals} seals and {result.anchors} anchors{where} match it up to "
            f"row {sealed.last_id}, sealed {sealed.sealed_at.isoformat(timespec='seconds')}; "
            f"{result.unsealed_rows} rows after it are only as safe as the database until "
            "the next seal")  # fmt: skip


def _cmd_import(args: argparse.Namespace) -> int:
    """Bulk onboarding (issue #19.5): one file into one tenant, as role wg_api with that
    tenant set (row-level security applies as in the API). Dry run unless ``--apply``."""
    import json

    from gateway.adapters.postgres.onboarding import import_at
    from gateway.domain.onboarding import Format, parse
    from gateway.entrypoints.doctor import require_reachable
    from gateway.entrypoints.runtime import api_database_url, endpoints
    from gateway.support import logs
    from gateway.support.pii import PinCipher, normalise_pin

    settings = _settings(args)
    logs.configure("WARNING")
    path = Path(args.file)
    fmt = Format(args.format) if args.format else (
        Format.JSON if path.suffix.lower() == ".json" else Format.CSV)  # fmt: skip
    cipher = PinCipher.from_settings(
        {k: v.get_secret_value() for k, v in settings.pii_keys.items()}, settings.pii_active_key
    )
    parsed = parse(path.read_bytes(), fmt, pins=normalise_pin if cipher else None)
    dry_run = not args.apply

    async def run(url: str) -> Any:
        return await import_at(url, args.tenant, parsed, dry_run=dry_run, cipher=cipher,
                               broker_identities=settings.broker_access.enabled)  # fmt: skip

    async def go() -> Any:
        if settings.database_url:
            await require_reachable(settings, database=settings.database_url,
                                    database_setting="database_url", broker=False)  # fmt: skip
            return await run(api_database_url(settings, settings.database_url))
        async with endpoints(settings) as ep:  # the embedded database, started for this
            return await run(ep.api_database_url)

    report = asyncio.run(go())
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
    else:
        for error in report.errors:
            print(f"{path.name} {error.line()}", file=sys.stderr)
        counts = ", ".join(f"{n} {action}" for action, n in report.summary().items())
        rows = {r["row"] for r in report.rows}
        outside = sum(1 for e in report.errors if e.row not in rows)  # the file, the header
        if outside:
            counts += f"; {outside} error{'s' * (outside != 1)} in the file itself"
        if report.applied:
            outcome = f"applied to tenant {args.tenant}"
        elif report.ok:
            outcome = "dry run, nothing changed (--apply to import)"
        else:
            outcome = "not imported, nothing changed"
        print(f"{path.name}: {len(report.rows)} rows ({counts}); {outcome}")
    return 0 if report.ok else 1


def _cmd_export(args: argparse.Namespace) -> int:
    """Full export of one tenant (issue #19.6, docs/export.md): as role wg_api with the
    tenant set, into a new directory or a .zip; written to the tenant's access log."""
    from api.fhir.ids import IdCodec
    from api.routes.export import EXPORT_CATEGORIES, observation_renderer
    from gateway.adapters.postgres.export import ExportError, export_to
    from gateway.entrypoints.doctor import require_reachable
    from gateway.entrypoints.runtime import api_database_url, endpoints
    from gateway.support import logs

    settings = _settings(args)
    logs.configure("WARNING")
    out = Path(args.out)
    render = observation_renderer(
        IdCodec((settings.fhir_id_key or settings.jwt_secret).get_secret_value()))

    async def run(url: str) -> Any:
        return await export_to(url, args.tenant, out, cipher=_pin_cipher(settings),
                               observation=render, actor=args.actor,
                               categories=EXPORT_CATEGORIES, purpose=args.purpose)  # fmt: skip

    async def go() -> Any:
        if settings.database_url:
            await require_reachable(settings, database=settings.database_url,
                                    database_setting="database_url", broker=False)  # fmt: skip
            return await run(api_database_url(settings, settings.database_url))
        async with endpoints(settings) as ep:  # the embedded database, started for this
            return await run(ep.api_database_url)

    try:
        files = asyncio.run(go())
    except ExportError as exc:
        print(f"welfare-gateway export: {exc}; nothing written", file=sys.stderr)
        return 1
    print(f"tenant {args.tenant} exported to {out}: {files} files, manifest.json last; "
          "SENSITIVE (personal identity numbers in clear): keep it encrypted")  # fmt: skip
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    """Restore a full export into this installation's database (as the owner), after
    migrating it; the manifest's checksums first, then one transaction."""
    from gateway.adapters.postgres.restore import RestoreError, restore
    from gateway.entrypoints.doctor import require_reachable
    from gateway.entrypoints.runtime import endpoints, migrate_database
    from gateway.support import logs

    settings = _settings(args)
    logs.configure("WARNING")

    async def run(url: str) -> Any:
        return await restore(url, Path(args.source), cipher=_pin_cipher(settings),
                             actor=args.actor)  # fmt: skip

    async def go() -> Any:
        if settings.database_url:
            await require_reachable(settings, database=settings.database_url,
                                    database_setting="database_url", broker=False)  # fmt: skip
            await asyncio.to_thread(migrate_database, settings, settings.database_url)
            return await run(settings.database_url)
        async with endpoints(settings) as ep:  # the embedded database, migrated as it starts
            return await run(ep.database_url)

    try:
        done = asyncio.run(go())
    except RestoreError as exc:
        print(f"welfare-gateway restore: {exc}", file=sys.stderr)
        return 1
    rows = sum(done.rows.values())
    print(f"tenant {done.tenant} restored: {rows} rows in {len(done.rows)} tables, "
          "checksums verified, one transaction")  # fmt: skip
    return 0


def _pin_cipher(settings: Settings) -> Any:
    from gateway.support.pii import PinCipher

    return PinCipher.from_settings(
        {k: v.get_secret_value() for k, v in settings.pii_keys.items()}, settings.pii_active_key
    )


def _cmd_pki(args: argparse.Namespace) -> int:
    from gateway.support.pki import CertificateAuthority, PkiError

    ca = CertificateAuthority(Path(args.dir))
    try:
        if args.pki_command == "init-ca":
            print(ca.init(tenant=args.tenant, days=args.days))
        elif args.pki_command == "server-cert":
            issued = ca.server_cert(args.host, days=args.days)
            print(issued.cert, issued.key, sep="\n")
        elif args.pki_command == "device-cert":
            issued = ca.device_cert(args.device, days=args.days, reserved=_service_names(args))
            print(issued.cert, issued.key, sep="\n")
        elif args.pki_command == "revoke":
            count = ca.revoke(args.device)
            print(f"revoked {count} certificate(s) of {args.device}; CRL: {ca.crl_path}")
        else:
            print(ca.write_crl())
    except PkiError as exc:
        print(f"welfare-gateway pki: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    """Identities that are not devices: the gateway's own, and operators' alarm clients.
    A generated password is printed once on stdout and kept nowhere."""
    from gateway.adapters.mosquitto.client import BrokerAccessError
    from gateway.adapters.mosquitto.service import BrokerAccess, new_password
    from gateway.support import logs

    settings = _settings(args)
    logs.configure("WARNING")
    access = BrokerAccess.from_settings(settings)
    if access is None:
        print("welfare-gateway broker: set broker_access.enabled (and its admin password)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        if args.broker_command == "bootstrap":
            password = os.environ.get("WG_BROKER_GATEWAY_PASSWORD") or new_password()
            asyncio.run(access.bootstrap(args.username, password))
            if "WG_BROKER_GATEWAY_PASSWORD" not in os.environ:
                print(password)
        else:
            print(asyncio.run(access.register_operator(args.tenant, args.username)))
    except (BrokerAccessError, ValueError) as exc:
        print(f"welfare-gateway broker: {exc}", file=sys.stderr)
        return 1
    return 0


def _service_names(args: argparse.Namespace) -> set[str]:
    """Broker usernames of this deployment's services (admin, gateway), from settings."""
    settings = _settings(args)
    names = {settings.broker_access.admin_username}
    for url in (settings.mqtt_url, settings.broker_access.admin_url):
        if url and urlsplit(url).username:
            names.add(str(urlsplit(url).username))
    return names


class _Subparsers:
    """Subcommands that also take the common options (``--config``)."""

    def __init__(self, action: Any, common: argparse.ArgumentParser) -> None:
        self._action = action
        self._common = common
        self.choices = action.choices

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._action.add_parser(
            name, parents=[self._common], **kwargs
        )
        return parser


def build_parser() -> argparse.ArgumentParser:
    # --config is taken before or after the subcommand (each level's parser knows it;
    # SUPPRESS keeps a later level from resetting what an earlier one read)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default=argparse.SUPPRESS,
                        help="TOML settings file (or WG_CONFIG)")  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="welfare-gateway", description=__doc__, parents=[config]
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = _Subparsers(parser.add_subparsers(dest="command", required=True), config)

    sub.add_parser(
        "migrate", help="bring the database to its final shape (as the owner role): "
        "migrations, roles, TimescaleDB or partitions"
    ).set_defaults(func=_cmd_migrate)
    sub.add_parser(
        "doctor", help="check the configuration against the running database and broker"
    ).set_defaults(func=_cmd_doctor)
    sub.add_parser("run", help="run the gateway and the API").set_defaults(func=_cmd_run)
    sub.add_parser(
        "worker", help="run the gateway worker alone (ingest, alarms, locks; /metrics)"
    ).set_defaults(func=_cmd_worker)
    sub.add_parser(
        "api", help="run the API alone; it reaches the workers over the broker"
    ).set_defaults(func=_cmd_api)

    demo = sub.add_parser("demo", help="run everything embedded with a simulated fleet")
    demo.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    demo.add_argument("--devices", type=int, default=None, help="number of simulated devices")
    demo.add_argument("--scenario", type=Path, default=None, help="scenario TOML file")
    demo.set_defaults(func=_cmd_demo)

    contract = sub.add_parser("contract", help="device contract tools")
    csub = _Subparsers(contract.add_subparsers(dest="contract_command", required=True), config)
    export = csub.add_parser(
        "export", help="write the JSON Schemas of contract v1 (devices and alarm messages)"
    )
    export.add_argument("directory")
    export.set_defaults(func=_cmd_contract_export)

    token = sub.add_parser("token", help="mint a development bearer token")
    token.add_argument("--tenant", required=True)
    token.add_argument(
        "--role",
        required=True,
        choices=[role.value for role in Role],
    )
    token.add_argument("--org", default=None, help="organisation number, e.g. 232100-0172")
    token.add_argument("--subject", default="dev-user")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    token.set_defaults(func=_cmd_token)

    log = sub.add_parser("access-log", help="the access log of personal-data reads")
    lsub = _Subparsers(log.add_subparsers(dest="access_log_command", required=True), config)
    verify = lsub.add_parser(
        "verify", help="recompute the hash chain and check its seals; exit 1 if tampered"
    )
    verify.add_argument(
        "--anchors", action="append", metavar="FILE",
        help="seals kept outside the database (access_log.anchor_file, or a JSON log with "
        "the 'access log sealed' lines); repeatable; default: access_log.anchor_file",
    )  # fmt: skip
    verify.set_defaults(func=_cmd_access_log_verify)

    imp = sub.add_parser(
        "import", help="bulk onboarding: device models, persons, devices and assignments "
        "from a CSV or JSON file (docs/onboarding.md); a dry run unless --apply",
    )  # fmt: skip
    imp.add_argument("file", help="the import file (.csv or .json)")
    imp.add_argument("--tenant", required=True, help="the tenant to import into")
    imp.add_argument("--apply", action="store_true",
                     help="apply the file (one transaction; nothing if any row has an error)")
    imp.add_argument("--format", choices=["csv", "json"], default=None,
                     help="default: by the file's extension (.json, else csv)")
    imp.add_argument("--json", action="store_true", help="print the per-row report as JSON")
    imp.set_defaults(func=_cmd_import)

    exp = sub.add_parser(
        "export", help="full export of one tenant for a change of supplier (docs/export.md):"
        " CSV + JSON Schema, FHIR Bundles, manifest with checksums; SENSITIVE",
    )  # fmt: skip
    exp.add_argument("--tenant", required=True, help="the tenant to export")
    exp.add_argument("--out", required=True,
                     help="a new directory, or a file name ending in .zip")  # fmt: skip
    exp.add_argument("--actor", default=os.environ.get("USER") or "welfare-gateway export",
                     help="who exports (written to the tenant's access log)")  # fmt: skip
    exp.add_argument("--purpose", default="change of supplier",
                     help="why (written to the tenant's access log)")  # fmt: skip
    exp.set_defaults(func=_cmd_export)
    rst = sub.add_parser(
        "restore", help="restore a full export into this installation's database (migrated"
        " first); checksums verified, one transaction",
    )  # fmt: skip
    rst.add_argument("--from", dest="source", required=True,
                     help="the export: its directory or .zip")  # fmt: skip
    rst.add_argument("--actor", default=os.environ.get("USER") or "welfare-gateway restore",
                     help="who restores (written to the access log)")  # fmt: skip
    rst.set_defaults(func=_cmd_restore)

    pki = sub.add_parser("pki", help="CA, broker and device certificates for mutual TLS")
    psub = _Subparsers(pki.add_subparsers(dest="pki_command", required=True), config)
    for name, what, days in (
        ("init-ca", "create a CA (per deployment, or per tenant)", 3650),
        ("server-cert", "issue the broker's server certificate", 825),
        ("device-cert", "issue a device's client certificate (CN = device id)", 1825),
        ("revoke", "revoke a device's certificates and rewrite the CRL", 0),
        ("crl", "re-sign the CRL before it expires", 0),
    ):
        cmd = psub.add_parser(name, help=what)
        cmd.add_argument("--dir", required=True, help="the CA directory")
        if days:
            cmd.add_argument("--days", type=int, default=days, help="validity in days")
        cmd.set_defaults(func=_cmd_pki)
    psub.choices["init-ca"].add_argument("--tenant", default=None, help="tenant of this CA")
    psub.choices["server-cert"].add_argument(
        "--host", required=True, nargs="+", help="DNS names / IP addresses of the broker"
    )
    psub.choices["device-cert"].add_argument("--device", required=True)
    psub.choices["revoke"].add_argument("--device", required=True)

    broker = sub.add_parser("broker", help="broker identities that are not devices")
    bsub = _Subparsers(broker.add_subparsers(dest="broker_command", required=True), config)
    boot = bsub.add_parser(
        "bootstrap",
        help="default deny and the gateway's identity (password from "
        "WG_BROKER_GATEWAY_PASSWORD, or generated and printed once)",
    )
    boot.add_argument("--username", default="wg-gateway", help="the gateway's broker username")
    boot.set_defaults(func=_cmd_broker)
    op = bsub.add_parser(
        "operator", help="an operator's alarm client: reads tenants/{tenant}/alarms only"
    )
    op.add_argument("--tenant", required=True)
    op.add_argument("--username", required=True)
    op.set_defaults(func=_cmd_broker)

    sim = sub.add_parser("simulate", help="run a simulated fleet against a broker")
    sim.add_argument("--scenario", required=True)
    sim.add_argument("--devices", type=int, default=None)
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                     help="mqtt:// or mqtts:// (TLS); user:password@ logs in every device "
                     "that has no credentials of its own")  # fmt: skip
    sim.add_argument("--duration", type=float, default=None)
    sim.add_argument("--credentials", metavar="FILE",
                     help='JSON {"device id": {"username": ..., "password": ...}}; '
                     "--register writes it")  # fmt: skip
    sim.add_argument("--ca-file", help="CA of the broker's server certificate (mqtts)")
    sim.add_argument("--cert-dir", metavar="DIR",
                     help="mutual TLS: DIR/{device id}.crt and .key per device, as "
                     "'welfare-gateway pki device-cert' writes them (the CA directory "
                     "or its devices/)")  # fmt: skip
    sim.add_argument("--cert-file", help="mutual TLS: one client certificate for all devices")
    sim.add_argument("--key-file", help="the key of --cert-file (if not in it)")
    sim.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="fail (exit 1) if no device has connected by then")  # fmt: skip
    sim.add_argument("--register", action="store_true",
                     help="register the scenario's devices through the API first (needs "
                     "--api, --token and --credentials); idempotent")  # fmt: skip
    sim.add_argument("--api", metavar="URL", help="the gateway API, e.g. http://127.0.0.1:8080")
    sim.add_argument("--token", help="a tenant_admin bearer token (or WG_API_TOKEN)")
    sim.add_argument("--list-devices", action="store_true",
                     help="print the scenario's device ids, one a line, and exit")  # fmt: skip
    sim.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except SettingsError as exc:
        print(f"welfare-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # explained below in one line, or raised again
        line = _explain(exc, args)
        if line is None:
            raise
        print(f"welfare-gateway {args.command}: {line}", file=sys.stderr)
        return 1


def _explain(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One line for a failure of the deployment around the command (not of the code):
    a refusing database or broker, a missing file, a port in use."""
    import aiomqtt
    import psycopg

    from gateway.adapters.postgres.migrate import MigrationError
    from gateway.adapters.postgres.timescale import TimescaleError
    from gateway.entrypoints.doctor import Unreachable, explain_broker, explain_database

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, StartupError | Unreachable | MigrationError | TimescaleError):
        return str(exc)
    if isinstance(exc, SettingsError):
        return str(exc).replace("\n", " ")
    try:
        settings: Settings | None = _settings(args)
    except SettingsError:
        settings = None
    if isinstance(exc, psycopg.OperationalError):
        url = (settings.database_url if settings else None) or "postgresql:///"
        return explain_database(exc, url, "database_url")
    if isinstance(exc, aiomqtt.MqttError):
        return explain_broker(exc, (settings.mqtt_url if settings else None) or "mqtt://")
    if isinstance(exc, OSError) and exc.strerror:
        target = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{target}"
    return None


if __name__ == "__main__":
    sys.exit(main())
