"""Secrets Tessera hands out (device tokens, tenant API keys) and how they are stored.

Each is 256 random bits from the OS CSPRNG, shown once, stored only as its SHA-256.
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


def new_secret(prefix: str) -> str:
    """A typed, URL-safe secret such as ``tdt_...`` (device token) or ``tak_...``."""
    return f"{prefix}_{secrets.token_urlsafe(TOKEN_BYTES)}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_id(prefix: str, nbytes: int = 12) -> str:
    """A random, system-generated identifier: ``<prefix>_`` + 16 URL-safe characters."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
