"""Tenant API keys: which key opens which of a tenant's routes, from which networks, and
when each was last used.

The gateway (enrolment) owns a tenant's keys and its IP allow-list: the console creates,
names, scopes and revokes keys and edits the list. Every change publishes the whole
current state as ``tenant-access-changed`` (:class:`~tessera_common.events.TenantAccessChanged`),
from the gateway's outbox in the transaction of the change. Each service behind the
gateway keeps the latest revision in its own database (:class:`TenantAccessStore`) and
checks a key against it (:func:`tessera_common.http.tenant_caller`), so a key is checked
without a call to the gateway, and a revoked key stops working everywhere once the
event is applied (within a second on a running platform).

A tenant registered before keys had names has no such state yet in a service: its one
key (``tenant-registered``'s hash) opens everything, as it did, until the first
``tenant-access-changed`` arrives; from then on only that state counts.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, get_args

from fastapi import APIRouter, Depends
from opentelemetry import metrics
from pydantic import BaseModel, Field

from tessera_common.events import ApiKeyScope, TenantAccessChanged
from tessera_common.http import staff_caller
from tessera_common.logs import get_logger
from tessera_common.netaddr import truncate_ip
from tessera_common.postgres import Database, UnitOfWork

log = get_logger(__name__)

#: Every scope; the key a tenant is created with has them all.
ALL_SCOPES: frozenset[str] = frozenset(get_args(ApiKeyScope))
#: The ID of the key ``POST /v1/tenants`` answers with.
INITIAL_KEY_ID = "k_initial"
#: Last use is kept to the minute: a key used all day writes once a minute, not per request.
USE_RESOLUTION_SECONDS = 60.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Grant:
    key_id: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Access:
    """A tenant's active keys (by the SHA-256 of the key) and its allow-list."""

    keys: Mapping[str, Grant]
    networks: tuple[Network, ...]

    def allows_address(self, address: str | None) -> bool:
        return address_allowed(self.networks, address)


def address_allowed(networks: Sequence[Network], address: str | None) -> bool:
    """The one allow-list check (console sessions, the gateway's and every service's API
    keys). No list: any address. A list: the address must fall in one of its networks
    (an IPv4 address arriving IPv6-mapped counts as itself; an address that is not an
    IP, such as a test client's name, falls in none)."""
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in networks)


class AccessSource(Protocol):
    """Where :func:`tessera_common.http.tenant_caller` reads a tenant's access: the
    gateway's own tables there, a :class:`TenantAccessStore` behind it."""

    async def access(self, tenant_id: str) -> Access | None: ...

    async def key_used(self, tenant_id: str, key_id: str) -> None: ...

    async def refused(self, tenant_id: str, key_id: str, address: str | None, path: str) -> None: ...


class UseClock:
    """Says when a key's use is worth writing down: once per key per minute in this
    process, so a busy key costs one small write a minute, not one per request."""

    def __init__(self) -> None:
        self._written: dict[tuple[str, str], float] = {}

    def due(self, tenant_id: str, key_id: str) -> bool:
        now = time.monotonic()
        last = self._written.get((tenant_id, key_id))
        if last is not None and now - last < USE_RESOLUTION_SECONDS:
            return False
        if len(self._written) > 100_000:  # bounded: forgetting only costs a write
            self._written.clear()
        self._written[(tenant_id, key_id)] = now
        return True


def networks_of(texts: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


class TenantAccessStore:
    """The copy of each tenant's access in a service behind the gateway (tables
    ``tenant_access`` and ``api_key_use``, migration ``migrations_tenant_access``)."""

    def __init__(self, database: Database, service: str) -> None:
        self.database = database
        self.service = service
        self._clock = UseClock()
        self._refusals = metrics.get_meter("tessera.access").create_counter(
            "tessera_api_key_refusals", unit="1",
            description="tenant API keys refused because of the tenant's allow-list")

    async def apply(self, event: TenantAccessChanged, consumer: str) -> bool:
        """Keep ``event``'s state unless a later revision is already here, so a late or
        redelivered event never brings a revoked key back. True if it was applied."""
        data = event.data
        keys = [grant.model_dump() for grant in data.api_keys]
        async with UnitOfWork(self.database, event.tenant_id) as uow:
            if not await uow.first_delivery(consumer, event.id):
                return False
            applied = await uow.connection.fetchval(
                "INSERT INTO tenant_access (tenant_id, revision, api_keys, networks) VALUES ($1, $2, $3::jsonb, $4)"
                " ON CONFLICT (tenant_id) DO UPDATE SET revision = EXCLUDED.revision,"
                " api_keys = EXCLUDED.api_keys, networks = EXCLUDED.networks"
                " WHERE tenant_access.revision < EXCLUDED.revision RETURNING 1",
                event.tenant_id, data.revision, keys, list(networks_of(data.networks)),
            )
        return applied is not None

    async def access(self, tenant_id: str) -> Access | None:
        async with UnitOfWork(self.database, tenant_id) as uow:
            # From the tenant's registration on, never before it: the access event may
            # arrive first (another topic), and the service's routes need the tenant's row
            # (a dialogue refers to it).
            row = await uow.connection.fetchrow(
                "SELECT a.api_keys, a.networks, t.api_key_sha256 FROM tenants t"
                " LEFT JOIN tenant_access a USING (tenant_id) WHERE t.tenant_id = $1", tenant_id)
        if row is None:
            return None
        if row["api_keys"] is None:  # registered, no access state yet: its first key opens all
            if row["api_key_sha256"] is None:
                return None
            return Access({row["api_key_sha256"]: Grant(INITIAL_KEY_ID, ALL_SCOPES)}, ())
        keys = {k["key_sha256"]: Grant(k["key_id"], frozenset(k["scopes"])) for k in row["api_keys"]}
        return Access(keys, tuple(row["networks"]))

    async def key_used(self, tenant_id: str, key_id: str) -> None:
        if not self._clock.due(tenant_id, key_id):
            return
        async with UnitOfWork(self.database, tenant_id) as uow:
            await uow.connection.execute(
                "INSERT INTO api_key_use (tenant_id, key_id, last_used_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (tenant_id, key_id) DO UPDATE SET last_used_at = EXCLUDED.last_used_at"
                " WHERE api_key_use.last_used_at < EXCLUDED.last_used_at",
                tenant_id, key_id, datetime.now(UTC).replace(second=0, microsecond=0))

    async def refused(self, tenant_id: str, key_id: str, address: str | None, path: str) -> None:
        """The audit of a refusal here is the service's log and a metric; the gateway's
        own refusals also go to the console's activity log."""
        self._refusals.add(1, {"service": self.service})
        log.warning("api_key_network_refused", tenant_id=tenant_id, key_id=key_id,
                    network=truncate_ip(address or ""), path=path[:100])

    async def last_use(self, tenant_id: str) -> dict[str, datetime]:
        async with UnitOfWork(self.database, tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT key_id, last_used_at FROM api_key_use WHERE tenant_id = $1", tenant_id)
        return {r["key_id"]: r["last_used_at"] for r in rows}


class KeyUse(BaseModel):
    key_id: str
    last_used_at: datetime = Field(description="to the minute")


class KeyUseOut(BaseModel):
    keys: list[KeyUse]


def key_use_router(store: TenantAccessStore, gateway_public_key: str | None, audience: str) -> APIRouter:
    """``GET /v1/tenants/{tenant_id}/api-keys/use``: when each of the tenant's keys last
    opened this service's routes. For the console's owners only (a staff assertion with
    the role owner); the console shows the latest over every service."""
    router = APIRouter()
    owner = staff_caller(gateway_public_key, audience, ("owner",))

    @router.get("/v1/tenants/{tenant_id}/api-keys/use", tags=["console"], include_in_schema=False)
    async def key_use(tenant_id: str = Depends(owner)) -> KeyUseOut:  # a local: not in an annotation
        used = await store.last_use(tenant_id)
        return KeyUseOut(keys=[KeyUse(key_id=k, last_used_at=at) for k, at in sorted(used.items())])

    return router
