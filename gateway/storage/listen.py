"""Following a PostgreSQL NOTIFY channel to keep an in-memory cache current.

On every (re)connection ``reload`` runs first (changes made while we were not listening
are picked up), then each notification's payload goes to ``changed``. While the database
is away the cache keeps serving what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

log = logging.getLogger(__name__)


async def follow(
    url: str,
    channel: str,
    *,
    reload: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
    changed: Callable[[str], Awaitable[None]],
    stop: asyncio.Event,
    full_reload_s: float = 300.0,
) -> None:
    backoff = 0.1
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=5
            ) as conn:
                await conn.execute(f"listen {channel}")
                await reload(conn)
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
            log.warning(
                "lost the database while following changes; serving from memory",
                extra={"channel": channel, "error": type(exc).__name__},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)
