"""Enrolment's event subscribers: thin, idempotent."""

from __future__ import annotations


from tessera_common.consume import Consumer
from tessera_common.broker import confirm_erasure
from tessera_common.events import ErasureRequested, Topics
from tessera_enrolment.store import STORE_NAME, EnrolmentStore

CONSUMER = "tessera-enrolment"


def register_handlers(consumer: Consumer, store: EnrolmentStore) -> None:
    """Subscribe ``consumer`` (the service's group: ``CONSUMER``) to the topics this service reads."""
    broker = consumer.broker

    async def erase_participant(event: ErasureRequested) -> None:
        """Delete the device (its token stops working at once) and confirm.

        A dialogue-scoped erasure (retention of one dialogue's answers) leaves the
        device alone: the participant stays, and this store confirms that it held
        nothing in scope. Idempotent: a redelivered request deletes nothing more and
        confirms again."""
        if not event.data.addressed_to(STORE_NAME):
            return  # a retry for other stores: this one confirmed already
        deleted = 0
        if event.data.dialogue_id is None:
            deleted = await store.erase_device(event.tenant_id, event.data.participant_id)
            store.database.vacuum_soon(["devices", "outbox"])
        await confirm_erasure(broker, event, store=STORE_NAME, source="tessera/enrolment",
                              documents_deleted=deleted)

    consumer.on(Topics.ERASURE_REQUESTED, ErasureRequested, erase_participant)
    consumer.register()
