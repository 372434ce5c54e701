"""Enrolment's rules: opp codes, what a device record may hold, when a code can enrol.

No I/O here; the store persists what these functions decide.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime

#: Crockford-style alphabet without the look-alikes 0/O, 1/I/L: 31 symbols.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10
CODE_GROUP = 5
CODE_BITS = CODE_LENGTH * math.log2(len(CODE_ALPHABET))  # ≈ 49.5 bits: ≥ 40 required

#: Everything a device record may hold (DESIGN.md §1, invariant 1). ``enrolled_at``
#: is the technical fact retention of idle devices needs; ``outbox``/``outbox_since``
#: hold, only until it is published, the ``device-enrolled`` event built from these
#: same fields.
#: ``last_used_on`` is a day (``YYYY-MM-DD``), not a time: just enough for the tenant's
#: retention rule on idle devices (DESIGN.md §1), refreshed at most once a day.
DEVICE_FIELDS = frozenset({"_id", "tenant_id", "token_sha256", "platform", "form_factor", "enrolled_at",
                           "last_used_on"})
TRANSIENT_DEVICE_FIELDS = frozenset({"outbox", "outbox_since"})

DEVICE_TOKEN_PREFIX = "tdt"


def new_opp_code() -> str:
    """A fresh code in canonical form (no separator), from the OS CSPRNG."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def display_code(code: str) -> str:
    """``K7MQ2X9RTA`` → ``K7MQ2-X9RTA``: easier to read out and type."""
    return "-".join(code[i : i + CODE_GROUP] for i in range(0, len(code), CODE_GROUP))


def normalise_code(typed: str) -> str | None:
    """What a person typed → canonical code, or None if it cannot be a code.

    Case-insensitive for ASCII letters only; spaces and hyphens are ignored. Look-alikes
    are *not* mapped (O→0 etc.): the alphabet has no ambiguous symbols, so a look-alike
    is a typo. Nor is anything outside ASCII: ``str.upper()`` would make ``ſ`` (long s)
    an ``S`` and ``ﬀ`` an ``FF``, matching a code that was never typed; such a code is
    as unknown as any other typo."""
    cleaned = typed.replace("-", "").replace(" ", "")
    if not cleaned.isascii():
        return None
    cleaned = cleaned.upper()
    if len(cleaned) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in cleaned):
        return None
    return cleaned


@dataclass(frozen=True)
class CodeState:
    revoked: bool
    expires_at: datetime | None
    max_enrolments: int | None
    enrolments: int


def code_status(code: CodeState, now: datetime) -> str:
    """``active``, ``revoked``, ``expired`` or ``exhausted`` — for the tenant's listing.

    The enrolling device is never told which: every unusable code looks unknown."""
    if code.revoked:
        return "revoked"
    if code.expires_at is not None and code.expires_at <= now:
        return "expired"
    if code.max_enrolments is not None and code.enrolments >= code.max_enrolments:
        return "exhausted"
    return "active"


def new_device_record(
    participant_id: str, tenant_id: str, token_sha256: str, platform: str, form_factor: str, now: datetime
) -> dict[str, object]:
    """The whole device record: the fields DESIGN.md §1 names, nothing about the person."""
    record = {
        "_id": participant_id,
        "tenant_id": tenant_id,
        "token_sha256": token_sha256,
        "platform": platform,
        "form_factor": form_factor,
        "enrolled_at": now,
        "last_used_on": now.date().isoformat(),
    }
    assert record.keys() == DEVICE_FIELDS
    return record
