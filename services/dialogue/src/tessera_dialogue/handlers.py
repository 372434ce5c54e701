"""The dialogue service's event subscribers: thin and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime


from tessera_common.consume import Consumer
from tessera_common.broker import confirm_erasure
from tessera_common.events import ErasureRequested, TenantAccessChanged, TenantRegistered, Topics
from tessera_common.logs import get_logger
from tessera_common.secrets import erased_marker
from tessera_dialogue import domain
from tessera_dialogue.store import STORE_NAME, DialogueStore

log = get_logger(__name__)
CONSUMER = "tessera-dialogue"


def register_handlers(consumer: Consumer, store: DialogueStore, marker_key: str) -> None:
    """Subscribe ``consumer`` (the service's group: ``CONSUMER``) to the topics this service reads."""
    broker = consumer.broker

    async def on_tenant_registered(event: TenantRegistered) -> None:
        """Learn the tenant's API key hash, so its key opens this service's routes."""
        await store.register_tenant(
            event.tenant_id,
            event.data.api_key_sha256,
            {"min_group_size": event.data.min_group_size, "pii_policy": domain.DEFAULT_PII_POLICY},
            event_id=event.id, consumer=CONSUMER,
        )

    async def on_tenant_access_changed(event: TenantAccessChanged) -> None:
        """The tenant's keys, their scopes and its allow-list (the latest revision wins)."""
        await store.access.apply(event, CONSUMER)

    async def erase_participant(event: ErasureRequested) -> None:
        """Delete every answer of the participant (and their events still waiting in the
        outbox) and confirm. Redelivered, it deletes nothing more and confirms again
        (so no inbox check here: every delivery must be confirmed); the marker it
        leaves stops an answer that raced the erasure from surviving it.

        A dialogue-scoped erasure (retention) deletes only the answers to that
        dialogue and leaves no marker: the participant is still there."""
        if not event.data.addressed_to(STORE_NAME):
            return  # a retry for other stores: this one confirmed already
        if event.data.dialogue_id is not None:
            deleted = await store.erase_answers_in_dialogue(
                event.tenant_id, event.data.participant_id, event.data.dialogue_id
            )
        else:
            deleted = await store.erase_participant(
                event.tenant_id,
                event.data.participant_id,
                erased_marker(marker_key, event.data.participant_id),
                datetime.now(UTC),
            )
        store.database.vacuum_soon(["answers", "outbox"])
        await confirm_erasure(broker, event, store=STORE_NAME, source="tessera/dialogue",
                              documents_deleted=deleted)
        log.info("participant_erased", store=STORE_NAME, documents_deleted=deleted,
                 scope="participant" if event.data.dialogue_id is None else "dialogue")

    consumer.on(Topics.TENANT_REGISTERED, TenantRegistered, on_tenant_registered)
    consumer.on(Topics.TENANT_ACCESS_CHANGED, TenantAccessChanged, on_tenant_access_changed)
    consumer.on(Topics.ERASURE_REQUESTED, ErasureRequested, erase_participant)
    consumer.register()
