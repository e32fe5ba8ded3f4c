"""Following a PostgreSQL NOTIFY channel to keep an in-memory cache current.

On every (re)connection ``reload`` runs first (changes made while we were not listening
are picked up), then each notification's payload goes to ``changed``. While the database
is away the cache keeps serving what it has.

At start-up a cache loads through ``load_listening``, which listens before it loads (so
nothing changed in between goes unnoticed) and hands the connection on to ``follow``:
the cache is read from the database once at start, not twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import psycopg

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")


def merged(current: dict[K, V], fresh: Iterable[tuple[K, V]]) -> dict[K, V]:
    """The cache after a full reload: ``fresh``'s entries, keeping the object already held
    wherever it equals the fresh one. A reload then leaves the long-lived objects where
    they are and lets the fresh copies go at once, so the periodic reload costs a batch of
    short-lived objects rather than a second copy of the whole cache."""
    out: dict[K, V] = {}
    for key, value in fresh:
        held = current.get(key)
        out[key] = held if held is not None and held == value else value
    return out


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
    """Until ``stop``. ``first``: a connection from ``load_listening``, used without a
    reload (it has just loaded); later connections reload first."""
    backoff = 0.1
    held = first
    try:
        while not stop.is_set():
            try:
                conn = (
                    held
                    if held is not None
                    else await psycopg.AsyncConnection.connect(
                        url, autocommit=True, connect_timeout=5
                    )
                )
                async with conn:
                    if held is None:
                        await conn.execute(f"listen {channel}")
                        await reload(conn)
                    held = None
                    backoff = 0.1
                    loop = asyncio.get_running_loop()
                    last_full = loop.time()
                    while not stop.is_set():
                        async for notify in conn.notifies(timeout=0.5):
                            await changed(notify.payload)
                        if loop.time() - last_full > full_reload_s:
                            await reload(conn)
                            last_full = loop.time()
            except (psycopg.Error, OSError) as exc:
                held = None
                log.warning(
                    "lost the database while following changes; serving from memory",
                    extra={"channel": channel, "error": type(exc).__name__},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
    finally:
        if held is not None:  # stopped before it was used
            await held.close()
