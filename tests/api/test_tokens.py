"""Onboarding tokens: exactly docs/http-api.md#onboarding-token, and every way a forged or stale token is refused."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from actor_admin.api._tokens import (
    LIFETIME_S,
    TokenError,
    mint_onboarding_token,
    verify_onboarding_token,
)

SECRET = "s" * 40
NOW = 1_800_000_000.0


def test_claims_are_exactly_the_documented_ones() -> None:
    token = mint_onboarding_token(SECRET, 42, now=NOW)
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="onboarding", options={"verify_exp": False, "verify_iat": False}
    )
    assert claims["iss"] == "actor-admin"
    assert claims["aud"] == "onboarding"
    assert claims["sub"] == "42"
    assert claims["salon_id"] == 42
    assert claims["exp"] - claims["iat"] == LIFETIME_S == 3600
    assert claims["jti"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_a_valid_token_grants_its_own_salon() -> None:
    token = mint_onboarding_token(SECRET, 42, now=NOW)
    assert verify_onboarding_token(SECRET, token, now=NOW + 10).salon_id == 42


def test_two_tokens_for_one_salon_have_different_ids() -> None:
    a = verify_onboarding_token(SECRET, mint_onboarding_token(SECRET, 1, now=NOW), now=NOW)
    b = verify_onboarding_token(SECRET, mint_onboarding_token(SECRET, 1, now=NOW), now=NOW)
    assert a.jti != b.jti


def test_expired_token_is_refused() -> None:
    token = mint_onboarding_token(SECRET, 42, now=NOW)
    with pytest.raises(TokenError):
        verify_onboarding_token(SECRET, token, now=NOW + LIFETIME_S)


def test_wrong_signature_is_refused() -> None:
    token = mint_onboarding_token("x" * 40, 42, now=time.time())
    with pytest.raises(TokenError):
        verify_onboarding_token(SECRET, token, now=time.time())


def test_wrong_audience_is_refused() -> None:
    now = int(time.time())
    token = jwt.encode(
        {"iss": "actor-admin", "aud": "admin", "sub": "42", "salon_id": 42, "iat": now, "exp": now + 60, "jti": "j"},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(TokenError):
        verify_onboarding_token(SECRET, token, now=now)


def _unsigned(claims: dict[str, object]) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_alg_none_is_refused() -> None:
    now = int(time.time())
    claims = {
        "iss": "actor-admin",
        "aud": "onboarding",
        "sub": "42",
        "salon_id": 42,
        "iat": now,
        "exp": now + 60,
        "jti": "j",
    }
    with pytest.raises(TokenError):
        verify_onboarding_token(SECRET, _unsigned(claims), now=now)


def test_salon_id_must_match_subject() -> None:
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "actor-admin",
            "aud": "onboarding",
            "sub": "42",
            "salon_id": 43,
            "iat": now,
            "exp": now + 60,
            "jti": "j",
        },
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(TokenError):
        verify_onboarding_token(SECRET, token, now=now)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(TokenError):
        verify_onboarding_token(SECRET, garbage, now=NOW)
