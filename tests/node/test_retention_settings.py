"""Retention settings: defaults, 0 for "keep forever", and nonsense refused with the others."""

from __future__ import annotations

import base64

import pytest

from actor_admin.config import SettingsError, load_settings

BASE = {
    "JWT_SECRET": "j" * 40,
    "ADMIN_TOKEN": "a" * 20,
    "CREDENTIALS_KEY": base64.b64encode(bytes(32)).decode(),
    "YCLIENTS_PARTNER_TOKEN": "partner",
}


def test_defaults_keep_messages_90_days_events_a_year_and_finished_outbox_rows_30_days() -> None:
    retention = load_settings("dev", BASE, dotenv=None).retention
    assert (retention.messages_days, retention.events_days, retention.outbox_days) == (90, 365, 30)


def test_each_table_is_set_on_its_own_and_zero_keeps_forever() -> None:
    env = BASE | {"MESSAGES_RETENTION_DAYS": "30", "EVENTS_RETENTION_DAYS": "0", "OUTBOX_RETENTION_DAYS": "7"}
    retention = load_settings("dev", env, dotenv=None).retention
    assert (retention.messages_days, retention.events_days, retention.outbox_days) == (30, 0, 7)


@pytest.mark.parametrize("value", ["-1", "ninety", "36501", "1.5"])
def test_a_nonsense_retention_is_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings("dev", BASE | {"MESSAGES_RETENTION_DAYS": value}, dotenv=None)
    assert any(p.startswith("MESSAGES_RETENTION_DAYS") for p in refused.value.problems)
