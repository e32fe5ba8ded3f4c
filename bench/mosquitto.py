"""A private Mosquitto 2 broker process: own config, free loopback port, TCP_NODELAY.

Used by the benchmarks and by the tests, so neither depends on a broker left running.
"""

from __future__ import annotations

import os
import shutil
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


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(path):
        raise RuntimeError("mosquitto is not installed: run scripts/test (it installs it)")
    return path


@dataclass
class Mosquitto:
    """A private Mosquitto 2 broker. ``extra_config`` lines are appended to the config."""

    workdir: Path
    extra_config: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
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
        ]
        conf.write_text("\n".join(lines) + "\n")
        proc = self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until(lambda: port_open(self.port) or proc.poll() is not None, 10, "mosquitto")
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

    def restart(self) -> None:
        self.stop()
        self.start()
