"""The rights service's internal routes: per-participant data keys (DESIGN.md §4.3).

Only other Tessera services call them, with the internal bearer token. Thin: validate,
wrap or unwrap with :mod:`.domain`, persist with :mod:`.store`. Nothing here logs a
participant ID or a key; logs and metrics carry outcomes only.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, NoReturn

from fastapi import APIRouter, Depends, Path, Response, status
from opentelemetry import metrics
from pydantic import BaseModel, Field, StringConstraints

from tessera_common.crypto import new_data_key
from tessera_common.http import UNAUTHORISED_HEADERS, BearerCredentials, StrictBody, problem
from tessera_common.logs import get_logger
from tessera_common.secrets import constant_time_equals, erased_marker, new_id
from tessera_rights import domain
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


def build_router(store: RightsStore, internal_token: str, erased_marker_key: str, master_key: bytes) -> APIRouter:
    meter = metrics.get_meter("tessera.rights")
    outcomes = meter.create_counter(
        "tessera_rights_data_key_requests", unit="1", description="data-key requests by operation and outcome"
    )

    async def internal_caller(credentials: BearerCredentials) -> None:
        presented = credentials.credentials if credentials is not None else ""
        if not presented or not constant_time_equals(presented, internal_token):
            raise problem(401, "invalid_internal_token", "the internal token is not valid", UNAUTHORISED_HEADERS)

    router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[Depends(internal_caller)])

    def marker_of(participant_id: str) -> str:
        return erased_marker(erased_marker_key, participant_id)

    def refuse(operation: str, code: str) -> NoReturn:
        outcomes.add(1, {"operation": operation, "outcome": code})
        log.info("data_key_refused", operation=operation, outcome=code)
        status_code, message = REFUSALS[code]
        raise problem(status_code, code, message)

    def key_out(record: domain.WrappedDataKey) -> DataKeyOut:
        try:
            key = domain.unwrap_data_key(master_key, record)
        except domain.KeyUnwrapFailed:
            log.error("data_key_unwrap_failed")
            raise problem(500, "data_key_unreadable", "the stored data key cannot be unwrapped") from None
        return DataKeyOut(
            participant_id=record.participant_id,
            tenant_id=record.tenant_id,
            key_id=record.key_id,
            key=base64.b64encode(key).decode(),
        )

    @router.put("/data-keys/{participant_id}", status_code=status.HTTP_201_CREATED)
    async def create_or_get_data_key(participant_id: ParticipantId, body: DataKeyIn, response: Response) -> DataKeyOut:
        """Create-or-get: 201 with a new key, 200 with the one the participant has."""
        marker = marker_of(participant_id)
        if await store.is_erased(marker):
            refuse("put", "erased")
        stored = await store.data_key(participant_id)
        created = False
        if stored is None:
            fresh = domain.wrap_data_key(
                master_key,
                new_data_key(),
                participant_id=participant_id,
                tenant_id=body.tenant_id,
                key_id=new_id("k"),
                created_at=datetime.now(UTC),
            )
            stored, created = await store.add_data_key(fresh)
            # An erasure may have written its marker after our check and deleted
            # nothing yet; looking again after the insert means a key never outlives it.
            if stored is None or (created and await store.is_erased(marker)):
                await store.delete_data_key(participant_id)
                refuse("put", "erased")
        if stored.tenant_id != body.tenant_id:
            refuse("put", "wrong_tenant")
        outcomes.add(1, {"operation": "put", "outcome": "created" if created else "existing"})
        if created:
            log.info("data_key_created")
        else:
            response.status_code = status.HTTP_200_OK
        return key_out(stored)

    @router.get("/data-keys/{participant_id}")
    async def get_data_key(participant_id: ParticipantId) -> DataKeyOut:
        stored = await store.data_key(participant_id)
        if await store.is_erased(marker_of(participant_id)):
            refuse("get", "erased")
        if stored is None:
            refuse("get", "no_key")
        outcomes.add(1, {"operation": "get", "outcome": "found"})
        return key_out(stored)

    @router.delete("/data-keys/{participant_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def destroy_data_key(participant_id: ParticipantId) -> Response:
        """Idempotent. The marker is written first, so a crash in between leaves an
        erased participant with a marker and perhaps a key that nothing hands out
        (GET and PUT answer 410) until the retried DELETE removes it."""
        await store.mark_erased(marker_of(participant_id), datetime.now(UTC))
        await store.delete_data_key(participant_id)
        outcomes.add(1, {"operation": "delete", "outcome": "destroyed"})
        log.info("data_key_destroyed")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
