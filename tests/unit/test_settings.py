from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.settings import SettingsError, load_settings


def test_defaults_mean_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WG_DATABASE_URL", "WG_MQTT_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert settings.embedded_database and settings.embedded_broker
    assert settings.retention.positions == 30


def test_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "wg.toml"
    cfg.write_text(
        'mqtt_url = "mqtt://broker:1883"\nbatch_max_rows = 10\n[retention]\npositions = 7\n'
    )
    monkeypatch.setenv("WG_BATCH_MAX_ROWS", "20")
    settings = load_settings(cfg)
    assert settings.mqtt_url == "mqtt://broker:1883"
    assert settings.batch_max_rows == 20
    assert settings.retention.positions == 7


def test_bad_toml_value_names_setting_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "wg.toml"
    cfg.write_text('log_level = "INFO"\n\nmqtt_url = "http://nope"\n[retention]\npositions = 0\n')
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    text = str(err.value)
    assert f"'mqtt_url' (env WG_MQTT_URL) at {cfg}:3" in text
    assert f"'retention.positions' (env WG_RETENTION__POSITIONS) at {cfg}:5" in text


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # a dotted key at the top level, not under [retention]
        ('log_level = "INFO"\nretention.positions = 0\n', 2),
        # an inline table
        ('log_level = "INFO"\n\nretention = { readings = 30, positions = 0 }\n', 3),
        # a key after a multi-line array, inside its table
        ('[alarms]\nsilence_factor = 2.0\n[retention]\nreadings = [\n]\npositions = 0\n', 6),
    ],
)
def test_the_line_is_found_however_the_toml_writes_the_key(
    tmp_path: Path, text: str, line: int
) -> None:
    cfg = tmp_path / "wg.toml"
    cfg.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    assert f"'retention.positions' (env WG_RETENTION__POSITIONS) at {cfg}:{line}" in str(err.value)


def test_a_bad_webhook_names_its_line_in_the_array_of_tables(tmp_path: Path) -> None:
    cfg = tmp_path / "wg.toml"
    good = 'group = "a"\nurl = "https://a.example/h"\nsecret = "0123456789abcdef"\n'
    cfg.write_text(f"[[alarms.webhooks]]\n{good}\n[[alarms.webhooks]]\n"
                   'group = "b"\nurl = "ftp://b"\nsecret = "0123456789abcdef"\n')  # fmt: skip
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    assert f"'alarms.webhooks.1.url' (env WG_ALARMS__WEBHOOKS__1__URL) at {cfg}:8" in str(err.value)


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "wg.toml"
    cfg.write_text("batch_max_rowz = 5\n")
    with pytest.raises(SettingsError, match=r"'batch_max_rowz'.*:1: unknown setting"):
        load_settings(cfg)


def test_broken_toml_says_where(tmp_path: Path) -> None:
    cfg = tmp_path / "wg.toml"
    cfg.write_text('a = "x"\nb = = 2\n')
    with pytest.raises(SettingsError, match=r"not valid TOML.*line 2"):
        load_settings(cfg)


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WG_DATABASE_URL", "mysql://x")
    with pytest.raises(SettingsError, match=r"WG_DATABASE_URL.*postgresql"):
        load_settings()


def test_cli_reports_bad_config_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.entrypoints.cli import main

    cfg = tmp_path / "wg.toml"
    cfg.write_text("mqtt_protocol = 3\n")
    assert main(["--config", str(cfg), "token", "--tenant", "t", "--role", "operator"]) == 2
    assert "mqtt_protocol" in capsys.readouterr().err


def test_alarm_routing_and_severity_per_tenant(tmp_path: Path) -> None:
    from gateway.domain.alarms import AlarmBook, AlarmKind, Severity
    from gateway.worker.alarms.service import routing_policies, severity_function

    cfg = tmp_path / "wg.toml"
    cfg.write_text(
        "[alarms.severity.kommun-a]\n"
        'battery_low = "high"\n'
        "[[alarms.routes.kommun-a]]\n"
        'kinds = ["button", "fall"]\n'
        'chain = ["larmcentral", "hemtjanst"]\n'
        "[[alarms.routes.kommun-a]]\n"
        'chain = ["nattpatrull"]\n'
    )
    settings = load_settings(cfg).alarms
    severity = severity_function(settings)
    assert severity("kommun-a", AlarmKind.BATTERY_LOW) is Severity.HIGH
    assert severity("kommun-b", AlarmKind.BATTERY_LOW) is Severity.MEDIUM
    routes = routing_policies(settings)
    book = AlarmBook(severity)
    from datetime import UTC, datetime

    [press] = book.signal(tenant_id="kommun-a", kind=AlarmKind.BUTTON, device_id="d",
                          person_id=None, person_ref=None, at=datetime.now(UTC),
                          condition=False)  # fmt: skip
    assert routes["kommun-a"].recipients(press.alarm) == ("larmcentral",)
    press.alarm.escalation_level = 1
    assert routes["kommun-a"].recipients(press.alarm) == ("larmcentral", "hemtjanst")
    [low] = book.signal(tenant_id="kommun-a", kind=AlarmKind.BATTERY_LOW, device_id="d",
                        person_id=None, person_ref=None, at=datetime.now(UTC),
                        condition=True)  # fmt: skip
    assert routes["kommun-a"].recipients(low.alarm) == ("nattpatrull",)
    assert routes["*"].recipients(low.alarm) == ("technicians",)


def test_unknown_alarm_kind_in_config_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "wg.toml"
    cfg.write_text('[alarms.severity.kommun-a]\nbuton = "high"\n')
    with pytest.raises(SettingsError, match=r"alarms\.severity\.kommun-a\.buton"):
        load_settings(cfg)


def test_production_needs_its_own_fhir_id_key(tmp_path: Path) -> None:
    cfg = tmp_path / "wg.toml"
    cfg.write_text("dev_tokens = false\n")
    with pytest.raises(SettingsError, match=r"'fhir_id_key' \(env WG_FHIR_ID_KEY\).*must be set"):
        load_settings(cfg)
    cfg.write_text('dev_tokens = false\nfhir_id_key = "' + "k" * 32 + '"\n')
    assert load_settings(cfg).fhir_id_key is not None


def test_a_payer_webhook_group_must_name_a_receiver(tmp_path: Path) -> None:
    cfg = tmp_path / "wg.toml"
    receiver = '[[alarms.webhooks]]\ngroup = "hjalpmedel"\nurl = "https://h.example/p"\n'
    receiver += 'secret = "0123456789abcdef"\n'
    cfg.write_text(f'{receiver}\n[payer]\nwebhook_group = "hjälpmedel"\n')
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    assert f"'payer' (env WG_PAYER) at {cfg}:6" in str(err.value)
    assert "is not the group of any [[alarms.webhooks]] receiver" in str(err.value)
    cfg.write_text(f'{receiver}\n[payer]\nwebhook_group = "hjalpmedel"\n')
    assert load_settings(cfg).payer.webhook_group == "hjalpmedel"
