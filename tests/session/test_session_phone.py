"""Phone numbers: the original system's normalisation, and JIDs without their device suffix."""

from __future__ import annotations

import pytest

from actor_admin.session import normalise_phone, phone_from_jid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 900 123-45-67", "79001234567"),
        ("8 (900) 123-45-67", "79001234567"),
        ("9001234567", "79001234567"),
        ("79001234567", "79001234567"),
        ("+44 20 7946 0958", "442079460958"),
        ("380 44 123 4567", "380441234567"),
        ("123456789012345", "123456789012345"),
        ("89001234567", "79001234567"),
        ("88001234567", "78001234567"),
    ],
)
def test_normalises_valid_numbers(raw: str, expected: str) -> None:
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", "12345", "123456789", "1234567890123456", "+7 900"])
def test_rejects_what_cannot_be_a_number(raw: str) -> None:
    assert normalise_phone(raw) is None


@pytest.mark.parametrize(
    "jid",
    ["79001234567:12@s.whatsapp.net", "79001234567.0:3@s.whatsapp.net", "79001234567@s.whatsapp.net", "79001234567"],
)
def test_phone_from_jid_drops_device_and_server(jid: str) -> None:
    assert phone_from_jid(jid) == "79001234567"
