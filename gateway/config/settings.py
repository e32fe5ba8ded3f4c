"""One typed settings object, read from ``WG_*`` environment variables and an optional TOML file.

Precedence: init arguments > environment > TOML file > defaults. No URL given means the
embedded default (PostgreSQL from the ``pgserver`` wheel, an in-process amqtt broker).
A bad setting stops start-up with :class:`SettingsError`, naming the setting and, for a
TOML file, the line it stands on.
"""

from __future__ import annotations

import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, parse_qs, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.domain.alarms import AlarmKind, Severity
from gateway.domain.lock_access import OPENING_ALARM_KINDS

#: the TOML file of the settings being built (load_settings sets it for one construction)
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("wg_config_file", default=None)


class SettingsError(Exception):
    """Start-up configuration is wrong; the message says which setting and where."""


class RetentionDays(BaseModel):
    """How long each data category is kept (days). Positions are privacy-sensitive."""

    model_config = ConfigDict(extra="forbid")

    readings: int = Field(default=730, ge=1)
    positions: int = Field(default=30, ge=1)
    lock_events: int = Field(default=365, ge=1)
    device_health: int = Field(default=90, ge=1)
    device_alarms: int = Field(default=730, ge=1)
    command_replies: int = Field(default=90, ge=1)
    quarantine: int = Field(default=30, ge=1)
    sensor_events: int = Field(default=90, ge=1)  # passive sensors' states (#20)


# Alarm kinds and severities are the domain's enums (gateway.domain.alarms): a setting
# names a member by its value ("button", "high"), as the API and the database do.


def _default_escalation() -> dict[Severity, list[int]]:
    return {Severity.CRITICAL: [60, 120], Severity.HIGH: [180, 300], Severity.MEDIUM: [900],
            Severity.LOW: []}  # fmt: skip


class WebhookSetting(BaseModel):
    """A receiver over HTTP (e.g. an alarm receiving centre) for one recipient group.

    Without ``org`` the receiver acts for the municipality whose alarm it is (its own
    staff, or an alarm centre under a data-processor agreement). With ``org`` (the
    receiver's organisation number) it is that organisation: an alarm of a tenant with
    another organisation number reaches it only under the resident's consent for that
    organisation and ``purpose`` covering alarms, and each event sent is access-logged
    (docs/security.md, review #17.7)."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, max_length=64)
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr = Field(min_length=16)
    org: str | None = Field(
        default=None, pattern=r"^[0-9]{6}-[0-9]{4}$",
        description="The receiver's organisation number; unset = inside the municipality.",
    )  # fmt: skip
    purpose: str | None = Field(
        default=None, min_length=1, max_length=500, validate_default=True,
        description="Why the organisation receives alarms; a consent must name this purpose.",
    )  # fmt: skip
    tenants: list[str] = Field(
        default_factory=list,
        description="The tenants whose alarms it receives; empty = every tenant's (refused "
        "in production for a receiver without org: it would get every municipality's).",
    )

    @field_validator("purpose")
    @classmethod
    def _purpose(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("org") is not None and (value is None or not value.strip()):
            raise ValueError("required with org: the purpose a consent must name")
        return value


class RouteSetting(BaseModel):
    """One routing rule: alarms matching kinds/severities/hours go to ``chain`` (recipient
    groups in escalation order). The first matching rule of the tenant wins."""

    model_config = ConfigDict(extra="forbid")

    chain: list[str] = Field(min_length=1)
    kinds: list[AlarmKind] | None = None
    severities: list[Severity] | None = None
    hours: str | None = Field(
        default=None, pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$", description='Local "22:00-07:00".'
    )


class AlarmSettings(BaseModel):
    """The safety path's rules and delivery."""

    model_config = ConfigDict(extra="forbid")

    silence_factor: float = Field(default=2.0, gt=0, description="x heartbeat interval")
    silence_grace_s: float = Field(default=30.0, ge=0)
    battery_low_percent: int = Field(default=20, ge=1, le=99)
    battery_ok_percent: int = Field(default=30, ge=1, le=100)
    door_unlocked_after_s: float = Field(default=900, gt=0)
    geofence_hysteresis_m: float = Field(default=25.0, ge=0)
    geofence_max_accuracy_m: float = Field(default=500.0, gt=0)
    escalation_s: dict[Severity, list[int]] = Field(
        default_factory=_default_escalation,
        description="Seconds unacknowledged before each escalation step, per severity.",
    )  # fmt: skip
    severity: dict[str, dict[AlarmKind, Severity]] = Field(
        default_factory=dict,
        description='Per tenant ("*" for all): alarm kind -> severity.',
    )
    timezone: str = "Europe/Stockholm"
    routes: dict[str, list[RouteSetting]] = Field(
        default_factory=dict,
        description='Per tenant ("*" for all): routing rules; unset = the built-in routes.',
    )
    webhooks: list[WebhookSetting] = Field(default_factory=list)
    webhook_keep_after_resolved_s: float = Field(
        default=86_400, ge=0,
        description="A webhook event is retried while its alarm is open and this long after.",
    )  # fmt: skip
    webhook_unreachable_after_s: float = Field(
        default=300, gt=0,
        description="A receiver failing this long raises receiver_unreachable.",
    )  # fmt: skip
    tick_ms: int = Field(default=250, ge=10, le=5000)
    max_alarm_age_s: float = Field(
        default=600, gt=0,
        description="A device alarm (button, fall, geofence_exit, tamper) stamped longer "
        "ago than this when the gateway receives it is stored as history and not "
        "dispatched (a device replaying its buffer after an outage): no operator, no "
        "webhook is told.",
    )  # fmt: skip


class OidcSettings(BaseModel):
    """Production sign-in: bearer tokens issued by the organisation's OpenID Connect
    provider, verified against its JWKS. Claims name the tenant, role and organisation."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(pattern=r"^https?://", description="The ``iss`` the provider signs.")
    jwks_url: str = Field(pattern=r"^https?://")
    audience: str = Field(min_length=1, description="The ``aud`` tokens must carry.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256"])
    tenant_claim: str = "tenant"
    role_claim: str = "role"
    org_claim: str = "org"
    jwks_cache_s: int = Field(default=300, ge=10, description="Keys are refetched after this.")
    jwks_refetch_min_s: int = Field(
        default=30, ge=1, description="An unknown ``kid`` refetches at most this often."
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"}
        wrong = sorted(set(value) - allowed)
        if wrong or not value:
            raise ValueError(f"only asymmetric algorithms {sorted(allowed)}, not {wrong}")
        return value


class RateLimitSettings(BaseModel):
    """Abuse limits. Devices: a token bucket per device id at ingest (excess is refused to
    quarantine and counted, other devices are not slowed). API: per caller per minute."""

    model_config = ConfigDict(extra="forbid")

    device_msgs_per_s: float = Field(default=10.0, gt=0, description="Sustained, per device.")
    device_burst: int = Field(
        default=1_000, ge=1, description="Messages a device may send at once (offline replay)."
    )
    api_requests_per_minute: int = Field(default=1_200, ge=1, description="Per caller.")
    api_burst: int = Field(default=200, ge=1)




class LockSettings(BaseModel):
    """Keyless-lock access (docs/locks.md): the visit window's margins, which open alarms
    let a staff key in, and how long a remote unlock command stays valid."""

    model_config = ConfigDict(extra="forbid")

    margin_before_s: float = Field(default=900, ge=0, le=4 * 3600)
    margin_after_s: float = Field(default=900, ge=0, le=4 * 3600)
    alarm_kinds: list[AlarmKind] = Field(
        default_factory=lambda: list(OPENING_ALARM_KINDS),
        description="Open alarms of these kinds for the person let any valid staff key in.",
    )
    command_ttl_s: float = Field(
        default=30, ge=1, le=300, description="expires_at of a remote unlock, from now."
    )
    reply_grace_s: float = Field(
        default=5, ge=0, le=60, description="How long after expires_at a reply is awaited."
    )


class ConsoleSettings(BaseModel):
    """The night-supervision console (docs/console.md): optional map tiles behind the
    track. Unset = no tiles, nothing fetched from elsewhere (the SVG map needs none)."""

    model_config = ConfigDict(extra="forbid")

    map_tile_url: str | None = Field(
        default=None,
        description="XYZ tile URL template, e.g. https://tiles.example/{z}/{x}/{y}.png; "
        "its origin is added to the CSP's img-src.",
    )
    map_attribution: str = Field(default="", max_length=200, description="Shown on the map.")
    map_max_zoom: int = Field(default=19, ge=0, le=22)

    @field_validator("map_tile_url")
    @classmethod
    def _tile_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http"):
            raise ValueError("must be an https:// (or http://) URL template")
        if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d{1,5})?", parts.netloc):
            raise ValueError("needs a plain host[:port] (no user, no placeholder in the host)")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        rest = value.replace("{z}", "").replace("{x}", "").replace("{y}", "")
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in value]
        if missing or "{" in rest or "}" in rest or re.search(r"[\s\"';,]", value):
            raise ValueError(
                "must contain {z}, {x} and {y} (no other placeholders, spaces or quotes), "
                "e.g. https://tiles.example/{z}/{x}/{y}.png"
            )
        return value


class BrokerAccessSettings(BaseModel):
    """Per-device broker identities through Mosquitto's dynamic security plugin."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Create/disable device identities.")
    admin_url: str | None = Field(
        default=None,
        pattern=r"^mqtts?://",
        description="Broker for dynsec commands; unset = mqtt_url's host and port.",
    )
    admin_username: str = Field(default="wg-admin", min_length=1, max_length=64)
    admin_password: SecretStr | None = None
    ca_file: Path | None = Field(default=None, description="CA of the broker (mqtts).")
    cert_file: Path | None = Field(default=None, description="Client cert (mTLS listener).")
    key_file: Path | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class MoveSettings(BaseModel):
    """Moves of residents to another municipality (issue #19.2, docs/moves.md)."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(
        default=30, gt=0, le=3600,
        description="How often a worker looks for accepted moves (it also wakes at the next "
        "one's date).",
    )  # fmt: skip


class SupervisionSettings(BaseModel):
    """Digital supervision and passive alarms (issue #20, docs/supervision.md)."""

    model_config = ConfigDict(extra="forbid")

    gate_positions: bool = Field(
        default=False,
        description="Store a person's positions (and run the geofence rules on them) only "
        "under a gps_positioning decision in force with consent. Production refuses it off "
        "(gateway.config.unsafe_settings); development (the demo, tests) keeps it off.",
    )


class PayerSettings(BaseModel):
    """Payer changes of device assignments (issue #19.1, docs/payer.md): emitted by the
    workers on their date, on the broker and to the aids centre's webhook."""

    model_config = ConfigDict(extra="forbid")

    webhook_group: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="The group of alarms.webhooks that receives payer changes (the aids "
        "centre); unset = the broker only.",
    )  # fmt: skip
    interval_s: float = Field(default=60, gt=0, le=3600,
                              description="How often a worker looks for changes due.")
    lookback_days: int = Field(
        default=400, ge=1, le=3650,
        description="Housing records effective this many days back are still emitted (late).",
    )  # fmt: skip


class AccessLogSettings(BaseModel):
    """Seals of the access log (docs/security.md, review #17.6): at an interval a worker
    signs the hash chain's head with a key kept outside the database and writes the seal
    to the database and outside it (the log, ``anchor_file``, ``anchor_webhook``), so
    ``access-log verify`` finds a rewrite by the database owner up to the last seal."""

    model_config = ConfigDict(extra="forbid")

    keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Key id -> base64 HMAC key of 32+ bytes (openssl rand -base64 32); never "
        "in the database. Keep a retired key while seals made with it are kept. Unset = "
        "no seals (refused in production).",
    )
    active_key: str | None = Field(
        default=None, description="Key id new seals use; unset = the last key id in order."
    )
    seal_interval_s: float = Field(default=300, gt=0, le=86_400)
    anchor_file: Path | None = Field(
        default=None, description="Each seal is appended here as a JSON line (put it on "
        "storage the database's owner cannot write)."
    )  # fmt: skip
    anchor_webhook: str | None = Field(
        default=None, pattern=r"^https?://", description="Each seal is POSTed here as JSON."
    )

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        from gateway.adapters.postgres.access_log_seal import decode_key

        for key_id, key in value.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key_id):
                raise ValueError(f"key id {key_id!r}: 1-64 of A-Z a-z 0-9 . _ -")
            try:
                decode_key(key.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"key {key_id!r} {exc}") from None
        return value

    @field_validator("active_key")
    @classmethod
    def _active_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value not in info.data.get("keys", {}):
            raise ValueError(f"{value!r} is not among access_log.keys")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WG_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    mode: Literal["production", "development"] = Field(
        default="production",
        description="production refuses unsafe defaults at start-up (development secrets, "
        "default passwords); development (the demo, tests, trying it out) keeps them and "
        "says so in one log line.",
    )

    # --- where things are ------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of the owner role (migrate connects with it); unset = "
        "embedded pgserver in data_dir.",
    )
    worker_database_url: str | None = Field(
        default=None,
        description="URL the workers connect with (role wg_worker: no DDL). "
        "Unset = database_url with the user replaced by wg_worker.",
    )
    worker_db_password: SecretStr = Field(
        default=SecretStr("wg_worker"), description="Password set for role wg_worker by migrate."
    )
    api_database_url: str | None = Field(
        default=None,
        description="URL the API connects with (role wg_api, no BYPASSRLS). "
        "Unset = database_url with the user replaced by wg_api.",
    )
    api_db_password: SecretStr = Field(
        default=SecretStr("wg_api"), description="Password set for role wg_api by migrate."
    )
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt://user:pass@host:port, or mqtts://user:pass@host:8883?ca=/path/ca.pem"
        " (TLS; &cert=...&key=... for a client certificate); unset = embedded amqtt broker.",
    )
    data_dir: Path = Field(
        default=Path.home() / ".local" / "share" / "welfare-gateway",
        description="Embedded database, journal and other local state.",
    )

    # --- MQTT ingest -----------------------------------------------------------------
    mqtt_client_id: str = Field(default="wg-gateway-1", min_length=1, max_length=64)
    mqtt_shared_group: str | None = Field(
        default="wg", description="Shared-subscription group; unset = plain subscription."
    )
    mqtt_protocol: int = Field(default=5, description="5 (MQTT v5) or 4 (3.1.1).")
    mqtt_session_expiry_s: int = Field(default=86_400, ge=0)
    mqtt_receive_maximum: int = Field(
        default=2_000, ge=1, le=65_535, description="Unacknowledged QoS 1 messages in flight."
    )
    mqtt_keepalive_s: int = Field(default=30, ge=5)
    mqtt_publish_fast_path: bool = Field(
        default=True, description="Decode PUBLISH packets of the worker's paho-based clients"
        " (its control connection) with the quicker decoder"
        " (gateway/adapters/mqtt/publish_decoder.py; only on a tested paho-mqtt); the device"
        " sessions do not use paho (gateway/adapters/mqtt/session.py)."
    )

    # --- batching and validation -------------------------------------------------------
    batch_max_rows: int = Field(default=1_000, ge=1)
    batch_max_delay_ms: int = Field(default=50, ge=1)
    ingest_queue_size: int = Field(default=4_000, ge=1)
    max_payload_bytes: int = Field(default=16_384, ge=256)
    quarantine_payload_bytes: int = Field(default=4_096, ge=0)
    max_clock_skew_s: int = Field(default=300, ge=0)
    retention: RetentionDays = Field(default_factory=RetentionDays)
    timescaledb: Literal["auto", "require", "off"] = Field(
        default="auto",
        description="Time series as TimescaleDB hypertables: auto = when the extension is "
        "available, require = refuse to start without, off = native partitions.",
    )
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    locks: LockSettings = Field(default_factory=LockSettings)
    broker_access: BrokerAccessSettings = Field(default_factory=BrokerAccessSettings)
    access_log: AccessLogSettings = Field(default_factory=AccessLogSettings)
    payer: PayerSettings = Field(default_factory=PayerSettings)
    moves: MoveSettings = Field(default_factory=MoveSettings)
    supervision: SupervisionSettings = Field(default_factory=SupervisionSettings)

    # --- API -----------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65_535)
    metrics_port: int = Field(
        default=9464, ge=0, le=65_535,
        description="`welfare-gateway worker` only: where its /metrics listens (on api_host).",
    )  # fmt: skip
    jwt_secret: SecretStr = Field(
        default=SecretStr("dev-only-change-me-dev-only-change-me"),
        description="HS256 key for development tokens (welfare-gateway token).",
    )
    dev_tokens: bool = Field(
        default=True,
        description="Accept HS256 development tokens; turn off in production (use oidc).",
    )
    oidc: OidcSettings | None = None
    fhir_id_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Secret for the opaque FHIR Observation ids (keep it stable: changing it "
        "changes every id). Unset = derived from jwt_secret, allowed only with dev_tokens.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API cross-origin; empty = none.",
    )
    limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    # --- secrets -------------------------------------------------------------------------
    pii_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Key id -> base64 32-byte AES-GCM key for personal identity numbers.",
    )
    pii_active_key: str | None = None

    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("database_url", "api_database_url", "worker_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        if value is not None:
            _check_port(urlsplit(value))
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be mqtt://host:port or mqtts://host:port")
        for key, paths in parse_qs(parts.query).items():
            if key not in ("ca", "cert", "key"):
                raise ValueError(f"unknown option ?{key}= (ca, cert and key are known)")
            if parts.scheme != "mqtts":
                raise ValueError(f"?{key}= needs mqtts://")
            if not Path(paths[-1]).is_file():
                raise ValueError(f"?{key}={paths[-1]}: no such file")
        _check_port(parts)
        return value

    @field_validator("mqtt_protocol")
    @classmethod
    def _protocol(cls, value: int) -> int:
        if value not in (4, 5):
            raise ValueError("must be 4 (MQTT 3.1.1) or 5 (MQTT v5)")
        return value

    @field_validator("payer")
    @classmethod
    def _payer_webhook_is_a_receiver(
        cls, value: PayerSettings, info: ValidationInfo
    ) -> PayerSettings:
        alarms = info.data.get("alarms")
        groups = {w.group for w in alarms.webhooks} if alarms is not None else set()
        if value.webhook_group is not None and value.webhook_group not in groups:
            raise ValueError(
                f"webhook_group {value.webhook_group!r} is not the group of any "
                "[[alarms.webhooks]] receiver"
            )
        return value

    @field_validator("fhir_id_key")
    @classmethod
    def _fhir_id_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("dev_tokens") is False:
            raise ValueError(
                "must be set when dev_tokens is off (the development jwt_secret must not be "
                "what makes FHIR ids unguessable)"
            )
        return value

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_broker(self) -> bool:
        return self.mqtt_url is None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = _CONFIG_FILE.get()
        if config_file is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file))


def _check_port(parts: SplitResult) -> None:
    """A URL's port must parse; the message never repeats the URL (a password with an
    unencoded ``/``, ``?``, ``#`` or ``@`` would otherwise show up as a "port")."""
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(
            "the host:port part does not parse (a password containing / ? # @ or : must "
            "be percent-encoded, e.g. %2F for /)"
        ) from None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; raise :class:`SettingsError` naming the bad setting (and line)."""
    text = ""
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            text = config_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc.strerror}") from None
        try:  # (pydantic-settings reads it again; this is for the errors' line numbers)
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_file}: not valid TOML: {exc}") from None
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, config_file, text, data)) from None
    finally:
        _CONFIG_FILE.reset(token)


def _describe(exc: ValidationError, path: Path | None, text: str, data: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        name = ".".join(loc)
        env = "WG_" + "__".join(loc).upper()
        where = f"setting {name!r} (env {env})"
        if path is not None and loc and loc[0] in data:
            line_no = _find_line(text, loc)
            if line_no:
                where += f" at {path}:{line_no}"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        lines.append(f"{where}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _find_line(text: str, loc: list[str]) -> int | None:
    """The line on which the TOML ``text`` defines the setting at ``loc``: the first line
    whose prefix of the file, parsed as TOML, holds it. The parser decides (tables, dotted
    keys, inline tables and quoting all count), not a pattern; a start-up-only cost."""
    lines = text.splitlines()
    for number in range(1, len(lines) + 1):
        try:
            parsed: Any = tomllib.loads("\n".join(lines[:number]))
        except tomllib.TOMLDecodeError:
            continue  # a value spanning several lines, not complete yet
        for key in loc:
            if isinstance(parsed, dict) and key in parsed:
                parsed = parsed[key]
            elif isinstance(parsed, list) and key.isdigit() and int(key) < len(parsed):
                parsed = parsed[int(key)]  # an item of an array of tables
            else:
                break
        else:
            return number
    return None
