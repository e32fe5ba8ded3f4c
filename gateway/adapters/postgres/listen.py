"""Following a PostgreSQL NOTIFY channel to keep an in-memory cache current.

On every (re)connection ``reload`` runs first (changes made while we were not listening
are picked up), then each notification's payload goes to ``changed``. While the database
is away the cache keeps serving what it has.

A cache uses a ``Subscription``: at start-up it listens before it loads (so nothing
changed in between goes unnoticed) and hands that connection on to ``follow``, so the
cache is read from the database once at start, not twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

from gateway.support.backoff import Backoff

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")


def kept(current: dict[K, V], key: K, fresh: V) -> V:
    """The object ``current`` holds for ``key`` if it equals ``fresh``, else ``fresh``: a
    cache's full reload then leaves the long-lived objects where they are and lets the
    fresh copies go at once, so the periodic reload costs a batch of short-lived objects
    rather than a second copy of the whole cache."""
    held = current.get(key)
    return held if held is not None and held == fresh else fresh


async def load_listening(
    url: str, channel: str, load: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]
) -> psycopg.AsyncConnection[Any]:
    """A connection listening on ``channel`` that has run ``load``; give it to ``follow``
    as ``first`` (or close it)."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
    try:
        await conn.execute(f"listen {channel}")  # a constant of ours, never input
        await load(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


async def follow(
    url: str,
    channel: str,
    *,
    reload: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
    changed: Callable[[str], Awaitable[None]],
    stop: asyncio.Event,
    full_reload_s: float = 300.0,
    first: psycopg.AsyncConnection[Any] | None = None,
) -> None:
    """Until ``stop``. ``first``: a connection from ``load_listening``, used as it is (it
    has just loaded); every later connection listens and reloads first."""
    backoff = Backoff(0.1, 5.0)
    conn = first
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            try:
                if conn is None:
                    conn = await load_listening(url, channel, reload)
                async with conn:
                    backoff.reset()
                    loop = asyncio.get_running_loop()
                    full_at = loop.time() + full_reload_s
                    while not stop.is_set():
                        # what the server has sent, and what came during a reload
                        async for notify in conn.notifies(timeout=0):
                            await changed(notify.payload)
                        if loop.time() >= full_at:
                            await reload(conn)
                            full_at = loop.time() + full_reload_s
                            continue
                        await _readable(conn, stopped, full_at - loop.time())
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "lost the database while following changes; serving from memory",
                    extra={"channel": channel, "error": type(exc).__name__},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next())
            finally:
                conn = None  # closed by now (or never opened)
    finally:
        stopped.cancel()
        if conn is not None:  # stopped before it was used
            await conn.close()


async def _readable(
    conn: psycopg.AsyncConnection[Any], stopped: asyncio.Future[Any], within_s: float
) -> None:
    """Until the connection's socket has something to read (a notification, or the
    server gone), ``stopped`` is done, or ``within_s`` seconds have passed. Nothing runs
    meanwhile: psycopg's own wait for a notification (``notifies(timeout=...)``) wakes
    the loop every 0.1 s to look, and a worker follows seven channels."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    fd = conn.fileno()
    loop.add_reader(fd, ready)
    try:
        await asyncio.wait((readable, stopped), timeout=within_s,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    finally:
        loop.remove_reader(fd)
        readable.cancel()


class Subscription:
    """One cache's channel: ``load`` reads the cache while already listening, ``follow``
    goes on from that same connection, so the cache is read once at start and no change
    made in between is missed."""

    def __init__(
        self,
        url: str,
        channel: str,
        reload: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
        *,
        full_reload_s: float = 300.0,
    ) -> None:
        self._url = url
        self._channel = channel
        self._reload = reload
        self._full_reload_s = full_reload_s
        self._loaded: psycopg.AsyncConnection[Any] | None = None  # from load to follow

    async def load(self) -> None:
        await self.close()
        self._loaded = await load_listening(self._url, self._channel, self._reload)

    async def follow(self, changed: Callable[[str], Awaitable[None]], stop: asyncio.Event) -> None:
        first, self._loaded = self._loaded, None
        await follow(
            self._url, self._channel, reload=self._reload, changed=changed, stop=stop,
            full_reload_s=self._full_reload_s, first=first,
        )  # fmt: skip

    async def close(self) -> None:
        """Close the start-up connection if ``follow`` never took it."""
        if self._loaded is not None:
            await self._loaded.close()
            self._loaded = None
