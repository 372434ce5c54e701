"""Opp codes as both doors show them: the tenant API (``/v1/tenants/{id}/codes``) and
the console (``/console/api/codes``) create, list and revoke them the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from tessera_common.http import IsoDatetime, StrictBody, problem, whole_number
from tessera_enrolment import domain
from tessera_enrolment.store import CodeTaken, EnrolmentStore


class CodeIn(StrictBody):
    expires_at: IsoDatetime | None = Field(default=None, description="with a time zone, e.g. ...Z")
    max_enrolments: whole_number(1, 1_000_000) | None = None


class CodeOut(BaseModel):
    code: str = Field(description="canonical form; type it with or without the hyphen, any case")
    display: str
    status: Literal["active", "revoked", "expired", "exhausted"]
    created_at: datetime
    expires_at: datetime | None
    max_enrolments: int | None
    enrolments: int


class CodeList(BaseModel):
    codes: list[CodeOut]
    limit: int
    offset: int


def code_out(code: dict, now: datetime) -> CodeOut:
    state = domain.CodeState(
        revoked=code.get("revoked_at") is not None,
        expires_at=code.get("expires_at"),
        max_enrolments=code.get("max_enrolments"),
        enrolments=code.get("enrolments", 0),
    )
    return CodeOut(
        code=code["_id"],
        display=domain.display_code(code["_id"]),
        status=domain.code_status(state, now),  # type: ignore[arg-type]
        created_at=code["created_at"],
        expires_at=code.get("expires_at"),
        max_enrolments=code.get("max_enrolments"),
        enrolments=code.get("enrolments", 0),
    )


async def create_code(store: EnrolmentStore, tenant_id: str, body: CodeIn) -> CodeOut:
    """A new code; a random one that collides (≈2^-49) is drawn again, three times at most."""
    now = datetime.now(UTC)
    if body.expires_at is not None and body.expires_at <= now:
        raise problem(422, "expires_in_past", "expires_at must be in the future")
    for _ in range(3):
        code = {
            "_id": domain.new_opp_code(),
            "tenant_id": tenant_id,
            "created_at": now,
            "expires_at": body.expires_at,
            "max_enrolments": body.max_enrolments,
            "enrolments": 0,
            "revoked_at": None,
        }
        try:
            await store.add_code(code)
            return code_out(code, now)
        except CodeTaken:
            continue
    raise problem(503, "code_space_busy", "could not allocate a unique code; try again")


async def revoke_code(store: EnrolmentStore, tenant_id: str, code: str) -> str:
    """The canonical code revoked, or 404 ``code_not_found``."""
    canonical = domain.normalise_code(code)
    if canonical is None or not await store.revoke_code(tenant_id, canonical, datetime.now(UTC)):
        raise problem(404, "code_not_found", "this tenant has no such code")
    return canonical


async def find_code(store: EnrolmentStore, tenant_id: str, code: str) -> CodeOut:
    canonical = domain.normalise_code(code)
    found = await store.code(tenant_id, canonical) if canonical else None
    if found is None:
        raise problem(404, "code_not_found", "this tenant has no such code")
    return code_out(found, datetime.now(UTC))
