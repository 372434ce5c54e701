"""The rights service's event subscribers: thin and idempotent (each applies its event
in one unit of work that records the event's id, so a redelivery changes nothing)."""

from __future__ import annotations


from tessera_common.consume import Consumer
from tessera_common.events import (
    ObjectionApplied,
    StoreErasureCompleted,
    TenantAccessChanged,
    TenantRegistered,
    Topics,
)
from tessera_rights.desk import Desk

CONSUMER = "tessera-rights"


def register_handlers(consumer: Consumer, desk: Desk) -> None:
    """Subscribe ``consumer`` (the service's group: ``CONSUMER``) to the topics this service reads."""

    async def on_tenant_registered(event: TenantRegistered) -> None:
        """Learn the tenant's API key hash, so its key opens this service's routes."""
        await desk.store.register_tenant(event, CONSUMER)

    async def on_tenant_access_changed(event: TenantAccessChanged) -> None:
        """The tenant's keys, their scopes and its allow-list (the latest revision wins)."""
        await desk.store.access.apply(event, CONSUMER)

    async def on_store_erasure_completed(event: StoreErasureCompleted) -> None:
        await desk.confirm(event, event.data.store, event.data.documents_deleted, kind="erasure", consumer=CONSUMER)

    async def on_objection_applied(event: ObjectionApplied) -> None:
        await desk.confirm(event, event.data.store, event.data.documents_deleted, kind="objection",
                           consumer=CONSUMER)

    consumer.on(Topics.TENANT_REGISTERED, TenantRegistered, on_tenant_registered)
    consumer.on(Topics.TENANT_ACCESS_CHANGED, TenantAccessChanged, on_tenant_access_changed)
    consumer.on(Topics.STORE_ERASURE_COMPLETED, StoreErasureCompleted, on_store_erasure_completed)
    consumer.on(Topics.OBJECTION_APPLIED, ObjectionApplied, on_objection_applied)
    consumer.register()
