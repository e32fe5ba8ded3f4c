"""The adoption of a departed worker's storage session by the active engine's worker.

Mosquitto deals a shared subscription's messages to offline members too, so a worker
that died leaves its share queued in its persistent session. The engine's worker resumes
that session under the dead worker's client id (:class:`MqttConsumer` with ``adopt``:
it unsubscribes at once, so nothing new is dealt to it), hands what it holds to its own
storage path (acknowledged after commit, as always) and, once the session has held
nothing for ``quiet_s``, ends it with the last DISCONNECT (MQTT 5: session expiry 0).

An attempt that ends before that (the database down past ``attempt_s``, the connection
lost, the worker stopping) leaves the session, and what it still holds, at the broker
for the session's expiry; the adoption is tried again, after a growing pause, for as
long as the worker stays away (review of issue #22: an adopting connection used to end
the session whatever it had delivered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from gateway.support.backoff import Backoff
from gateway.worker.consumer import ConsumerConfig, Inbound, MqttConsumer

log = logging.getLogger(__name__)

#: makes an MQTT session from its config and handler (:func:`gateway.bootstrap.worker`)
SessionFactory = Callable[[ConsumerConfig, Callable[[Inbound], Awaitable[None]]], MqttConsumer]


@dataclass(frozen=True)
class AdoptionTimes:
    quiet_s: float = 1.0  # a session is drained once it has held nothing for this long
    attempt_s: float = 300.0  # an attempt not drained by then ends (the database down)
    retry_s: float = 2.0  # the pause before the next attempt, doubling up to retry_max_s
    retry_max_s: float = 30.0
    sample_s: float = 0.1  # how often an attempt looks at what the session holds


class SessionAdoption:
    def __init__(
        self,
        storage: ConsumerConfig,
        session: SessionFactory,
        store: Callable[[Inbound], Awaitable[None]],
        times: AdoptionTimes = AdoptionTimes(),
    ) -> None:
        self._storage = storage
        self._session = session
        self._store = store
        self._times = times

    async def drain(self, worker: str, away: Callable[[], bool]) -> bool:
        """Adopt ``worker``'s storage session until drained (True), or until ``away()``
        says it is back (False: its session is its own again)."""
        backoff = Backoff(self._times.retry_s, self._times.retry_max_s)
        while not await self._attempt(worker):
            log.warning(
                "storage session of a departed worker not drained yet; trying again",
                extra={"worker": worker, "retry_s": backoff.peek()},
            )  # fmt: skip
            await asyncio.sleep(backoff.next())  # the pause between attempts
            if not away():
                return False
        log.info("storage session of a departed worker drained", extra={"worker": worker})
        return True

    async def _attempt(self, worker: str) -> bool:
        """One connection; True once drained (and the session ended with it)."""
        config = replace(self._storage, client_id=worker, adopt=True, name="adopted storage")
        consumer = self._session(config, self._store)
        times = self._times
        done = asyncio.Event()
        drained = False

        async def until_empty() -> None:
            nonlocal drained
            await consumer.connected.wait()
            loop = asyncio.get_running_loop()
            quiet_since, limit = loop.time(), loop.time() + times.attempt_s
            while loop.time() < limit:
                if consumer.unacked or consumer.holding:
                    quiet_since = loop.time()
                elif loop.time() - quiet_since >= times.quiet_s:
                    drained = True
                    consumer.end_session_on_stop()
                    break
                await asyncio.sleep(times.sample_s)  # sampling the session
            done.set()

        watcher = asyncio.create_task(until_empty())
        try:
            await consumer.run(done)
        finally:
            watcher.cancel()
        return drained and done.is_set()
