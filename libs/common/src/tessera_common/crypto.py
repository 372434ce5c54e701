"""Free text under a participant's data key (DESIGN.md §4.3).

Every piece of free text that leaves a service's database (into Kafka, above all) is
sealed with AES-256-GCM under a key that belongs to one participant. Erasure destroys
that key, so every copy anywhere, including those Kafka keeps until retention, becomes
unreadable at once. The associated data binds a ciphertext to its participant and
purpose, so a ciphertext cannot be replayed as someone else's or as another field.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tessera_common.events import EncryptedText

KEY_BYTES = 32
NONCE_BYTES = 12


class UnreadableText(Exception):
    """Wrong key, tampered ciphertext, or sealed for another participant or purpose."""


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _associated(participant_id: str, purpose: str) -> bytes:
    return f"tessera:{participant_id}:{purpose}".encode()


def seal_text(text: str, key: bytes, key_id: str, participant_id: str, purpose: str) -> EncryptedText:
    nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: safe far beyond one key's use
    sealed = AESGCM(key).encrypt(nonce, text.encode(), _associated(participant_id, purpose))
    return EncryptedText(
        key_id=key_id,
        nonce=base64.b64encode(nonce).decode(),
        ciphertext=base64.b64encode(sealed).decode(),
    )


def open_text(sealed: EncryptedText, key: bytes, participant_id: str, purpose: str) -> str:
    try:
        plain = AESGCM(key).decrypt(
            base64.b64decode(sealed.nonce),
            base64.b64decode(sealed.ciphertext),
            _associated(participant_id, purpose),
        )
    except (InvalidTag, ValueError) as exc:
        raise UnreadableText(type(exc).__name__) from None
    return plain.decode()


def sealed_bytes(sealed: EncryptedText) -> bytes:
    """The nonce, then the ciphertext and its tag: how a store keeps a sealed text
    (with its key ID beside it), the same bytes its event carries in base64."""
    return base64.b64decode(sealed.nonce) + base64.b64decode(sealed.ciphertext)


def sealed_from_bytes(key_id: str, raw: bytes) -> EncryptedText:
    return EncryptedText(key_id=key_id, nonce=base64.b64encode(raw[:NONCE_BYTES]).decode(),
                         ciphertext=base64.b64encode(raw[NONCE_BYTES:]).decode())
