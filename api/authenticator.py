"""Who is calling: development tokens and/or OIDC tokens, chosen by the token's issuer.

Development tokens (HS256, ``welfare-gateway token``) are accepted only while
``dev_tokens`` is on; production turns it off and configures ``oidc``. The issuer is read
unverified only to pick the verifier; the chosen verifier then checks everything.
"""

from __future__ import annotations

import jwt

from api.auth import ISSUER, AuthError, Principal, verify
from api.oidc import OidcVerifier
from gateway.config.settings import Settings


class Authenticator:
    def __init__(self, *, dev_secret: str | None, oidc: OidcVerifier | None) -> None:
        self._dev_secret = dev_secret
        self._oidc = oidc

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        return cls(
            dev_secret=settings.jwt_secret.get_secret_value() if settings.dev_tokens else None,
            oidc=OidcVerifier.from_settings(settings.oidc) if settings.oidc else None,
        )

    async def principal(self, token: str) -> Principal:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if self._oidc is not None and issuer == self._oidc.settings.issuer:
            return await self._oidc.verify(token)
        if self._dev_secret is not None and issuer == ISSUER:
            return verify(self._dev_secret, token)
        raise AuthError("token from an issuer this gateway does not accept")
