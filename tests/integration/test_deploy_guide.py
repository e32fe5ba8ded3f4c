"""docs/deploy.md, run as written: its ``sh`` blocks in order in one bash process, from a
bare server (as far as a test machine can be one) to the first alarm seen through the API.

Real services: a private Debian PostgreSQL 15 cluster with TimescaleDB preloaded
(tests.services.DebianPostgres), Mosquitto started from the configuration the guide
installs (Debian's package file plus deploy/mosquitto/mosquitto.conf in conf.d), and the
worker and the API started from the ``ExecStart`` lines of the units in deploy/systemd/,
with the units' ``Environment=`` and ``EnvironmentFile=``, as subprocesses. HTTP goes to
the real API, MQTT over TLS to the real broker.

What the sandbox cannot do is replaced, and only that:

- The guide's site values (its first block) are run as written, then given test values:
  temporary directories for /etc/..., /opt/..., /var/lib/..., free ports for the database,
  the broker, the API and the worker's metrics, ``localhost`` for the broker's name.
- Blocks marked ``<!-- guide-test: skip (...) -->`` change the machine (packages, a
  system user, PostgreSQL's own configuration). Their effect is here already: the
  packages are installed (else the test skips), the cluster preloads TimescaleDB (the
  block is checked to say the line the product needs), and the product is the
  repository's virtualenv, linked into the guide's ``$WG_HOME/bin``.
- ``systemctl`` is a bash function that calls this module (``python -m
  tests.integration.test_deploy_guide systemctl ...``): it starts Mosquitto as Debian's
  unit does, and the gateway's units from their files as the guide installed them,
  mapping the real server's paths in those files to the temporary ones.
- ``runuser -u postgres -- psql`` finds the private cluster through ``PGHOST`` and
  ``PGPORT`` (on a real server: Debian's default socket).

The hand SQL for a DBA who gives the owner no CREATEROLE (a ``sql`` block) is run by its
own test against a cluster of its own, followed by ``migrate`` and the doctor's database
checks.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "deploy.md"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("bash", "runuser", "psql", "mosquitto", "mosquitto_ctrl", "mosquitto_pub",
         "mosquitto_sub", "openssl", "curl", "jq", "dpkg")  # fmt: skip

#: The markers the guide may carry, and what the test does with each block.
SITE_VALUES = "site values"
HAND_SQL = "hand SQL"
SKIP_PACKAGES = "skip (system packages)"
SKIP_PRODUCT = "skip (system user and product install)"
SKIP_POSTGRES_CONF = "skip (PostgreSQL server configuration)"
MARKERS = {SITE_VALUES, HAND_SQL, SKIP_PACKAGES, SKIP_PRODUCT, SKIP_POSTGRES_CONF}

#: /etc/mosquitto/mosquitto.conf as Debian 12's mosquitto package installs it.
DEBIAN_MOSQUITTO_CONF = """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""


# --- the guide --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    lang: str
    text: str
    marker: str | None


def guide_blocks(markdown: str) -> list[Block]:
    """Fenced code blocks, each with the ``<!-- guide-test: ... -->`` right above it."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        marker = None
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0:
            found = re.match(r"^<!-- guide-test: (.+?) -->$", lines[j].strip())
            marker = found.group(1) if found else None
        i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"docs/deploy.md:{start + 1}: unclosed code block"
        blocks.append(Block(start + 1, fence.group(1), "\n".join(body) + "\n", marker))
        i += 1
    return blocks


def site_values(block: Block) -> dict[str, str]:
    values = {}
    for line in block.text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = re.match(r"^([A-Z][A-Z0-9_]*)=(\S+)(\s+#.*)?$", line)
        assert found, f"site values: one NAME=value per line, not {line!r}"
        values[found.group(1)] = found.group(2)
    return values


def guide() -> list[Block]:
    blocks = guide_blocks(GUIDE.read_text(encoding="utf-8"))
    markers = {b.marker for b in blocks if b.marker}
    assert markers == MARKERS, f"markers in docs/deploy.md {markers} != known {MARKERS}"
    return blocks


# --- systemctl, as far as the guide needs it (run by the guide's bash through this module) ---


def _shim_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(Path(os.environ["GUIDE_TEST_SHIM"]).read_text())
    return config


def map_paths(text: str, paths: list[list[str]]) -> str:
    """The real server's paths in ``text`` replaced by the test's (whole path prefixes)."""
    ordered = sorted(paths, key=lambda p: -len(p[0]))
    pattern = re.compile(
        r"(?<![\w./-])(" + "|".join(re.escape(real) for real, _ in ordered) + r")(?=/|\b|$)"
    )
    table = dict((real, test) for real, test in ordered)
    return pattern.sub(lambda m: table[m.group(1)], text)


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def _alive(record: dict[str, Any]) -> bool:
    return _start_time(int(record["pid"])) == str(record["started"])


def _record_path(state: Path, unit: str) -> Path:
    return state / f"{unit}.json"


def _spawn(
    state: Path, unit: str, argv: list[str], env: dict[str, str], stop_timeout: float
) -> dict[str, Any]:
    out = (state / f"{unit}.out").open("ab")
    err = (state / f"{unit}.err").open("ab")
    proc = subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=out,
                            stderr=err, start_new_session=True)  # fmt: skip
    out.close()
    err.close()
    started = None
    deadline = time.monotonic() + 5
    while started is None and time.monotonic() < deadline:
        started = _start_time(proc.pid)
    record = {"pid": proc.pid, "started": started, "argv": argv, "stop_timeout": stop_timeout}
    _record_path(state, unit).write_text(json.dumps(record))
    return record


def stop_unit(state: Path, unit: str) -> None:
    """SIGTERM to the process this shim started for ``unit`` (checked by its start time),
    SIGKILL after the unit's stop timeout."""
    path = _record_path(state, unit)
    if not path.exists():
        return
    record = json.loads(path.read_text())
    path.unlink()
    if not _alive(record):
        return
    os.kill(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + record["stop_timeout"]
    while _alive(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(record):
        os.kill(record["pid"], signal.SIGKILL)


def started_units(state: Path) -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in state.glob("*.json"))


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        header = re.match(r"^\[(\w+)\]$", line)
        if header:
            current = header.group(1)
            sections.setdefault(current, [])
            continue
        assert current is not None and "=" in line, f"not a unit file line: {raw!r}"
        key, value = line.split("=", 1)
        sections[current].append((key.strip(), value.strip()))
    return sections


def _specifiers(value: str, unit: str, instance: str) -> str:
    known = {"i": instance, "I": instance, "n": f"{unit}.service", "H": socket.gethostname(),
             "S": "/var/lib", "%": "%"}  # fmt: skip

    def one(match: re.Match[str]) -> str:
        assert match.group(1) in known, f"{unit}: specifier %{match.group(1)} not emulated"
        return known[match.group(1)]

    return re.sub(r"%(.)", one, value)


def environment_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd reads them (values here are plain or single-quoted)."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, value = line.split("=", 1)
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path}: bad line {raw!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        assert "\\" not in value and "$" not in value, f"{path}: {key} needs escaping rules"
        env[key] = value
    return env


def start_gateway_unit(config: dict[str, Any], name: str) -> None:
    """A welfare-gateway unit as systemd would run it, from the file the guide installed."""
    unit, _, instance = name.removesuffix(".service").partition("@")
    filename = f"{unit}@.service" if instance else f"{unit}.service"
    sections = parse_unit((Path(config["unit_dir"]) / filename).read_text())
    service = sections["Service"]
    paths = config["paths"]
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": "/nonexistent",
           "USER": "welfare-gateway", "LOGNAME": "welfare-gateway"}  # fmt: skip
    argv: list[str] = []
    files: list[Path] = []
    stop_timeout = 90.0
    for key, value in service:
        value = map_paths(_specifiers(value, unit, instance), paths)
        if key == "EnvironmentFile":
            files.append(Path(value.lstrip("-")))
        elif key == "Environment":
            for assignment in shlex.split(value):
                k, v = assignment.split("=", 1)
                env[k] = v
        elif key == "ExecStart":
            argv = shlex.split(value)
        elif key == "StateDirectory":
            Path(map_paths(f"/var/lib/{value}", paths)).mkdir(parents=True, exist_ok=True)
        elif key == "TimeoutStopSec":
            stop_timeout = float(value)
    for file in files:  # systemd: what the files set wins over Environment=
        env.update(environment_file(file))
    assert argv, f"{filename}: no ExecStart"
    _spawn(Path(config["state"]), name, argv, env, stop_timeout)


def start_mosquitto(config: dict[str, Any]) -> None:
    """Debian's mosquitto.service: /run/mosquitto and /var/log/mosquitto for user
    mosquitto, then ``mosquitto -c /etc/mosquitto/mosquitto.conf`` (here with the files
    of include_dir inlined and the real paths and ports mapped)."""
    paths = config["paths"]
    state = Path(config["state"])
    mosquitto_user = pwd.getpwnam("mosquitto")
    for real in ("/run/mosquitto", "/var/log/mosquitto"):
        d = Path(map_paths(real, paths))
        d.mkdir(parents=True, exist_ok=True, mode=0o740)
        os.chown(d, mosquitto_user.pw_uid, mosquitto_user.pw_gid)
    main = Path(map_paths("/etc/mosquitto/mosquitto.conf", paths))
    lines = []
    for line in main.read_text().splitlines():
        include = re.match(r"^\s*include_dir\s+(\S+)", line)
        if include:
            for part in sorted(Path(map_paths(include.group(1), paths)).glob("*.conf")):
                lines += [f"# --- {part.name}", *part.read_text().splitlines()]
        else:
            lines.append(line)
    ports = config["ports"]
    listeners = []

    def listener(match: re.Match[str]) -> str:
        port = str(ports[match.group(2)])
        listeners.append(int(port))
        return match.group(1) + port

    text = re.sub(r"(?m)^(\s*listener\s+)(\d+)", listener, map_paths("\n".join(lines), paths))
    conf = state / "mosquitto.conf"
    conf.write_text(text + "\n")
    record = _spawn(state, "mosquitto", [shutil.which("mosquitto") or "mosquitto", "-c",
                                         str(conf)], dict(os.environ), 10.0)  # fmt: skip
    deadline = time.monotonic() + 15
    while not all(_port_open(p) for p in listeners):
        if not _alive(record) or time.monotonic() > deadline:
            log = Path(map_paths("/var/log/mosquitto/mosquitto.log", paths))
            tail = log.read_text()[-2000:] if log.exists() else ""
            errors = (state / "mosquitto.err").read_text()[-2000:]
            raise SystemExit(f"systemctl: mosquitto did not start: {errors}{tail}")
        time.sleep(0.05)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def systemctl(args: list[str]) -> int:
    config = _shim_config()
    state = Path(config["state"])
    verb, units = args[0], [a for a in args[1:] if not a.startswith("-")]
    start = verb in ("start", "restart") or (verb == "enable" and "--now" in args)
    for raw in units:
        name = raw.removesuffix(".service")
        if verb in ("stop", "restart"):
            stop_unit(state, name)
        if start:
            if name == "mosquitto":
                stop_unit(state, name)
                start_mosquitto(config)
            elif name.startswith("welfare-gateway-"):
                stop_unit(state, name)
                start_gateway_unit(config, name)
            else:
                print(f"systemctl (test): {name} is not emulated", file=sys.stderr)
                return 1
        elif verb == "reload":
            record = json.loads(_record_path(state, name).read_text())
            if _alive(record):
                os.kill(record["pid"], signal.SIGHUP)
        elif verb in ("is-active", "status"):
            path = _record_path(state, name)
            active = path.exists() and _alive(json.loads(path.read_text()))
            print("active" if active else "inactive")
            if not active:
                return 3
    if verb not in ("daemon-reload", "enable", "start", "restart", "stop", "reload",
                    "is-active", "status"):  # fmt: skip
        print(f"systemctl (test): {verb} is not emulated", file=sys.stderr)
        return 1
    return 0


# --- the test -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require_machine() -> None:
    if os.geteuid() != 0:
        pytest.skip("the guide runs as root (runuser, chown to mosquitto)")
    missing = [tool for tool in TOOLS if shutil.which(tool, path=SYSTEM_PATH) is None]
    for user in ("mosquitto", "postgres"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            missing.append(f"user {user}")
    if not (Path(sys.executable).parent / "welfare-gateway").exists():
        missing.append("the welfare-gateway script of this virtualenv")
    if missing:
        message = f"the guide needs {', '.join(missing)} (scripts/test installs them)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@dataclass
class Sandbox:
    root: Path
    values: dict[str, str]  # the guide's site values as the test sets them
    shim: Path
    state: Path
    env: dict[str, str]
    database_url: str  # the cluster's superuser, for the story of a failure

    def path(self, name: str) -> Path:
        return Path(self.values[name])


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    from tests.conftest import debian_postgres

    _require_machine()
    cluster = debian_postgres(preload=True)
    root = Path(tempfile.mkdtemp(prefix="wg-guide-"))
    root.chmod(0o755)  # Mosquitto drops to user mosquitto: it must reach its files here
    state = root / "systemd-state"
    try:
        defaults = site_values(next(b for b in guide() if b.marker == SITE_VALUES))
        values = dict(defaults)
        for name, default in defaults.items():
            if default.startswith("/"):
                values[name] = str(root / default.lstrip("/"))
        values["WG_SRC"] = str(REPO)
        values["BROKER_HOST"] = "localhost"
        values["DB_HOST"] = "127.0.0.1"
        values["DB_PORT"] = str(cluster.port)
        for name in ("MQTT_ADMIN_PORT", "MQTT_TLS_PORT", "MQTT_MTLS_PORT", "API_PORT",
                     "METRICS_PORT"):  # fmt: skip
            values[name] = str(_free_port())
        # what the skipped package installs leave: directories, Debian's mosquitto.conf
        for name in ("UNIT_DIR", "MOSQ_ETC"):
            Path(values[name]).mkdir(parents=True)
        (Path(values["MOSQ_ETC"]) / "conf.d").mkdir()
        (Path(values["MOSQ_ETC"]) / "mosquitto.conf").write_text(DEBIAN_MOSQUITTO_CONF)
        mosquitto_user = pwd.getpwnam("mosquitto")
        Path(values["MOSQ_DATA"]).mkdir(parents=True)
        os.chown(values["MOSQ_DATA"], mosquitto_user.pw_uid, mosquitto_user.pw_gid)
        paths = [[defaults[n], values[n]] for n in defaults if defaults[n].startswith("/")]
        paths += [[real, str(root / real.lstrip("/"))] for real in ("/var/lib", "/run",
                                                                     "/var/log")]  # fmt: skip
        state.mkdir()
        shim = root / "systemctl.json"
        shim.write_text(json.dumps({
            "paths": paths, "state": str(state), "unit_dir": values["UNIT_DIR"],
            "ports": {defaults[n]: values[n] for n in defaults if n.startswith("MQTT_")},
        }))  # fmt: skip
        home = root / "root"
        home.mkdir(mode=0o700)
        work = root / "work"
        work.mkdir()
        env = {
            "PATH": SYSTEM_PATH, "HOME": str(home), "LANG": "C.UTF-8", "USER": "root",
            "PGHOST": str(cluster.root), "PGPORT": str(cluster.port),
            "GUIDE_TEST_SHIM": str(shim), "GUIDE_TEST_PYTHON": sys.executable,
            "GUIDE_TEST_REPO": str(REPO),
        }  # fmt: skip
        yield Sandbox(root, values, shim, state, env, cluster.database_url("welfare_gateway"))
    finally:
        if state.exists():  # the gateway's services first, then the broker they use
            for unit in sorted(started_units(state), key=lambda u: u == "mosquitto"):
                stop_unit(state, unit)
        cluster.stop()
        if not os.environ.get("GUIDE_TEST_KEEP"):  # set it to look at what a run left
            shutil.rmtree(root, ignore_errors=True)


def guide_script(sandbox: Sandbox, blocks: list[Block]) -> str:
    """The guide's sh blocks in order, each after the line it starts on; the site values
    followed by the test's; skipped blocks checked and stood in for."""
    out = [
        "set -Eeuo pipefail",
        "trap 'echo \"docs/deploy.md:$GUIDE_LINE: exit $? from: $BASH_COMMAND\" >&2' ERR",
        'systemctl() { PYTHONPATH="$GUIDE_TEST_REPO" "$GUIDE_TEST_PYTHON" '
        '-m tests.integration.test_deploy_guide systemctl "$@"; }',
    ]
    for block in blocks:
        if block.lang != "sh":
            continue
        out += [f"GUIDE_LINE={block.line}", f"echo '### docs/deploy.md:{block.line}'"]
        if block.marker == SKIP_PACKAGES:
            assert "timescaledb-2-postgresql-15" in block.text
            out.append(": skipped, installed on this machine")
        elif block.marker == SKIP_PRODUCT:
            assert '"$WG_HOME/bin/pip" install "$WG_SRC"' in block.text
            script = Path(sys.executable).parent / "welfare-gateway"
            out.append(f'mkdir -p "$WG_HOME/bin" && ln -s {shlex.quote(str(script))} '
                       '"$WG_HOME/bin/welfare-gateway"')  # fmt: skip
        elif block.marker == SKIP_POSTGRES_CONF:
            from gateway.adapters.postgres.timescale import PRELOAD_LINE

            assert PRELOAD_LINE in block.text and "telemetry_level = off" in block.text
            out.append(": skipped, the private cluster preloads TimescaleDB")
        else:
            assert block.marker in (None, SITE_VALUES), block
            out.append(block.text)
            if block.marker == SITE_VALUES:
                out += [f"{name}={shlex.quote(value)}" for name, value in sandbox.values.items()]
    return "\n".join(out) + "\n"


def _database_story(url: str) -> str:
    """What the database holds of the devices, alarms and quarantine, after a failure."""
    import psycopg

    queries = [
        "select id, status from devices",
        "select device_id, valid_from, valid_to from assignments",
        "select device_id, kind, ts from device_alarms",
        "select kind, state, raised_at from alarms",
        "select device_id, reason, received_at from quarantine",
    ]
    out = ["\n--- database"]
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            for query in queries:
                out.append(f"{query}: {conn.execute(query).fetchall()}")
    except psycopg.Error as exc:
        out.append(f"unreadable: {exc}")
    return "\n".join(out)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def test_the_guide_from_a_bare_server_to_the_first_alarm(sandbox: Sandbox) -> None:
    import httpx

    from api.auth import Role, mint
    from gateway.config.settings import load_settings
    from gateway.config.unsafe_settings import refuse_unsafe

    blocks = guide()
    script = sandbox.root / "guide.sh"
    script.write_text(guide_script(sandbox, blocks))
    log = sandbox.root / "guide.log"
    with log.open("wb") as out:
        done = subprocess.run(["bash", str(script)], env=sandbox.env, cwd=sandbox.root / "work",
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              timeout=300)  # fmt: skip
    if done.returncode != 0:
        services = "".join(
            f"\n--- {p.name}\n{_tail(p, 1500)}"
            for p in sorted(sandbox.state.glob("*.err")) + sorted(sandbox.state.glob("*.out"))
        )
        pytest.fail(f"the guide failed (exit {done.returncode}):\n{_tail(log, 6000)}"
                    f"{services}{_database_story(sandbox.database_url)}",
                    pytrace=False)  # fmt: skip
    text = log.read_text()

    # the alarm, through the API with a token of our own: the operator acknowledged it
    etc = sandbox.path("WG_ETC")
    secrets = environment_file(etc / "secrets.env")
    token = mint(secrets["WG_JWT_SECRET"], tenant="vasteras", role=Role.OPERATOR,
                 subject="test", org=None, ttl_s=60)  # fmt: skip
    api = f"http://127.0.0.1:{sandbox.values['API_PORT']}"
    alarms = httpx.get(f"{api}/api/v1/alarms", headers={"Authorization": f"Bearer {token}"},
                       timeout=10).json()  # fmt: skip
    assert [(a["kind"], a["device_id"], a["state"], a["acknowledged_by"]) for a in alarms] == [
        ("button", "gps-0001", "acknowledged", "anna.nattpatrull")
    ], alarms
    assert '"kind": "button"' in text or '"kind":"button"' in text  # the operator's client

    # the services announced themselves as the units started them
    port = sandbox.values["METRICS_PORT"]
    worker = (sandbox.state / f"welfare-gateway-worker@{port}.out").read_text()
    client_id = f"wg-worker-{socket.gethostname()}-{port}"
    assert worker.startswith(f"welfare-gateway worker {client_id}: metrics on "
                             f"http://127.0.0.1:{port}/metrics; production mode")  # fmt: skip
    api_line = (sandbox.state / "welfare-gateway-api.out").read_text()
    assert api_line.startswith(f"welfare-gateway api: API and console on {api}/")
    assert "no problems found" in text  # doctor

    # the secrets the guide writes are the ones secrets.env.example explains, and the
    # longer example settings file holds every setting the guide's has and loads with them
    example = environment_file_keys(REPO / "deploy" / "secrets.env.example")
    assert set(secrets) == example
    written = _flat(tomllib.loads((etc / "welfare-gateway.toml").read_text()))
    longer = REPO / "deploy" / "welfare-gateway.toml"
    assert set(written) <= set(_flat(tomllib.loads(longer.read_text())))
    saved = {k: v for k, v in os.environ.items() if k.startswith("WG_")}
    try:
        for k in saved:
            del os.environ[k]
        os.environ.update(secrets)
        refuse_unsafe(load_settings(longer))
    finally:
        for k in secrets:
            os.environ.pop(k, None)
        os.environ.update(saved)

    # systemd itself finds nothing wrong in the units (where systemd-analyze is installed)
    analyze = shutil.which("systemd-analyze")
    if analyze:
        check = sandbox.root / "units"
        check.mkdir()
        config = json.loads(sandbox.shim.read_text())
        for unit in (REPO / "deploy" / "systemd").glob("*.service"):
            (check / unit.name).write_text(map_paths(unit.read_text(), config["paths"]))
        verify = subprocess.run(
            [analyze, "verify", "--man=no", f"welfare-gateway-worker@{port}.service",
             "welfare-gateway-api.service"],
            cwd=check, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert verify.returncode == 0 and not verify.stdout + verify.stderr, verify


def environment_file_keys(path: Path) -> set[str]:
    keys = set()
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keys.add(line.split("=", 1)[0].strip())
    return keys


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_hand_sql_for_a_dba_without_createrole() -> None:
    """The guide's SQL for an owner without CREATEROLE: migrate works, leaves the
    passwords to the DBA (saying so), and the roles are as least privileged as usual."""
    from gateway.adapters.postgres.migrate import migrate
    from gateway.config.settings import load_settings
    from gateway.entrypoints.doctor import check_database, database_urls
    from tests.conftest import debian_postgres

    _require_machine()
    [sql] = [b for b in guide() if b.marker == HAND_SQL]
    # the job scheduler off: this test is about roles, not TimescaleDB's jobs
    cluster = debian_postgres(preload=True, settings={"timescaledb.max_background_workers": "0"})
    try:
        passwords = {"owner_password": "owner-pw-1", "worker_password": "worker-pw-2",
                     "api_password": "api-pw-3"}  # fmt: skip
        variables = [arg for k, v in passwords.items() for arg in ("-v", f"{k}={v}")]
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", *variables],
            input=sql.text, capture_output=True, text=True, timeout=60, cwd="/",
            env={"PATH": SYSTEM_PATH, "PGHOST": str(cluster.root), "PGPORT": str(cluster.port)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        owner_url = cluster.database_url("welfare_gateway", "welfare_gateway", "owner-pw-1")
        result = migrate(owner_url, api_password="api-pw-3", worker_password="worker-pw-2",
                         timescaledb="require")  # fmt: skip
        assert result.hypertables
        assert sorted(n.split(":")[0] for n in result.notes) == [
            "password of wg_api not set",
            "password of wg_worker not set",
        ], result.notes
        settings = load_settings(mode="development", database_url=owner_url,
                                 worker_db_password="worker-pw-2", api_db_password="api-pw-3",
                                 timescaledb="require")  # fmt: skip
        found = check_database(settings, database_urls(settings))
        assert [f.line() for f in found if f.status != "ok"] == []
        assert any(f.message == "wg_worker and wg_api least privileged" for f in found)
        # the guide names every table and function each role was granted, and no other
        superuser = cluster.database_url("welfare_gateway")
        documented = documented_privileges(GUIDE.read_text(encoding="utf-8"))
        for role in ("wg_worker", "wg_api"):
            granted = granted_objects(superuser, role)
            assert documented[role] == granted, (
                f"docs/deploy.md, Database roles, {role}: not documented "
                f"{sorted(granted - documented[role])}, documented but not granted "
                f"{sorted(documented[role] - granted)}"
            )
    finally:
        cluster.stop()


def documented_privileges(markdown: str) -> dict[str, set[str]]:
    """The tables, views and functions (``name`` or ``name(...)`` in backticks) in the
    bullet lists under "`wg_worker`:" and "`wg_api` (...):" of the Database roles
    section."""
    section = markdown.split("### Database roles", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for role in ("wg_worker", "wg_api"):
        found = re.search(rf"^`{role}`[^\n]*:\n\n((?:(?:- |  ).*\n)+)", section, re.MULTILINE)
        assert found, f"docs/deploy.md, Database roles: no list for {role}"
        names = re.findall(r"`([a-z_]+)(?:\([^`]*\))?`", found.group(1))
        out[role] = set(names)
    return out


def granted_objects(url: str, role: str) -> set[str]:
    """Tables and views ``role`` holds a privilege on (any column of them too), and the
    functions granted to it by name (not those of an extension)."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            select table_name from information_schema.role_table_grants
                where grantee = %(role)s and table_schema = 'public'
            union select table_name from information_schema.column_privileges
                where grantee = %(role)s and table_schema = 'public'
            union select p.proname::text from pg_proc p
                join pg_namespace n on n.oid = p.pronamespace and n.nspname = 'public'
                where exists (select from aclexplode(p.proacl) a
                              where a.grantee = %(role)s::regrole and a.privilege_type = 'EXECUTE')
                  and not exists (select from pg_depend d
                                  where d.objid = p.oid and d.deptype = 'e')
            """,
            {"role": role},
        ).fetchall()
    return {row[0] for row in rows}


if __name__ == "__main__":  # the guide's `systemctl`, while the test runs it
    if sys.argv[1:2] == ["systemctl"]:
        sys.exit(systemctl(sys.argv[2:]))
    sys.exit(f"usage: {sys.argv[0]} systemctl VERB UNIT...")
