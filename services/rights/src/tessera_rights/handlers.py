"""The rights service's event subscribers: thin and idempotent (each applies its event
in one unit of work that records the event's id, so a redelivery changes nothing)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from tessera_common.consume import subscribe
from tessera_common.events import ObjectionApplied, StoreErasureCompleted, TenantRegistered, Topics
from tessera_rights.desk import Desk

CONSUMER = "tessera-rights"


def register_handlers(broker: KafkaBroker, desk: Desk) -> None:
    async def on_tenant_registered(event: TenantRegistered) -> None:
        """Learn the tenant's API key hash, so its key opens this service's routes."""
        await desk.store.register_tenant(event, CONSUMER)

    async def on_store_erasure_completed(event: StoreErasureCompleted) -> None:
        await desk.confirm(event, event.data.store, event.data.documents_deleted, kind="erasure", consumer=CONSUMER)

    async def on_objection_applied(event: ObjectionApplied) -> None:
        await desk.confirm(event, event.data.store, event.data.documents_deleted, kind="objection",
                           consumer=CONSUMER)

    subscribe(broker, topic=Topics.TENANT_REGISTERED, consumer=CONSUMER, model=TenantRegistered,
              handler=on_tenant_registered)
    subscribe(broker, topic=Topics.STORE_ERASURE_COMPLETED, consumer=CONSUMER, model=StoreErasureCompleted,
              handler=on_store_erasure_completed)
    subscribe(broker, topic=Topics.OBJECTION_APPLIED, consumer=CONSUMER, model=ObjectionApplied,
              handler=on_objection_applied)
