"""A tenant's API keys, owned by the gateway: named, scoped, revocable, with their last use.

Keys open the tenant's routes for its own systems (the console's people sign in
instead). The console's owners create and revoke them (``console_api``); the key itself
is shown once and only its SHA-256 is kept. Every change to the keys or to the
allow-list publishes the tenant's whole access (``tenant-access-changed``) from the
outbox in the same transaction, so the services behind the gateway
(:mod:`tessera_common.tenant_access`) learn a new key, a revocation or a new list.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from tessera_common.events import ApiKeyGrant, TenantAccessChanged, TenantAccessChangedData, Topics
from tessera_common.http import TENANT_API_KEY_PREFIX
from tessera_common.netaddr import truncate_ip
from tessera_common.postgres import Database, UnitOfWork
from tessera_common.secrets import new_split_secret, secret_hash
from tessera_common.tenant_access import ALL_SCOPES, INITIAL_KEY_ID, Access, Grant, UseClock
from tessera_enrolment.console_store import _log

SOURCE = "tessera/enrolment"
#: Active keys a tenant may hold at once.
MAX_ACTIVE_KEYS = 20


def new_api_key(tenant_id: str) -> tuple[str, str]:
    """A new key (``tak_<tenant_id>.<secret>``) and its SHA-256."""
    key = new_split_secret(TENANT_API_KEY_PREFIX, tenant_id)
    return key, secret_hash(key)


async def insert_key(uow: UnitOfWork, tenant_id: str, key: dict[str, Any]) -> None:
    await uow.connection.execute(
        "INSERT INTO api_keys (tenant_id, key_id, name, scopes, key_sha256, created_at, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        tenant_id, key["key_id"], key["name"], sorted(key["scopes"]), key["key_sha256"], key["created_at"],
        key.get("created_by"))


async def publish_access(uow: UnitOfWork, tenant_id: str) -> None:
    """In ``uow``'s transaction, after a change to the keys or the allow-list: the
    tenant's whole access, with the next revision, to the outbox. The row lock of the
    revision's update orders two changes of one tenant, so revisions follow commits."""
    revision = await uow.connection.fetchval(
        "UPDATE tenants SET access_revision = access_revision + 1 WHERE tenant_id = $1 RETURNING access_revision",
        tenant_id)
    keys = await uow.connection.fetch(
        "SELECT key_id, key_sha256, scopes FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY key_id",
        tenant_id)
    networks = await uow.connection.fetch(
        "SELECT network FROM console_allow_list WHERE tenant_id = $1 ORDER BY network", tenant_id)
    event = TenantAccessChanged(
        source=SOURCE, subject=tenant_id, tenant_id=tenant_id,
        data=TenantAccessChangedData(
            revision=revision,
            api_keys=[ApiKeyGrant(key_id=k["key_id"], key_sha256=k["key_sha256"], scopes=k["scopes"]) for k in keys],
            networks=[str(n["network"]) for n in networks]))
    await uow.publish(event, Topics.TENANT_ACCESS_CHANGED, tenant_id.encode(), aggregatetype="tenant")


class ApiKeyStore:
    """The gateway's keys (table ``api_keys``) and the gateway's own check of them: an
    :class:`~tessera_common.tenant_access.AccessSource` for its codes and Kafka routes."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._clock = UseClock()

    def unit(self, tenant_id: str | None) -> UnitOfWork:
        return UnitOfWork(self.database, tenant_id)

    async def keys(self, tenant_id: str) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT k.key_id, k.name, k.scopes, k.created_at, k.revoked_at, k.last_used_at, a.email AS created_by"
                " FROM api_keys k LEFT JOIN console_accounts a ON a.tenant_id = k.tenant_id"
                " AND a.account_id = k.created_by WHERE k.tenant_id = $1"
                " ORDER BY k.revoked_at IS NOT NULL, k.created_at DESC", tenant_id)
        return [dict(r) for r in rows]

    async def create(self, tenant_id: str, key: dict[str, Any], activity: dict[str, Any]) -> bool:
        """False when the tenant already holds :data:`MAX_ACTIVE_KEYS` active keys."""
        async with self.unit(tenant_id) as uow:
            # The tenant's row, locked: two creations at once cannot both pass the count.
            await uow.connection.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE", tenant_id)
            active = await uow.connection.fetchval(
                "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL", tenant_id)
            if active >= MAX_ACTIVE_KEYS:
                return False
            await insert_key(uow, tenant_id, key)
            await publish_access(uow, tenant_id)
            await _log(uow, tenant_id, activity)
        return True

    async def revoke(self, tenant_id: str, key_id: str, at: datetime, activity: dict[str, Any]) -> str | None:
        """``"revoked"``, ``"already"`` (a second revocation changes nothing) or None (no such key)."""
        async with self.unit(tenant_id) as uow:
            revoked = await uow.connection.fetchval(
                "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND key_id = $2 AND revoked_at IS NULL"
                " RETURNING 1", tenant_id, key_id, at)
            if revoked is None:
                exists = await uow.connection.fetchval(
                    "SELECT 1 FROM api_keys WHERE tenant_id = $1 AND key_id = $2", tenant_id, key_id)
                return "already" if exists else None
            await publish_access(uow, tenant_id)
            await _log(uow, tenant_id, activity)
        return "revoked"

    # --- the gateway's own check (AccessSource) ------------------------------------------

    async def access(self, tenant_id: str) -> Access | None:
        async with self.unit(tenant_id) as uow:
            keys = await uow.connection.fetch(
                "SELECT key_id, key_sha256, scopes FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL",
                tenant_id)
            networks = await uow.connection.fetch(
                "SELECT network FROM console_allow_list WHERE tenant_id = $1", tenant_id)
        if not keys:
            return None
        return Access({k["key_sha256"]: Grant(k["key_id"], frozenset(k["scopes"])) for k in keys},
                      tuple(ipaddress.ip_network(n["network"]) for n in networks))

    async def key_used(self, tenant_id: str, key_id: str) -> None:
        if not self._clock.due(tenant_id, key_id):
            return
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND key_id = $2"
                " AND (last_used_at IS NULL OR last_used_at < $3)",
                tenant_id, key_id, datetime.now(UTC).replace(second=0, microsecond=0))

    async def refused(self, tenant_id: str, key_id: str, address: str | None, path: str) -> None:
        """A key used from outside the allow-list: an entry in the console's activity log."""
        async with self.unit(tenant_id) as uow:
            await _log(uow, tenant_id, {"action": "network_refused", "at": datetime.now(UTC), "account_id": None,
                                        "network": truncate_ip(address or ""),
                                        "detail": {"path": path[:100], "credential": "api_key", "key_id": key_id}})


def initial_key(tenant_id: str, key_sha256: str, at: datetime) -> dict[str, Any]:
    """The key ``POST /v1/tenants`` answers with: every scope."""
    return {"key_id": INITIAL_KEY_ID, "name": "Initial key", "scopes": sorted(ALL_SCOPES),
            "key_sha256": key_sha256, "created_at": at, "created_by": None}
