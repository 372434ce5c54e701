"""The rights service's rules, no I/O: how a participant's data key is kept at rest,
how the audit trail is chained and verified, a request's deadline and urgency, the
retry back-off, and how an erasure receipt is signed.

A data key (DESIGN.md §4.3) is stored only wrapped with AES-256-GCM under one key
epoch's wrapping key (:mod:`.keyring`, outside the database). The associated data binds
the wrapped bytes to their participant and key ID, so a stolen or altered document
cannot be unwrapped as another participant's key, and a database dump without the
keyring holds no usable key. Once an epoch's key is destroyed, every copy wrapped under
it, in any file or backup, is unreadable (DESIGN.md §4.10).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tessera_common.crypto import KEY_BYTES, NONCE_BYTES

MASTER_KEY_BYTES = 32


class KeyUnwrapFailed(Exception):
    """The stored key does not open under this wrapping key: the key changed, or the
    document was altered or copied to another participant."""


@dataclass(frozen=True)
class WrappedDataKey:
    participant_id: str
    tenant_id: str
    key_id: str
    nonce: bytes
    wrapped: bytes
    created_at: datetime
    #: The key epoch whose wrapping key ``wrapped`` is under.
    epoch: int = 1


def parse_master_key(encoded: str) -> bytes:
    """The master key from its setting: base64 of exactly 32 bytes, or ValueError."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data-key master key must be base64") from None
    if len(raw) != MASTER_KEY_BYTES:
        raise ValueError(f"the data-key master key must be {MASTER_KEY_BYTES} bytes")
    return raw


def data_key_associated(participant_id: str, key_id: str) -> bytes:
    """What a wrapped data key is bound to: opening it as another participant's or
    under another key ID fails."""
    return f"tessera:data-key:{participant_id}:{key_id}".encode()


def seal_key(wrapping_key: bytes, plaintext: bytes, associated: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM with a fresh nonce: ``(nonce, wrapped)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(wrapping_key).encrypt(nonce, plaintext, associated)


def open_key(wrapping_key: bytes, nonce: bytes, wrapped: bytes, associated: bytes) -> bytes:
    try:
        key = AESGCM(wrapping_key).decrypt(nonce, wrapped, associated)
    except (InvalidTag, ValueError) as exc:
        raise KeyUnwrapFailed(type(exc).__name__) from None
    if len(key) != KEY_BYTES:
        raise KeyUnwrapFailed("wrong key length")
    return key


def wrap_data_key(
    wrapping_key: bytes,
    key: bytes,
    *,
    participant_id: str,
    tenant_id: str,
    key_id: str,
    created_at: datetime,
    epoch: int = 1,
) -> WrappedDataKey:
    """``key`` wrapped under ``wrapping_key`` (epoch ``epoch``'s key)."""
    nonce, wrapped = seal_key(wrapping_key, key, data_key_associated(participant_id, key_id))
    return WrappedDataKey(participant_id, tenant_id, key_id, nonce, wrapped, created_at, epoch)


def unwrap_data_key(wrapping_key: bytes, record: WrappedDataKey) -> bytes:
    """``record``'s key, given its epoch's wrapping key."""
    return open_key(wrapping_key, record.nonce, record.wrapped,
                    data_key_associated(record.participant_id, record.key_id))


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
    #: The hash of the last entry walked: what a signed head statement commits to.
    head_hash: str = GENESIS_HASH


def verify_chain(entries: Iterable[dict], head: tuple[int, str] | None = None) -> ChainVerification:
    """Walk a tenant's entries in ``seq`` order from the first: each must follow the one
    before (no gap, no reorder), point at its hash, and hash to what it says. With the
    tenant's recorded ``head`` (last seq and hash), the chain must also end exactly
    there, so removing the newest entries is detected too."""
    result = _walk(entries)
    if not result.valid or head is None:
        return result
    head_seq, head_hash = head
    if result.entries < head_seq:
        return ChainVerification(False, result.entries, result.entries + 1, "entries at the end were removed")
    if result.entries > head_seq or (head_seq and result.head_hash != head_hash):
        return ChainVerification(False, result.entries, head_seq, "the chain does not end at its recorded head")
    return result


def _walk(entries: Iterable[dict]) -> ChainVerification:
    prev_hash, count = GENESIS_HASH, 0
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.get("seq") != expected_seq:
            return ChainVerification(False, count, expected_seq, "an entry is missing or out of order")
        if entry.get("prev_hash") != prev_hash:
            return ChainVerification(False, count, expected_seq, "does not follow the entry before it")
        if audit_hash(prev_hash, expected_seq, entry.get("record", {})) != entry.get("hash"):
            return ChainVerification(False, count, expected_seq, "its content was changed")
        prev_hash, count = entry["hash"], count + 1
    return ChainVerification(True, count, head_hash=prev_hash)


# --- rights requests (DESIGN.md §1 Rights) ------------------------------------------

RequestKind = Literal["access", "export", "rectification", "erasure", "objection"]
RequestStatus = Literal["in_progress", "completed", "refused"]
Actor = Literal["participant", "tenant", "retention"]
#: A request still open this close to its deadline is shown as at risk.
AT_RISK_WITHIN = timedelta(days=7)


def statutory_deadline(received_at: datetime) -> datetime:
    """Received + one calendar month (GDPR art. 12(3)); a day the next month lacks
    (31 January) falls on that month's last day."""
    year, month = (received_at.year + 1, 1) if received_at.month == 12 else (received_at.year, received_at.month + 1)
    day = min(received_at.day, calendar.monthrange(year, month)[1])
    return received_at.replace(year=year, month=month, day=day)


def urgency(status: str, deadline: datetime, now: datetime) -> Literal["overdue", "at_risk", "on_track", "closed"]:
    if status != "in_progress":
        return "closed"
    if now > deadline:
        return "overdue"
    return "at_risk" if deadline - now <= AT_RISK_WITHIN else "on_track"


#: Overdue first, then at risk, then the rest; within each, the nearest deadline first.
URGENCY_ORDER = {"overdue": 0, "at_risk": 1, "on_track": 2, "closed": 3}


def pending_stores(stores: dict[str, dict]) -> list[str]:
    return sorted(name for name, progress in stores.items() if progress.get("status") != "confirmed")


def next_retry_delay(attempts: int, base_seconds: float, cap_seconds: float) -> timedelta:
    """Capped exponential back-off: base, 2·base, 4·base … up to the cap."""
    return timedelta(seconds=min(cap_seconds, base_seconds * (2 ** max(0, attempts))))


# --- signed erasure receipts ---------------------------------------------------------


def canonical_json(document: dict) -> bytes:
    """The exact bytes a receipt's signature covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def receipt_key_id(public_key: bytes) -> str:
    return "rk_" + hashlib.sha256(public_key).hexdigest()[:16]


def sign_receipt(private_key: Ed25519PrivateKey, receipt: dict) -> dict:
    """``{"receipt": ..., "key_id": ..., "signature": base64}``; anyone verifies it with
    the published public key (:func:`verify_receipt`), no call to Tessera needed."""
    public = private_key.public_key().public_bytes_raw()
    return {
        "receipt": receipt,
        "algorithm": "Ed25519",
        "key_id": receipt_key_id(public),
        "signature": base64.b64encode(private_key.sign(canonical_json(receipt))).decode(),
    }


def verify_receipt(public_key_b64: str, signed: dict) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signed["signature"]), canonical_json(signed["receipt"]))
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
    return True


def parse_signing_key(encoded: str) -> Ed25519PrivateKey:
    try:
        raw = base64.b64decode(encoded, validate=True)
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("the receipt signing key must be base64 of a 32-byte Ed25519 private key") from None


# --- access: the human-readable summary ------------------------------------------------

STORE_TITLES = {
    "enrolment.devices": "Your device",
    "dialogue.answers": "Your answers",
    "analytics.contributions": "What counts in the organisation's statistics",
    "rights.data_keys": "Your encryption key (the key itself is never shown)",
    "rights.requests": "Your rights requests",
}


def human_summary(data: dict) -> str:
    """The participant's data as plain text a person can read: one section per store,
    one line per record, fields in the order the store gave them."""
    lines = [
        "Everything Tessera holds about participant " + data["participant_id"],
        f"Organisation: {data['tenant_id']}",
        f"Gathered: {data['generated_at']}",
        "",
    ]
    for part in data["stores"]:
        records = part.get("records") or []
        lines.append(f"{STORE_TITLES.get(part['store'], part['store'])} ({len(records)})")
        if not records:
            lines.append("  nothing")
        for record in records:
            lines.append("  - " + "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in record.items()))
        if part.get("objected") is not None:
            lines.append(f"  objected to analysis: {'yes' if part['objected'] else 'no'}")
        lines.append("")
    return "\n".join(lines)
