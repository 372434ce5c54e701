"""Enrolment's HTTP routes: operator, tenant and device. Thin: validate, decide with
:mod:`.domain`, persist with :mod:`.store`, publish through the outbox relay."""


import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from opentelemetry import metrics, propagate
from pydantic import BaseModel, Field, StringConstraints

from tessera_common.events import (
    DeviceEnrolled,
    DeviceEnrolledData,
    FormFactor,
    Platform,
    TenantRegistered,
    TenantRegisteredData,
)
from tessera_common.http import (
    IsoDatetime,
    UNAUTHORISED_HEADERS,
    StrictBody,
    TenantIdPath,
    TENANT_API_KEY_PREFIX,
    BearerCredentials,
    api_key_caller,
    check_operator_key,
    errors,
    internal_caller,
    problem,
    require_bearer,
)
from tessera_common.identity import ASSERTION_HEADER, Participant, sign_assertion
from tessera_common.logs import get_logger
from tessera_common.netaddr import truncate_ip
from tessera_common.secrets import (
    constant_time_equals,
    new_id,
    new_split_secret,
    secret_hash,
    split_secret_selector,
)
from tessera_common.tenant_access import AccessSource
from tessera_enrolment.api_keys import ApiKeyStore
from tessera_enrolment import codes, domain
from tessera_enrolment.codes import CodeIn, CodeList, CodeOut
from tessera_enrolment.console_api import INVITATION_LIFETIME, Email, invitation_url, new_invitation
from tessera_enrolment.store import STORE_NAME, EnrolmentStore

log = get_logger(__name__)
SOURCE = "tessera/enrolment"


class TenantIn(StrictBody):
    name: Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)]
    region: Annotated[str, StringConstraints(pattern=r"^eu-[a-z0-9-]{1,30}$")] = Field(
        description="where the tenant's data lives; Tessera keeps data in the EU, so eu-*"
    )
    owner_email: Email | None = Field(
        default=None, description="the first administrator's address: an invitation to the console is made for it")


class TenantOut(BaseModel):
    tenant_id: str
    name: str
    region: str
    api_key: str = Field(description="shown once; Tessera keeps only its hash")
    owner_invitation_url: str | None = Field(
        default=None, description="with owner_email: the console invitation (one-time, 7 days), shown once")


class EnrolmentIn(StrictBody):
    code: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    platform: Platform
    form_factor: FormFactor


class EnrolmentOut(BaseModel):
    participant_id: str
    device_token: str = Field(description="keep on the device; Tessera keeps only its hash")
    tenant_id: str


class MeOut(BaseModel):
    participant_id: str
    tenant_id: str
    platform: Platform
    form_factor: FormFactor
    enrolled_at: datetime


class ParticipantOut(BaseModel):
    participant_id: str
    tenant_id: str


class DeviceRecordOut(BaseModel):
    participant_id: str
    platform: Platform
    form_factor: FormFactor
    enrolled_at: datetime


class DeviceDataOut(BaseModel):
    """What this service holds about a participant, for their access request."""

    store: str
    categories: list[str]
    records: list[DeviceRecordOut]


class GuessThrottle:
    """Failed code attempts are limited per truncated client network and globally.

    Only failures count, so a school enrolling 500 phones from one network is not
    slowed; once a budget is spent, every attempt from there (or, globally, from
    anywhere) gets 429 without the code being looked at, so guessing learns nothing."""

    def __init__(self, per_network: str, global_limit: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_network = parse(per_network)
        self._global = parse(global_limit)

    async def retry_after(self, network: str) -> int | None:
        for item, key in ((self._per_network, network), (self._global, "global")):
            if not await self._limiter.test(item, "enrol-fail", key):
                stats = await self._limiter.get_window_stats(item, "enrol-fail", key)
                return max(1, int(stats.reset_time - datetime.now(UTC).timestamp()) + 1)
        return None

    async def failed(self, network: str) -> None:
        await self._limiter.hit(self._per_network, "enrol-fail", network)
        await self._limiter.hit(self._global, "enrol-fail", "global")


#: The participant routes the gateway forwards, by the service behind them. The app
#: calls only the gateway; the services behind it trust the assertion it attaches.
FORWARDED: dict[str, list[tuple[str, str]]] = {
    "dialogue": [
        ("GET", "/v1/me/dialogues"),
        ("GET", "/v1/me/dialogues/{dialogue_id}"),
        ("PUT", "/v1/me/dialogues/{dialogue_id}/questions/{question_id}/answer"),
        ("DELETE", "/v1/me/dialogues/{dialogue_id}/questions/{question_id}/answer"),
        ("POST", "/v1/me/dialogues/{dialogue_id}/questions/{question_id}/ideas"),
        ("GET", "/v1/me/dialogues/{dialogue_id}/questions/{question_id}/group"),
        ("GET", "/v1/me/answers"),
        ("POST", "/v1/me/screening"),
        ("PUT", "/v1/me/answers/{answer_id}"),
        ("DELETE", "/v1/me/answers/{answer_id}"),
    ],
    "rights": [
        ("POST", "/v1/me/rights-requests"),
        ("GET", "/v1/me/rights-requests"),
        ("GET", "/v1/me/rights-requests/{request_id}"),
        ("GET", "/v1/me/rights-requests/{request_id}/data"),
    ],
}
#: Routes forwarded without a device token, their own credential passed on as sent: an
#: erasure's status and receipt by its status secret (the device token stops working
#: during the erasure, so a phone has no other way to its receipt) and the receipt key.
PUBLIC_FORWARDED: dict[str, list[tuple[str, str]]] = {
    "rights": [
        ("GET", "/v1/rights-requests/{request_id}"),
        ("GET", "/v1/rights-requests/{request_id}/receipt"),
        ("GET", "/v1/rights/receipt-key"),
    ],
}
#: Request headers passed on (besides the assertion and trace context); the device
#: token is not among them: it never leaves the gateway.
PASSED_REQUEST_HEADERS = ("content-type", "accept", "idempotency-key")
PASSED_RESPONSE_HEADERS = ("content-type", "retry-after")
SAFE_PATH_PARAM = r"^[A-Za-z0-9_-]{1,64}$"
#: A header value as HTTP allows it (RFC 9110 §5.5): visible ASCII, spaces and tabs
#: only between its words. Obsolete non-ASCII bytes (which Starlette reads as Latin-1)
#: and control characters cannot be sent on.
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")


def forwarded_headers(request: Request, names: tuple[str, ...] = PASSED_REQUEST_HEADERS) -> dict[str, str]:
    """The client's headers the gateway passes on, or 400 ``malformed_header`` naming
    the first one that HTTP cannot carry (never its value). Whitespace around a value
    is not part of it (RFC 9110 §5.5), so it is dropped rather than refused."""
    headers = {}
    for name in names:
        values = [value.strip(" \t") for value in request.headers.getlist(name)]
        if not values:
            continue
        if any(value and not _HEADER_VALUE.fullmatch(value) for value in values):
            raise problem(400, "malformed_header",
                          f"the {name} header must be visible ASCII (no control characters)")
        if len(values) > 1 and name != "accept":  # Accept alone may be split over several lines
            raise problem(400, "malformed_header", f"the {name} header must be sent once")
        headers[name] = ", ".join(values)
    return headers
ParticipantIdPath = Annotated[str, Path(pattern=SAFE_PATH_PARAM, description="the participant's ID")]


@dataclass
class Downstream:
    """A service behind the gateway: its HTTP client and the audience its assertions name."""

    client: httpx.AsyncClient
    audience: str


def build_router(
    store: EnrolmentStore,
    operator_key: str,
    throttle: GuessThrottle,
    downstreams: dict[str, Downstream] | None = None,
    signing_key: str | None = None,
    keys: AccessSource | None = None,
) -> APIRouter:
    """``keys``: the tenant's API keys (api_keys.ApiKeyStore); its codes need the scope
    ``codes``."""
    router = APIRouter()
    meter = metrics.get_meter("tessera.enrolment")
    attempts = meter.create_counter(
        "tessera_enrolment_attempts", unit="1", description="enrolment attempts by outcome"
    )

    keys = keys or ApiKeyStore(store.database)
    AuthorisedTenant = Annotated[str, Depends(api_key_caller(keys, "codes"))]

    @router.post("/v1/tenants", status_code=status.HTTP_201_CREATED, tags=["operator"])
    async def create_tenant(body: TenantIn, credentials: BearerCredentials, request: Request) -> TenantOut:
        check_operator_key(require_bearer(credentials), operator_key)
        tenant_id = new_id("t")
        api_key = new_split_secret(TENANT_API_KEY_PREFIX, tenant_id)
        now = datetime.now(UTC)
        tenant = {
            "_id": tenant_id,
            "name": body.name,
            "region": body.region,
            "api_key_sha256": secret_hash(api_key),
            "created_at": now,
        }
        event = TenantRegistered(
            source=SOURCE,
            subject=tenant_id,
            tenant_id=tenant_id,
            data=TenantRegisteredData(region=body.region, api_key_sha256=tenant["api_key_sha256"]),
        )
        invitation, invitation_token = None, None
        if body.owner_email is not None:
            invitation, invitation_token = new_invitation(tenant_id, body.owner_email, "owner", None,
                                                          INVITATION_LIFETIME)
        await store.add_tenant(tenant, event, invitation)
        log.info("tenant_created", tenant_id=tenant_id)
        return TenantOut(tenant_id=tenant_id, name=body.name, region=body.region, api_key=api_key,
                         owner_invitation_url=invitation_url(request, invitation_token) if invitation_token else None)

    @router.post("/v1/tenants/{tenant_id}/codes", status_code=status.HTTP_201_CREATED, tags=["tenant"])
    async def create_code(tenant_id: AuthorisedTenant, body: CodeIn) -> CodeOut:
        return await codes.create_code(store, tenant_id, body)

    @router.get("/v1/tenants/{tenant_id}/codes", tags=["tenant"])
    async def list_codes(
        tenant_id: AuthorisedTenant,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> CodeList:
        now = datetime.now(UTC)
        listed = await store.list_codes(tenant_id, limit, offset)
        return CodeList(codes=[codes.code_out(c, now) for c in listed], limit=limit, offset=offset)

    @router.delete(
        "/v1/tenants/{tenant_id}/codes/{code}", status_code=status.HTTP_204_NO_CONTENT, tags=["tenant"],
        responses=errors(404, e404="this tenant has no such code (`code_not_found`)"),
    )
    async def revoke_code(
        tenant_id: AuthorisedTenant, code: Annotated[str, Path(max_length=32)]
    ) -> Response:
        await codes.revoke_code(store, tenant_id, code)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/v1/enrolments", status_code=status.HTTP_201_CREATED, tags=["device"], responses=errors(
        404, 429, e404="an unknown, revoked, expired or used-up code: one answer for all (`code_not_valid`)",
        e429="too many invalid codes from this network or overall (`too_many_attempts`): wait `Retry-After`"))
    async def enrol(body: EnrolmentIn, request: Request) -> EnrolmentOut:
        network = truncate_ip(request.client.host) if request.client else "unknown"
        retry_after = await throttle.retry_after(network)
        if retry_after is not None:
            attempts.add(1, {"outcome": "throttled"})
            raise problem(
                429, "too_many_attempts", "too many invalid codes; wait and try again",
                {"Retry-After": str(retry_after)},
            )
        now = datetime.now(UTC)
        canonical = domain.normalise_code(body.code)
        participant_id = new_id("p")
        device_token = new_split_secret(domain.DEVICE_TOKEN_PREFIX, participant_id)

        def new_device(tenant_id: str) -> tuple[dict, DeviceEnrolled]:
            device = domain.new_device_record(
                participant_id, tenant_id, secret_hash(device_token), body.platform, body.form_factor, now
            )
            event = DeviceEnrolled(
                source=SOURCE,
                subject=participant_id,
                tenant_id=tenant_id,
                data=DeviceEnrolledData(
                    participant_id=participant_id,
                    platform=body.platform,
                    form_factor=body.form_factor,
                    enrolled_at=now,
                ),
            )
            return device, event

        device = await store.enrol(canonical, now, new_device) if canonical else None
        if device is None:
            await throttle.failed(network)
            attempts.add(1, {"outcome": "invalid_code"})
            raise problem(
                404, "code_not_valid",
                "this code is not valid: check it for typos, or ask the organisation for a new one",
            )
        tenant_id = device["tenant_id"]
        attempts.add(1, {"outcome": "enrolled"})
        return EnrolmentOut(participant_id=participant_id, device_token=device_token, tenant_id=tenant_id)

    async def current_device(credentials: BearerCredentials) -> dict:
        token = require_bearer(credentials)
        participant_id = split_secret_selector(domain.DEVICE_TOKEN_PREFIX, token)
        device = await store.device(participant_id) if participant_id else None
        if device is None or not constant_time_equals(device["token_sha256"], secret_hash(token)):
            raise problem(401, "invalid_device_token", "this device token is not valid", UNAUTHORISED_HEADERS)
        today = datetime.now(UTC).date().isoformat()
        if device.get("last_used_on") != today:
            await store.touch_device(device["tenant_id"], device["_id"], today)
        return device

    def forwarder(downstream: Downstream):
        async def forward(request: Request, device: Annotated[dict, Depends(current_device)]) -> Response:
            if signing_key is None:
                raise problem(503, "gateway_not_configured", "the gateway has no signing key for assertions")
            participant = Participant(participant_id=device["_id"], tenant_id=device["tenant_id"],
                                      platform=device.get("platform"), form_factor=device.get("form_factor"))
            headers = forwarded_headers(request)
            headers[ASSERTION_HEADER] = sign_assertion(signing_key, participant, downstream.audience)
            return await send(downstream, request, headers)

        return forward

    def public_forwarder(downstream: Downstream):
        async def forward(request: Request) -> Response:
            return await send(downstream, request, forwarded_headers(request, (*PASSED_REQUEST_HEADERS,
                                                                             "authorization")))

        return forward

    async def send(downstream: Downstream, request: Request, headers: dict[str, str]) -> Response:
        """Pass the request on to ``downstream`` with ``headers`` and its answer back."""
        if any(not re.fullmatch(SAFE_PATH_PARAM, str(v)) for v in request.path_params.values()):
            raise problem(404, "not_found", "no such resource")
        propagate.inject(headers)  # the downstream service joins this request's trace
        try:
            outgoing = downstream.client.build_request(
                request.method, request.url.path, params=request.query_params,
                content=await request.body(), headers=headers,
            )
        except (ValueError, httpx.InvalidURL):  # UnicodeEncodeError included
            raise problem(400, "malformed_request", "this request cannot be forwarded as sent") from None
        try:
            upstream = await downstream.client.send(outgoing)
        except httpx.LocalProtocolError:
            # HTTP itself refused what the client sent (the downstream was not reached):
            # the client's error, not an outage to retry.
            log.info("request_not_forwardable", audience=downstream.audience)
            raise problem(400, "malformed_request", "this request cannot be forwarded as sent") from None
        except httpx.HTTPError as exc:
            log.warning("downstream_unavailable", audience=downstream.audience, error=type(exc).__name__)
            raise problem(503, "temporarily_unavailable", "a backing service is unavailable; retry shortly",
                          {"Retry-After": "5"}) from None
        passed = {name: upstream.headers[name] for name in PASSED_RESPONSE_HEADERS if name in upstream.headers}
        return Response(upstream.content, status_code=upstream.status_code, headers=passed)

    for table, make in ((FORWARDED, forwarder), (PUBLIC_FORWARDED, public_forwarder)):
        for name, routes in table.items():
            if downstreams is None or name not in downstreams:
                continue
            for method, path in routes:
                # Documented as the service behind it defines it (participant_api.py).
                router.add_api_route(path, make(downstreams[name]), methods=[method], include_in_schema=False)

    @router.get("/v1/me", tags=["device"])
    async def me(device: Annotated[dict, Depends(current_device)]) -> MeOut:
        return MeOut(
            participant_id=device["_id"],
            tenant_id=device["tenant_id"],
            platform=device["platform"],
            form_factor=device["form_factor"],
            enrolled_at=device["enrolled_at"],
        )

    return router


def build_internal_router(store: EnrolmentStore, internal_token: str) -> APIRouter:
    """What the rights service asks about a participant: whether the tenant has them
    (before it accepts a request on their behalf), and their device facts (access).
    Only other Tessera services reach these, with the internal token."""
    router = APIRouter(prefix="/internal/v1", tags=["internal"],
                       dependencies=[Depends(internal_caller(internal_token))])
    base = "/tenants/{tenant_id}/participants/{participant_id}"

    @router.get(base, responses=errors(404, e404="unknown here, or another tenant's (`participant_not_found`)"))
    async def participant(tenant_id: TenantIdPath, participant_id: ParticipantIdPath) -> ParticipantOut:
        """404 for an unknown participant and for another tenant's alike."""
        if await store.device_facts(tenant_id, participant_id) is None:
            raise problem(404, "participant_not_found", "this tenant has no such participant")
        return ParticipantOut(participant_id=participant_id, tenant_id=tenant_id)

    @router.get(f"{base}/data")
    async def participant_data(tenant_id: TenantIdPath, participant_id: ParticipantIdPath) -> DeviceDataOut:
        device = await store.device_facts(tenant_id, participant_id)
        records = [] if device is None else [DeviceRecordOut(
            participant_id=participant_id, platform=device["platform"], form_factor=device["form_factor"],
            enrolled_at=device["enrolled_at"],
        )]
        return DeviceDataOut(store=STORE_NAME, categories=["device_facts"], records=records)

    @router.get("/tenants/{tenant_id}/retention/idle-participants")
    async def idle_participants(
        tenant_id: TenantIdPath,
        idle_since: Annotated[IsoDatetime, Query(description="devices not used since this time")],
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> dict[str, list[str]]:
        """For the tenant's retention rule: participants whose device was last used
        before ``idle_since`` (by day)."""
        ids = await store.idle_participants(tenant_id, idle_since, limit)
        return {"participant_ids": ids}

    return router
