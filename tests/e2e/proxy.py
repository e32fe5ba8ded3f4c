"""A TCP proxy between the browser and the API that can cut the network: every open
connection is closed and new ones are refused until it is restored. It keeps the request
heads it forwarded, so a test can see what the browser sent on reconnect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class DropProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.cut_off = False
        self.requests: list[bytes] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    record: bool) -> None:  # fmt: skip
        try:
            while data := await reader.read(65536):
                if record and b"HTTP/1.1\r\n" in data[:2048]:
                    self.requests.append(data.split(b"\r\n\r\n", 1)[0])
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        tasks = [asyncio.create_task(self._pipe(reader, up_writer, True)),
                 asyncio.create_task(self._pipe(up_reader, writer, False))]  # fmt: skip
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """The network drops: open connections die, new ones are refused."""
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()

    def restore(self) -> None:
        self.cut_off = False


@contextlib.asynccontextmanager
async def drop_proxy(base: str) -> AsyncIterator[tuple[str, DropProxy]]:
    host, port = base.removeprefix("http://").split(":")
    proxy = DropProxy(host, int(port))
    server = await asyncio.start_server(proxy._client, "127.0.0.1", 0)
    listen_port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{listen_port}", proxy
    finally:
        proxy.cut()
        server.close()
        for task in list(proxy._tasks):
            task.cancel()
        await server.wait_closed()
