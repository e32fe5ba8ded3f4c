"""Settings that must not reach production: development secrets and default passwords.

Pure: :func:`findings` looks at a :class:`Settings` and names each unsafe setting with its
fix. Service commands (``run``, ``worker``, ``api``, ``migrate``, ``token``) refuse to start
in ``mode = "production"`` while any remain (:func:`refuse_unsafe`); ``welfare-gateway
doctor`` lists them. ``mode = "development"`` (the demo, tests, a first try) keeps them and
says so in one log line (:func:`development_notice`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.config.settings import Settings, SettingsError

#: the jwt_secret a fresh install has (public: it is in this file)
DEFAULT_JWT_SECRET = str(Settings.model_fields["jwt_secret"].default.get_secret_value())
DEFAULT_DB_PASSWORDS = {
    "api_db_password": str(Settings.model_fields["api_db_password"].default.get_secret_value()),
    "worker_db_password": str(
        Settings.model_fields["worker_db_password"].default.get_secret_value()
    ),
}
MIN_SECRET_CHARS = 32


@dataclass(frozen=True)
class Finding:
    setting: str
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.setting}: {self.problem}; {self.fix}"


def findings(settings: Settings) -> list[Finding]:
    """Every unsafe default in ``settings`` (whatever the mode)."""
    found: list[Finding] = []
    secret = settings.jwt_secret.get_secret_value()
    if settings.dev_tokens and (secret == DEFAULT_JWT_SECRET or len(secret) < MIN_SECRET_CHARS):
        found.append(Finding(
            "jwt_secret",
            "the public development default" if secret == DEFAULT_JWT_SECRET
            else f"shorter than {MIN_SECRET_CHARS} characters",
            f"while dev_tokens is on anyone can sign tokens with it: set WG_JWT_SECRET to "
            f"{MIN_SECRET_CHARS}+ random characters (openssl rand -base64 48), or turn "
            "dev_tokens off and sign in through [oidc]",
        ))  # fmt: skip
    if settings.dev_tokens and settings.oidc is not None:
        found.append(Finding(
            "dev_tokens",
            "on beside [oidc]",
            "development tokens bypass the identity provider: set dev_tokens = false",
        ))  # fmt: skip
    for name, default in DEFAULT_DB_PASSWORDS.items():
        if getattr(settings, name).get_secret_value() == default:
            role = "wg_api" if name == "api_db_password" else "wg_worker"
            found.append(Finding(
                name,
                f"the default password of role {role}",
                f"set WG_{name.upper()} to a random password (migrate sets it on {role})",
            ))  # fmt: skip
    if settings.fhir_id_key is None:
        found.append(Finding(
            "fhir_id_key",
            "not set (FHIR ids would be derived from jwt_secret)",
            "set WG_FHIR_ID_KEY to 32+ random characters and keep it stable",
        ))  # fmt: skip
    if not settings.access_log.keys:
        found.append(Finding(
            "access_log.keys",
            "not set (the access log is not sealed: the database owner could rewrite it "
            "and recompute its hashes unnoticed)",
            "set WG_ACCESS_LOG__KEYS='{\"seal-1\": \"<openssl rand -base64 32>\"}' "
            "(kept outside the database) and an access_log.anchor_file or anchor_webhook "
            "on other storage",
        ))  # fmt: skip
    if not settings.supervision.gate_positions:
        found.append(Finding(
            "supervision.gate_positions",
            "off (GPS positions are stored, and geofences run on them, without a "
            "gps_positioning decision with the person's consent, which the Social Services "
            "Act's rule on digital technology requires)",
            "record each GPS alarm holder's decision (POST /api/v1/persons/{id}/supervision/"
            "decisions, docs/supervision.md), then set [supervision] gate_positions = true",
        ))  # fmt: skip
    found += _plain_http(settings)
    for n, hook in enumerate(settings.alarms.webhooks):
        if hook.org is None and not hook.tenants:
            found.append(Finding(
                f"alarms.webhooks[{n}] ({hook.group})",
                "names neither org nor tenants: it would receive every municipality's "
                "alarms, with residents and positions",
                "set tenants = [...] (the municipalities it serves), or org and purpose for "
                "another organisation (consent-checked)",
            ))  # fmt: skip
    return found


def embedded_services(settings: Settings) -> list[Finding]:
    """What ``run`` would start embedded: for trying it out, not production (the embedded
    broker takes anonymous clients)."""
    return [
        Finding(name, "not set: an embedded, anonymous service for trying it out only",
                "set database_url and mqtt_url (docs/deploy.md)")
        for name, embedded in (("database_url", settings.embedded_database),
                               ("mqtt_url", settings.embedded_broker))
        if embedded
    ]  # fmt: skip


def _plain_http(settings: Settings) -> list[Finding]:
    """Personal data, signing keys or seals over plain HTTP to another host."""
    urls: list[tuple[str, str | None]] = [
        (f"alarms.webhooks[{n}].url", hook.url) for n, hook in enumerate(settings.alarms.webhooks)
    ]
    urls.append(("access_log.anchor_webhook", settings.access_log.anchor_webhook))
    if settings.oidc is not None:
        urls += [("oidc.issuer", settings.oidc.issuer), ("oidc.jwks_url", settings.oidc.jwks_url)]
    return [
        Finding(name, "plain http:// to another host", "use https://")
        for name, url in urls
        if url and urlsplit(url).scheme == "http"
        and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")
    ]


def refuse_unsafe(settings: Settings) -> None:
    """Raise :class:`SettingsError` naming each unsafe setting, in production mode."""
    if settings.mode != "production":
        return
    found = findings(settings)
    if found:
        raise SettingsError(
            "refusing to start in production mode with unsafe settings:\n  "
            + "\n  ".join(f.line() for f in found)
            + '\n  (to try it out with development defaults: mode = "development", '
            "or WG_MODE=development)"
        )


def development_notice(settings: Settings) -> str | None:
    """The one log line a development-mode start writes (None in production)."""
    if settings.mode != "development":
        return None
    found = findings(settings)
    kept = ", ".join(f.setting for f in found) or "none"
    return f"development mode: unsafe defaults allowed (kept: {kept}); not for production"
