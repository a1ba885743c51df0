"""``user_data`` decoding and HMAC verification (docs/yclients.md#user-data-signature)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from actor_admin.yclients import SignatureError, sign_user_data, user_id_from, verify_user_data
from actor_admin.yclients._signature import decode_user_data

TOKEN = "partner-token-for-signatures"
# Chosen so that its base64 contains '+' / '/' in the standard alphabet (and '-' / '_' URL-safe)
# and needs padding: the cases where a naive decoder goes wrong.
PAYLOAD = json.dumps(
    {"id": 123, "name": "Анна ~?>????", "phone": "79001234567", "salon_name": "Салон «Ромашка»"},
    ensure_ascii=False,
    separators=(",", ":"),
).encode("utf-8")


def test_payload_exercises_both_alphabets_and_padding() -> None:
    standard = base64.b64encode(PAYLOAD).decode()
    assert {"+", "/"} <= set(standard)
    assert standard.endswith("=")


def test_decodes_standard_alphabet() -> None:
    assert decode_user_data(base64.b64encode(PAYLOAD).decode()) == PAYLOAD


def test_decodes_url_safe_alphabet() -> None:
    assert decode_user_data(base64.urlsafe_b64encode(PAYLOAD).decode()) == PAYLOAD


def test_decodes_without_padding() -> None:
    assert decode_user_data(base64.urlsafe_b64encode(PAYLOAD).decode().rstrip("=")) == PAYLOAD


def test_decodes_spaces_that_were_plus_signs() -> None:
    spaced = base64.b64encode(PAYLOAD).decode().replace("+", " ")
    assert " " in spaced
    assert decode_user_data(spaced) == PAYLOAD


def test_decodes_line_wrapped_value() -> None:
    text = base64.b64encode(PAYLOAD).decode()
    assert decode_user_data(text[:20] + "\r\n" + text[20:]) == PAYLOAD


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_empty_value_is_missing(value: str) -> None:
    with pytest.raises(SignatureError) as caught:
        decode_user_data(value)
    assert caught.value.reason == "missing_user_data"


@pytest.mark.parametrize("value", ["abc!def", "a", "abcde", "ab%3D"])
def test_non_base64_is_malformed(value: str) -> None:
    with pytest.raises(SignatureError) as caught:
        decode_user_data(value)
    assert caught.value.reason == "malformed_base64"


@pytest.mark.parametrize(("urlsafe", "padded"), [(True, True), (True, False), (False, True), (False, False)])
def test_verify_accepts_every_encoding_variant(urlsafe: bool, padded: bool) -> None:
    user_data, sign = sign_user_data(PAYLOAD, TOKEN, urlsafe=urlsafe, padded=padded)
    assert verify_user_data(user_data, sign, TOKEN) == json.loads(PAYLOAD)


def test_signature_is_hmac_sha256_of_decoded_bytes() -> None:
    user_data, sign = sign_user_data(PAYLOAD, TOKEN)
    assert sign == hmac.new(TOKEN.encode(), PAYLOAD, hashlib.sha256).hexdigest()
    assert sign != hmac.new(TOKEN.encode(), user_data.encode(), hashlib.sha256).hexdigest()


def test_verify_accepts_uppercase_signature() -> None:
    user_data, sign = sign_user_data(PAYLOAD, TOKEN)
    assert verify_user_data(user_data, sign.upper(), TOKEN)["id"] == 123


def test_wrong_signature_is_refused() -> None:
    user_data, sign = sign_user_data(PAYLOAD, TOKEN)
    wrong = ("0" if sign[0] != "0" else "1") + sign[1:]
    with pytest.raises(SignatureError) as caught:
        verify_user_data(user_data, wrong, TOKEN)
    assert caught.value.reason == "bad_signature"


def test_signature_under_another_token_is_refused() -> None:
    user_data, sign = sign_user_data(PAYLOAD, "someone-else")
    with pytest.raises(SignatureError) as caught:
        verify_user_data(user_data, sign, TOKEN)
    assert caught.value.reason == "bad_signature"


def test_tampered_payload_is_refused() -> None:
    _, sign = sign_user_data(PAYLOAD, TOKEN)
    tampered = PAYLOAD.replace(b'"id":123', b'"id":124')
    assert tampered != PAYLOAD
    user_data, _ = sign_user_data(tampered, TOKEN)
    with pytest.raises(SignatureError) as caught:
        verify_user_data(user_data, sign, TOKEN)
    assert caught.value.reason == "bad_signature"


def test_reserialised_json_is_not_what_is_signed() -> None:
    # Same object, different bytes (spacing, escaping): the HMAC is over bytes, so it must fail.
    _, sign = sign_user_data(PAYLOAD, TOKEN)
    reserialised = json.dumps(json.loads(PAYLOAD)).encode()
    user_data, _ = sign_user_data(reserialised, TOKEN)
    with pytest.raises(SignatureError):
        verify_user_data(user_data, sign, TOKEN)


@pytest.mark.parametrize("sign", ["", "  ", "zz-not-hex", "абв"])
def test_missing_or_garbage_signature_is_refused(sign: str) -> None:
    user_data, _ = sign_user_data(PAYLOAD, TOKEN)
    with pytest.raises(SignatureError) as caught:
        verify_user_data(user_data, sign, TOKEN)
    assert caught.value.reason in {"missing_signature", "bad_signature"}


def test_empty_partner_token_refuses_everything() -> None:
    user_data, sign = sign_user_data(PAYLOAD, "")
    with pytest.raises(SignatureError) as caught:
        verify_user_data(user_data, sign, "")
    assert caught.value.reason == "no_partner_token"


@pytest.mark.parametrize("payload", [b"[1,2]", b'"text"', b"42", b"null"])
def test_signed_json_that_is_not_an_object_is_refused(payload: bytes) -> None:
    user_data, sign = sign_user_data(payload, TOKEN)
    with pytest.raises(SignatureError) as caught:
        verify_user_data(user_data, sign, TOKEN)
    assert caught.value.reason == "not_an_object"


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe{}"])
def test_signed_bytes_that_are_not_json_are_refused(payload: bytes) -> None:
    user_data, sign = sign_user_data(payload, TOKEN)
    with pytest.raises(SignatureError) as caught:
        verify_user_data(user_data, sign, TOKEN)
    assert caught.value.reason == "malformed_json"


def test_error_message_never_contains_the_token() -> None:
    user_data, _ = sign_user_data(PAYLOAD, TOKEN)
    with pytest.raises(SignatureError) as caught:
        verify_user_data(user_data, "00", TOKEN)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"id": 5}, 5),
        ({"user_id": 6}, 6),
        ({"user_id": "7"}, 7),
        ({"user_id": 8, "id": 9}, 8),
        ({"id": True}, None),
        ({"id": "x"}, None),
        ({"name": "no id"}, None),
    ],
)
def test_user_id_accepts_id_or_user_id(data: dict[str, object], expected: int | None) -> None:
    assert user_id_from(data) == expected
