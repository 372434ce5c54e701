"""The tenant console's accounts and sessions: the one place that checks a console
session (the gateway), at ``/console/api/…``.

- **Accounts** are made from invitations only: the operator's (with a new tenant) or
  an owner's. An invitation is a one-time link (its secret in the URL's fragment, so it
  reaches no server log) that expires. Accepting it sets a password (Argon2id; zxcvbn
  must rate it 3 or more) and a TOTP factor confirmed with a first code; ten recovery
  codes are shown once and kept as hashes.
- **Sign-in** is the address and password, then a TOTP or recovery code. Failures are
  throttled per address and per network; an unknown address and a wrong password get
  the same answer, after the same work.
- **Sessions** live in an HttpOnly, SameSite=Strict cookie (Secure outside development)
  scoped to ``/console``, with an idle and an absolute timeout. Every change needs the
  session's CSRF token in ``X-CSRF-Token``. Sensitive actions need a second factor
  given within the last minutes (``fresh_factor_required``).
- **Roles** are checked here, on the server: owner, editor, analyst, privacy officer.
- **The activity log** records what each account did, with its network truncated; no
  participant data, token, password or code.
"""

import asyncio
import csv
import io
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import segno
import webauthn
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
import httpx
from fastapi import APIRouter, Cookie, Depends, Header, Path, Query, Request, Response, status
from opentelemetry import propagate
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, Field, StringConstraints, field_validator

from tessera_common.events import ApiKeyScope
from tessera_common.tenant_access import address_allowed
from tessera_common.http import StrictBody, errors, problem
from tessera_common.identity import STAFF_ASSERTION_HEADER, Staff, sign_staff_assertion
from tessera_common.logs import get_logger
from tessera_common.netaddr import truncate_ip
from tessera_common.secrets import (
    constant_time_equals,
    new_id,
    new_split_secret,
    secret_hash,
    split_secret_selector,
)
from tessera_enrolment import codes, poster
from tessera_enrolment import console_domain as domain
from tessera_enrolment import domain as domain_codes
from tessera_enrolment.codes import CodeIn, CodeList, CodeOut
from tessera_enrolment.api_keys import MAX_ACTIVE_KEYS, ApiKeyStore, new_api_key
from tessera_enrolment.console_store import ConsoleStore
from tessera_enrolment.store import EnrolmentStore

log = get_logger(__name__)

COOKIE = "tessera_console"
SESSION_PREFIX = "tcs"
INVITATION_PREFIX = "tci"
Role = Literal["owner", "editor", "analyst", "privacy_officer"]
Password = Annotated[str, StringConstraints(min_length=1, max_length=domain.MAX_PASSWORD_CHARS)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=32, strip_whitespace=True)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True,
                                        pattern=r"^[^\x00-\x1f\x7f]+$")]
Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]


INVITATION_LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class ConsoleConfig:
    key: bytes
    secure_cookies: bool
    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)
    fresh_factor: timedelta = timedelta(minutes=5)
    invitation_lifetime: timedelta = INVITATION_LIFETIME
    failures_per_account: str = "5/15minutes"
    failures_per_network: str = "30/15minutes"
    #: The console's origin for passkeys (e.g. https://console.tessera.example): its host
    #: is the WebAuthn relying party. None: the origin each request came to (development).
    origin: str | None = None


@dataclass(frozen=True)
class ConsoleSession:
    tenant_id: str
    session_id: str
    account_id: str
    role: str
    email: str
    display_name: str
    factor_at: datetime | None


class InvitationIn(StrictBody):
    token: Token


class InvitationPasswordIn(StrictBody):
    token: Token
    display_name: Name
    password: Password


class InvitationConfirmIn(StrictBody):
    token: Token
    code: Code


class SignInIn(StrictBody):
    email: Annotated[str, StringConstraints(min_length=3, max_length=254, strip_whitespace=True)]
    password: Password


class FactorIn(StrictBody):
    code: Code | None = None
    recovery_code: Code | None = None


class TotpCodeIn(StrictBody):
    code: Code


#: An address as people type it: something@domain.tld, no spaces. Whether it receives
#: mail is the inviting owner's to know: the link is handed over, not sent.
Email = Annotated[str, StringConstraints(min_length=6, max_length=254, strip_whitespace=True,
                                         pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class NewInvitationIn(StrictBody):
    email: Email
    role: Role


class AllowListIn(StrictBody):
    networks: list[Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]] = Field(
        max_length=100, description="CIDR ranges, e.g. 192.0.2.0/24 or 2001:db8::/32; empty: anywhere")

    @field_validator("networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"not a network: {value[:64]!r}") from None
        return values

    def parsed(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Each range with its host bits cleared, once."""
        return list(dict.fromkeys(ipaddress.ip_network(v, strict=False) for v in self.networks))


class AllowListOut(BaseModel):
    networks: list[str]
    your_address: str | None = Field(description="the address this request came from, as the gateway sees it")


class ApiKeyIn(StrictBody):
    name: Name = Field(description="what the key is for, e.g. 'HR system'")
    scopes: list[ApiKeyScope] = Field(min_length=1, max_length=5, description="what the key may open")

    @field_validator("scopes")
    @classmethod
    def _once_each(cls, scopes: list[str]) -> list[str]:
        return sorted(set(scopes))


class ApiKeyOut(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    status: Literal["active", "revoked"]
    created_at: datetime
    created_by: str | None = Field(description="the account's address; none for the tenant's first key")
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="to the minute, the latest over the gateway and every service")


class ApiKeyList(BaseModel):
    keys: list[ApiKeyOut]
    last_use_complete: bool = Field(description="false when a service did not answer: a use there may be missing")


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown once; Tessera keeps only its hash")


class PasskeyIn(StrictBody):
    name: Name = Field(description="what the person calls the device, e.g. 'work laptop'")
    credential: dict[str, Any] = Field(description="the answer of navigator.credentials.create(), as JSON")


class PasskeyAnswerIn(StrictBody):
    credential: dict[str, Any] = Field(description="the answer of navigator.credentials.get(), as JSON")


class PasskeyOut(BaseModel):
    passkey_id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


class PasskeyList(BaseModel):
    passkeys: list[PasskeyOut]


class InvitationOut(BaseModel):
    email: str
    role: Role
    tenant_name: str
    expires_at: datetime
    password_chosen: bool


class TotpSetup(BaseModel):
    secret: str = Field(description="base32, for typing into an authenticator app")
    uri: str = Field(description="otpauth:// URI")
    qr_svg: str = Field(description="the URI as a QR code (SVG)")


class SessionOut(BaseModel):
    tenant_id: str
    tenant_name: str
    account_id: str
    email: str
    display_name: str
    role: Role
    csrf_token: str
    idle_expires_at: datetime
    absolute_expires_at: datetime


class SignedIn(SessionOut):
    recovery_codes: list[str] | None = Field(default=None, description="shown once, when they are made")


class SignInNext(BaseModel):
    next: Literal["totp", "totp_setup"]
    totp_setup: TotpSetup | None = None


class Throttle:
    """Failed sign-ins per address and per network (moving windows, in memory: one
    gateway replica; several would each keep a full budget)."""

    def __init__(self, per_account: str, per_network: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._items = {"account": parse(per_account), "network": parse(per_network)}

    async def retry_after(self, account: str, network: str) -> int | None:
        for kind, key in (("account", account), ("network", network)):
            item = self._items[kind]
            if not await self._limiter.test(item, "console-fail", kind, key):
                stats = await self._limiter.get_window_stats(item, "console-fail", kind, key)
                return max(1, int(stats.reset_time - datetime.now(UTC).timestamp()) + 1)
        return None

    async def refuse_if_spent(self, account: str, network: str) -> None:
        """429 ``too_many_attempts`` with ``Retry-After`` once either budget is spent."""
        wait = await self.retry_after(account, network)
        if wait is not None:
            raise problem(429, "too_many_attempts", "too many failed sign-ins; wait and try again",
                          {"Retry-After": str(wait)})

    async def failed(self, account: str, network: str) -> None:
        await self._limiter.hit(self._items["account"], "console-fail", "account", account)
        await self._limiter.hit(self._items["network"], "console-fail", "network", network)


def _network(request: Request) -> str:
    return truncate_ip(request.client.host) if request.client else "unknown"


def _qr_svg(uri: str) -> str:
    return segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")


#: The services the console reaches through the gateway, and the roles that may: the
#: gateway checks the role first, and the service checks it again in the assertion
#: (tessera_common.http.tenant_caller).
CONSOLE_SERVICES: dict[str, tuple[str, ...]] = {
    "dialogue": ("owner", "editor"),
    "analytics": ("owner", "editor", "analyst"),
    "rights": ("owner", "privacy_officer"),
}
#: Changes that need a second factor given in the last minutes, by service and first
#: path segment: a rights request on a participant's behalf, the retention rules, the
#: tenant's settings (minimum group size, personal-data policy).
SENSITIVE = {("rights", "rights-requests"), ("rights", "retention"), ("dialogue", "settings")}
_SEGMENT = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_PASSED_BACK = ("content-type", "content-disposition", "retry-after", "location")


def build_console_router(store: ConsoleStore, config: ConsoleConfig, enrolment: EnrolmentStore,
                         downstreams: dict[str, Any] | None = None, signing_key: str | None = None,
                         keys: ApiKeyStore | None = None) -> APIRouter:
    """``downstreams``: the services behind the gateway by name (``client``, ``audience``)."""
    router = APIRouter(prefix="/console/api", tags=["console"])
    keys = keys or ApiKeyStore(store.database)
    throttle = Throttle(config.failures_per_account, config.failures_per_network)

    def setup(email: str, secret: str) -> TotpSetup:
        uri = domain.totp_uri(secret, email)
        return TotpSetup(secret=secret, uri=uri, qr_svg=_qr_svg(uri))

    def set_cookie(response: Response, token: str) -> None:
        response.set_cookie(COOKIE, token, max_age=int(config.absolute.total_seconds()), path="/console",
                            secure=config.secure_cookies, httponly=True, samesite="strict")

    def clear_cookie(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/console", secure=config.secure_cookies, httponly=True,
                               samesite="strict")

    async def new_session(tenant_id: str, account_id: str, at: datetime, *, factor: bool,
                          pending_totp: bytes | None = None) -> tuple[dict[str, Any], str]:
        session_id = new_id("cs")
        token = new_split_secret(SESSION_PREFIX, session_id)
        row = {"tenant_id": tenant_id, "session_id": session_id, "account_id": account_id,
               "token_sha256": secret_hash(token), "created_at": at, "factor_at": at if factor else None,
               "pending_totp_sealed": pending_totp}
        return row, token

    async def load_session(token: str | None, *, full: bool) -> dict[str, Any]:
        """The session a cookie opens, or 401. ``full``: its second factor was given."""
        refused = problem(401, "session_required", "sign in to the console")
        session_id = split_secret_selector(SESSION_PREFIX, token or "")
        if session_id is None:
            raise refused
        tenant_id = await store.tenant_of_session(session_id)
        row = await store.session(tenant_id, session_id) if tenant_id else None
        now = datetime.now(UTC)
        if (row is None or not constant_time_equals(row["token_sha256"], secret_hash(token))
                or row["ended_at"] is not None or now - row["last_seen_at"] > config.idle
                or now - row["created_at"] > config.absolute or (full and row["factor_at"] is None)
                or (not full and row["factor_at"] is not None)):
            raise refused
        if full and now - row["last_seen_at"] > timedelta(minutes=1):  # one write a minute at most
            await store.update_session(tenant_id, session_id, last_seen_at=now)
            row["last_seen_at"] = now
        return row

    async def from_allowed_network(tenant_id: str, account_id: str | None, request: Request) -> bool:
        """Whether the request comes from the tenant's allow-list (or it has none). A
        refusal is audited with the truncated network."""
        if await store.network_allowed(tenant_id, request.client.host if request.client else None):
            return True
        await store.log(tenant_id, activity("network_refused", datetime.now(UTC), account_id, request,
                                            path=request.url.path[:100]))
        return False

    def network_refused() -> Exception:
        return problem(403, "network_not_allowed", "your organisation does not allow the console from this network")

    async def current(request: Request, tessera_console: Annotated[str | None, Cookie()] = None) -> ConsoleSession:
        row = await load_session(tessera_console, full=True)
        if not await from_allowed_network(row["tenant_id"], row["account_id"], request):
            raise network_refused()
        return ConsoleSession(row["tenant_id"], row["session_id"], row["account_id"], row["role"], row["email"],
                              row["display_name"], row["factor_at"])

    Current = Annotated[ConsoleSession, Depends(current)]

    async def changing(session: Current,
                       x_csrf_token: Annotated[str | None, Header()] = None) -> ConsoleSession:
        if x_csrf_token is None or not constant_time_equals(x_csrf_token,
                                                            domain.csrf_token(config.key, session.session_id)):
            raise problem(403, "csrf_token_invalid", "send the session's X-CSRF-Token with every change")
        return session

    Changing = Annotated[ConsoleSession, Depends(changing)]

    def role(session: ConsoleSession, *allowed: str) -> None:
        if session.role not in allowed:
            raise problem(403, "role_not_allowed", f"this needs the role {' or '.join(allowed)}")

    def fresh(session: ConsoleSession) -> None:
        if session.factor_at is None or datetime.now(UTC) - session.factor_at > config.fresh_factor:
            raise problem(403, "fresh_factor_required", "confirm with your second factor first")

    async def session_out(row_or_session: Any, now: datetime, **extra: Any) -> dict[str, Any]:
        tenant_id = row_or_session["tenant_id"]
        account = await store.account(tenant_id, row_or_session["account_id"])
        session = await store.session(tenant_id, row_or_session["session_id"])
        return dict(tenant_id=tenant_id, tenant_name=await store.tenant_name(tenant_id) or "",
                    account_id=account["account_id"], email=account["email"], display_name=account["display_name"],
                    role=account["role"], csrf_token=domain.csrf_token(config.key, session["session_id"]),
                    idle_expires_at=session["last_seen_at"] + config.idle,
                    absolute_expires_at=session["created_at"] + config.absolute, **extra)

    def activity(action: str, at: datetime, account_id: str | None, request: Request, **detail: Any) -> dict:
        return {"action": action, "at": at, "account_id": account_id, "network": _network(request),
                "detail": detail}

    # --- invitations ---------------------------------------------------------------

    async def open_invitation(token: str, request: Request) -> dict[str, Any]:
        refused = problem(404, "invitation_not_valid", "this invitation is unknown, used or expired")
        invitation_id = split_secret_selector(INVITATION_PREFIX, token)
        tenant_id = await store.tenant_of_invitation(invitation_id) if invitation_id else None
        invitation = await store.invitation(tenant_id, invitation_id) if tenant_id else None
        if (invitation is None or not constant_time_equals(invitation["token_sha256"], secret_hash(token))
                or invitation["used_at"] is not None or invitation["expires_at"] <= datetime.now(UTC)):
            raise refused
        if not await from_allowed_network(invitation["tenant_id"], None, request):
            raise network_refused()
        return invitation

    @router.post("/invitation", responses=errors(404))
    async def read_invitation(body: InvitationIn, request: Request) -> InvitationOut:
        """What an invitation is for, to show before accepting it."""
        invitation = await open_invitation(body.token, request)
        return InvitationOut(email=invitation["email"], role=invitation["role"],
                             tenant_name=await store.tenant_name(invitation["tenant_id"]) or "",
                             expires_at=invitation["expires_at"],
                             password_chosen=invitation["pending_password_hash"] is not None)

    @router.post("/invitation/password", responses=errors(404, 422))
    async def choose_password(body: InvitationPasswordIn, request: Request) -> TotpSetup:
        """Step 1 of accepting: a password, judged by zxcvbn; answers the TOTP secret to
        set up in an authenticator app (confirmed in step 2)."""
        invitation = await open_invitation(body.token, request)
        tenant_name = await store.tenant_name(invitation["tenant_id"]) or ""
        verdict = domain.judge_password(body.password,
                                        user_inputs=[invitation["email"], tenant_name, body.display_name, "tessera"])
        if not verdict.acceptable:
            raise problem(422, "weak_password", verdict.warning or "this password is too easy to guess",
                          ) from None
        secret = domain.new_totp_secret()
        await store.set_invitation_pending(
            invitation["tenant_id"], invitation["invitation_id"], domain.hash_password(body.password),
            domain.seal_secret(config.key, invitation["invitation_id"], secret), body.display_name)
        return setup(invitation["email"], secret)

    @router.post("/invitation/confirm", status_code=status.HTTP_201_CREATED, responses=errors(404, 409, 422))
    async def confirm_invitation(body: InvitationConfirmIn, request: Request, response: Response) -> SignedIn:
        """Step 2: the first TOTP code. The account exists from here, signed in, with its
        recovery codes shown this once."""
        invitation = await open_invitation(body.token, request)
        name = invitation["pending_display_name"]
        if invitation["pending_password_hash"] is None or name is None:
            raise problem(409, "password_not_chosen", "choose a password first")
        secret = domain.open_secret(config.key, invitation["invitation_id"], invitation["pending_totp_sealed"])
        step = domain.totp_step(secret, body.code, 0)
        if step is None:
            raise problem(422, "code_not_valid", "that code is not the current one of your authenticator app")
        now = datetime.now(UTC)
        account_id = new_id("ca")
        codes = domain.new_recovery_codes()
        account = {"account_id": account_id, "email": invitation["email"], "display_name": name,
                   "role": invitation["role"], "password_hash": invitation["pending_password_hash"],
                   "totp_sealed": domain.seal_secret(config.key, account_id, secret), "totp_last_step": step,
                   "created_at": now}
        session, token = await new_session(invitation["tenant_id"], account_id, now, factor=True)
        if not await store.accept_invitation(
                invitation, account, [domain.recovery_code_hash(c) for c in codes], session,
                activity("invitation_accepted", now, account_id, request, role=invitation["role"])):
            raise problem(404, "invitation_not_valid", "this invitation is unknown, used or expired")
        set_cookie(response, token)
        log.info("console_account_created", tenant_id=invitation["tenant_id"], account_id=account_id)
        return SignedIn(**await session_out(session, now), recovery_codes=codes)

    # --- sign-in -----------------------------------------------------------------------

    @router.post("/sign-in", responses=errors(401, 429))
    async def sign_in(body: SignInIn, request: Request, response: Response) -> SignInNext:
        """The address and password; the second factor follows (``next``). One answer for
        an unknown address and a wrong password."""
        network, address = _network(request), body.email.lower()
        await throttle.refuse_if_spent(address, network)
        tenant_id = await store.tenant_of_email(address)
        account = await store.account_by_email(tenant_id, address) if tenant_id else None
        now = datetime.now(UTC)
        if not domain.password_matches(account["password_hash"] if account else None, body.password):
            await throttle.failed(address, network)
            if account is not None:
                await store.log(tenant_id, activity("sign_in_failed", now, account["account_id"], request,
                                                    step="password"))
            raise problem(401, "sign_in_failed", "the address or the password is not right")
        if not await from_allowed_network(tenant_id, account["account_id"], request):
            # The same answer as a wrong password: from outside the allow-list, nobody
            # learns that the account exists or that the password was right.
            await throttle.failed(address, network)
            raise problem(401, "sign_in_failed", "the address or the password is not right")
        pending = None
        next_step: Literal["totp", "totp_setup"] = "totp"
        totp_setup = None
        if account["totp_sealed"] is None:  # its factors were reset: set up a new TOTP
            secret = domain.new_totp_secret()
            pending = domain.seal_secret(config.key, account["account_id"], secret)
            next_step, totp_setup = "totp_setup", setup(account["email"], secret)
        session, token = await new_session(tenant_id, account["account_id"], now, factor=False,
                                           pending_totp=pending)
        await store.add_session(session)
        set_cookie(response, token)
        return SignInNext(next=next_step, totp_setup=totp_setup)

    async def after_password(token: str | None, request: Request) -> tuple[dict[str, Any], str, str]:
        """The half-open session of a second-factor step (code or passkey), from an allowed
        network, with budget left: the session, the network and the address throttled."""
        row = await load_session(token, full=False)
        if not await from_allowed_network(row["tenant_id"], row["account_id"], request):
            raise network_refused()
        network, address = _network(request), row["email"].lower()
        await throttle.refuse_if_spent(address, network)
        return row, network, address

    @router.post("/sign-in/factor", responses=errors(401, 422, 429))
    async def second_factor(body: FactorIn, request: Request, response: Response,
                            tessera_console: Annotated[str | None, Cookie()] = None) -> SignedIn:
        """A TOTP code (``code``) or an unused recovery code (``recovery_code``)."""
        row, network, address = await after_password(tessera_console, request)
        tenant_id, account_id = row["tenant_id"], row["account_id"]
        account = await store.account(tenant_id, account_id)
        now = datetime.now(UTC)
        codes = None
        if row["pending_totp_sealed"] is not None:  # setting up a new TOTP after a reset
            secret = domain.open_secret(config.key, account_id, row["pending_totp_sealed"])
            step = domain.totp_step(secret, body.code or "", 0)
            if step is not None:
                codes = domain.new_recovery_codes()
                await store.set_up_totp(tenant_id, account_id, row["pending_totp_sealed"], step,
                                        [domain.recovery_code_hash(c) for c in codes], row["session_id"], now,
                                        activity("totp_set_up", now, account_id, request))
                return SignedIn(**await session_out(row, now), recovery_codes=codes)
            accepted, used = False, "totp"
        elif body.recovery_code:
            accepted = await store.use_recovery_code(tenant_id, account_id,
                                                     domain.recovery_code_hash(body.recovery_code), now)
            used = "recovery_code"
        else:
            secret = domain.open_secret(config.key, account_id, account["totp_sealed"])
            step = domain.totp_step(secret, body.code or "", account["totp_last_step"])
            accepted = step is not None and await store.take_totp_step(tenant_id, account_id, step)
            used = "totp"
        if not accepted:
            await throttle.failed(address, network)
            await store.log(tenant_id, activity("sign_in_failed", now, account_id, request, step=used))
            raise problem(422, "code_not_valid", "that code is not valid (or was used already)")
        await store.update_session(tenant_id, row["session_id"], factor_at=now, last_seen_at=now)
        await store.log(tenant_id, activity("signed_in", now, account_id, request, factor=used))
        return SignedIn(**await session_out(row, now))

    # --- the session -----------------------------------------------------------------

    @router.get("/session", responses=errors(401))
    async def read_session(session: Current) -> SessionOut:
        """Who is signed in, and the CSRF token every change must carry."""
        return SessionOut(**await session_out({"tenant_id": session.tenant_id, "account_id": session.account_id,
                                               "session_id": session.session_id}, datetime.now(UTC)))

    @router.post("/session/factor", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 422))
    async def refresh_factor(body: TotpCodeIn, session: Changing, request: Request) -> Response:
        """A TOTP code again, before a sensitive action."""
        account = await store.account(session.tenant_id, session.account_id)
        secret = domain.open_secret(config.key, session.account_id, account["totp_sealed"])
        step = domain.totp_step(secret, body.code, account["totp_last_step"])
        now = datetime.now(UTC)
        if step is None or not await store.take_totp_step(session.tenant_id, session.account_id, step):
            await store.log(session.tenant_id, activity("factor_failed", now, session.account_id, request))
            raise problem(422, "code_not_valid", "that code is not valid (or was used already)")
        await store.update_session(session.tenant_id, session.session_id, factor_at=now)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/sign-out", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403))
    async def sign_out(session: Changing, request: Request) -> Response:
        now = datetime.now(UTC)
        await store.update_session(session.tenant_id, session.session_id, ended_at=now)
        await store.log(session.tenant_id, activity("signed_out", now, session.account_id, request))
        response = Response(status_code=status.HTTP_204_NO_CONTENT)
        clear_cookie(response)
        return response

    @router.post("/sign-out-everywhere", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403))
    async def sign_out_everywhere(session: Changing, request: Request) -> Response:
        """Every session of this account ends, on every device."""
        now = datetime.now(UTC)
        ended = await store.end_sessions(session.tenant_id, session.account_id, now)
        await store.log(session.tenant_id, activity("signed_out_everywhere", now, session.account_id, request,
                                                    sessions=ended))
        response = Response(status_code=status.HTTP_204_NO_CONTENT)
        clear_cookie(response)
        return response

    # --- the team (owners) -------------------------------------------------------------

    @router.get("/team", responses=errors(401, 403))
    async def team(session: Current) -> dict[str, Any]:
        role(session, "owner")
        accounts, invitations = await store.accounts(session.tenant_id)
        return {"accounts": accounts, "invitations": invitations}

    @router.post("/team/invitations", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 409))
    async def invite(body: NewInvitationIn, session: Changing, request: Request) -> dict[str, Any]:
        """A one-time link for a colleague, valid for a week."""
        role(session, "owner")
        if await store.email_taken(str(body.email)):
            raise problem(409, "email_taken", "this address already has a console account")
        invitation, token = new_invitation(session.tenant_id, str(body.email), body.role, session.account_id,
                                           config.invitation_lifetime)
        await store.add_invitation(invitation, activity("invitation_created", invitation["created_at"],
                                                        session.account_id, request, role=body.role))
        return {"invitation_url": invitation_url(request, token), "expires_at": invitation["expires_at"]}

    @router.post("/team/{account_id}/factor-reset", status_code=status.HTTP_204_NO_CONTENT,
                 responses=errors(401, 403, 404, 409))
    async def reset_factors(account_id: Annotated[str, StringConstraints(pattern=r"^ca_[A-Za-z0-9_-]{8,40}$")],
                            session: Changing, request: Request) -> Response:
        """A colleague's TOTP and recovery codes go and their sessions end; they set up a
        new TOTP at their next sign-in (their password stays). Not one's own."""
        role(session, "owner")
        fresh(session)
        if account_id == session.account_id:
            raise problem(409, "own_account", "another owner resets your factors")
        now = datetime.now(UTC)
        if not await store.reset_factors(session.tenant_id, account_id, now,
                                         activity("factors_reset", now, session.account_id, request,
                                                  of_account=account_id)):
            raise problem(404, "account_not_found", "this organisation has no such account")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- passkeys (WebAuthn): a second factor beside TOTP -------------------------------------

    def relying_party(request: Request) -> tuple[str, str]:
        """The expected origin and the RP ID (its host)."""
        origin = config.origin or str(request.base_url).rstrip("/")
        return origin, urlsplit(origin).hostname or ""

    def passkey_out(row: dict[str, Any]) -> PasskeyOut:
        return PasskeyOut(passkey_id=bytes_to_base64url(row["credential_id"]), name=row["name"],
                          created_at=row["created_at"], last_used_at=row["last_used_at"])

    @router.get("/passkeys", responses=errors(401))
    async def list_passkeys(session: Current) -> PasskeyList:
        return PasskeyList(passkeys=[passkey_out(r) for r in await store.passkeys(session.tenant_id,
                                                                                 session.account_id)])

    @router.post("/passkeys/options", responses=errors(401, 403))
    async def passkey_registration_options(session: Changing, request: Request) -> dict[str, Any]:
        """What ``navigator.credentials.create()`` needs (PublicKeyCredentialCreationOptionsJSON)."""
        fresh(session)
        _, rp_id = relying_party(request)
        existing = await store.passkeys(session.tenant_id, session.account_id)
        options = webauthn.generate_registration_options(
            rp_id=rp_id, rp_name="Tessera", user_name=session.email, user_display_name=session.display_name,
            user_id=session.account_id.encode(),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=r["credential_id"]) for r in existing],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED))
        await store.set_challenge(session.tenant_id, session.session_id, options.challenge)
        return json.loads(webauthn.options_to_json(options))

    @router.post("/passkeys", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 422))
    async def add_passkey(body: PasskeyIn, session: Changing, request: Request) -> PasskeyOut:
        fresh(session)
        challenge = await store.take_challenge(session.tenant_id, session.session_id)
        origin, rp_id = relying_party(request)
        if challenge is None:
            raise problem(422, "passkey_not_valid", "ask for the options first")
        try:
            verified = webauthn.verify_registration_response(
                credential=body.credential, expected_challenge=challenge, expected_rp_id=rp_id,
                expected_origin=origin)
        except Exception as error:  # the library's InvalidRegistrationResponse and malformed input
            log.info("passkey_refused", reason=type(error).__name__)
            raise problem(422, "passkey_not_valid", "the passkey's answer could not be verified") from None
        now = datetime.now(UTC)
        row = {"credential_id": verified.credential_id, "public_key": verified.credential_public_key,
               "sign_count": verified.sign_count, "name": body.name, "created_at": now, "last_used_at": None}
        await store.add_passkey(session.tenant_id, session.account_id, row,
                                activity("passkey_added", now, session.account_id, request))
        return passkey_out(row)

    @router.delete("/passkeys/{passkey_id}", status_code=status.HTTP_204_NO_CONTENT,
                   responses=errors(401, 403, 404))
    async def remove_passkey(passkey_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,700}$")],
                             session: Changing, request: Request) -> Response:
        fresh(session)
        try:
            credential_id = base64url_to_bytes(passkey_id)
        except ValueError:
            raise problem(404, "passkey_not_found", "you have no such passkey") from None
        if not await store.remove_passkey(session.tenant_id, session.account_id, credential_id,
                                          activity("passkey_removed", datetime.now(UTC), session.account_id,
                                                   request)):
            raise problem(404, "passkey_not_found", "you have no such passkey")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/sign-in/passkey/options", responses=errors(401, 409))
    async def passkey_sign_in_options(request: Request,
                                      tessera_console: Annotated[str | None, Cookie()] = None) -> dict[str, Any]:
        """After the password: what ``navigator.credentials.get()`` needs, for this
        account's passkeys (409 ``no_passkey`` when it has none)."""
        row = await load_session(tessera_console, full=False)
        keys = await store.passkeys(row["tenant_id"], row["account_id"])
        if not keys or row["pending_totp_sealed"] is not None:
            raise problem(409, "no_passkey", "this account has no passkey; use the authenticator app")
        _, rp_id = relying_party(request)
        options = webauthn.generate_authentication_options(
            rp_id=rp_id, allow_credentials=[PublicKeyCredentialDescriptor(id=k["credential_id"]) for k in keys],
            user_verification=UserVerificationRequirement.PREFERRED)
        await store.set_challenge(row["tenant_id"], row["session_id"], options.challenge)
        return json.loads(webauthn.options_to_json(options))

    @router.post("/sign-in/passkey", responses=errors(401, 422, 429))
    async def passkey_sign_in(body: PasskeyAnswerIn, request: Request,
                              tessera_console: Annotated[str | None, Cookie()] = None) -> SignedIn:
        """The second factor with a passkey instead of a code."""
        row, network, address = await after_password(tessera_console, request)
        tenant_id, account_id = row["tenant_id"], row["account_id"]
        challenge = await store.take_challenge(tenant_id, row["session_id"])
        keys = {k["credential_id"]: k for k in await store.passkeys(tenant_id, account_id)}
        origin, rp_id = relying_party(request)
        now = datetime.now(UTC)
        try:
            key = keys[base64url_to_bytes(str(body.credential.get("rawId") or body.credential.get("id") or ""))]
            verified = webauthn.verify_authentication_response(
                credential=body.credential, expected_challenge=challenge or b"", expected_rp_id=rp_id,
                expected_origin=origin, credential_public_key=key["public_key"],
                credential_current_sign_count=key["sign_count"])
            accepted = challenge is not None and await store.passkey_used(
                tenant_id, account_id, verified.credential_id, verified.new_sign_count, now)
        except Exception as error:  # unknown credential, malformed or unverifiable answer
            log.info("passkey_refused", reason=type(error).__name__)
            accepted = False
        if not accepted:
            await throttle.failed(address, network)
            await store.log(tenant_id, activity("sign_in_failed", now, account_id, request, step="passkey"))
            raise problem(422, "passkey_not_valid", "the passkey's answer could not be verified")
        await store.update_session(tenant_id, row["session_id"], factor_at=now, last_seen_at=now)
        await store.log(tenant_id, activity("signed_in", now, account_id, request, factor="passkey"))
        return SignedIn(**await session_out(row, now))

    # --- the IP allow-list (owners) -----------------------------------------------------------

    @router.get("/allow-list", responses=errors(401, 403))
    async def read_allow_list(session: Current, request: Request) -> AllowListOut:
        role(session, "owner")
        return AllowListOut(networks=await store.allow_list(session.tenant_id),
                            your_address=request.client.host if request.client else None)

    @router.put("/allow-list", responses=errors(401, 403, 409))
    async def change_allow_list(body: AllowListIn, session: Changing, request: Request) -> AllowListOut:
        """The networks (CIDR, IPv4 or IPv6; a bare address is one host) from which the
        console and the tenant's API keys may be used; empty: from anywhere. A list that
        would shut out the address making the change is refused."""
        role(session, "owner")
        fresh(session)
        address = request.client.host if request.client else None
        parsed = body.parsed()
        networks = [str(n) for n in parsed]
        if not address_allowed(parsed, address):  # the same check the list will get
            raise problem(409, "would_lock_you_out", "the list must include the network you are on now")
        await store.set_allow_list(session.tenant_id, networks, datetime.now(UTC), activity(
            "allow_list_changed", datetime.now(UTC), session.account_id, request, networks=len(networks)))
        return AllowListOut(networks=await store.allow_list(session.tenant_id), your_address=address)

    # --- API keys (owners) -------------------------------------------------------------

    async def used_elsewhere(session: ConsoleSession) -> tuple[dict[str, datetime], bool]:
        """When each key last opened a route of a service behind the gateway, the latest
        over them all, and whether every service answered."""
        if signing_key is None or not downstreams:
            return {}, not downstreams

        async def ask(downstream: Any) -> dict[str, datetime] | None:
            headers = {STAFF_ASSERTION_HEADER: sign_staff_assertion(
                signing_key, Staff(session.account_id, session.tenant_id, session.role), downstream.audience)}
            try:
                answer = await downstream.client.get(f"/v1/tenants/{session.tenant_id}/api-keys/use", headers=headers)
                answer.raise_for_status()
                return {k["key_id"]: datetime.fromisoformat(k["last_used_at"]) for k in answer.json()["keys"]}
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                log.warning("key_use_unavailable", audience=downstream.audience, error=type(exc).__name__)
                return None

        answers = await asyncio.gather(*(ask(d) for d in downstreams.values()))
        latest: dict[str, datetime] = {}
        for answer in answers:
            for key_id, at in (answer or {}).items():
                latest[key_id] = max(at, latest.get(key_id, at))
        return latest, all(a is not None for a in answers)

    def key_out(row: dict[str, Any], elsewhere: dict[str, datetime]) -> dict[str, Any]:
        uses = [at for at in (row["last_used_at"], elsewhere.get(row["key_id"])) if at is not None]
        return dict(key_id=row["key_id"], name=row["name"], scopes=sorted(row["scopes"]),
                    status="revoked" if row["revoked_at"] else "active", created_at=row["created_at"],
                    created_by=row["created_by"], revoked_at=row["revoked_at"],
                    last_used_at=max(uses) if uses else None)

    @router.get("/api-keys", responses=errors(401, 403))
    async def list_api_keys(session: Current) -> ApiKeyList:
        """The tenant's API keys, active first, each with its last use."""
        role(session, "owner")
        elsewhere, complete = await used_elsewhere(session)
        return ApiKeyList(keys=[ApiKeyOut(**key_out(r, elsewhere)) for r in await keys.keys(session.tenant_id)],
                          last_use_complete=complete)

    @router.post("/api-keys", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 409))
    async def create_api_key(body: ApiKeyIn, session: Changing, request: Request) -> ApiKeyCreated:
        """A new key for the tenant's own systems, named and scoped; shown once. Needs a
        fresh second factor."""
        role(session, "owner")
        fresh(session)
        now = datetime.now(UTC)
        key, key_sha256 = new_api_key(session.tenant_id)
        row = {"key_id": new_id("k"), "name": body.name, "scopes": body.scopes, "key_sha256": key_sha256,
               "created_at": now, "created_by": session.account_id}
        if not await keys.create(session.tenant_id, row, activity(
                "api_key_created", now, session.account_id, request, key_id=row["key_id"], scopes=body.scopes)):
            raise problem(409, "too_many_api_keys", f"at most {MAX_ACTIVE_KEYS} keys may be active: revoke one first")
        return ApiKeyCreated(**key_out({**row, "created_by": session.email, "revoked_at": None,
                                        "last_used_at": None}, {}), key=key)

    @router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404))
    async def revoke_api_key(key_id: Annotated[str, Path(pattern=r"^k_[A-Za-z0-9_-]{1,40}$")], session: Changing,
                             request: Request) -> Response:
        """Revoke a key: the gateway refuses it at once, the services once they apply the
        change (within a second on a running platform). Revoking it again changes nothing."""
        role(session, "owner")
        now = datetime.now(UTC)
        outcome = await keys.revoke(session.tenant_id, key_id, now, activity(
            "api_key_revoked", now, session.account_id, request, key_id=key_id))
        if outcome is None:
            raise problem(404, "api_key_not_found", "this tenant has no such API key")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- opp codes (owners and editors) ---------------------------------------------------

    CodePath = Annotated[str, StringConstraints(min_length=1, max_length=32)]

    @router.get("/codes", responses=errors(401, 403))
    async def list_codes(session: Current, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                         offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> CodeList:
        role(session, "owner", "editor")
        now = datetime.now(UTC)
        listed = await enrolment.list_codes(session.tenant_id, limit, offset)
        return CodeList(codes=[codes.code_out(c, now) for c in listed], limit=limit, offset=offset)

    @router.post("/codes", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 503))
    async def create_code(body: CodeIn, session: Changing, request: Request) -> CodeOut:
        role(session, "owner", "editor")
        made = await codes.create_code(enrolment, session.tenant_id, body)
        await store.log(session.tenant_id, activity("code_created", made.created_at, session.account_id, request,
                                                    code=made.display, max_enrolments=made.max_enrolments))
        return made

    @router.delete("/codes/{code}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404))
    async def revoke_code(code: CodePath, session: Changing, request: Request) -> Response:
        role(session, "owner", "editor")
        canonical = await codes.revoke_code(enrolment, session.tenant_id, code)
        await store.log(session.tenant_id, activity("code_revoked", datetime.now(UTC), session.account_id, request,
                                                    code=domain_codes.display_code(canonical)))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get("/codes/{code}/qr.svg", response_model=None,
                responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}},
                                 "description": "the enrolment link as a QR code"}, **errors(401, 403, 404)})
    async def code_qr(code: CodePath, session: Current, request: Request) -> Response:
        role(session, "owner", "editor")
        found = await codes.find_code(enrolment, session.tenant_id, code)
        return Response(poster.qr_svg(poster.enrolment_link(str(request.base_url), found.code)),
                        media_type="image/svg+xml")

    @router.get("/codes/{code}/poster.pdf", response_model=None,
                responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
                                 "description": "an A4 poster: the QR code, the link and the code"},
                           **errors(401, 403, 404)})
    async def code_poster(code: CodePath, session: Current, request: Request,
                          lang: Annotated[Literal["en", "nl", "da"], Query()] = "en") -> Response:
        role(session, "owner", "editor")
        found = await codes.find_code(enrolment, session.tenant_id, code)
        organisation = await store.tenant_name(session.tenant_id) or ""
        pdf = poster.poster_pdf(organisation, found.display, poster.enrolment_link(str(request.base_url), found.code),
                                lang)
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="poster-{found.code}.pdf"'})

    # --- the services behind the gateway ---------------------------------------------------

    async def through(service: str, rest: str, request: Request, session: ConsoleSession) -> Response:
        """The tenant route ``/v1/tenants/<own tenant>/<rest>`` of ``service``, called for
        the signed-in account with a staff assertion: never another tenant's, since the
        tenant comes from the session."""
        downstream = (downstreams or {}).get(service)
        if service not in CONSOLE_SERVICES or downstream is None:
            raise problem(404, "not_found", "no such resource")
        segments = rest.split("/")
        if not all(_SEGMENT.fullmatch(part) and part not in (".", "..") for part in segments):
            raise problem(404, "not_found", "no such resource")
        role(session, *CONSOLE_SERVICES[service])
        if signing_key is None:
            raise problem(503, "gateway_not_configured", "the gateway has no signing key for assertions")
        changing = request.method != "GET"
        if changing and (service, segments[0]) in SENSITIVE:
            fresh(session)
        headers = {STAFF_ASSERTION_HEADER: sign_staff_assertion(
            signing_key, Staff(session.account_id, session.tenant_id, session.role), downstream.audience)}
        if request.headers.get("content-type"):
            headers["content-type"] = request.headers["content-type"]
        propagate.inject(headers)
        try:
            upstream = await downstream.client.request(
                request.method, f"/v1/tenants/{session.tenant_id}/{rest}", params=request.query_params,
                content=await request.body() if changing else None, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("downstream_unavailable", audience=downstream.audience, error=type(exc).__name__)
            raise problem(503, "temporarily_unavailable", "a backing service is unavailable; retry shortly",
                          {"Retry-After": "5"}) from None
        if changing:
            # What was changed, by whom: the kind of thing, never its content or an ID.
            await store.log(session.tenant_id, activity(
                f"{service}_change", datetime.now(UTC), session.account_id, request, method=request.method,
                resource=segments[0], status=upstream.status_code))
        passed = {k: upstream.headers[k] for k in _PASSED_BACK if k in upstream.headers}
        return Response(upstream.content, status_code=upstream.status_code, headers=passed)

    # One literal prefix per service, so that no other console route can be taken for a
    # service's name (a path parameter would match any first segment).
    def reader(service: str):
        async def read_through(rest: str, request: Request, session: Current) -> Response:
            return await through(service, rest, request, session)

        return read_through

    def changer(service: str):
        async def change_through(rest: str, request: Request, session: Changing) -> Response:
            return await through(service, rest, request, session)

        return change_through

    for service, roles in CONSOLE_SERVICES.items():
        router.add_api_route(
            f"/{service}/{{rest:path}}", reader(service), methods=["GET"], responses=errors(401, 403, 404, 503),
            summary=f"GET of {service}'s tenant route /v1/tenants/<the session's tenant>/<rest>",
            description=f"For {', '.join(roles)}.")
        router.add_api_route(
            f"/{service}/{{rest:path}}", changer(service), methods=["POST", "PUT", "PATCH", "DELETE"],
            responses=errors(401, 403, 404, 503),
            summary=f"A change through {service}'s tenant route (CSRF; audited)",
            description=f"For {', '.join(roles)}. Rights requests, retention and the tenant's settings also need "
                        "a fresh second factor.")

    # --- the activity log (owners) -------------------------------------------------------

    @router.get("/activity", responses=errors(401, 403))
    async def read_activity(session: Current, before: Annotated[int | None, Query(ge=1)] = None,
                            limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        role(session, "owner")
        return {"entries": await store.activity(session.tenant_id, limit, before)}

    @router.get("/activity.csv", response_model=None,
                responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                                 "description": "the log as CSV"}, **errors(401, 403)})
    async def export_activity(session: Current) -> Response:
        role(session, "owner")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["seq", "at", "account", "action", "detail", "network"])
        for entry in await store.activity(session.tenant_id, 100_000):
            detail = ";".join(f"{k}={v}" for k, v in sorted(entry["detail"].items()))
            # A cell that starts like a formula is quoted for spreadsheets (CSV injection).
            row = [entry["seq"], entry["at"].isoformat(), entry["email"] or "", entry["action"], detail,
                   entry["network"] or ""]
            writer.writerow([f"'{c}" if isinstance(c, str) and c[:1] in "=+-@" else c for c in row])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="activity.csv"'})

    return router


def new_invitation(tenant_id: str, email: str, role: str, invited_by: str | None,
                   lifetime: timedelta) -> tuple[dict[str, Any], str]:
    invitation_id = new_id("ci")
    token = new_split_secret(INVITATION_PREFIX, invitation_id)
    now = datetime.now(UTC)
    return ({"tenant_id": tenant_id, "invitation_id": invitation_id, "token_sha256": secret_hash(token),
             "email": email.lower(), "role": role, "invited_by": invited_by, "created_at": now,
             "expires_at": now + lifetime}, token)


def invitation_url(request: Request, token: str) -> str:
    """The link to send: the secret rides in the fragment, which no server receives."""
    return f"{str(request.base_url).rstrip('/')}/console/#invitation={token}"
