"""Settings: the TOML defaults, environment overrides, --config files and clear failures."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.core.errors import ConfigError, ErrorCode
from pipeline.core.settings import DEFAULT_CONFIG_FILE, Settings, load_settings


def test_toml_file_and_model_defaults_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    file_values = tomllib.loads(DEFAULT_CONFIG_FILE.read_text())
    monkeypatch.setenv("RECAST_CONFIG", "/nonexistent/recast.toml")
    model_defaults = Settings().model_dump(mode="json")
    assert set(file_values) == set(model_defaults), "every section is in both places"
    for section, values in file_values.items():
        assert values == model_defaults[section], f"[{section}] differs from the model"


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECAST_INGEST__MAX_HEIGHT", "720")
    monkeypatch.setenv("RECAST_STORAGE__OUTPUT", "/srv/cards")
    settings = load_settings()
    assert settings.ingest.max_height == 720
    assert settings.storage.output == "/srv/cards"
    assert settings.ingest.max_duration_s == 14400, "untouched keys keep the file's value"


def test_bad_environment_value_names_key_and_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECAST_INGEST__MAX_HEIGHT", "tall")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.code is ErrorCode.CONFIG_INVALID
    assert "ingest.max_height" in info.value.message
    assert "integer" in info.value.message


def test_config_file_option(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[ingest]\nmax_height = 480\nallowed_private_networks = ["10.0.0.0/8"]\n')
    settings = load_settings(config)
    assert settings.ingest.max_height == 480
    assert settings.ingest.allowed_private_networks == ["10.0.0.0/8"]
    assert settings.card.watch_label == "Watch recording"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[ingest]\nmax_height = 0\n", "ingest.max_height"),
        ('[ingest]\nallowed_private_networks = ["not-a-net"]\n', "not-a-net"),
        ("[ingest]\nno_such_key = 1\n", "ingest.no_such_key"),
        ("[ingest\nbroken", "cannot read configuration"),
    ],
)
def test_bad_config_file_fails_at_start(tmp_path: Path, content: str, expected: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert expected in info.value.message


def test_cli_reports_bad_setting_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[card]\nexcerpt_length = -5\n")
    status = main(["--config", str(config), "process", "x.mp4"])
    assert status == 2
    err = capsys.readouterr().err
    assert "config.invalid" in err and "card.excerpt_length" in err


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_the_old_celery_section_is_refused_with_its_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECAST_CELERY__REDIS_URL", "redis://example:6379/0")
    with pytest.raises(ConfigError, match=r"RECAST_CLUSTER__REDIS_URL"):
        load_settings()
    monkeypatch.delenv("RECAST_CELERY__REDIS_URL")
    old = tmp_path / "old.toml"
    old.write_text('[celery]\nredis_url = "redis://example:6379/0"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[celery\] section is now \[cluster\]"):
        load_settings(old)
    new = tmp_path / "new.toml"
    new.write_text('[cluster]\nredis_url = "redis://example:6379/0"\n', encoding="utf-8")
    assert load_settings(new).cluster.redis_url == "redis://example:6379/0"
