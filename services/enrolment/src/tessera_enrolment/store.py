"""Enrolment's PostgreSQL tables (``migrations/``); nothing else touches them.

- ``tenants``: one per organisation; the API key only as its SHA-256.
- ``codes``: opp codes, unique across tenants (a code names no tenant).
- ``devices``: only :data:`domain.DEVICE_FIELDS`, keyed by participant ID.

Every method is one unit of work scoped to its tenant by row-level security; the two
lookups that must cross tenants (claiming a code with its device, checking a device
token) are the migrations' ``SECURITY DEFINER`` functions. Events commit with the change through the
outbox (:mod:`tessera_common.outbox`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import asyncpg
from opentelemetry import propagate

from tessera_common.events import DeviceEnrolled, Topics, TenantRegistered, partition_key
from tessera_common.postgres import Database, UniqueViolation, UnitOfWork
from tessera_enrolment.api_keys import initial_key, insert_key, publish_access

#: The devices table's name in the data map (tessera_common.datamap): erasure is
#: confirmed, and a participant's data is exported, under it.
STORE_NAME = "enrolment.devices"

#: The tenant an enrolment's device and event are made with before the code has named
#: the real one (``enrol_device`` puts it in).
_UNCLAIMED = "t_unclaimed"


class CodeTaken(Exception):
    """A freshly generated code collided with an existing one (≈2^-49 per code)."""


def _device(row: asyncpg.Record) -> dict[str, Any]:
    device = dict(row)
    device["_id"] = device.pop("participant_id")
    if isinstance(device.get("last_used_on"), date):
        device["last_used_on"] = device["last_used_on"].isoformat()
    return device


class EnrolmentStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def unit(self, tenant_id: str | None) -> UnitOfWork:
        return UnitOfWork(self.database, tenant_id)

    # --- tenants ---------------------------------------------------------

    async def add_tenant(self, tenant: dict[str, Any], event: TenantRegistered,
                         owner_invitation: dict[str, Any] | None = None) -> None:
        """The tenant, its first API key, its events (``tenant-registered`` and its first
        ``tenant-access-changed``) and, when given, the console invitation of its first
        owner (console_store's table), in one transaction."""
        async with self.unit(tenant["_id"]) as uow:
            await uow.connection.execute(
                "INSERT INTO tenants (tenant_id, name, region, api_key_sha256, created_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                tenant["_id"], tenant["name"], tenant["region"], tenant["api_key_sha256"], tenant["created_at"],
            )
            if owner_invitation is not None:
                await uow.connection.execute(
                    "INSERT INTO console_invitations (tenant_id, invitation_id, token_sha256, email, role,"
                    " created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    owner_invitation["tenant_id"], owner_invitation["invitation_id"], owner_invitation["token_sha256"],
                    owner_invitation["email"], owner_invitation["role"], owner_invitation["created_at"],
                    owner_invitation["expires_at"])
            await uow.publish(event, Topics.TENANT_REGISTERED, None, aggregatetype="tenant")
            await insert_key(uow, tenant["_id"], initial_key(tenant["_id"], tenant["api_key_sha256"],
                                                             tenant["created_at"]))
            await publish_access(uow, tenant["_id"])

    # --- codes -----------------------------------------------------------

    async def add_code(self, code: dict[str, Any]) -> None:
        try:
            async with self.unit(code["tenant_id"]) as uow:
                await uow.connection.execute(
                    "INSERT INTO codes (tenant_id, code, created_at, expires_at, max_enrolments, enrolments)"
                    " VALUES ($1, $2, $3, $4, $5, 0)",
                    code["tenant_id"], code["_id"], code["created_at"], code.get("expires_at"),
                    code.get("max_enrolments"),
                )
        except UniqueViolation:
            raise CodeTaken from None

    async def list_codes(self, tenant_id: str, limit: int, skip: int) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT code AS _id, tenant_id, created_at, expires_at, max_enrolments, enrolments, revoked_at"
                " FROM codes WHERE tenant_id = $1 ORDER BY created_at, code LIMIT $2 OFFSET $3",
                tenant_id, limit, skip,
            )
        return [dict(row) for row in rows]

    async def code(self, tenant_id: str, code: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT code AS _id, tenant_id, created_at, expires_at, max_enrolments, enrolments, revoked_at"
                " FROM codes WHERE tenant_id = $1 AND code = $2", tenant_id, code)
        return dict(row) if row else None

    async def revoke_code(self, tenant_id: str, code: str, now: datetime) -> bool:
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "UPDATE codes SET revoked_at = coalesce(revoked_at, $3) WHERE tenant_id = $1 AND code = $2",
                tenant_id, code, now,
            )
        return status == "UPDATE 1"

    # --- Kafka credentials -------------------------------------------------

    async def add_kafka_credential(self, credential: dict[str, Any], limit: int) -> bool:
        """Record an issued credential; False (nothing recorded) when the tenant already
        has ``limit`` that are not revoked. The count and the insert hold the tenant's
        row lock, so two issues at once cannot both take the last place."""
        async with self.unit(credential["tenant_id"]) as uow:
            await uow.connection.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                                         credential["tenant_id"])
            active = await uow.connection.fetchval(
                "SELECT count(*) FROM kafka_credentials WHERE tenant_id = $1 AND revoked_at IS NULL",
                credential["tenant_id"])
            if active >= limit:
                return False
            await uow.connection.execute(
                "INSERT INTO kafka_credentials (tenant_id, credential_id, name, username, created_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                credential["tenant_id"], credential["credential_id"], credential["name"], credential["username"],
                credential["created_at"])
        return True

    async def count_kafka_credentials(self, tenant_id: str) -> int:
        async with self.unit(tenant_id) as uow:
            return await uow.connection.fetchval(
                "SELECT count(*) FROM kafka_credentials WHERE tenant_id = $1 AND revoked_at IS NULL", tenant_id)

    async def kafka_credential(self, tenant_id: str, credential_id: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT * FROM kafka_credentials WHERE tenant_id = $1 AND credential_id = $2", tenant_id, credential_id)
        return dict(row) if row else None

    async def list_kafka_credentials(self, tenant_id: str) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT * FROM kafka_credentials WHERE tenant_id = $1 ORDER BY created_at, credential_id", tenant_id)
        return [dict(row) for row in rows]

    async def mark_kafka_credential(self, tenant_id: str, credential_id: str, column: str, at: datetime) -> None:
        """Set ``rotated_at`` (again) or ``revoked_at`` (once)."""
        assignment = {"rotated_at": "rotated_at = $3", "revoked_at": "revoked_at = coalesce(revoked_at, $3)"}[column]
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                f"UPDATE kafka_credentials SET {assignment} WHERE tenant_id = $1 AND credential_id = $2",
                tenant_id, credential_id, at)

    # --- devices ---------------------------------------------------------

    async def enrol(
        self, code: str, now: datetime, new_device: Callable[[str], tuple[dict[str, Any], DeviceEnrolled]]
    ) -> dict[str, Any] | None:
        """Take one place of a usable code and record the device with its
        ``device-enrolled`` event, in one statement (``enrol_device``, one transaction:
        a failure after the claim gives the place back). ``new_device(tenant_id)`` makes
        the record and event; the code names the tenant inside the statement, so they
        are made with a stand-in and given the claimed tenant there and here.
        None if the code is unknown, revoked, expired or used up."""
        device, event = new_device(_UNCLAIMED)
        trace: dict[str, str] = {}
        propagate.inject(trace)  # the relay publishes the event in this request's trace
        tenant_id = await self.database.pool.fetchval(
            "SELECT enrol_device($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            code, now, device["_id"], device["token_sha256"], device["platform"], device["form_factor"],
            date.fromisoformat(device["last_used_on"]) if device.get("last_used_on") else None,
            event.id, event.type, event.model_dump(mode="json"), Topics.DEVICE_ENROLLED, trace,
        )
        if tenant_id is None:
            return None
        return {**device, "tenant_id": tenant_id}

    async def device(self, participant_id: str) -> dict[str, Any] | None:
        """The device a token names (any tenant's: the token tells the tenant)."""
        # One statement, so no transaction around it: every forwarded request comes here.
        row = await self.database.pool.fetchrow("SELECT * FROM device_for_token($1)", participant_id)
        return _device(row) if row is not None else None

    async def device_facts(self, tenant_id: str, participant_id: str) -> dict[str, Any] | None:
        """The device of this tenant's participant, as the participant may see it: the
        facts of :data:`domain.DEVICE_FIELDS` without the token hash. Another tenant's
        participant is as absent as an unknown one."""
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT participant_id, tenant_id, platform, form_factor, enrolled_at FROM devices"
                " WHERE tenant_id = $1 AND participant_id = $2",
                tenant_id, participant_id,
            )
        return _device(row) if row is not None else None

    async def touch_device(self, tenant_id: str, participant_id: str, today: str) -> None:
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "UPDATE devices SET last_used_on = $3 WHERE tenant_id = $1 AND participant_id = $2",
                tenant_id, participant_id, date.fromisoformat(today),
            )

    async def idle_participants(self, tenant_id: str, idle_since: datetime, limit: int) -> list[str]:
        """Devices last used on a day before ``idle_since``'s (a device never used
        since enrolment counts from its enrolment)."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT participant_id FROM devices WHERE tenant_id = $1"
                " AND (last_used_on < $2 OR (last_used_on IS NULL AND enrolled_at < $3))"
                " ORDER BY participant_id LIMIT $4",
                tenant_id, idle_since.date(), idle_since, limit,
            )
        return [row["participant_id"] for row in rows]

    async def erase_device(self, tenant_id: str, participant_id: str) -> int:
        """Delete the device (its token stops working at once) and any of its events
        still waiting in the outbox."""
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "DELETE FROM devices WHERE tenant_id = $1 AND participant_id = $2", tenant_id, participant_id
            )
            await uow.discard_pending(partition_key(participant_id))
        return int(status.split()[-1])
