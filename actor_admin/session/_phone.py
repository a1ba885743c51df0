"""Phone numbers as the rest of the system stores them: digits only, country code first."""

from __future__ import annotations

MIN_DIGITS = 10
MAX_DIGITS = 15


def normalise_phone(raw: str) -> str | None:
    """``raw`` as digits with a country code, or ``None`` when it cannot be a phone number.

    The original system's rules, kept so salons type what they always typed: every non-digit is
    dropped (``+7 (900) 123-45-67`` → ``79001234567``); a Russian trunk-prefixed ``8`` with 11
    digits becomes ``7``; 10 digits are a Russian number without its ``7``. The result must have
    10–15 digits (E.164 allows at most 15).
    """
    digits = "".join(ch for ch in raw if "0" <= ch <= "9")
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    elif len(digits) == 10:
        digits = "7" + digits
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        return None
    return digits


def phone_from_jid(jid: str) -> str:
    """The account's phone number from a WhatsApp JID, digits only.

    ``79001234567:12@s.whatsapp.net`` → ``79001234567``. The device suffix (``:12``, and the
    agent part ``.0`` of whatsmeow's AD-JIDs) must not reach the database: the original system
    stored ``79006464263:15`` and broke lookups by phone.
    """
    user = jid.split("@", 1)[0]
    for separator in (":", "."):
        user = user.split(separator, 1)[0]
    return "".join(ch for ch in user if "0" <= ch <= "9")
