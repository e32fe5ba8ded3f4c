"""What a figure was measured on: cores, CPU model, memory, versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from typing import Any


def describe() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mosquitto = subprocess.run(
            ["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
    except (OSError, IndexError):
        mosquitto = "unknown"
    versions = {}
    for dist in ("welfare-gateway", "aiomqtt", "paho-mqtt", "psycopg", "pydantic", "pgserver"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    versions["python"] = platform.python_version()
    versions["mosquitto"] = mosquitto
    versions["postgresql"] = "16 (pgserver)"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "versions": versions,
    }
