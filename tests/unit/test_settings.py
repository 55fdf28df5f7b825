"""Settings: TOML + TFR_ environment + $env/$file, typed and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfregistry import StartupError
from tfregistry.app import bootstrap
from tfregistry.settings import (
    MASK,
    ByteSize,
    Duration,
    SettingsDeclarations,
    build_settings,
    load_raw,
    mask_url_password,
    parse_duration,
    parse_size,
)


def boot(tmp_path: Path, toml: str = "", environ: dict[str, str] | None = None, **overrides):
    config = tmp_path / "tfr.toml"
    config.write_text(toml)
    return bootstrap(overrides or None, config_path=config, environ=environ or {}, load_entrypoints=False)


@pytest.mark.parametrize(("text", "expected"), [
    ("1048576", 1048576), ("100MB", 100_000_000), ("100MiB", 100 * 1024**2), ("1.5GiB", int(1.5 * 1024**3)),
    (512, 512), ("2kb", 2000),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "10XB", "-5MB", "1e6"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(bad)


@pytest.mark.parametrize(("text", "expected"), [("300", 300), ("90s", 90), ("15m", 900), ("12h", 43200),
                                                ("30d", 2592000), ("2w", 1209600), (60, 60)])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_defaults_and_types(tmp_path):
    settings = boot(tmp_path).settings
    assert settings["storage.backend"] == "local"
    assert settings["auth.anonymous_read"] is False
    assert isinstance(settings["limits.module_archive_max_bytes"], ByteSize)
    assert settings["limits.module_archive_max_bytes"] == 100 * 1024**2
    assert isinstance(settings["downloads.url_ttl"], Duration) and settings["downloads.url_ttl"] == 300
    assert settings.data_dir == Path(".tfregistry")
    assert settings.source("storage.backend") == "default"


def test_precedence_file_then_env_then_overrides(tmp_path):
    toml = '[auth]\nanonymous_read = true\n[limits]\nmodule_max_files = 10\nmodule_archive_max_bytes = "5MB"\n'
    settings = boot(tmp_path, toml, {"TFR_LIMITS__MODULE_MAX_FILES": "20"},
                    **{"limits.module_archive_max_bytes": "7MB"}).settings
    assert settings["auth.anonymous_read"] is True
    assert settings.source("auth.anonymous_read").startswith("file ")
    assert settings["limits.module_max_files"] == 20
    assert settings.source("limits.module_max_files") == "environment TFR_LIMITS__MODULE_MAX_FILES"
    assert settings["limits.module_archive_max_bytes"] == 7_000_000


def test_bad_value_names_key_and_source(tmp_path):
    with pytest.raises(StartupError) as exc:
        boot(tmp_path, "", {"TFR_LIMITS__MODULE_MAX_FILES": "many"})
    message = str(exc.value)
    assert "limits.module_max_files" in message and "TFR_LIMITS__MODULE_MAX_FILES" in message
    assert "not an integer" in message


def test_choices_and_url_validation(tmp_path):
    with pytest.raises(StartupError, match="log_level"):
        boot(tmp_path, 'log_level = "LOUD"\n')
    with pytest.raises(StartupError, match="public_url.*absolute http"):
        boot(tmp_path, 'public_url = "registry.example.com"\n')
    assert boot(tmp_path, 'public_url = "https://r.example.com/"\n').settings["public_url"] == "https://r.example.com"


def test_unknown_key_in_file_is_an_error_but_unknown_env_is_ignored(tmp_path):
    with pytest.raises(StartupError, match=r"unknown setting 'storage\.s3\.bucket'.*plugin"):
        boot(tmp_path, '[storage.s3]\nbucket = "x"\n')
    assert boot(tmp_path, "", {"TFR_NOT_A_SETTING": "1"}).settings["storage.backend"] == "local"


def test_env_and_file_references(tmp_path, monkeypatch):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("from-a-file-0123456789\n")
    monkeypatch.setenv("MY_DB_URL", "postgresql+psycopg://u:pw@db/reg")
    toml = f'database_url = {{ "$env" = "MY_DB_URL" }}\nsecret_key = {{ "$file" = "{secret_file}" }}\n'
    settings = boot(tmp_path, toml).settings
    assert settings["database_url"] == "postgresql+psycopg://u:pw@db/reg"
    assert settings["secret_key"] == "from-a-file-0123456789"
    # masked when shown
    assert settings.display_value("secret_key") == MASK
    assert settings.display_value("database_url") == f"postgresql+psycopg://u:{MASK}@db/reg"


def test_env_reference_in_environment_value(tmp_path, monkeypatch):
    monkeypatch.setenv("ELSEWHERE", "INFO")
    settings = boot(tmp_path, "", {"TFR_LOG_LEVEL": '{"$env": "ELSEWHERE"}'}).settings
    assert settings["log_level"] == "INFO"


def test_missing_env_reference_is_reported(tmp_path):
    with pytest.raises(StartupError, match=r"secret_key.*NOPE_NOT_SET.*not set"):
        boot(tmp_path, 'secret_key = { "$env" = "NOPE_NOT_SET" }\n')


def test_invalid_secret_value_is_not_echoed():
    decls = SettingsDeclarations()
    decls.add("db.password", int, secret=True)
    with pytest.raises(StartupError) as exc:
        build_settings(decls, load_raw(environ={"TFR_DB__PASSWORD": "hunter2"}))
    assert "hunter2" not in str(exc.value) and "db.password" in str(exc.value)


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(StartupError, match="not valid TOML"):
        boot(tmp_path, "this is = = not toml")
    with pytest.raises(StartupError, match="cannot read configuration file"):
        bootstrap(config_path=tmp_path / "absent.toml", environ={}, load_entrypoints=False)


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('log_level = "DEBUG"\n')
    assert bootstrap(environ={"TFR_CONFIG": str(path)}, load_entrypoints=False).settings["log_level"] == "DEBUG"


def test_hyphenated_plugin_keys_are_reachable_from_env():
    decls = SettingsDeclarations()
    decls.add("plugins.tfregistry-example.greeting", str, default="hello")
    settings = build_settings(decls, load_raw(environ={"TFR_PLUGINS__TFREGISTRY_EXAMPLE__GREETING": "hi"}))
    assert settings["plugins.tfregistry-example.greeting"] == "hi"


def test_duplicate_declaration_fails():
    decls = SettingsDeclarations()
    decls.add("a.b", str)
    with pytest.raises(StartupError, match="declared twice"):
        decls.add("a.b", int)


def test_mask_url_password_leaves_plain_urls():
    assert mask_url_password("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_json_text_in_the_environment_stays_text():
    decls = SettingsDeclarations()
    decls.add("storage.x.credentials_json", str, secret=True)
    raw = load_raw(environ={"TFR_STORAGE__X__CREDENTIALS_JSON": '{"type": "service_account"}'})
    assert build_settings(decls, raw)["storage.x.credentials_json"] == '{"type": "service_account"}'


def test_compression_ratio_setting(tmp_path):
    assert boot(tmp_path).settings["limits.max_compression_ratio"] == 100.0
    env = {"TFR_LIMITS__MAX_COMPRESSION_RATIO": "250"}
    assert boot(tmp_path, environ=env).settings["limits.max_compression_ratio"] == 250.0
    assert boot(tmp_path, "[limits]\nmax_compression_ratio = 0\n").settings["limits.max_compression_ratio"] == 0
    for bad in ("0.5", "-1", "nan", "inf", "lots"):
        with pytest.raises(StartupError, match="limits.max_compression_ratio") as caught:
            boot(tmp_path, environ={"TFR_LIMITS__MAX_COMPRESSION_RATIO": bad})
        assert "TFR_LIMITS__MAX_COMPRESSION_RATIO" in str(caught.value)
