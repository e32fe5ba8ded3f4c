"""CPU time of the processes of a run (user + system, seconds), sampled before and after
a phase: the gateway worker, the broker, the database (the postmaster and every backend
it forked). Divided by the messages of the phase, the cost of one message."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def cpu_s(process: psutil.Process, *, children: bool = False) -> float:
    """User + system seconds of ``process`` (and, with ``children``, of its children alive
    now; a backend that ended earlier is not counted, so sample while they live)."""
    try:
        times = process.cpu_times()
        total = times.user + times.system
        if children:
            for child in process.children(recursive=True):
                try:
                    child_times = child.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += child_times.user + child_times.system
        return float(total)
    except psutil.NoSuchProcess:
        return 0.0


def wait_quiet(
    process: psutil.Process, *, below: float = 0.05, window_s: float = 0.5,
    timeout_s: float = 60.0,
) -> float:  # fmt: skip
    """Wait until ``process`` uses less than ``below`` of a core over ``window_s``: the
    work of an earlier phase done (the alarm engine working off the telemetry backlog a
    saturation run left it, say). Bounded: after ``timeout_s`` it returns anyway. The
    CPU seconds the process used meanwhile."""
    start = last = cpu_s(process)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(window_s)  # one sampling window
        now = cpu_s(process)
        if now - last < below * window_s:
            break
        last = now
    return cpu_s(process) - start


def postmaster(pgdata: Path) -> psutil.Process:
    """The PostgreSQL server of a data directory (its pid is on postmaster.pid's first line)."""
    return psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))


@dataclass
class CpuMeter:
    """The CPU the named processes use between :meth:`start` and :meth:`stop`."""

    worker: psutil.Process | None
    broker: psutil.Process
    database: psutil.Process | None

    def sample(self) -> dict[str, float]:
        out = {"broker": cpu_s(self.broker)}
        if self.worker is not None:
            out["worker"] = cpu_s(self.worker)
        if self.database is not None:
            out["database"] = cpu_s(self.database, children=True)
        return out

    def start(self) -> None:
        self._start = self.sample()

    def stop(self) -> dict[str, float]:
        end = self.sample()
        return {name: end[name] - self._start[name] for name in end}


def per_message_us(seconds: float, messages: int) -> float:
    return round(seconds / messages * 1e6, 1) if messages else 0.0
