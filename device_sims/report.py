"""What a fleet run did: counters filled in while it runs, returned at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class FleetReport:
    devices: int = 0
    connected_devices: int = 0  # devices that connected at least once
    connections: int = 0  # successful connections, reconnects included
    connect_failures: int = 0
    connection_losses: int = 0  # unplanned: broker gone, publish timed out
    commands: int = 0
    dropped: int = 0  # live-only messages dropped offline, or outbox overflow
    failed_devices: int = 0  # a device task died of an unexpected error (a bug)
    elapsed_s: float = 0.0
    published: Counter[str] = field(default_factory=Counter)  # by message type

    @property
    def total_published(self) -> int:
        return sum(self.published.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{name}={count}" for name, count in sorted(self.published.items()))
        return (
            f"{self.devices} devices ({self.connected_devices} connected), "
            f"{self.total_published} messages in {self.elapsed_s:.1f} s [{kinds}], "
            f"{self.connections} connections, {self.connect_failures} failed attempts, "
            f"{self.connection_losses} lost, {self.commands} commands, {self.dropped} dropped"
        )
