"""The console's rules for its people's secrets, without I/O.

- Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second
  recommended profile) and judged by zxcvbn, the field's strength estimator, not by
  home-made rules: a score below 3 ("safely unguessable") is refused, with the
  account's own address and organisation as words it must not lean on.
- The second factor is TOTP (RFC 6238, pyotp), one step either side allowed, and no
  step accepted twice (the account keeps the last one used).
- TOTP secrets are sealed at rest with AES-256-GCM under the console key, bound to the
  account they belong to.
- Recovery codes and session and invitation secrets are random: SHA-256 is the right
  hash for them (as for API keys); a slow hash is for what people choose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from zxcvbn import zxcvbn

ROLES = ("owner", "editor", "analyst", "privacy_officer")
MIN_SCORE = 3
#: zxcvbn's cost grows with length; a passphrase longer than this gains nothing.
MAX_PASSWORD_CHARS = 128
RECOVERY_CODES = 10
_HASHER = PasswordHasher()
#: Verified against when an address has no account, so that a sign-in takes as long
#: whether or not the account exists.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class PasswordVerdict:
    acceptable: bool
    score: int
    #: zxcvbn's own warning (English), for logs and API clients; the console shows its
    #: own translated text by score.
    warning: str


def judge_password(password: str, *, user_inputs: list[str]) -> PasswordVerdict:
    if len(password) > MAX_PASSWORD_CHARS:
        return PasswordVerdict(False, 0, f"longer than {MAX_PASSWORD_CHARS} characters")
    result = zxcvbn(password, user_inputs=[u for u in user_inputs if u])
    return PasswordVerdict(result["score"] >= MIN_SCORE, result["score"], result["feedback"].get("warning") or "")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash (an unknown address)."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str, issuer: str = "Tessera") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def totp_step(secret: str, code: str, last_step: int, at: float | None = None) -> int | None:
    """The time step ``code`` belongs to (now, or one step either side), if it is newer
    than ``last_step``; None otherwise (wrong, or already used)."""
    if not (len(code) == 6 and code.isdigit()):
        return None
    now = time.time() if at is None else at
    totp = pyotp.TOTP(secret)
    for offset in (0, -1, 1):
        step = int(now // totp.interval) + offset
        if step > last_step and hmac.compare_digest(totp.at(step * totp.interval), code):
            return step
    return None


def seal_secret(key: bytes, account_id: str, secret: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode(), f"tessera:console:{account_id}:totp".encode())


def open_secret(key: bytes, account_id: str, sealed: bytes) -> str:
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], f"tessera:console:{account_id}:totp".encode()).decode()


def new_recovery_codes() -> list[str]:
    """Ten codes of 10 base32 characters (50 bits each), shown as ``XXXXX-XXXXX``."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode()[:10]
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalise_recovery_code(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


def recovery_code_hash(code: str) -> str:
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def csrf_token(key: bytes, session_id: str) -> str:
    """Derived, not stored: the page asks for it with its session (same origin only)."""
    return hmac.new(key, f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()


def parse_console_key(value: str) -> bytes:
    key = base64.b64decode(value, validate=True)
    if len(key) != 32:
        raise ValueError("the console key must be base64 of 32 bytes")
    return key
