"""Settings: serve refuses with every problem listed; dev generates its secrets once."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from actor_admin._devenv import ensure_dev_secrets
from actor_admin.config import SettingsError, load_settings, redact_url


def serve_env(**over: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": "postgresql://u:pw@db/x",
        "REDIS_URL": "redis://r:6379/0",
        "JWT_SECRET": "j" * 32,
        "ADMIN_TOKEN": "a" * 32,
        "CREDENTIALS_KEY": base64.b64encode(b"k" * 32).decode(),
        "YCLIENTS_PARTNER_TOKEN": "p" * 20,
        "YCLIENTS_APP_ID": "7",
        "PUBLIC_URL": "https://wa.example.com/",
    }
    env.update(over)
    return env


def test_serve_with_everything_set_loads() -> None:
    s = load_settings("serve", serve_env(), dotenv=None)
    assert s.yclients_app_id == 7
    assert s.public_url == "https://wa.example.com"
    assert s.whatsapp_transport == "neonize"
    assert s.log_format == "json"
    assert s.yclients_api_url == "https://api.yclients.com"
    assert "https://*.yclients.com" in s.allowed_origins


def test_serve_lists_every_missing_setting_with_how_to_make_it() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings("serve", {}, dotenv=None)
    text = "\n".join(info.value.problems)
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "ADMIN_TOKEN",
        "CREDENTIALS_KEY",
        "YCLIENTS_PARTNER_TOKEN",
        "YCLIENTS_APP_ID",
        "PUBLIC_URL",
    ):
        assert name in text
    assert "openssl rand -base64 32" in text


def test_short_jwt_secret_and_bad_key_are_named() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings("serve", serve_env(JWT_SECRET="short", CREDENTIALS_KEY="not-base64!"), dotenv=None)
    problems = info.value.problems
    assert any("JWT_SECRET" in p and "32 bytes" in p for p in problems)
    assert any("CREDENTIALS_KEY" in p for p in problems)
    assert len(problems) == 2


def test_database_bounds_default_and_are_refused_unless_positive() -> None:
    limits = load_settings("serve", serve_env(), dotenv=None).pg_limits()
    assert (limits.connect_timeout_s, limits.command_timeout_s, limits.statement_timeout_ms) == (5.0, 10.0, 9000)
    limits = load_settings("serve", serve_env(PG_COMMAND_TIMEOUT="2.5"), dotenv=None).pg_limits()
    assert (limits.command_timeout_s, limits.statement_timeout_ms) == (2.5, 2250)
    with pytest.raises(SettingsError) as info:
        load_settings("serve", serve_env(PG_CONNECT_TIMEOUT="0", PG_COMMAND_TIMEOUT="nan"), dotenv=None)
    assert [p.split()[0] for p in info.value.problems] == ["PG_CONNECT_TIMEOUT", "PG_COMMAND_TIMEOUT"]


def test_dev_defaults_point_at_the_fake_marketplace(tmp_path: Path) -> None:
    generated = ensure_dev_secrets(tmp_path)
    s = load_settings("dev", {"DATA_DIR": str(tmp_path)}, dotenv=None, generated=generated)
    assert s.database_url is None and s.redis_url is None
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.yclients_api_url == "http://127.0.0.1:8000/_dev/yclients/api"
    assert s.whatsapp_transport == "simulator"
    assert s.yclients_app_id == 1


def test_environment_wins_over_generated_and_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ADMIN_TOKEN=from-dotenv-0123456789\nPORT=9001\n")
    generated = ensure_dev_secrets(tmp_path)
    s = load_settings("dev", {"ADMIN_TOKEN": "from-environ-0123456789"}, dotenv=dotenv, generated=generated)
    assert s.admin_token == "from-environ-0123456789"
    assert s.port == 9001


def test_dev_secrets_are_private_and_stable(tmp_path: Path) -> None:
    first = ensure_dev_secrets(tmp_path)
    mode = stat.S_IMODE((tmp_path / "dev.env").stat().st_mode)
    assert mode == 0o600
    assert ensure_dev_secrets(tmp_path) == first
    assert len(base64.b64decode(first["CREDENTIALS_KEY"])) == 32


def test_redacted_view_hides_secrets() -> None:
    s = load_settings("serve", serve_env(), dotenv=None)
    view = s.redacted()
    text = repr(view)
    assert "pw@" not in text and "j" * 32 not in text and "p" * 20 not in text
    assert redact_url("postgresql://u:pw@db/x") == "postgresql://u:***@db/x"


def test_serve_refuses_the_simulator_without_a_standalone_one_named() -> None:
    # An in-process simulator in serve answers 401 to every real credential and has no control API.
    with pytest.raises(SettingsError) as refused:
        load_settings("serve", serve_env(WHATSAPP_TRANSPORT="simulator", JWT_SECRET="short"), dotenv=None)
    problems = refused.value.problems
    assert any("WHATSAPP_SIMULATOR_URL" in p and "neonize" in p for p in problems)
    assert any(p.startswith("JWT_SECRET") for p in problems)  # one message listing every problem


def test_serve_accepts_the_simulator_with_a_standalone_one_named() -> None:
    env = serve_env(WHATSAPP_TRANSPORT="simulator", WHATSAPP_SIMULATOR_URL="http://127.0.0.1:9000")
    s = load_settings("serve", env, dotenv=None)
    assert (s.whatsapp_transport, s.whatsapp_simulator_url) == ("simulator", "http://127.0.0.1:9000")


def test_dev_runs_the_in_process_simulator_without_a_url(tmp_path: Path) -> None:
    s = load_settings("dev", {}, dotenv=None, generated=ensure_dev_secrets(tmp_path))
    assert (s.whatsapp_transport, s.whatsapp_simulator_url) == ("simulator", None)


def test_gc_thresholds_default_to_the_nodes_own_and_are_read_as_three_numbers() -> None:
    from actor_admin.config import DEFAULT_GC_THRESHOLDS

    assert load_settings("serve", serve_env(), dotenv=None).gc_thresholds == DEFAULT_GC_THRESHOLDS
    assert load_settings("serve", serve_env(GC_THRESHOLDS="1000,5, 7"), dotenv=None).gc_thresholds == (1000, 5, 7)


@pytest.mark.parametrize("raw", ["1000,5", "1000,5,7,9", "a,b,c", "0,10,10", "700,-1,10"])
def test_gc_thresholds_that_are_not_three_positive_numbers_are_refused(raw: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings("serve", serve_env(GC_THRESHOLDS=raw), dotenv=None)
    assert any(p.startswith("GC_THRESHOLDS must be three whole numbers") for p in refused.value.problems)
