"""The rights service's rules, no I/O: how a participant's data key is kept at rest.

A data key (DESIGN.md §4.3) is stored only wrapped with AES-256-GCM under the service's
master key-encryption key. The associated data binds the wrapped bytes to their
participant and key ID, so a stolen or altered document cannot be unwrapped as another
participant's key, and a database dump without the master key holds no usable key.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tessera_common.crypto import KEY_BYTES, NONCE_BYTES

MASTER_KEY_BYTES = 32


class KeyUnwrapFailed(Exception):
    """The stored key does not open under this master key: the master key changed, or
    the document was altered or copied to another participant."""


@dataclass(frozen=True)
class WrappedDataKey:
    participant_id: str
    tenant_id: str
    key_id: str
    nonce: bytes
    wrapped: bytes
    created_at: datetime


def parse_master_key(encoded: str) -> bytes:
    """The master key from its setting: base64 of exactly 32 bytes, or ValueError."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data-key master key must be base64") from None
    if len(raw) != MASTER_KEY_BYTES:
        raise ValueError(f"the data-key master key must be {MASTER_KEY_BYTES} bytes")
    return raw


def _associated(participant_id: str, key_id: str) -> bytes:
    return f"tessera:data-key:{participant_id}:{key_id}".encode()


def wrap_data_key(
    master_key: bytes,
    key: bytes,
    *,
    participant_id: str,
    tenant_id: str,
    key_id: str,
    created_at: datetime,
) -> WrappedDataKey:
    nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(master_key).encrypt(nonce, key, _associated(participant_id, key_id))
    return WrappedDataKey(participant_id, tenant_id, key_id, nonce, wrapped, created_at)


def unwrap_data_key(master_key: bytes, record: WrappedDataKey) -> bytes:
    try:
        key = AESGCM(master_key).decrypt(
            record.nonce, record.wrapped, _associated(record.participant_id, record.key_id)
        )
    except (InvalidTag, ValueError) as exc:
        raise KeyUnwrapFailed(type(exc).__name__) from None
    if len(key) != KEY_BYTES:
        raise KeyUnwrapFailed("wrong key length")
    return key
