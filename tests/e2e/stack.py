"""The product as the console sees it: a real gateway (Mosquitto, PostgreSQL) and its API
on a real HTTP port, behind the strict Content-Security-Policy the console must live with."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.bootstrap import api_app
from gateway.worker.service import GatewayService
from tests.conftest import API_PASSWORD
from tests.integration.harness import running_gateway, serving, settings_for

SECRET = "console-test-secret-console-test-secret"
CSP = b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


def token(tenant: str, role: Role = Role.OPERATOR, subject: str | None = None) -> str:
    return mint(
        SECRET, tenant=tenant, role=role, subject=subject or f"{tenant}-natt", org=None, ttl_s=3600
    )


def auth(tenant: str, role: Role = Role.OPERATOR) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, role)}"}


def with_csp(app: Any) -> Any:
    """Every HTTP response carries a strict CSP (no inline script or style, no eval)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_csp(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", CSP),
                ]
            await send(message)

        await app(scope, receive, send_with_csp)

    return wrapped


@contextlib.asynccontextmanager
async def console_stack(
    mqtt_url: str, database_url: str, *, test_csp: bool = True, **overrides: Any
) -> AsyncIterator[tuple[str, GatewayService]]:
    """The gateway and its API on a real port. ``test_csp=False`` leaves only the product's
    own CSP (for a page that may load map tiles from the configured tile server)."""
    settings = settings_for(mqtt_url, database_url, jwt_secret=SECRET, **overrides)
    async with running_gateway(settings) as gw:
        app = api_app(
            settings,
            api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
            metrics_registry=gw.metrics.registry,
            mqtt_url=mqtt_url,
        )
        async with serving(with_csp(app) if test_csp else app) as base:
            yield base, gw
