"""Sign-in, abuse limits and browser protections of the API, over real HTTP.

The OpenID Connect provider (a region's or municipality's identity provider) is outside
the product: here a small JWKS endpoint on a real loopback HTTP server stands in for it,
serving the public keys of RSA/EC key pairs the test generates.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api import http_headers
from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.bootstrap import api_app
from gateway.config.settings import Settings, SettingsError, load_settings
from tests.conftest import API_PASSWORD
from tests.integration.harness import seed, serving

SECRET = "test-secret-test-secret-test-secret"
ISSUER = "https://idp.region.example/realms/care"
AUDIENCE = "welfare-gateway"


class Provider:
    """Signing keys and the JWKS document of a stand-in identity provider."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.add_key("k1")

    def add_key(self, kid: str, curve: bool = False) -> None:
        self.keys[kid] = (
            ec.generate_private_key(ec.SECP256R1())
            if curve
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    def jwks(self) -> dict[str, Any]:
        self.fetches += 1
        out = []
        for kid, key in self.keys.items():
            algo = jwt.algorithms.ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) \
                else jwt.algorithms.RSAAlgorithm  # fmt: skip
            jwk = algo.to_jwk(key.public_key(), as_dict=True)
            jwk.update(kid=kid, use="sig")
            out.append(jwk)
        return {"keys": out}

    def token(self, kid: str = "k1", **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": "nurse-7", "iat": now, "exp": now + 300,
            "tenant": "kommun-a", "role": "operator",
        }  # fmt: skip
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        key = self.keys[kid]
        alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


@contextlib.asynccontextmanager
async def provider_server(provider: Provider) -> AsyncIterator[str]:
    idp = FastAPI()
    idp.get("/jwks")(provider.jwks)
    async with serving(idp) as base:
        yield f"{base}/jwks"


@contextlib.asynccontextmanager
async def api(database_url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD, **overrides
    )
    app = api_app(
        settings,
        api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
        metrics_registry=CollectorRegistry(),
    )
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def oidc(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Provider]]:
    await seed(database_url)
    provider = Provider()
    async with provider_server(provider) as jwks_url, api(
        database_url,
        dev_tokens=False,
        oidc={"issuer": ISSUER, "jwks_url": jwks_url, "audience": AUDIENCE,
              "jwks_refetch_min_s": 3600},
        fhir_id_key="fhir-id-key-for-the-oidc-tests-0001",
    ) as client:  # fmt: skip
        yield client, provider


async def test_oidc_token_signs_in_with_tenant_and_role_from_claims(oidc) -> None:
    client, provider = oidc
    r = await client.get("/api/v1/devices", headers=bearer(provider.token()))
    assert r.status_code == 200, r.text
    assert {d["id"] for d in r.json()} >= {"gps-1"}
    # a role list from the provider's groups claim works when exactly one role is ours
    r = await client.get(
        "/api/v1/devices", headers=bearer(provider.token(role=["staff", "operator"]))
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "another-app"}, "audience"),
        ({"iss": "https://evil.example/"}, "issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"tenant": None}, "tenant"),
        ({"role": ["operator", "tenant_admin"]}, "role"),
        ({"role": "superuser"}, "role"),
    ],
)
async def test_oidc_token_refused(oidc, claims, why) -> None:
    client, provider = oidc
    r = await client.get("/api/v1/devices", headers=bearer(provider.token(**claims)))
    assert r.status_code == 401, (why, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_algorithm_confusion_and_forged_keys_are_refused(oidc) -> None:
    client, provider = oidc
    public_pem = provider.keys["k1"].public_key().public_bytes(
        encoding=__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM,
        format=__import__("cryptography").hazmat.primitives.serialization.PublicFormat
        .SubjectPublicKeyInfo,
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60,
              "tenant": "kommun-a", "role": "operator"}  # fmt: skip
    # HS256 "signed" with the provider's public key (the classic confusion attack)
    hs = jwt.encode(claims, public_pem[:64], algorithm="HS256", headers={"kid": "k1"})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k1"})
    for token in (hs, unsigned, forged):
        r = await client.get("/api/v1/devices", headers=bearer(token))
        assert r.status_code == 401, r.text


async def test_rotated_provider_keys_are_picked_up_and_unknown_kids_do_not_hammer_it(
    oidc,
) -> None:
    client, provider = oidc
    assert (await client.get("/api/v1/devices", headers=bearer(provider.token()))).status_code \
        == 200  # fmt: skip
    fetched = provider.fetches
    provider.add_key("k2", curve=True)  # rotation: a new key the API has not seen
    r = await client.get("/api/v1/devices", headers=bearer(provider.token("k2")))
    assert r.status_code == 200, r.text
    assert provider.fetches == fetched + 1
    # forged key ids: at most one refetch per jwks_refetch_min_s (an hour here)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(5):
        token = jwt.encode({"iss": ISSUER}, stranger, algorithm="RS256", headers={"kid": f"x{i}"})
        assert (await client.get("/api/v1/devices", headers=bearer(token))).status_code == 401
    assert provider.fetches == fetched + 1


async def test_dev_tokens_are_refused_when_turned_off(oidc) -> None:
    client, _ = oidc
    dev = mint(SECRET, tenant="kommun-a", role=Role.OPERATOR, subject="x", org=None, ttl_s=60)
    r = await client.get("/api/v1/devices", headers=bearer(dev))
    assert r.status_code == 401
    assert "issuer" in r.json()["detail"]


async def test_security_headers_and_no_caching_of_personal_data(database_url) -> None:
    await seed(database_url)
    token = mint(SECRET, tenant="kommun-a", role=Role.OPERATOR, subject="x", org=None, ttl_s=60)
    async with api(database_url) as client:
        for path, headers in (("/api/v1/devices", bearer(token)), ("/healthz", {})):
            r = await client.get(path, headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "default-src 'self'" in r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        devices = await client.get("/api/v1/devices", headers=bearer(token))
        assert devices.headers["cache-control"] == "no-store"
        # a cross-origin page gets no CORS grant when no origins are configured
        r = await client.options(
            "/api/v1/devices",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in r.headers


async def test_csp_allows_only_the_configured_map_tile_origin(database_url) -> None:
    token = mint(SECRET, tenant="kommun-a", role=Role.OPERATOR, subject="x", org=None, ttl_s=60)
    async with api(database_url) as client:  # no tiles: the policy is exactly the strict one
        r = await client.get("/console/")
        assert r.headers["content-security-policy"] == http_headers.CSP
        assert "img-src 'self' data:;" in http_headers.CSP
        me = await client.get("/api/v1/console/me", headers=bearer(token))
        assert me.json()["map_tiles"] is None
    tile_url = "https://Tiles.Example.se:8443/osm/{z}/{x}/{y}.png?key=abc"
    async with api(database_url, console={"map_tile_url": tile_url}) as client:
        for path in ("/console/", "/healthz"):
            csp = (await client.get(path)).headers["content-security-policy"]
            assert csp == http_headers.CSP.replace(
                "img-src 'self' data:", "img-src 'self' data: https://tiles.example.se:8443"
            )
        me = await client.get("/api/v1/console/me", headers=bearer(token))
        assert me.json()["map_tiles"] == {"url": tile_url, "attribution": "", "max_zoom": 19}
    for bad in ("ftp://t.example/{z}/{x}/{y}.png", "https://t.example/{z}/{x}.png",
                "https://{s}.t.example/{z}/{x}/{y}.png", "https://t.example/{z}/{x}/{y} x",
                "https://t.example/{z}/{x}/{y}.png;script-src *"):  # fmt: skip
        with pytest.raises(SettingsError, match=r"console\.map_tile_url"):
            load_settings(console={"map_tile_url": bad})


async def test_cors_only_for_configured_origins(database_url) -> None:
    allowed = "https://tillsyn.kommun-a.se"
    async with api(database_url, cors_origins=[allowed]) as client:
        pre = {"Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "authorization"}  # fmt: skip
        ok = await client.options("/api/v1/devices", headers={"Origin": allowed, **pre})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        bad = await client.options(
            "/api/v1/devices", headers={"Origin": "https://evil.example", **pre}
        )
        assert bad.status_code == 400
        assert "access-control-allow-origin" not in bad.headers


async def test_rate_limits_per_caller_and_for_failed_sign_ins(database_url) -> None:
    await seed(database_url)
    greedy = mint(SECRET, tenant="kommun-a", role=Role.OPERATOR, subject="greedy", org=None,
                  ttl_s=60)  # fmt: skip
    polite = mint(SECRET, tenant="kommun-a", role=Role.OPERATOR, subject="polite", org=None,
                  ttl_s=60)  # fmt: skip
    limits = {"api_requests_per_minute": 6, "api_burst": 3}
    async with api(database_url, limits=limits) as client:
        codes = [
            (await client.get("/api/v1/devices", headers=bearer(greedy))).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        r = await client.get("/api/v1/devices", headers=bearer(greedy))
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")
        # another caller is not affected
        assert (await client.get("/api/v1/devices", headers=bearer(polite))).status_code == 200
        # guessing tokens from one address is slowed down too
        codes = [
            (await client.get("/api/v1/devices", headers=bearer(f"guess-{i}"))).status_code
            for i in range(4)
        ]
        assert codes == [401, 401, 401, 429]
