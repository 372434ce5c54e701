"""The rights service's rules, no I/O: how a participant's data key is kept at rest,
and how the audit trail is chained and verified.

A data key (DESIGN.md §4.3) is stored only wrapped with AES-256-GCM under the service's
master key-encryption key. The associated data binds the wrapped bytes to their
participant and key ID, so a stolen or altered document cannot be unwrapped as another
participant's key, and a database dump without the master key holds no usable key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
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


# --- the audit trail (DESIGN.md §4.6) ------------------------------------------------

#: The ``prev_hash`` of a tenant's first entry.
GENESIS_HASH = "0" * 64


def audit_hash(prev_hash: str, seq: int, record: dict) -> str:
    """SHA-256 over the previous entry's hash, this entry's position and its content
    (canonical JSON), so changing, reordering, inserting or removing any entry breaks
    every hash after it. ``record`` holds no erased data and no raw participant ID:
    only the keyed marker, the actor, the action, the store and the reason."""
    canonical = json.dumps({"prev": prev_hash, "seq": seq, "record": record}, sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_entry(prev_hash: str, seq: int, record: dict) -> dict:
    """The next entry of a tenant's chain: ``{seq, prev_hash, hash, record}``."""
    return {"seq": seq, "prev_hash": prev_hash, "hash": audit_hash(prev_hash, seq, record), "record": record}


@dataclass(frozen=True)
class ChainVerification:
    valid: bool
    entries: int
    #: The first entry that does not fit, and why; None when the chain is valid.
    broken_at: int | None = None
    reason: str | None = None


def verify_chain(entries: Iterable[dict]) -> ChainVerification:
    """Walk a tenant's entries in ``seq`` order from the first: each must follow the one
    before (no gap, no reorder), point at its hash, and hash to what it says."""
    prev_hash, count = GENESIS_HASH, 0
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.get("seq") != expected_seq:
            return ChainVerification(False, count, expected_seq, "an entry is missing or out of order")
        if entry.get("prev_hash") != prev_hash:
            return ChainVerification(False, count, expected_seq, "does not follow the entry before it")
        if audit_hash(prev_hash, expected_seq, entry.get("record", {})) != entry.get("hash"):
            return ChainVerification(False, count, expected_seq, "its content was changed")
        prev_hash, count = entry["hash"], count + 1
    return ChainVerification(True, count)
