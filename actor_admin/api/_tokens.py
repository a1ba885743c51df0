"""Onboarding tokens (docs/http-api.md#onboarding-token): HS256 JWTs that open one salon's connect page for one hour.

They never open ``/admin/*`` (the original accepted any JWT signed with the app secret there —
fault 3): admin routes check ``ADMIN_TOKEN`` only, and these tokens carry ``aud = onboarding``.
"""

from __future__ import annotations

import secrets
from typing import final

import attrs
import jwt

from actor_admin.json_types import JSON
from actor_admin.store import ACTIVATION_WINDOW_S

ISSUER = "actor-admin"
AUDIENCE = "onboarding"
LIFETIME_S = int(ACTIVATION_WINDOW_S)  # the page is useful while YClients accepts the activation


class TokenError(Exception):
    """The token is missing, malformed, expired, for another audience or badly signed."""


@final
@attrs.frozen
class OnboardingClaims:
    salon_id: int
    expires_at: int
    jti: str


def mint_onboarding_token(secret: str, salon_id: int, *, now: float, title: str | None = None) -> str:
    """A token for ``salon_id``; ``now`` is wall-clock seconds (JWT times are Unix times)."""
    issued = int(now)
    claims: JSON = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(salon_id),
        "salon_id": salon_id,
        "iat": issued,
        "exp": issued + LIFETIME_S,
        "jti": secrets.token_urlsafe(12),
    }
    if title:
        claims["title"] = title
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_onboarding_token(secret: str, token: str, *, now: float) -> OnboardingClaims:
    """Check signature (HS256 only — ``alg=none`` and others are refused), issuer, audience, expiry."""
    if not token or len(token) > 4096:
        raise TokenError("token missing or too long")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"], "verify_iat": False},
            leeway=0,
        )
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from None
    salon_id = claims.get("salon_id")
    if not isinstance(salon_id, int) or isinstance(salon_id, bool) or str(salon_id) != claims["sub"]:
        raise TokenError("salon_id claim does not match sub")
    # pyjwt checks exp against its own wall clock; check again against ours so tests can move time.
    if int(claims["exp"]) <= int(now):
        raise TokenError("token expired")
    return OnboardingClaims(salon_id=salon_id, expires_at=int(claims["exp"]), jti=str(claims["jti"]))
