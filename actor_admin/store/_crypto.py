"""Encryption of stored WhatsApp credentials: AES-256-GCM under ``CREDENTIALS_KEY``.

A blob is ``b"\\x01" + nonce(12) + ciphertext-with-tag``. The salon id is bound as associated data, so
a blob copied onto another salon's row fails to decrypt instead of logging that salon into someone
else's WhatsApp. Each row also records the id of the key that encrypted it; a :class:`Keyring` holds the
current key plus older ones, which is how a key is rotated without downtime: deploy with the new key as
current and the old one as previous, then re-encrypt (``actor-admin rotate-key``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import CredentialsError

_VERSION = b"\x01"
_NONCE_BYTES = 12
_KEY_BYTES = 32


def key_id(key: bytes) -> str:
    """A short public name for a key: the first 8 hex digits of a domain-separated SHA-256."""
    return hashlib.sha256(b"actor-admin credentials key id\x00" + key).hexdigest()[:8]


def _associated_data(salon_id: int) -> bytes:
    return b"actor-admin/whatsapp-credentials/v1/salon/" + str(salon_id).encode()


@final
class Keyring:
    """The current credentials key plus older keys still accepted for decryption.

    Args:
        current: the 32-byte key new blobs are encrypted with.
        previous: older 32-byte keys, used only to decrypt blobs not yet re-encrypted.
    """

    def __init__(self, current: bytes, previous: Iterable[bytes] = ()) -> None:
        keys = [current, *previous]
        for key in keys:
            if len(key) != _KEY_BYTES:
                raise ValueError(f"a credentials key must be exactly {_KEY_BYTES} bytes, got {len(key)}")
        self.current_id = key_id(current)
        self._ciphers = {key_id(key): AESGCM(key) for key in reversed(keys)}
        # reversed() above lets the current key win should two keys ever share an id.
        self._ciphers[self.current_id] = AESGCM(current)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def encrypt(self, salon_id: int, plaintext: bytes) -> tuple[bytes, str]:
        """Encrypt under the current key; returns ``(blob, key_id)``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self.current_id].encrypt(nonce, plaintext, _associated_data(salon_id))
        return _VERSION + nonce + sealed, self.current_id

    def decrypt(self, salon_id: int, blob: bytes, blob_key_id: str) -> bytes:
        """Decrypt a blob stored for ``salon_id``.

        Raises:
            CredentialsError: unknown key id, malformed blob, tampering, or a blob of another salon.
        """
        cipher = self._ciphers.get(blob_key_id)
        if cipher is None:
            raise CredentialsError(
                f"credentials of salon {salon_id} are encrypted under key {blob_key_id}, which this "
                f"process does not hold (known: {', '.join(sorted(self._ciphers))}); "
                "pass the old key as a previous CREDENTIALS_KEY"
            )
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            raise CredentialsError(f"credentials blob of salon {salon_id} is malformed")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return cipher.decrypt(nonce, sealed, _associated_data(salon_id))
        except InvalidTag:
            raise CredentialsError(
                f"credentials blob of salon {salon_id} failed authentication "
                "(tampered, wrong key, or belongs to another salon)"
            ) from None
