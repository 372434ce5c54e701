"""Row-level security is the second wall between tenants (DESIGN.md §5): even a query
that forgets its tenant filter sees and changes only its own tenant's rows.

Checked on enrolment's database as the service itself connects (its own role, which
owns no table); each service's own tests check its tables the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import pytest

from support.apps import enrolment_settings, opened
from tessera_common.events import TenantRegistered, TenantRegisteredData
from tessera_common.postgres import UnitOfWork
from tessera_enrolment.store import EnrolmentStore

pytestmark = pytest.mark.connected


async def _tenant(store: EnrolmentStore, now: datetime) -> str:
    tenant_id = f"t_rls{uuid4().hex[:10]}"
    key_sha256 = uuid4().hex * 2  # each tenant's key is its own
    await store.add_tenant(
        {"_id": tenant_id, "name": "RLS", "region": "eu-west", "api_key_sha256": key_sha256, "created_at": now},
        TenantRegistered(source="tessera/enrolment", subject=tenant_id, tenant_id=tenant_id,
                         data=TenantRegisteredData(region="eu-west", api_key_sha256=key_sha256)),
    )
    await store.add_code({"_id": f"RLS{uuid4().hex[:7].upper()}", "tenant_id": tenant_id, "created_at": now})
    return tenant_id


async def test_a_transaction_sees_and_changes_only_its_own_tenants_rows(stack):
    settings = enrolment_settings(stack)
    now = datetime.now(UTC)
    async with opened(settings, "enrolment") as database:
        store = EnrolmentStore(database)
        a, b = await _tenant(store, now), await _tenant(store, now)

        async with UnitOfWork(database, None) as nobody:
            assert await nobody.connection.fetchval("SELECT count(*) FROM tenants") == 0
            assert await nobody.connection.fetchval("SELECT count(*) FROM codes") == 0

        async with UnitOfWork(database, a) as uow:
            # No tenant filter in these statements: the policy is the filter.
            assert await uow.connection.fetchval("SELECT array_agg(DISTINCT tenant_id) FROM codes") == [a]
            assert await uow.connection.fetchval("SELECT count(*) FROM tenants WHERE tenant_id = $1", b) == 0
            assert await uow.connection.execute("UPDATE codes SET revoked_at = now() WHERE tenant_id = $1", b) \
                == "UPDATE 0"
            assert await uow.connection.execute("DELETE FROM tenants WHERE tenant_id = $1", b) == "DELETE 0"

        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # writing into another tenant
            async with UnitOfWork(database, a) as uow:
                await uow.connection.execute(
                    "INSERT INTO codes (tenant_id, code, created_at) VALUES ($1, 'SNEAKYCODE', now())", b)

        async with UnitOfWork(database, b) as uow:
            assert await uow.connection.fetchval("SELECT count(*) FROM codes WHERE revoked_at IS NULL") == 1


async def test_the_service_role_owns_nothing_and_cannot_switch_the_wall_off(stack):
    settings = enrolment_settings(stack)
    async with opened(settings, "enrolment") as database:
        async with UnitOfWork(database, None) as uow:
            bypass, superuser = await uow.connection.fetchrow(
                "SELECT rolbypassrls, rolsuper FROM pg_roles WHERE rolname = current_user")
            assert (bypass, superuser) == (False, False)
            owners = await uow.connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user")
            assert owners == []
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with UnitOfWork(database, None) as uow:
                await uow.connection.execute("ALTER TABLE devices DISABLE ROW LEVEL SECURITY")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with UnitOfWork(database, None) as uow:
                await uow.connection.execute("SET row_security = off; SELECT count(*) FROM devices")
