from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings


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
    from gateway.cli import main

    cfg = tmp_path / "wg.toml"
    cfg.write_text("mqtt_protocol = 3\n")
    assert main(["--config", str(cfg), "token", "--tenant", "t", "--role", "operator"]) == 2
    assert "mqtt_protocol" in capsys.readouterr().err
