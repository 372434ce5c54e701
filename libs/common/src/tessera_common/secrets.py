"""Secrets Tessera hands out (device tokens, tenant API keys) and how they are stored.

Each is 256 random bits from the OS CSPRNG behind a selector naming its record
(:func:`new_split_secret`), shown once, stored only as its SHA-256.
For a secret of that entropy a fast hash is the right one: nobody can brute-force
2^256, and the hash doubles as the indexed lookup key. Argon2 (slow, salted) is for
low-entropy secrets people choose, i.e. passwords, and would make every device request
cost tens of milliseconds without adding safety here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_id(prefix: str, nbytes: int = 12) -> str:
    """A random, system-generated identifier: ``<prefix>_`` + 16 URL-safe characters."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def new_split_secret(prefix: str, selector: str) -> str:
    """A secret that names the record it opens: ``<prefix>_<selector>.<256 random bits>``.

    The selector (a participant or tenant ID, not itself secret) finds the record by
    its primary key, and the hash of the whole secret is then compared in constant
    time. Lookups stay O(1) on any store and never depend on a secondary index."""
    return f"{prefix}_{selector}.{secrets.token_urlsafe(TOKEN_BYTES)}"


def split_secret_selector(prefix: str, presented: str) -> str | None:
    """The selector of a presented secret, or None if it cannot be one of ours."""
    head, dot, verifier = presented.partition(".")
    if not dot or not head.startswith(f"{prefix}_") or len(verifier) < 43:
        return None
    selector = head[len(prefix) + 1 :]
    if not selector or len(selector) > 64 or not all(c.isalnum() or c in "_-" for c in selector):
        return None
    return selector


def erased_marker(key: str, participant_id: str) -> str:
    """How a service remembers that a participant was erased without keeping who:
    HMAC-SHA256 of the participant ID under a service secret. The marker answers
    "was this participant erased?" for an ID in hand, and nothing else: without the
    key it cannot be linked back to an ID, and it is no personal data in itself."""
    return hmac.new(key.encode(), participant_id.encode(), hashlib.sha256).hexdigest()
