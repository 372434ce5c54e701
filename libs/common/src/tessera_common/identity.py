"""How the enrolment gateway vouches for a participant to the services behind it.

The gateway is the only service that sees device tokens. For a participant request
it forwards to dialogue or rights, it checks the token, then attaches a short-lived
assertion: a JWT signed with the gateway's Ed25519 key (``EdDSA``), naming the
participant (``sub``), their tenant (``tid``) and the one service it is meant for
(``aud``). Downstream services verify it with the gateway's public key alone, so they
need neither the token nor the gateway's database, and a stolen assertion is useless
to another service and dead within a minute.
"""

from __future__ import annotations

import base64
import functools
import time
from dataclasses import dataclass
from typing import get_args
from uuid import uuid4

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tessera_common.events import FormFactor, Platform

ASSERTION_HEADER = "X-Tessera-Participant-Assertion"
ISSUER = "tessera-enrolment"
DEFAULT_TTL_SECONDS = 60


class InvalidAssertion(Exception):
    """The assertion is missing, forged, expired or meant for another service."""


#: The device facts an assertion may carry (``plt``, ``ff``): technical, already in
#: ``device-enrolled``, passed on so answer events can feed device-type statistics.
#: The values are the event contract's.
PLATFORMS = get_args(Platform)
FORM_FACTORS = get_args(FormFactor)


@dataclass(frozen=True)
class Participant:
    participant_id: str
    tenant_id: str
    platform: str | None = None
    form_factor: str | None = None


def generate_signing_key() -> tuple[str, str]:
    """A new gateway key pair as base64 of the raw 32-byte private and public keys."""
    private = Ed25519PrivateKey.generate()
    return _b64(private.private_bytes_raw()), public_key_of(_b64(private.private_bytes_raw()))


def public_key_of(private_key_b64: str) -> str:
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key_b64))
    return _b64(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def sign_assertion(
    private_key_b64: str,
    participant: Participant,
    audience: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "aud": audience,
        "sub": participant.participant_id,
        "tid": participant.tenant_id,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": str(uuid4()),
    }
    if participant.platform is not None and participant.form_factor is not None:
        claims.update(plt=participant.platform, ff=participant.form_factor)
    return jwt.encode(claims, _private_key(private_key_b64), algorithm="EdDSA")


def verify_assertion(public_key_b64: str, token: str, audience: str) -> Participant:
    key = _public_key(public_key_b64)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],  # pinned: no "alg": "none", no HMAC confusion
            audience=audience,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidAssertion(type(exc).__name__) from None
    tenant_id = claims.get("tid")
    if not isinstance(tenant_id, str):
        raise InvalidAssertion("MissingTenant")
    if claims.get("knd") == STAFF_KIND:  # a console account's assertion never names a participant
        raise InvalidAssertion("StaffAssertion")
    platform, form_factor = claims.get("plt"), claims.get("ff")
    if platform not in PLATFORMS or form_factor not in FORM_FACTORS:
        platform = form_factor = None  # absent (an older gateway) or not a known value
    return Participant(participant_id=claims["sub"], tenant_id=tenant_id, platform=platform,
                       form_factor=form_factor)


# A key is parsed once per process, not per request: the gateway signs and each service
# verifies an assertion on every participant call, and the parse was a tenth of that.
@functools.lru_cache(maxsize=8)
def _private_key(private_key_b64: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key_b64))


@functools.lru_cache(maxsize=8)
def _public_key(public_key_b64: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def participant_dependency(public_key_b64: str | None, audience: str):
    """A FastAPI dependency for a downstream service's participant routes: the verified
    participant, or 401. Requests reach these routes only through the gateway."""
    from fastapi import Header, HTTPException

    async def current_participant(
        assertion: str | None = Header(default=None, alias=ASSERTION_HEADER),
    ) -> Participant:
        if public_key_b64 is None or not assertion:
            raise HTTPException(401, {"code": "missing_assertion", "message": "participant routes go through the gateway"})
        try:
            return verify_assertion(public_key_b64, assertion, audience)
        except InvalidAssertion:
            raise HTTPException(401, {"code": "invalid_assertion", "message": "the participant assertion is not valid"}) from None

    return current_participant


# --- the console's people ---------------------------------------------------------------

#: The console's assertion: the gateway checked a console session (cookie, CSRF, role)
#: and vouches for the account to one service behind it, as for a participant.
STAFF_ASSERTION_HEADER = "X-Tessera-Staff-Assertion"
STAFF_KIND = "staff"
STAFF_ROLES = ("owner", "editor", "analyst", "privacy_officer")


@dataclass(frozen=True)
class Staff:
    account_id: str
    tenant_id: str
    role: str


def sign_staff_assertion(private_key_b64: str, staff: Staff, audience: str, ttl_seconds: int = DEFAULT_TTL_SECONDS,
                         now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {"iss": ISSUER, "aud": audience, "sub": staff.account_id, "tid": staff.tenant_id, "role": staff.role,
              "knd": STAFF_KIND, "iat": issued, "exp": issued + ttl_seconds, "jti": str(uuid4())}
    return jwt.encode(claims, _private_key(private_key_b64), algorithm="EdDSA")


def verify_staff_assertion(public_key_b64: str, token: str, audience: str) -> Staff:
    """A console account's assertion for ``audience``; a participant's is refused."""
    key = _public_key(public_key_b64)
    try:
        claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=audience, issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "aud", "iss"]})
    except jwt.PyJWTError as exc:
        raise InvalidAssertion(type(exc).__name__) from None
    if claims.get("knd") != STAFF_KIND or claims.get("role") not in STAFF_ROLES or not isinstance(
            claims.get("tid"), str):
        raise InvalidAssertion("NotStaff")
    return Staff(account_id=claims["sub"], tenant_id=claims["tid"], role=claims["role"])
