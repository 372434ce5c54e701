"""The rights service's HTTP routes.

- Internal (other Tessera services, internal bearer token): per-participant data keys
  (DESIGN.md §4.3), wrapped and unwrapped by :class:`.epochs.KeyEpochs`, persisted with
  :mod:`.store`; the key epochs and an on-demand rotation (DESIGN.md §4.10).
- Participants (through the gateway, with its assertion), tenants (API key) and holders
  of an erasure's status secret: rights requests, their data, receipts, the audit trail
  and its verification. Thin: validate, then the :class:`.desk.Desk` acts.

Nothing here logs a participant ID or a key; logs and metrics carry outcomes only.
"""


import base64
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry import metrics
from pydantic import BaseModel, Field, JsonValue, StringConstraints

from tessera_common.crypto import new_data_key
from tessera_common.tenant_access import key_use_router
from tessera_common.http import (
    UNAUTHORISED_HEADERS,
    BearerCredentials,
    StrictBody,
    whole_number,
    api_key_caller,
    tenant_caller,
    errors,
    internal_caller,
    problem,
    require_bearer,
)
from tessera_common.identity import Participant, participant_dependency
from tessera_common.logs import get_logger
from tessera_common.secrets import constant_time_equals, erased_marker, new_id, secret_hash, split_secret_selector
from tessera_rights import domain
from tessera_rights.desk import STATUS_SECRET_PREFIX, Desk, RequestRefused, StoreUnavailable
from tessera_rights.domain import RequestKind
from tessera_rights.epochs import KeyEpochs, UnknownEpoch
from tessera_rights.store import RightsStore

log = get_logger(__name__)
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ParticipantId = Annotated[str, Path(pattern=ID_PATTERN, description="the participant's ID")]
REFUSALS = {
    "erased": (410, "this participant was erased; their data key is destroyed"),
    "wrong_tenant": (409, "this participant's data key belongs to another tenant"),
    "no_key": (404, "this participant has no data key"),
}


class DataKeyIn(StrictBody):
    tenant_id: Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class DataKeyOut(BaseModel):
    participant_id: str
    tenant_id: str
    key_id: str
    key: str = Field(description="base64 of the 32-byte AES-256-GCM data key")


#: At most this many keys in one batch (a group view of 100 texts needs one call).
MAX_KEYS_PER_BATCH = 500
#: The longest a process may keep an unwrapped key in memory (issue 12): 60 s.
MAX_HOLD_SECONDS = 60
#: Added to a holder's bound: its cache's clock starts when the answer arrives, a
#: little after this service wrote the bound.
HOLD_GRACE = timedelta(seconds=5)
HolderId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")]


class DataKeyBatchIn(StrictBody):
    tenant_id: Annotated[str, StringConstraints(pattern=ID_PATTERN)]
    participant_ids: list[Annotated[str, StringConstraints(pattern=ID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_KEYS_PER_BATCH)


class DataKeyBatchOut(BaseModel):
    keys: list[DataKeyOut] = Field(description="the keys that exist, of this tenant's participants only")
    missing: list[str] = Field(description="asked for, with no key here: never had one, another tenant's, or erased")


class TenantDataKeysIn(StrictBody):
    participant_ids: list[Annotated[str, StringConstraints(pattern=ID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_KEYS_PER_BATCH)


class KeyDropIn(StrictBody):
    tenant_id: Annotated[str, StringConstraints(pattern=ID_PATTERN)]
    holder: HolderId
    request_id: Annotated[str, StringConstraints(pattern=ID_PATTERN)] | None = None


class KeyHold(BaseModel):
    holder: str
    seconds: int


async def key_hold(  # async: a plain def would cost every key request a thread hop
    holder: Annotated[HolderId | None, Header(
        alias="Tessera-Key-Holder",
        description="sent by a caller that caches the keys it gets: its process's ID, so an erasure knows whom "
                    "to wait for (see `data-key-destroyed`)")] = None,
    seconds: Annotated[int, Header(
        alias="Tessera-Key-Hold-Seconds", ge=1, le=MAX_HOLD_SECONDS,
        description="how long that caller keeps a key (at most 60; assumed 60 when not said)")] = MAX_HOLD_SECONDS,
) -> KeyHold | None:
    """No holder: the caller does not cache (a bound alone names nobody to wait for)."""
    return KeyHold(holder=holder, seconds=seconds) if holder is not None else None


async def unwrapped(store: RightsStore, epochs: KeyEpochs, record: domain.WrappedDataKey) -> DataKeyOut:
    """The key of ``record``, unwrapped under its epoch (or the one a rotation moved it to)."""
    try:
        try:
            key = await epochs.unwrap(record)
        except UnknownEpoch:
            # Read just before a rotation re-wrapped it and retired its epoch: the
            # row holds it under the new epoch now.
            fresh = await store.data_key(record.participant_id)
            if fresh is None or fresh.epoch == record.epoch:
                raise domain.KeyUnwrapFailed("unknown epoch") from None
            record = fresh
            key = await epochs.unwrap(record)
    except (domain.KeyUnwrapFailed, UnknownEpoch):
        log.error("data_key_unwrap_failed")
        raise problem(500, "data_key_unreadable", "the stored data key cannot be unwrapped") from None
    return DataKeyOut(participant_id=record.participant_id, tenant_id=record.tenant_id, key_id=record.key_id,
                      key=base64.b64encode(key).decode())


def build_tenant_key_router(store: RightsStore, epochs: KeyEpochs) -> APIRouter:
    """A tenant's own systems fetch the data keys of its participants, to open the texts
    their topic carries sealed: in batches, only while the keys exist. A system that
    keeps ciphertext and fetches keys when it reads is erased along with the platform;
    one that keeps keys must honour the erasure notices on the same topic."""
    router = APIRouter()
    meter = metrics.get_meter("tessera.rights")
    fetched = meter.create_counter("tessera_rights_tenant_key_batches", unit="1",
                                   description="tenants' data-key batches, by outcome")

    # The tenant's systems that read its topic: keys with the scope streams.
    tenant_key = api_key_caller(store.access, "streams")

    @router.post("/v1/tenants/{tenant_id}/data-keys:batchGet", tags=["tenant"])
    async def tenant_data_keys(tenant_id: Annotated[str, Depends(tenant_key)], body: TenantDataKeysIn,
                               ) -> DataKeyBatchOut:
        """The existing data keys of up to 500 of the tenant's participants (another
        tenant's, an erased or an unknown participant is in ``missing``)."""
        wanted = sorted(set(body.participant_ids))
        found = {k.participant_id: k for k in await store.data_keys_of(tenant_id, wanted)}
        fetched.add(1, {"outcome": "found" if found else "none"})
        return DataKeyBatchOut(keys=[await unwrapped(store, epochs, found[p]) for p in sorted(found)],
                               missing=[p for p in wanted if p not in found])

    return router


def build_data_key_router(store: RightsStore, desk: Desk, internal_token: str, erased_marker_key: str,
                          epochs: KeyEpochs) -> APIRouter:
    meter = metrics.get_meter("tessera.rights")
    outcomes = meter.create_counter(
        "tessera_rights_data_key_requests", unit="1", description="data-key requests by operation and outcome"
    )

    router = APIRouter(prefix="/internal/v1", tags=["internal"],
                       dependencies=[Depends(internal_caller(internal_token))])

    def marker_of(participant_id: str) -> str:
        return erased_marker(erased_marker_key, participant_id)

    def refuse(operation: str, code: str) -> NoReturn:
        outcomes.add(1, {"operation": operation, "outcome": code})
        log.info("data_key_refused", operation=operation, outcome=code)
        status_code, message = REFUSALS[code]
        raise problem(status_code, code, message)

    async def key_out(record: domain.WrappedDataKey) -> DataKeyOut:
        return await unwrapped(store, epochs, record)

    Hold = Annotated[KeyHold | None, Depends(key_hold)]

    async def held(tenant_id: str, participant_ids: list[str], hold: KeyHold | None) -> set[str]:
        """Which of the participants' keys may be handed out: all that exist when the
        caller does not cache; otherwise those recorded as held by it (a key destroyed
        meanwhile is not)."""
        if hold is None:
            return set(participant_ids)
        until = datetime.now(UTC) + timedelta(seconds=hold.seconds) + HOLD_GRACE
        return await store.hold_keys(tenant_id, {p: marker_of(p) for p in participant_ids}, hold.holder, until)

    @router.post("/data-keys:batchGet")
    async def data_keys_batch(body: DataKeyBatchIn, hold: Hold) -> DataKeyBatchOut:
        """The existing keys of many participants of one tenant, for opening their texts
        (a group view, a listing) in one call. Creates none."""
        wanted = sorted(set(body.participant_ids))
        found = {k.participant_id: k for k in await store.data_keys_of(body.tenant_id, wanted)}
        handed = await held(body.tenant_id, sorted(found), hold) if found else set()
        outcomes.add(1, {"operation": "batch", "outcome": "found" if handed else "none"})
        return DataKeyBatchOut(keys=[await key_out(found[p]) for p in sorted(handed)],
                               missing=[p for p in wanted if p not in handed])

    @router.post("/data-keys/{participant_id}/drops", status_code=status.HTTP_204_NO_CONTENT)
    async def key_dropped(participant_id: ParticipantId, body: KeyDropIn) -> Response:
        """A holder dropped the participant's key from memory (after ``data-key-destroyed``).
        Idempotent; a holder not known to hold the key is no error."""
        await desk.key_dropped(body.tenant_id, participant_id, body.holder, body.request_id)
        outcomes.add(1, {"operation": "drop", "outcome": "recorded"})
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.put("/data-keys/{participant_id}", status_code=status.HTTP_201_CREATED,
                responses={200: {"model": DataKeyOut, "description": "the key the participant has"},
                           **errors(409, 410, e409="the key belongs to another tenant (`wrong_tenant`)")})
    async def create_or_get_data_key(participant_id: ParticipantId, body: DataKeyIn, response: Response,
                                     hold: Hold) -> DataKeyOut:
        """Create-or-get: 201 with a new key, 200 with the one the participant has."""
        marker = marker_of(participant_id)
        if await store.is_erased(marker):
            refuse("put", "erased")
        stored = await store.data_key(participant_id)
        created = False
        if stored is None:
            # Under the participant's key lock: an erasure that wrote its marker after
            # the check above makes this refuse, so a key never outlives an erasure.
            stored, created = await epochs.store_new(
                new_data_key(), marker, participant_id=participant_id, tenant_id=body.tenant_id,
                key_id=new_id("k"), created_at=datetime.now(UTC))
            if stored is None:
                refuse("put", "erased")
        if stored.tenant_id != body.tenant_id:
            refuse("put", "wrong_tenant")
        if participant_id not in await held(stored.tenant_id, [participant_id], hold):
            refuse("put", "erased")  # destroyed since it was read
        outcomes.add(1, {"operation": "put", "outcome": "created" if created else "existing"})
        if created:
            log.info("data_key_created")
        else:
            response.status_code = status.HTTP_200_OK
        return await key_out(stored)

    @router.get("/data-keys/{participant_id}", responses=errors(404, 410))
    async def get_data_key(participant_id: ParticipantId, hold: Hold) -> DataKeyOut:
        stored = await store.data_key(participant_id)
        if await store.is_erased(marker_of(participant_id)):
            refuse("get", "erased")
        if stored is None:
            refuse("get", "no_key")
        if participant_id not in await held(stored.tenant_id, [participant_id], hold):
            refuse("get", "erased")
        outcomes.add(1, {"operation": "get", "outcome": "found"})
        return await key_out(stored)

    @router.delete("/data-keys/{participant_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def destroy_data_key(participant_id: ParticipantId) -> Response:
        """Idempotent. The marker and the key's removal commit together."""
        await store.destroy_data_key(marker_of(participant_id), participant_id, datetime.now(UTC))
        outcomes.add(1, {"operation": "delete", "outcome": "destroyed"})
        log.info("data_key_destroyed")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


class KeyEpochOut(BaseModel):
    epoch: int
    created_at: datetime
    retired_at: datetime | None = Field(description="when its wrapping key was destroyed: from then on every "
                                                    "erasure with this final_after_epoch is final")
    current: bool


class RotationOut(BaseModel):
    epoch: int = Field(description="the new current epoch")
    retired: list[int] = Field(description="epochs retired by this rotation (their keys destroyed)")
    rewrapped: int = Field(description="live data keys re-wrapped under the new epoch")
    left: list[int] = Field(description="old epochs with keys still held by other work: the next rotation "
                                        "retires them")


def build_key_epoch_router(epochs: KeyEpochs, internal_token: str) -> APIRouter:
    """The key epochs (no key material) and an on-demand rotation, for operators."""
    router = APIRouter(prefix="/internal/v1", tags=["internal"],
                       dependencies=[Depends(internal_caller(internal_token))])

    async def listing() -> list[KeyEpochOut]:
        found = await epochs.epochs()
        current = max((e["epoch"] for e in found if e["retired_at"] is None), default=None)
        return [KeyEpochOut(epoch=e["epoch"], created_at=e["created_at"], retired_at=e["retired_at"],
                            current=e["epoch"] == current) for e in found]

    @router.get("/key-epochs")
    async def key_epochs() -> dict[str, list[KeyEpochOut]]:
        return {"epochs": await listing()}

    @router.post("/key-epochs/rotations", status_code=status.HTTP_201_CREATED,
                 responses=errors(409, e409="another replica is rotating now (`rotation_in_progress`), or the "
                                            "keyring is in memory only (`keyring_not_durable`)"))
    async def rotate() -> RotationOut:
        """Rotate now: make the next epoch, re-wrap every live key under it, destroy
        the old epochs' keys. Answers when done (seconds per 100,000 keys)."""
        if not epochs.keyring.durable:
            raise problem(409, "keyring_not_durable", "the keyring is in memory only: set TESSERA_KEYRING_PATH")
        rotation = await epochs.rotate()
        if rotation is None:
            raise problem(409, "rotation_in_progress", "another rotation is running; see GET /internal/v1/key-epochs")
        return RotationOut(epoch=rotation.epoch, retired=rotation.retired, rewrapped=rotation.rewrapped,
                           left=rotation.left)

    return router


# --- rights requests -----------------------------------------------------------------


def refused(refusal: RequestRefused) -> HTTPException:
    return HTTPException(status_code=refusal.status,
                         detail={"code": refusal.code, "message": refusal.message, **refusal.more})


AUDIENCE = "tessera-rights"
NO_REQUEST = errors(404, e404="no such rights request here (`request_not_found`)")
REQUEST_DATA = {
    200: {"description": "the data: JSON (`format=json`, for portability) or a summary to read (`format=text`)",
          "content": {"application/json": {"schema": {"type": "object"}}, "text/plain": {"schema": {"type": "string"}}}},
    **errors(404, 409, 410, e409="not an access or export request (`not_an_access_request`)",
             e410="the participant's data no longer exists"),
}
NO_RECEIPT = errors(409, e409="not an erasure, or not complete yet")
Id = Annotated[str, Path(pattern=ID_PATTERN)]
IdValue = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class RightsRequestIn(StrictBody):
    kind: RequestKind
    #: Rectification only: the answer to change, and its new value.
    answer_id: IdValue | None = None
    value: JsonValue = Field(default=None, description="rectification only: the answer's new value")


class TenantRightsRequestIn(RightsRequestIn):
    participant_id: IdValue = Field(description="the participant ID the participant read from the app")


class ProgressOut(BaseModel):
    store: str
    status: Literal["pending", "confirmed"]
    confirmed_at: datetime | None
    documents_deleted: int | None = Field(description="for access and export: records the store holds")


class RightsRequestOut(BaseModel):
    request_id: str
    tenant_id: str
    kind: RequestKind
    status: str
    urgency: Literal["overdue", "at_risk", "on_track", "closed"]
    actor: str
    reason: str | None
    scope: dict[str, str] | None = Field(description="a retention erasure's dialogue; null for everything")
    #: Only while the request is open; removed when an erasure completes.
    participant_id: str | None
    received_at: datetime
    deadline: datetime = Field(description="received + one calendar month (GDPR art. 12(3))")
    completed_at: datetime | None
    attempts: int = Field(description="how often stores that had not confirmed were asked again")
    next_retry_at: datetime | None
    progress: list[ProgressOut]
    final_after_epoch: int | None = Field(
        default=None, description="erasure only: the key epoch whose retirement makes this erasure final in "
                                  "every file and backup (null for a dialogue-scoped erasure)")
    final_at: datetime | None = Field(
        default=None, description="when that epoch was retired; null until then")
    status_secret: str | None = Field(
        default=None, description="erasure only, shown once: fetch status and receipt after the device stops working")


REQUEST_TAKEN = {
    200: {"model": RightsRequestOut, "description": "the same erasure or objection, already under way"},
    **errors(404, 409, 410, e404="no such participant, or (rectification) no such answer of theirs",
             e409="the participant was erased, or (rectification) the dialogue refused the change",
             e410="the participant was erased"),
}


class RightsRequestList(BaseModel):
    requests: list[RightsRequestOut]
    limit: int
    offset: int


class RetentionIn(StrictBody):
    answers_days_after_close: whole_number(1, 3650) | None = None
    idle_device_days: whole_number(1, 3650) | None = None


class VerificationOut(BaseModel):
    tenant_id: str
    valid: bool
    entries: int
    broken_at: int | None
    reason: str | None
    head: dict[str, Any] | None
    verified_at: datetime
    signed: dict[str, Any] = Field(description="this statement signed with the receipt key: keep it, and a later "
                                               "chain shorter than it proves entries were removed")


def request_out(request: dict[str, Any], status_secret: str | None = None) -> RightsRequestOut:
    return RightsRequestOut(
        request_id=request["_id"], tenant_id=request["tenant_id"], kind=request["kind"], status=request["status"],
        urgency=domain.urgency(request["status"], request["deadline"], datetime.now(UTC)),
        actor=request["actor"], reason=request.get("reason"),
        scope={"dialogue_id": request["scope"]} if request.get("scope") else None,
        participant_id=request.get("participant_id"), received_at=request["received_at"],
        deadline=request["deadline"], completed_at=request.get("completed_at"), attempts=request.get("attempts", 0),
        next_retry_at=request.get("next_retry_at"),
        progress=[ProgressOut(**p) for p in request["progress"]],
        final_after_epoch=request.get("final_after_epoch"), final_at=request.get("final_at"),
        status_secret=status_secret,
    )


def build_requests_router(desk: Desk, gateway_public_key: str | None, receipt_public_key: str) -> APIRouter:
    store = desk.store
    router = APIRouter()
    received = metrics.get_meter("tessera.rights").create_counter(
        "tessera_rights_requests", unit="1", description="rights requests received, by kind and actor")
    CurrentParticipant = Annotated[Participant, Depends(participant_dependency(gateway_public_key, AUDIENCE))]

    # One of the tenant's API keys (scope rights), or a console owner's or privacy officer's assertion.
    tenant_key = tenant_caller(store.access, gateway_public_key, AUDIENCE, ("owner", "privacy_officer"), scope="rights")
    router.include_router(key_use_router(store.access, gateway_public_key, AUDIENCE))

    AuthorisedTenant = Annotated[str, Depends(tenant_key)]

    async def take(actor: domain.Actor, tenant_id: str, participant_id: str, body: RightsRequestIn,
                   response: Response) -> RightsRequestOut:
        rectifying = body.kind == "rectification"
        if rectifying and body.answer_id is None:
            raise problem(422, "answer_id_required", "a rectification names the answer to change (answer_id)")
        if not rectifying and (body.answer_id is not None or "value" in body.model_fields_set):
            raise problem(422, "unexpected_field", "answer_id and value belong to a rectification only")
        try:
            outcome = await desk.receive(actor, tenant_id, participant_id, body.kind,
                                         answer_id=body.answer_id, value=body.value)
        except RequestRefused as refusal:
            raise refused(refusal) from None
        except StoreUnavailable:
            raise problem(503, "temporarily_unavailable", "a store is unavailable; retry shortly",
                          {"Retry-After": "5"}) from None
        if not outcome.created:
            response.status_code = status.HTTP_200_OK
        else:
            received.add(1, {"kind": body.kind, "actor": actor})
        return request_out(outcome.request, outcome.status_secret)

    async def data_of(request: dict[str, Any], text: bool) -> Response:
        if request["kind"] not in ("access", "export"):
            raise problem(409, "not_an_access_request", "only access and export requests have data to fetch")
        try:
            data = await desk.participant_data(request)
        except RequestRefused as refusal:
            raise refused(refusal) from None
        except StoreUnavailable:
            raise problem(503, "temporarily_unavailable", "a store is unavailable; retry shortly",
                          {"Retry-After": "5"}) from None
        if text:
            return PlainTextResponse(domain.human_summary(data))
        return JSONResponse(jsonable_encoder(data), headers={
            "Content-Disposition": f'attachment; filename="tessera-{request["_id"]}.json"'})

    # --- participants, through the gateway -----------------------------------------

    @router.post("/v1/me/rights-requests", status_code=status.HTTP_202_ACCEPTED, tags=["participant"],
                 responses=REQUEST_TAKEN)
    async def participant_request(participant: CurrentParticipant, body: RightsRequestIn,
                                  response: Response) -> RightsRequestOut:
        """Access, export, rectification, erasure or objection, for oneself. 202 with the
        request; 200 with the open one if the same erasure or objection is already under way."""
        return await take("participant", participant.tenant_id, participant.participant_id, body, response)

    @router.get("/v1/me/rights-requests", tags=["participant"])
    async def my_requests(participant: CurrentParticipant) -> RightsRequestList:
        mine = await store.requests_of(participant.tenant_id, desk.marker(participant.participant_id))
        return RightsRequestList(requests=[request_out(r) for r in mine], limit=100, offset=0)

    async def my_request(participant: Participant, request_id: str) -> dict[str, Any]:
        found = await store.request(participant.tenant_id, request_id)
        if found is None or found["subject"] != desk.marker(participant.participant_id):
            raise problem(404, "request_not_found", "no such rights request")
        return found

    @router.get("/v1/me/rights-requests/{request_id}", tags=["participant"], responses=NO_REQUEST)
    async def my_request_status(participant: CurrentParticipant, request_id: Id) -> RightsRequestOut:
        return request_out(await my_request(participant, request_id))

    @router.get("/v1/me/rights-requests/{request_id}/data", tags=["participant"], responses=REQUEST_DATA)
    async def my_data(participant: CurrentParticipant, request_id: Id,
                      format: Literal["json", "text"] = "json") -> Response:  # noqa: A002
        """An access or export request's data, gathered from every store now: JSON
        (machine-readable, for portability) or a human-readable summary."""
        return await data_of(await my_request(participant, request_id), format == "text")

    # --- tenants, on a participant's behalf ----------------------------------------

    @router.post("/v1/tenants/{tenant_id}/rights-requests", status_code=status.HTTP_202_ACCEPTED, tags=["tenant"],
                 responses=REQUEST_TAKEN)
    async def tenant_request(tenant_id: AuthorisedTenant, body: TenantRightsRequestIn,
                             response: Response) -> RightsRequestOut:
        try:
            await desk.participant_of_tenant(tenant_id, body.participant_id, body.kind)
        except RequestRefused as refusal:
            raise refused(refusal) from None
        except StoreUnavailable:
            raise problem(503, "temporarily_unavailable", "a store is unavailable; retry shortly",
                          {"Retry-After": "5"}) from None
        return await take("tenant", tenant_id, body.participant_id,
                          RightsRequestIn(**body.model_dump(exclude={"participant_id"}, exclude_unset=True)),
                          response)

    @router.get("/v1/tenants/{tenant_id}/rights-requests", tags=["tenant"])
    async def tenant_requests(
        tenant_id: AuthorisedTenant,
        status_: Annotated[Literal["in_progress", "completed"] | None, Query(alias="status")] = None,
        kind: RequestKind | None = None,
        urgency: Literal["overdue", "at_risk"] | None = None,
        participant_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> RightsRequestList:
        """Open requests first, nearest deadline first, so overdue and at-risk ones
        lead; then closed ones, newest first."""
        now = datetime.now(UTC)
        deadline_from = deadline_before = None
        if urgency == "overdue":
            status_, deadline_before = "in_progress", now
        elif urgency == "at_risk":
            # deadline within [now, now + AT_RISK_WITHIN]; the upper bound nudged to keep it inclusive
            status_, deadline_from = "in_progress", now
            deadline_before = now + domain.AT_RISK_WITHIN + timedelta(microseconds=1)
        found = await store.list_requests(
            tenant_id, status=status_, kind=kind,
            subject=desk.marker(participant_id) if participant_id is not None else None,
            deadline_from=deadline_from, deadline_before=deadline_before, limit=limit, skip=offset)
        return RightsRequestList(requests=[request_out(r) for r in found], limit=limit, offset=offset)

    async def tenant_request_of(tenant_id: str, request_id: str) -> dict[str, Any]:
        found = await store.request(tenant_id, request_id)
        if found is None:
            raise problem(404, "request_not_found", "this tenant has no such rights request")
        return found

    @router.get("/v1/tenants/{tenant_id}/rights-requests/{request_id}", tags=["tenant"], responses=NO_REQUEST)
    async def tenant_request_status(tenant_id: AuthorisedTenant, request_id: Id) -> RightsRequestOut:
        return request_out(await tenant_request_of(tenant_id, request_id))

    @router.get("/v1/tenants/{tenant_id}/rights-requests/{request_id}/data", tags=["tenant"],
                responses=REQUEST_DATA)
    async def tenant_request_data(tenant_id: AuthorisedTenant, request_id: Id,
                                  format: Literal["json", "text"] = "json") -> Response:  # noqa: A002
        return await data_of(await tenant_request_of(tenant_id, request_id), format == "text")

    @router.get("/v1/tenants/{tenant_id}/rights-requests/{request_id}/receipt", tags=["tenant"],
                responses={**NO_REQUEST, **NO_RECEIPT})
    async def tenant_receipt(tenant_id: AuthorisedTenant, request_id: Id) -> dict[str, Any]:
        return receipt_of(await tenant_request_of(tenant_id, request_id))

    @router.get("/v1/tenants/{tenant_id}/retention", tags=["tenant"])
    async def get_retention(tenant_id: AuthorisedTenant) -> RetentionIn:
        return RetentionIn(**await store.retention(tenant_id))

    @router.put("/v1/tenants/{tenant_id}/retention", tags=["tenant"])
    async def put_retention(tenant_id: AuthorisedTenant, body: RetentionIn) -> RetentionIn:
        """How long data lives: answers N days after their dialogue closed, devices M
        days after they were last used (null: kept). Expiry runs as erasures with reason
        ``retention``, audited like any other."""
        await store.set_retention(tenant_id, body.model_dump())
        return body

    # --- the audit trail -----------------------------------------------------------

    @router.get("/v1/tenants/{tenant_id}/audit", tags=["tenant"])
    async def audit_entries(
        tenant_id: AuthorisedTenant,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        """Entries in chain order: ``seq``, ``prev_hash``, ``hash`` and the record."""
        return {"tenant_id": tenant_id, "entries": await store.audit_entries(tenant_id, after_seq, limit)}

    @router.get("/v1/tenants/{tenant_id}/audit/verification", tags=["tenant"])
    async def verify_audit(tenant_id: AuthorisedTenant) -> VerificationOut:
        """Recompute the whole chain: any changed, reordered, inserted or removed entry
        shows as ``valid: false`` with the first entry that does not fit."""
        head, entries = await store.audit_chain(tenant_id)
        result = domain.verify_chain(entries, head)
        statement = {"type": "tessera.audit-verification.v1", "tenant_id": tenant_id, "valid": result.valid,
                     "entries": result.entries, "head_hash": result.head_hash,
                     "verified_at": datetime.now(UTC).isoformat()}
        return VerificationOut(
            tenant_id=tenant_id, valid=result.valid, entries=result.entries, broken_at=result.broken_at,
            reason=result.reason, head={"seq": head[0], "hash": head[1]} if head else None,
            verified_at=datetime.fromisoformat(statement["verified_at"]),
            signed=domain.sign_receipt(desk.signing_key, statement),
        )

    # --- status secret holders, and everyone -----------------------------------------

    def receipt_of(request: dict[str, Any]) -> dict[str, Any]:
        if request["kind"] != "erasure":
            raise problem(409, "not_an_erasure", "only erasures have receipts")
        if request.get("receipt") is None:
            raise problem(409, "erasure_not_complete", "the receipt is issued once every store confirmed")
        return request["receipt"]

    async def by_status_secret(request_id: str, credentials: BearerCredentials) -> dict[str, Any]:
        presented = require_bearer(credentials)
        found = await store.request_by_id(request_id, with_secret=True)
        if (found is None or found.get("status_secret_sha256") is None
                or split_secret_selector(STATUS_SECRET_PREFIX, presented) != request_id
                or not constant_time_equals(found["status_secret_sha256"], secret_hash(presented))):
            raise problem(401, "invalid_status_secret", "the status secret is not valid for this request",
                          UNAUTHORISED_HEADERS)
        return found

    @router.get("/v1/rights-requests/{request_id}", tags=["status secret"])
    async def status_by_secret(request_id: Id, credentials: BearerCredentials) -> RightsRequestOut:
        """An erasure's status, with the status secret its request returned: the device
        token stops working during the erasure, this does not."""
        found = await by_status_secret(request_id, credentials)
        found.pop("status_secret_sha256", None)
        return request_out(found)

    @router.get("/v1/rights-requests/{request_id}/receipt", tags=["status secret"], responses=NO_RECEIPT)
    async def receipt_by_secret(request_id: Id, credentials: BearerCredentials) -> dict[str, Any]:
        """The signed erasure receipt: verify it with ``GET /v1/rights/receipt-key``."""
        return receipt_of(await by_status_secret(request_id, credentials))

    @router.get("/v1/rights/receipt-key", tags=["public"])
    async def receipt_key() -> dict[str, str]:
        """The Ed25519 public key that verifies receipts and audit statements: the
        signature (base64) is over the canonical JSON of ``receipt`` (sorted keys, no
        spaces, UTF-8)."""
        raw = base64.b64decode(receipt_public_key)
        return {"algorithm": "Ed25519", "key_id": domain.receipt_key_id(raw), "public_key": receipt_public_key}

    return router
