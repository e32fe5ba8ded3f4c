"""Production sign-in: tokens from an OpenID Connect provider, verified against its JWKS.

The key set is fetched over HTTP and cached for ``jwks_cache_s``. A token signed with a key
id we do not know triggers a refetch (the provider rotated its keys), at most one such per
``jwks_refetch_min_s``, so a stream of forged key ids cannot turn the API into a
hammer against the provider. Only asymmetric algorithms from settings are accepted; the
algorithm comes from our list, never from the token alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    import httpx

from api.auth import AuthError, Principal, Role
from gateway.config.settings import OidcSettings

log = logging.getLogger(__name__)


class JwksUnavailable(Exception):
    """The provider's key set could not be fetched (and none is cached)."""


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        cache_s: float,
        refetch_min_s: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = url
        self._cache_s = cache_s
        self._refetch_min_s = refetch_min_s
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._kid_fetch_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        if self._should_fetch(kid, now):
            await self._refresh(now)
        if kid is None:
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise AuthError("token has no kid and the provider has several keys")
        found = self._keys.get(kid)
        if found is None:
            raise AuthError("token signed with an unknown key")
        return found

    def _should_fetch(self, kid: str | None, now: float) -> bool:
        if self._fetched_at is None or now - self._fetched_at > self._cache_s:
            return True
        if kid is None or kid in self._keys:
            return False
        # an unknown key id: the provider may have rotated; look once per interval
        if self._kid_fetch_at is not None and now - self._kid_fetch_at < self._refetch_min_s:
            return False
        self._kid_fetch_at = now
        return True

    async def _refresh(self, now: float) -> None:
        import httpx  # here, not at the top: only a deployment with OIDC sign-in needs it

        async with self._lock:
            if self._fetched_at is not None and self._fetched_at > now:
                return  # another request refreshed while we waited
            try:
                client = self._client or httpx.AsyncClient(timeout=5)
                try:
                    response = await client.get(self._url)
                    response.raise_for_status()
                    data: Any = response.json()
                finally:
                    if self._client is None:
                        await client.aclose()
                keys = {
                    k.key_id: k
                    for k in jwt.PyJWKSet.from_dict(data).keys
                    if k.key_id is not None and k.public_key_use in (None, "sig")
                }
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                log.warning("jwks fetch failed", extra={"error": type(exc).__name__})
                if not self._keys:
                    raise JwksUnavailable(str(exc)) from None
                self._fetched_at = time.monotonic()  # keep the old keys, retry later
                return
            self._keys = keys
            self._fetched_at = time.monotonic()


class OidcVerifier:
    def __init__(self, settings: OidcSettings, keys: JwksKeys) -> None:
        self.settings = settings
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: OidcSettings) -> OidcVerifier:
        keys = JwksKeys(
            settings.jwks_url,
            cache_s=settings.jwks_cache_s,
            refetch_min_s=settings.jwks_refetch_min_s,
        )
        return cls(settings, keys)

    async def verify(self, token: str) -> Principal:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if header.get("alg") not in s.algorithms:
            raise AuthError(f"algorithm {header.get('alg')!r} is not accepted")
        key = await self._keys.key(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=s.algorithms,
                audience=s.audience,
                issuer=s.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return Principal(
            subject=str(claims["sub"]),
            tenant=_text_claim(claims, s.tenant_claim),
            role=_role(claims.get(s.role_claim)),
            org=_optional_text(claims.get(s.org_claim)),
        )


def _text_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise AuthError(f"token lacks the {name!r} claim")
    return value


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _role(value: Any) -> Role:
    """A role claim is one role name, or a list holding exactly one of our roles (providers
    often put every group of the user in one claim)."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    known = {r.value for r in Role}
    ours = {Role(n) for n in names if isinstance(n, str) and n in known}
    if len(ours) != 1:
        raise AuthError("token must carry exactly one welfare-gateway role")
    return ours.pop()
