"""A private Mosquitto 2 broker process: own config, free loopback port, TCP_NODELAY.

Used by the benchmarks and by the tests, so neither depends on a broker left running.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition (waiting *for* something, not a sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _ctrl_binary() -> str:
    path = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
    if not os.path.exists(path):
        raise RuntimeError("mosquitto_ctrl is not installed (package mosquitto)")
    return path


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(path):
        raise RuntimeError("mosquitto is not installed: run scripts/test (it installs it)")
    return path


def dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic security plugin (Debian ships it with mosquitto)."""
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so"))
    found += sorted(glob.glob("/usr/lib/mosquitto_dynamic_security.so"))
    if not found:
        raise RuntimeError("mosquitto_dynamic_security.so not found")
    return found[0]


@dataclass
class MosquittoTls:
    """A TLS listener: server cert, the CA client certs must chain to, and an optional
    CRL. With ``use_identity_as_username`` the client cert's CN is the username."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = True
    use_identity_as_username: bool = True
    #: The client id is the username (the CN): a certificate login skips the dynsec client
    #: id binding, so without this one device could take over another's session.
    use_username_as_clientid: bool = True
    crlfile: Path | None = None

    def lines(self, port: int) -> list[str]:
        lines = [
            f"listener {port} 127.0.0.1",
            f"cafile {self.cafile}",
            f"certfile {self.certfile}",
            f"keyfile {self.keyfile}",
            f"require_certificate {str(self.require_certificate).lower()}",
            f"use_identity_as_username {str(self.use_identity_as_username).lower()}",
            f"use_username_as_clientid {str(self.use_username_as_clientid).lower()}",
        ]
        if self.crlfile is not None:
            lines.append(f"crlfile {self.crlfile}")
        return lines


@dataclass
class Mosquitto:
    """A private Mosquitto 2 broker. ``extra_config`` lines are appended to the config.

    ``dynsec_admin=(username, password)`` loads the dynamic security plugin (its state in
    ``workdir/dynamic-security.json``, initialised once with that admin) and turns
    anonymous access off; ``tls`` adds a TLS listener on ``tls_port``."""

    workdir: Path
    extra_config: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    dynsec_admin: tuple[str, str] | None = None
    tls: MosquittoTls | None = None
    tls_port: int = 0

    @property
    def dynsec_file(self) -> Path:
        return self.workdir / "dynamic-security.json"

    def _secure_lines(self) -> list[str]:
        lines: list[str] = []
        if self.dynsec_admin is not None:
            if not self.dynsec_file.exists():
                user, password = self.dynsec_admin
                subprocess.run(
                    [_ctrl_binary(), "dynsec", "init", str(self.dynsec_file), user, password],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            lines += [
                f"plugin {dynsec_plugin()}",
                f"plugin_opt_config_file {self.dynsec_file}",
            ]
        if self.tls is not None:
            if not self.tls_port:
                self.tls_port = free_port()
            lines += self.tls.lines(self.tls_port)
        if lines and os.geteuid() == 0:
            # As root Mosquitto switches to user "mosquitto", which could not save the
            # dynsec state or read the keys in a private temporary directory.
            lines.append("user root")
        return lines

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        conf = self.workdir / "mosquitto.conf"
        secure = self._secure_lines()
        anonymous = "false" if self.dynsec_admin is not None else "true"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {anonymous}",
            "set_tcp_nodelay true",
            "persistence false",
            # Never drop queued QoS 1 messages for a slow or offline persistent session:
            # backpressure means the broker queues, it does not discard.
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest file " + str(self.workdir / "mosquitto.log"),
            "log_type error",
            "log_type warning",
            "log_type notice",
            *self.extra_config,
            *secure,
        ]
        conf.write_text("\n".join(lines) + "\n")
        proc = self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ports = [self.port] + ([self.tls_port] if self.tls is not None else [])
        wait_until(
            lambda: all(port_open(p) for p in ports) or proc.poll() is not None, 10, "mosquitto"
        )
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"mosquitto failed to start: {err}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its configuration, TLS files and the CRL."""
        if self.proc is None:
            raise RuntimeError("mosquitto is not running")
        self.proc.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        self.stop()
        self.start()
