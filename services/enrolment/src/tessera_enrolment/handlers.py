"""Enrolment's event subscribers: thin, idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

from faststream.kafka import KafkaBroker

from tessera_common.consume import subscribe
from tessera_common.events import (
    ErasureRequested,
    StoreErasureCompleted,
    StoreErasureCompletedData,
    Topics,
    partition_key,
)
from tessera_enrolment.store import EnrolmentStore

CONSUMER = "tessera-enrolment"
STORE_NAME = "enrolment.devices"


def register_handlers(broker: KafkaBroker, store: EnrolmentStore) -> None:
    async def erase_participant(event: ErasureRequested) -> None:
        """Delete the device (its token stops working at once) and confirm.

        Idempotent: a redelivered request deletes nothing more and confirms again."""
        deleted = await store.erase_device(event.tenant_id, event.data.participant_id)
        confirmation = StoreErasureCompleted(
            source="tessera/enrolment",
            subject=event.data.request_id,
            tenant_id=event.tenant_id,
            data=StoreErasureCompletedData(
                request_id=event.data.request_id,
                store=STORE_NAME,
                documents_deleted=deleted,
                completed_at=datetime.now(UTC),
            ),
        )
        await broker.publish(
            confirmation.model_dump(mode="json"),
            Topics.STORE_ERASURE_COMPLETED,
            key=partition_key(event.data.participant_id),
        )

    subscribe(
        broker,
        topic=Topics.ERASURE_REQUESTED,
        consumer=CONSUMER,
        model=ErasureRequested,
        handler=erase_participant,
    )
