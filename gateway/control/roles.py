"""Which worker runs the alarm engine: the online worker that started first. Pure, no I/O.

Every worker announces itself, retained, on ``gateway/workers/{id}`` with the time it
started, and its last will says offline (:mod:`gateway.control.protocol`). All workers
read the same retained messages and wills from the same broker, so they agree on the
list of online workers and therefore on the oldest one, without any protocol of their
own: the broker's sessions and last wills are the membership. A worker that joins never
displaces the engine that runs (it is younger); when the engine's worker dies, the broker
publishes its will and the next oldest takes over. The engine's MQTT sessions have one
well-known client id per deployment, so even while two workers briefly disagree the
broker lets only one of them hold the sessions (:mod:`gateway.worker.alarms.engine_role`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Membership:
    """The workers heard online, with when each started."""

    me: str
    since: dict[str, int] = field(default_factory=dict)

    def update(self, worker: str, since_us: int | None) -> bool:
        """Record a presence (None: offline). True when the leader changed."""
        before = self.leader()
        if since_us is None:
            self.since.pop(worker, None)
        else:
            self.since[worker] = since_us
        return self.leader() != before

    def clear(self) -> None:
        """The connection to the broker is lost: nothing is known any more."""
        self.since.clear()

    def leader(self) -> str | None:
        if not self.since:
            return None
        return min(self.since.items(), key=lambda item: (item[1], item[0]))[0]

    def leads(self) -> bool:
        return self.leader() == self.me

    def knows_me(self) -> bool:
        """This worker's own presence is back from the broker: it can tell who leads
        (before that, an older worker's presence may not have arrived either)."""
        return self.me in self.since
