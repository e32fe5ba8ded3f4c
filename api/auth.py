"""Bearer JWT authentication and roles.

Development tokens are HS256, signed with ``jwt_secret`` (``welfare-gateway token``).
Claims: ``sub`` (who), ``tenant`` (huvudman id), ``role``, ``org`` (organisation number,
for regional recipients), ``exp``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from gateway.domain.roles import Role as Role  # the one list of roles, re-exported here

ALGORITHM = "HS256"
ISSUER = "welfare-gateway"


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    role: Role
    org: str | None


class AuthError(Exception):
    pass


def mint(secret: str, *, tenant: str, role: Role, subject: str, org: str | None, ttl_s: int) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": subject,
        "tenant": tenant,
        "role": role.value,
        "iat": now,
        "exp": now + ttl_s,
    }
    if org:
        claims["org"] = org
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
        return Principal(
            subject=str(claims["sub"]),
            tenant=str(claims["tenant"]),
            role=Role(claims["role"]),
            org=claims.get("org"),
        )
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise AuthError(f"invalid token: {exc}") from None
