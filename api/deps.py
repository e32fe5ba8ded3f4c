"""Request dependencies: the authenticated principal and a tenant-scoped transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from api.auth import AuthError, Principal, Role
from api.authenticator import Authenticator
from api.oidc import JwksUnavailable
from api.rate_limits import ApiLimits
from gateway.control.protocol import Reply
from gateway.control.worker_link import NoWorker, WorkerLink

_bearer = HTTPBearer(auto_error=False)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise HTTPException(401, "bearer token required", {"WWW-Authenticate": "Bearer"})
    authenticator: Authenticator = request.app.state.authenticator
    limits: ApiLimits = request.app.state.api_limits
    try:
        who = await authenticator.principal(credentials.credentials)
    except AuthError as exc:
        client = request.client.host if request.client else "unknown"
        limits.check(f"failed-sign-in/{client}")  # slows token guessing from one address
        raise HTTPException(
            401, str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    except JwksUnavailable:
        raise HTTPException(503, "the sign-in provider's keys are unavailable") from None
    limits.check(f"caller/{who.tenant}/{who.subject}")
    return who


CurrentPrincipal = Annotated[Principal, Depends(principal)]


def require(*roles: Role) -> Any:
    def check(who: CurrentPrincipal) -> Principal:
        if who.role not in roles:
            raise HTTPException(403, f"role {who.role.value} may not do this")
        return who

    return Depends(check)


async def tenant_conn(
    request: Request, who: CurrentPrincipal
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A transaction as role wg_api with the caller's tenant set: row-level security and
    the tenant-filtered views apply to every statement in it."""
    pool: AsyncConnectionPool = request.app.state.pool
    try:
        async with pool.connection(timeout=5) as conn, conn.transaction():
            await conn.execute("select set_config('wg.tenant_id', %s, true)", (who.tenant,))
            yield conn
    except psycopg.OperationalError:
        raise HTTPException(503, "database unavailable") from None


# scope="function": the transaction commits before the response is sent, so a client
# told 201 can rely on the row, and a failing commit becomes the response (FastAPI's
# default for yield dependencies would commit only after the response has gone out).
TenantConn = Annotated[psycopg.AsyncConnection[Any], Depends(tenant_conn, scope="function")]


def workers(request: Request) -> WorkerLink:
    """The link to the gateway workers (503 when this API process has no broker)."""
    link: WorkerLink | None = request.app.state.workers
    if link is None:
        raise HTTPException(503, "this API process has no broker configured to reach the gateway")
    return link


async def ask_holder(
    request: Request, op: str, tenant: str, args: dict[str, Any], *, not_held: tuple[int, str],
    unchanged: str,
) -> Reply:  # fmt: skip
    """The answer (status 200) of the worker that holds what ``op`` is about; else an
    HTTP error: 503 (``unchanged`` says what did not happen) when no worker answered,
    ``not_held`` when none holds it, the worker's own status when it refused."""
    try:
        reply = await workers(request).ask(op, tenant, args)
    except NoWorker as exc:
        raise HTTPException(503, f"{exc}; {unchanged}") from None
    if reply is None:
        raise HTTPException(*not_held)
    if reply.status != 200:
        raise HTTPException(reply.status, reply.error or "refused")
    return reply
