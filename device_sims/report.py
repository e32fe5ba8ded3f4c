"""What a fleet run did: counters filled in while it runs, returned at the end."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field


class Cause(enum.Enum):
    """Why a connection attempt failed, as an operator would fix it."""

    REFUSED = "connection refused"  # nothing listens on the port
    UNREACHABLE = "broker unreachable"  # unknown host, no route
    NOT_AUTHORISED = "not authorised"  # CONNACK: bad credentials or no such identity
    REJECTED = "refused by the broker"  # another negative CONNACK (client id, busy)
    TLS = "TLS error"  # certificate verification, handshake, client certificate
    CLOSED = "closed by the broker"  # the socket closed before the CONNACK
    TIMEOUT = "timeout"  # no answer in time


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
    failures: Counter[Cause] = field(default_factory=Counter)  # failed attempts by cause
    failure_detail: dict[Cause, str] = field(default_factory=dict)  # first message per cause
    #: Devices that tried and never connected, by the cause of their last attempt.
    unconnected: Counter[Cause] = field(default_factory=Counter)
    #: Nothing had connected by the run's connect deadline, so the run was ended.
    gave_up: bool = False

    @property
    def total_published(self) -> int:
        return sum(self.published.values())

    @property
    def unconnected_devices(self) -> int:
        return sum(self.unconnected.values())

    def main_cause(self) -> Cause:
        """The most common reason devices did not connect (TIMEOUT if none is known)."""
        counts = self.unconnected or self.failures
        if not counts:
            return Cause.TIMEOUT
        return max(counts, key=lambda cause: (counts[cause], -list(Cause).index(cause)))

    def describe(self, cause: Cause) -> str:
        """``cause (detail)``: e.g. ``not authorised (Not authorized)``."""
        detail = self.failure_detail.get(cause)
        if not detail or detail.lower() == cause.value.lower():
            return cause.value
        return f"{cause.value} ({detail})"

    def summary(self) -> str:
        kinds = ", ".join(f"{name}={count}" for name, count in sorted(self.published.items()))
        text = (
            f"{self.devices} devices ({self.connected_devices} connected), "
            f"{self.total_published} messages in {self.elapsed_s:.1f} s [{kinds}], "
            f"{self.connections} connections, {self.connect_failures} failed attempts, "
            f"{self.connection_losses} lost, {self.commands} commands, {self.dropped} dropped"
        )
        if self.unconnected:
            why = "; ".join(
                f"{count} {self.describe(cause)}" for cause, count in self.unconnected.most_common()
            )
            text += f"; {self.unconnected_devices} never connected: {why}"
        return text
