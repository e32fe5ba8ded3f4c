"""``welfare-gateway simulate``: a scenario's fleet against a (secured) broker.

What the command adds to :func:`~device_sims.runner.run_fleet`:

* credentials: ``user:password@`` in the broker URL for every device, or per device from
  a JSON credentials file (:mod:`device_sims.credentials`), which wins;
* TLS (``mqtts://``): ``--ca-file``, and for mutual TLS each device's certificate from
  ``--cert-dir`` (``{id}.crt``/``{id}.key`` as ``welfare-gateway pki device-cert`` writes
  them; the CA directory itself is accepted too) or one ``--cert-file``/``--key-file``;
* ``--register``: the scenario's devices registered through the HTTP API first
  (:mod:`device_sims.registration`), their broker passwords kept in the credentials file;
* failing loudly: if no device connects within ``--connect-timeout`` seconds, one line on
  stderr names the broker, the cause and the fix, and the exit code is 1; if only some
  connect, the summary says how many did not and why, and the exit code is 1 too.

``--list-devices`` prints the scenario's device ids (e.g. to issue their certificates).

Exit codes: 0 every device that tried connected; 1 connection or registration failed;
2 the command line or a file is wrong (nothing was attempted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from device_sims.connection import MQTT_LOGGER, ConnectionOptions, TlsOptions
from device_sims.credentials import CredentialsError, load_credentials, save_credentials
from device_sims.registration import Models, RegistrationError, register_fleet
from device_sims.report import Cause, FleetReport
from device_sims.runner import run_fleet
from device_sims.scenario import DeviceSpec, ScenarioError, load_scenario

PROG = "welfare-gateway simulate"

FIXES: dict[Cause, str] = {
    Cause.REFUSED: "start the broker, or point --broker at the port it listens on",
    Cause.UNREACHABLE: "check the host name in --broker",
    Cause.NOT_AUTHORISED: (
        "give the devices their broker identities: --credentials FILE (written by "
        "--register --api URL --token TOKEN), user:password@ in --broker, or client "
        "certificates (mqtts:// with --cert-dir)"
    ),
    Cause.REJECTED: "see the broker's log (the client id is the device id)",
    Cause.TLS: (
        "use mqtts:// for the broker's TLS port only, --ca-file with the CA of its server "
        "certificate, and for mutual TLS --cert-dir with the devices' certificates from "
        "'welfare-gateway pki device-cert'"
    ),
    Cause.CLOSED: (
        "a TLS port needs mqtts:// (and, for mutual TLS, --cert-dir); see the broker's log"
    ),
    Cause.TIMEOUT: "check the host, the port and any firewall in between",
}


def fix_for(cause: Cause, detail: str | None, *, tls: bool = False) -> str:
    """What to do about ``cause``, sharpened by what the TLS layer said."""
    words = (detail or "").lower()
    if cause is Cause.CLOSED and tls:
        return (
            "is the port a TLS listener? A plain port needs mqtt://; else the broker "
            "refused this client: see its log"
        )
    if cause is Cause.TLS and words.startswith("the broker's certificate"):
        return (
            "give --ca-file the CA that signed the broker's server certificate, and connect "
            "to a name or address the certificate is for"
        )
    if cause is Cause.TLS and "alert" in words and ("certificate" in words or "ca" in words):
        return (
            "the broker wants a client certificate it trusts: --cert-dir with the devices' "
            "certificates from 'welfare-gateway pki device-cert' (of the CA in the broker's "
            "cafile), or --cert-file/--key-file"
        )
    return FIXES[cause]


class UsageError(Exception):
    """The command line or a file it names is wrong (exit 2)."""


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool = False
    username: str | None = None  # for every device without its own credentials
    password: str | None = None

    @property
    def display(self) -> str:
        """The URL without credentials, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


@dataclass(frozen=True)
class SimulateOptions:
    scenario: Path
    broker: Broker
    devices: int | None = None
    duration_s: float | None = None
    credentials: Path | None = None
    ca_file: Path | None = None
    cert_dir: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    connect_timeout_s: float = 10.0
    register: bool = False
    api_url: str | None = None
    token: str | None = None
    list_devices: bool = False  # print the device ids, one a line, and stop


def simulate(
    options: SimulateOptions,
    *,
    models: Models | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    # Each failed attempt is counted with its cause and reported once at the end, not
    # logged by paho per device and attempt.
    MQTT_LOGGER.setLevel(logging.CRITICAL)
    if options.list_devices:
        try:
            specs = load_scenario(options.scenario).device_specs(options.devices)
        except (ScenarioError, ValueError) as exc:
            print(f"{PROG}: {exc}", file=err)
            return 2
        print("\n".join(spec.device_id for spec in specs), file=out)
        return 0
    try:
        seed, specs, tls = _prepare(options)
        if options.register:
            _register(options, specs, models or {}, out, err)
        specs = _with_credentials(options, specs)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=err)
        return 2
    except RegistrationError as exc:
        print(f"{PROG}: registering the devices failed: {exc}", file=err)
        return 1
    report = asyncio.run(_run(options, specs, tls, seed=seed))
    return _verdict(options, report, out, err)


def _prepare(options: SimulateOptions) -> tuple[int, list[DeviceSpec], TlsOptions | None]:
    try:
        scenario = load_scenario(options.scenario)
        specs = scenario.device_specs(options.devices)
    except (ScenarioError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if options.connect_timeout_s <= 0:
        raise UsageError("--connect-timeout must be positive")
    return scenario.seed, specs, _tls(options, specs)


def _tls(options: SimulateOptions, specs: list[DeviceSpec]) -> TlsOptions | None:
    certs = options.cert_dir or options.cert_file or options.key_file
    if not options.broker.tls:
        if certs or options.ca_file:
            raise UsageError(
                f"TLS options need a TLS broker URL: mqtts://{options.broker.host}:PORT"
            )
        return None
    if options.key_file and not options.cert_file:
        raise UsageError("--key-file needs --cert-file")
    if options.cert_dir and options.cert_file:
        raise UsageError("give either --cert-dir (one certificate per device) or --cert-file")
    for path, flag in ((options.ca_file, "--ca-file"), (options.cert_file, "--cert-file"),
                       (options.key_file, "--key-file")):  # fmt: skip
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    tls = TlsOptions(options.ca_file, _cert_dir(options.cert_dir, specs),
                     options.cert_file, options.key_file)  # fmt: skip
    if tls.cert_dir is not None:
        missing = [s.device_id for s in specs if not _has_cert(tls, s.device_id)]
        if missing:
            raise UsageError(
                f"no certificate for {len(missing)} device(s) in {tls.cert_dir}, e.g. "
                f"{missing[0]}.crt/.key; issue them with 'welfare-gateway pki device-cert "
                f"--dir CA_DIR --device {missing[0]}'"
            )
    if specs:
        try:  # read the files once now: a wrong one is a usage error, not 1,000 failures
            tls.context(specs[0].device_id)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot use the TLS files: {exc}") from None
    return tls


def _has_cert(tls: TlsOptions, device_id: str) -> bool:
    files = tls.client_cert(device_id)
    return files is not None and all(path.is_file() for path in files)


def _cert_dir(cert_dir: Path | None, specs: list[DeviceSpec]) -> Path | None:
    """The directory holding ``{id}.crt``: as given, or the ``devices`` folder of a CA
    directory (``welfare-gateway pki --dir``)."""
    if cert_dir is None:
        return None
    if not cert_dir.is_dir():
        raise UsageError(f"--cert-dir {cert_dir}: no such directory")
    nested = cert_dir / "devices"
    if specs and not (cert_dir / f"{specs[0].device_id}.crt").exists() and nested.is_dir():
        return nested
    return cert_dir


def _register(
    options: SimulateOptions, specs: list[DeviceSpec], models: Models, out: TextIO, err: TextIO
) -> None:
    if not options.api_url or not options.token:
        raise UsageError("--register needs --api URL and --token TOKEN (or WG_API_TOKEN)")
    if options.credentials is None:
        raise UsageError(
            "--register needs --credentials FILE: the broker passwords the API hands out "
            "are shown only once, and are kept there"
        )
    try:
        known = load_credentials(options.credentials)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None
    history = max((spec.clock.history for spec in specs), default=timedelta(0))
    since = datetime.now(UTC) - history - timedelta(hours=1)
    result = register_fleet(options.api_url, options.token, specs, models, history_start=since)
    if result.credentials:
        try:
            save_credentials(options.credentials, {**known, **result.credentials})
        except CredentialsError as exc:  # the passwords are lost: say so loudly
            raise RegistrationError(f"{exc}; the new broker passwords are lost") from None
    print(f"{result.summary()}"
          + (f"; credentials in {options.credentials}" if result.credentials else ""),
          file=out)  # fmt: skip
    lacking = [d for d in result.already if d not in known]
    if lacking and (result.credentials or known):  # broker access is on, passwords lost
        print(
            f"{PROG}: {len(lacking)} device(s) registered earlier have no password in "
            f"{options.credentials} (e.g. {lacking[0]}): a password is shown only when a device "
            "is registered; retire them and change the scenario's id_prefix",
            file=err,
        )


def _with_credentials(options: SimulateOptions, specs: list[DeviceSpec]) -> list[DeviceSpec]:
    broker = options.broker
    known = {}
    if options.credentials is not None:
        try:
            known = load_credentials(options.credentials)
        except CredentialsError as exc:
            raise UsageError(str(exc)) from None
        if not known and not options.register:
            missing = "no such file" if not options.credentials.exists() else "no credentials"
            raise UsageError(f"--credentials {options.credentials}: {missing} (--register "
                             "writes it)")  # fmt: skip
    result = []
    for spec in specs:
        own = known.get(spec.device_id)
        if own is not None:
            result.append(replace(spec, username=own.username, password=own.password))
        elif broker.username is not None:
            result.append(replace(spec, username=broker.username, password=broker.password))
        else:
            result.append(spec)
    return result


async def _run(
    options: SimulateOptions, specs: list[DeviceSpec], tls: TlsOptions | None, *, seed: int
) -> FleetReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Ctrl-C ends the run gracefully (offline statuses); not possible off the main thread
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return await run_fleet(
        specs,
        host=options.broker.host,
        port=options.broker.port,
        duration_s=options.duration_s,
        stop=stop,
        seed=seed,
        options=ConnectionOptions(tls=tls),
        connect_deadline_s=options.connect_timeout_s,
    )


def _verdict(options: SimulateOptions, report: FleetReport, out: TextIO, err: TextIO) -> int:
    broker = options.broker.display
    if report.devices and not report.connected_devices and (report.gave_up or report.unconnected):
        cause = report.main_cause()
        fix = fix_for(cause, report.failure_detail.get(cause), tls=options.broker.tls)
        within = options.connect_timeout_s if report.gave_up else report.elapsed_s
        print(f"{PROG}: no device connected to {broker} within {within:g} s: "
              f"{report.describe(cause)}; fix: {fix}", file=err)  # fmt: skip
        return 1
    print(report.summary(), file=out)
    if report.unconnected:
        cause = report.main_cause()
        fix = fix_for(cause, report.failure_detail.get(cause), tls=options.broker.tls)
        why = "; ".join(f"{count} {report.describe(c)}"
                        for c, count in report.unconnected.most_common())  # fmt: skip
        print(f"{PROG}: {report.unconnected_devices} of {report.devices} devices could not "
              f"connect to {broker}: {why}; fix: {fix}", file=err)  # fmt: skip
        return 1
    if report.failed_devices:
        print(f"{PROG}: {report.failed_devices} simulated devices stopped on an internal "
              "error (see the log)", file=err)  # fmt: skip
        return 1
    return 0
