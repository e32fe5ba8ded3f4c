"""Embedded defaults: a real PostgreSQL from the ``pgserver`` wheel and an in-process amqtt
broker on loopback, so the demo and a first run need nothing installed."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """PostgreSQL 16 from the pgserver wheel, data in ``pgdata``, reached by Unix socket."""

    def __init__(self, pgdata: Path, *, delete_on_stop: bool = False) -> None:
        self.pgdata = pgdata
        self._delete = delete_on_stop
        self._server: Any = None

    def start(self) -> str:
        if "XDG_RUNTIME_DIR" not in os.environ:  # where pgserver keeps its lock file
            runtime = Path(tempfile.gettempdir()) / f"wg-runtime-{os.getuid()}"
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        from pgserver.postgres_server import get_server

        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.pgdata, cleanup_mode="delete" if self._delete else "stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def with_user(url: str, user: str, password: str) -> str:
    """The same database URL with other credentials (e.g. the API's role)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{quote(user)}:{quote(password)}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class EmbeddedBroker:
    """amqtt (MQTT 3.1.1) in this process, anonymous, on 127.0.0.1:port (demo only)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = _corrected_broker()(config)
        await self._broker.start()
        log.info("embedded broker started", extra={"port": self.port})

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


class _SnapshotDict(dict[Any, Any]):
    """A dict whose iteration walks a copy, so a loop that awaits between items sees no
    "dictionary changed size during iteration" when another client (un)subscribes."""

    def __iter__(self) -> Any:
        return iter(list(super().__iter__()))

    def items(self) -> Any:
        return list(super().items())


def _corrected_broker() -> type[Any]:
    """amqtt's Broker with two faults of 0.12.1 corrected (tests/integration/
    test_embedded_broker.py shows both):

    - on every connect it replays the retained messages matching *every* client's
      subscriptions to the new client (a simulated device subscribed only to its
      commands received every device's retained status): retained messages now go only
      to a subscription the session itself holds;
    - it iterates its subscription table across awaits, so a client connecting while
      another subscribes failed with "dictionary changed size during iteration" and
      lost its connection: the table iterates over a snapshot.

    Mosquitto has neither fault; amqtt stays because the demo needs a broker with
    nothing installed, and it is the maintained pure-Python one.
    """
    from amqtt.broker import Broker

    class CorrectedBroker(Broker):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._subscriptions: dict[str, Any] = _SnapshotDict(self._subscriptions)

        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Any
        ) -> None:
            topic_filter = subscription[0]
            held = [
                qos
                for holder, qos in self._subscriptions.get(topic_filter, ())
                if holder.client_id == session.client_id
            ]
            if held:
                await super()._publish_retained_messages_for_subscription(
                    (topic_filter, held[0]), session
                )

    return CorrectedBroker
