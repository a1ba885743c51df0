"""The activation call (docs/yclients.md#activation-call): its one shape, built and read here.

The same body travels twice: the store writes it into the outbox row in the transaction that
records the connection (:func:`activation_payload`), and the outbox worker reads it back
(:meth:`ActivationRequest.from_json`) for :meth:`~actor_admin.yclients.YClientsClient.activate`,
which sends it as :meth:`ActivationRequest.to_json` writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard, final

import attrs

from actor_admin.config import Settings
from actor_admin.json_types import JSON

# The webhook YClients calls back with lifecycle events (the route of ``api/_webhook.py``).
WEBHOOK_PATH = "/webhook/yclients"


@final
@attrs.frozen(kw_only=True)
class ActivationRequest:
    """``POST /marketplace/partner/callback``: this salon installed the app and WhatsApp works."""

    salon_id: int
    api_key: str = attrs.field(repr=False)
    webhook_urls: tuple[str, ...]
    channels: tuple[str, ...] | None = None

    def to_json(self, application_id: int) -> JSON:
        """The JSON body; ``application_id`` is the partner application's (a client setting)."""
        body: JSON = {
            "salon_id": self.salon_id,
            "application_id": application_id,
            "api_key": self.api_key,
            "webhook_urls": list(self.webhook_urls),
        }
        if self.channels is not None:
            body["channels"] = list(self.channels)
        return body

    @classmethod
    def from_json(cls, salon_id: int, payload: JSON) -> ActivationRequest | str:
        """The request an outbox row of ``salon_id`` holds, or why it cannot be sent."""
        api_key = payload.get("api_key")
        urls = payload.get("webhook_urls", [])
        channels = payload.get("channels")
        named = payload.get("salon_id", salon_id)
        if named != salon_id:
            return f"payload is for salon {named!r}, the row for {salon_id}"
        if not isinstance(api_key, str) or not api_key:
            return "payload has no api_key"
        if not _strings(urls):
            return "webhook_urls must be a list of strings"
        if channels is not None and not _strings(channels):
            return "channels must be a list of strings"
        return cls(
            salon_id=salon_id,
            api_key=api_key,
            webhook_urls=tuple(urls),
            channels=None if channels is None else tuple(channels),
        )


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def activation_payload(settings: Settings) -> Callable[[int, str], JSON]:
    """``make(salon_id, api_key)`` → the outbox payload of this node's activation call."""

    def make(salon_id: int, api_key: str) -> JSON:
        request = ActivationRequest(
            salon_id=salon_id,
            api_key=api_key,
            webhook_urls=(settings.public_url + WEBHOOK_PATH,),
            channels=("whatsapp",),
        )
        return request.to_json(settings.yclients_app_id)

    return make
