"""Security headers on every response, and CORS only for configured origins.

A pure ASGI middleware (it only adds headers to ``http.response.start``), so streamed
responses such as the SSE alarm stream pass through unbuffered. The console is written
without inline scripts or styles, so its Content-Security-Policy can be strict; when map
tiles are configured (``console.map_tile_url``), ``img-src`` also allows that one origin.
Responses of the data APIs are never cached: they carry personal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL (the settings have checked it is a plain one)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def build_csp(map_tile_url: str | None = None) -> str:
    """The console's policy: :data:`CSP`, plus the tile server's origin (nothing more of
    it) in ``img-src`` when map tiles are configured."""
    if map_tile_url is None:
        return CSP
    return CSP.replace("img-src 'self' data:", f"img-src 'self' data: {origin(map_tile_url)}")


# FastAPI's interactive docs load their script from a CDN; they get no CSP of ours.
_DOC_PATHS = ("/docs", "/redoc")
_NO_STORE_PREFIXES = ("/api/", "/fhir/")

_COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=(), payment=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, csp: str = CSP) -> None:
        self.app = app
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = list(_COMMON)
        if not path.startswith(_DOC_PATHS):
            extra.append((b"content-security-policy", self.csp))
        if path.startswith(_NO_STORE_PREFIXES):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in extra if n not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, *, cors_origins: Iterable[str], map_tile_url: str | None = None) -> None:
    origins = list(cors_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, csp=build_csp(map_tile_url))
