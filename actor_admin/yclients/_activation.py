"""The activation call's body (docs/yclients.md#activation-call), built in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from actor_admin.config import Settings


def activation_payload(settings: Settings) -> Callable[[int, str], Mapping[str, Any]]:
    """``make(salon_id, api_key)`` → the JSON body of ``POST /marketplace/partner/callback``."""

    def make(salon_id: int, api_key: str) -> Mapping[str, Any]:
        return {
            "salon_id": salon_id,
            "application_id": settings.yclients_app_id,
            "api_key": api_key,
            "webhook_urls": [settings.public_url + "/webhook/yclients"],
            "channels": ["whatsapp"],
        }

    return make
