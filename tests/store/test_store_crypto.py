"""Credential encryption: AES-256-GCM, salon-bound, key-identified, rotatable, loud on any mismatch."""

from __future__ import annotations

import pytest

from actor_admin.store import CredentialsError, Keyring
from actor_admin.store._crypto import key_id

OLD = bytes(range(32))
NEW = bytes(range(32, 64))


def test_round_trip_returns_the_plaintext() -> None:
    ring = Keyring(OLD)
    blob, kid = ring.encrypt(42, b"device creds")
    assert kid == key_id(OLD)
    assert b"device creds" not in blob
    assert ring.decrypt(42, blob, kid) == b"device creds"


def test_each_encryption_uses_a_fresh_nonce() -> None:
    ring = Keyring(OLD)
    assert ring.encrypt(1, b"same")[0] != ring.encrypt(1, b"same")[0]


def test_flipped_bit_is_detected() -> None:
    ring = Keyring(OLD)
    blob, kid = ring.encrypt(42, b"device creds")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(CredentialsError, match="failed authentication"):
        ring.decrypt(42, tampered, kid)


def test_truncated_blob_is_detected() -> None:
    ring = Keyring(OLD)
    blob, kid = ring.encrypt(42, b"device creds")
    with pytest.raises(CredentialsError, match="malformed"):
        ring.decrypt(42, blob[:10], kid)


def test_blob_of_another_salon_does_not_decrypt() -> None:
    ring = Keyring(OLD)
    blob, kid = ring.encrypt(42, b"device creds")
    with pytest.raises(CredentialsError):
        ring.decrypt(43, blob, kid)


def test_unknown_key_id_names_the_missing_key() -> None:
    blob, kid = Keyring(OLD).encrypt(42, b"device creds")
    with pytest.raises(CredentialsError, match=kid):
        Keyring(NEW).decrypt(42, blob, kid)


def test_wrong_key_under_a_forged_key_id_is_detected() -> None:
    blob, _ = Keyring(OLD).encrypt(42, b"device creds")
    with pytest.raises(CredentialsError):
        Keyring(NEW).decrypt(42, blob, key_id(NEW))


def test_previous_keys_still_decrypt_and_new_blobs_use_the_current_key() -> None:
    blob, kid = Keyring(OLD).encrypt(42, b"device creds")
    ring = Keyring(NEW, previous=[OLD])
    assert ring.decrypt(42, blob, kid) == b"device creds"
    assert ring.encrypt(42, b"x")[1] == key_id(NEW) == ring.current_id
    assert ring.key_ids == {key_id(NEW), key_id(OLD)}


def test_key_of_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring(b"short")
