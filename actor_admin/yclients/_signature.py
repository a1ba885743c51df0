"""The ``user_data`` / ``user_data_sign`` pair YClients appends to the registration redirect.

``user_data`` is base64 of a compact JSON object describing the salon admin; ``user_data_sign`` is the
lowercase hex HMAC-SHA256 of the *decoded JSON bytes*, keyed with the partner token
(docs/yclients.md#user-data-signature). Three things make this easy to get wrong, and the original
system got the first two wrong:

* the alphabet: real values were seen URL-safe (``-``/``_``), the docs show the standard one, and Python's
  plain ``b64decode`` silently *drops* ``-``/``_`` and yields garbage instead of failing;
* query-string decoding turns an unescaped ``+`` into a space;
* padding may be missing.

So :func:`decode_user_data` normalises all of those before a strict decode, and :func:`verify_user_data`
checks the HMAC over exactly the decoded bytes (never a re-serialisation) in constant time *before*
trusting the JSON at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Literal, final

from actor_admin.json_types import JSON, JsonRejected, loads_untrusted

SignatureFailure = Literal[
    "no_partner_token",
    "missing_user_data",
    "missing_signature",
    "malformed_base64",
    "bad_signature",
    "malformed_json",
    "not_an_object",
]


@final
class SignatureError(Exception):
    """``user_data`` could not be trusted; ``reason`` says why (safe to log: it never holds secrets)."""

    def __init__(self, reason: SignatureFailure, detail: str = "") -> None:
        self.reason: SignatureFailure = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


# Whitespace other than a plain space is line-wrapping noise; a plain space is a '+' that a
# query-string decoder turned into a space, so it must not be stripped but mapped back.
_NOISE = str.maketrans({"\r": None, "\n": None, "\t": None})
_TO_STANDARD = str.maketrans({" ": "+", "-": "+", "_": "/"})


def decode_user_data(b64_text: str) -> bytes:
    """Decode ``user_data`` whichever base64 variant it arrived in.

    Accepts the standard and the URL-safe alphabet (even mixed), spaces standing for ``+``, and missing
    or surplus ``=`` padding; anything else that is not base64 raises.

    Raises:
        SignatureError: ``missing_user_data`` for an empty value, ``malformed_base64`` otherwise.
    """
    text = b64_text.translate(_NOISE)
    if not text.strip():
        raise SignatureError("missing_user_data")
    text = text.translate(_TO_STANDARD).rstrip("=")
    if len(text) % 4 == 1:
        # No amount of padding makes this valid: one leftover base64 digit carries < 8 bits.
        raise SignatureError("malformed_base64", "truncated value")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("malformed_base64", "not base64") from exc


def _digest(payload: bytes, partner_token: str) -> str:
    return hmac.new(partner_token.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def verify_user_data(b64_text: str, sign_hex: str, partner_token: str) -> JSON:
    """Return the ``user_data`` object if ``sign_hex`` is its HMAC-SHA256 under ``partner_token``.

    The signature is checked (constant time) before the JSON is parsed, so nothing from an unsigned
    payload is ever looked at.

    Raises:
        SignatureError: with ``reason`` one of :data:`SignatureFailure`.
    """
    if not partner_token:
        # An empty HMAC key is a key everybody knows: refuse rather than accept forgeries.
        raise SignatureError("no_partner_token")
    if not sign_hex or not sign_hex.strip():
        raise SignatureError("missing_signature")
    payload = decode_user_data(b64_text)
    expected = _digest(payload, partner_token).encode("ascii")
    # The comparison takes bytes so a non-ASCII signature cannot raise before comparing.
    given = sign_hex.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected, given):
        raise SignatureError("bad_signature")
    try:
        data = loads_untrusted(payload)
    except JsonRejected as exc:
        raise SignatureError("malformed_json", exc.message) from exc
    if not isinstance(data, dict):
        raise SignatureError("not_an_object", type(data).__name__)
    return data


def sign_user_data(
    payload_bytes: bytes, partner_token: str, *, urlsafe: bool = True, padded: bool = True
) -> tuple[str, str]:
    """Encode and sign ``payload_bytes`` as YClients does: ``(user_data, user_data_sign)``.

    Used by the fake marketplace and tests. URL-safe with padding is what real values looked like;
    the flags produce the other variants our decoder must tolerate.
    """
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(payload_bytes).decode("ascii")
    if not padded:
        encoded = encoded.rstrip("=")
    return encoded, _digest(payload_bytes, partner_token)


def user_id_from(user_data: JSON) -> int | None:
    """The YClients user id in a verified ``user_data``: the docs say ``user_id``, real payloads ``id``."""
    for key in ("user_id", "id"):
        value = user_data.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            return int(value.strip())
    return None
