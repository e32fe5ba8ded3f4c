"""One device's firmware session: simulator + outbox + link intent (pure).

:class:`DeviceSession` is what a transport adapter drives. It routes the simulator's
output: messages go to the :class:`~device_sims.outbox.Outbox`, link actions change
``want_online`` (a scripted connection loss or a flat battery) and ``down_mode``. The
transport reports what really happens to the connection (:meth:`on_connected`,
:meth:`on_disconnected`), which may differ from the intent when the broker goes away.
The same class drives both the MQTT adapter (:mod:`device_sims.connection`) and the
broker-free :mod:`device_sims.dry_run`, so buffering and replay are tested without MQTT.
"""

from __future__ import annotations

from datetime import datetime

from device_sims.device import DeviceSim
from device_sims.envelope import LinkDown, LinkUp, Outgoing, Output
from device_sims.outbox import DEFAULT_LIMIT, Outbox
from device_sims.params import DisconnectMode


class DeviceSession:
    __slots__ = ("connected", "down_mode", "outbox", "sim", "want_online")

    def __init__(self, sim: DeviceSim, *, outbox_limit: int = DEFAULT_LIMIT) -> None:
        self.sim = sim
        self.outbox = Outbox(outbox_limit)
        self.want_online = True
        self.down_mode: DisconnectMode = "clean"
        self.connected = False

    @property
    def device_id(self) -> str:
        return self.sim.device_id

    @property
    def dead(self) -> bool:
        return self.sim.dead

    @property
    def link_up(self) -> bool:
        return self.connected and self.want_online

    def next_due(self) -> datetime | None:
        return self.sim.next_due()

    def tick(self, sim_now: datetime) -> None:
        """Advance the simulator to simulated instant ``sim_now`` and route its output."""
        self._route(self.sim.advance(sim_now))

    def on_command(self, payload: bytes, now: datetime) -> None:
        self._route(self.sim.handle_command_payload(payload, now))

    def on_connected(self, now: datetime) -> None:
        """The transport is connected: announce online before replaying the buffer."""
        self.connected = True
        self.outbox.put_first(self.sim.status("online", now))

    def on_disconnected(self) -> None:
        self.connected = False
        self.outbox.drop_unbuffered()

    def offline_status(self, now: datetime) -> Outgoing:
        """Published (retained) before a graceful shutdown at the end of a run."""
        return self.sim.status("offline", now)

    def _route(self, outputs: list[Output]) -> None:
        for item in outputs:
            if isinstance(item, Outgoing):
                self.outbox.put(item, link_up=self.link_up)
            elif isinstance(item, LinkDown):
                self.want_online = False
                self.down_mode = item.mode
                self.outbox.hold()
            elif isinstance(item, LinkUp) and not self.sim.dead:
                self.want_online = True
                self.outbox.release()
