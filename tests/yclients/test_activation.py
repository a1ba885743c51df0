"""The activation call has one shape: what the outbox row stores is what the client sends."""

from __future__ import annotations

import base64

import pytest

from actor_admin.config import load_settings
from actor_admin.yclients import activation_payload
from actor_admin.yclients._activation import ActivationRequest

SETTINGS = load_settings(
    "dev",
    {
        "JWT_SECRET": "j" * 32,
        "ADMIN_TOKEN": "a" * 32,
        "CREDENTIALS_KEY": base64.b64encode(b"k" * 32).decode(),
        "YCLIENTS_PARTNER_TOKEN": "p" * 20,
        "YCLIENTS_APP_ID": "77",
        "PUBLIC_URL": "https://wa.example.com",
    },
    dotenv=None,
)


def test_the_stored_payload_is_the_body_the_client_sends() -> None:
    payload = activation_payload(SETTINGS)(42, "k" * 64)
    assert list(payload) == ["salon_id", "application_id", "api_key", "webhook_urls", "channels"]
    assert payload["webhook_urls"] == ["https://wa.example.com/webhook/yclients"]
    request = ActivationRequest.from_json(42, payload)
    assert isinstance(request, ActivationRequest)
    assert request.to_json(SETTINGS.yclients_app_id) == payload


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"salon_id": 43, "api_key": "k"}, "salon 43"),
        ({"salon_id": 42}, "api_key"),
        ({"api_key": "k", "webhook_urls": "https://x"}, "webhook_urls"),
        ({"api_key": "k", "channels": [""]}, "channels"),
    ],
)
def test_a_payload_that_cannot_be_sent_says_why(payload: dict[str, object], reason: str) -> None:
    refused = ActivationRequest.from_json(42, payload)
    assert isinstance(refused, str) and reason in refused


def test_the_api_key_stays_out_of_repr() -> None:
    request = ActivationRequest(salon_id=1, api_key="secret-key", webhook_urls=())
    assert "secret-key" not in repr(request)
