"""Analytics' event subscribers: thin and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime


from tessera_common.broker import confirm_erasure, confirm_objection
from tessera_common.consume import Consumer
from tessera_common.events import (
    AnswerChanged,
    AnswerFields,
    AnswerSubmitted,
    DeviceEnrolled,
    DialogueChanged,
    ErasureRequested,
    ObjectionRecorded,
    TenantAccessChanged,
    TenantRegistered,
    TenantSettingsChanged,
    Topics,
)
from tessera_common.secrets import erased_marker
from tessera_analytics.store import CONSUMER, STORE_NAME, AnalyticsStore, AnswerState
SOURCE = "tessera/analytics"


def register_handlers(consumer: Consumer, store: AnalyticsStore, marker_key: str) -> None:
    """Subscribe ``consumer`` (the service's group: ``CONSUMER``) to the topics this service reads."""
    broker = consumer.broker

    async def on_tenant_registered(event: TenantRegistered) -> None:
        await store.upsert_tenant(event.tenant_id, event.data.api_key_sha256, event.data.min_group_size)

    async def on_tenant_access_changed(event: TenantAccessChanged) -> None:
        """The tenant's keys, their scopes and its allow-list (the latest revision wins)."""
        await store.access.apply(event, CONSUMER)

    async def on_tenant_settings_changed(event: TenantSettingsChanged) -> None:
        """The dialogue service owns k; analytics applies the same k to its figures."""
        await store.apply_settings(event.tenant_id, event.data.min_group_size, event.data.revision)

    async def on_device_enrolled(event: DeviceEnrolled) -> None:
        await store.add_device(
            {
                "_id": event.data.participant_id,
                "tenant_id": event.tenant_id,
                "platform": event.data.platform,
                "form_factor": event.data.form_factor,
                "event_id": event.id,
            },
            erased_marker(marker_key, event.data.participant_id),
        )

    async def on_answer(event: AnswerSubmitted | AnswerChanged) -> None:
        """Fold the answer into its question's figures (its text stays sealed: figures
        never need it)."""
        data: AnswerFields = event.data
        submitted = isinstance(event, AnswerSubmitted)
        at = event.data.submitted_at if submitted else event.data.changed_at
        device = f"{data.platform}/{data.form_factor}" if data.platform and data.form_factor else None
        answer = AnswerState(
            tenant_id=event.tenant_id, participant_id=data.participant_id, dialogue_id=data.dialogue_id,
            question_id=data.question_id, question_kind=data.question_kind, answer_id=data.answer_id,
            version=event.data.version,
            live=not (isinstance(event, AnswerChanged) and event.data.change == "withdrawn"),
            choices=tuple(data.choices), scale_value=data.scale_value,
            day=at.astimezone(UTC).date().isoformat(), submitted=submitted, device=device, event_id=event.id,
        )
        await store.apply_answer(answer, erased_marker(marker_key, data.participant_id))

    async def on_dialogue_changed(event: DialogueChanged) -> None:
        await store.apply_dialogue(event.tenant_id, event.data.model_dump(mode="json", exclude={"changed_at"}))

    async def erase_participant(event: ErasureRequested) -> None:
        """The participant no longer counts in any figure; confirm for this store. A
        dialogue-scoped erasure (retention) removes only their answers to that dialogue."""
        if not event.data.addressed_to(STORE_NAME):
            return  # a retry for other stores: this one confirmed already
        marker = erased_marker(marker_key, event.data.participant_id)
        if event.data.dialogue_id is None:
            deleted = await store.erase_participant(event.tenant_id, event.data.participant_id, marker,
                                                    datetime.now(UTC))
        else:
            deleted = await store.erase_dialogue_answers(event.tenant_id, event.data.participant_id,
                                                         event.data.dialogue_id, marker, datetime.now(UTC))
        store.database.vacuum_soon(["answer_contributions", "device_contributions"])
        await confirm_erasure(broker, event, store=STORE_NAME, source=SOURCE, documents_deleted=deleted)

    async def apply_objection(event: ObjectionRecorded) -> None:
        """The participant objected to analysis: from now on no figure counts them.
        The marker goes first, so a late ``device-enrolled`` is dropped; redelivered,
        this deletes nothing more and confirms again."""
        deleted = await store.apply_objection(
            event.tenant_id, event.data.participant_id, erased_marker(marker_key, event.data.participant_id),
            datetime.now(UTC),
        )
        await confirm_objection(broker, event, store=STORE_NAME, source=SOURCE, documents_deleted=deleted)

    consumer.on(Topics.TENANT_REGISTERED, TenantRegistered, on_tenant_registered)
    consumer.on(Topics.TENANT_ACCESS_CHANGED, TenantAccessChanged, on_tenant_access_changed)
    consumer.on(Topics.TENANT_SETTINGS_CHANGED, TenantSettingsChanged, on_tenant_settings_changed)
    consumer.on(Topics.ERASURE_REQUESTED, ErasureRequested, erase_participant)
    consumer.on(Topics.DEVICE_ENROLLED, DeviceEnrolled, on_device_enrolled)
    consumer.on(Topics.ANSWER_SUBMITTED, AnswerSubmitted, on_answer)
    consumer.on(Topics.ANSWER_CHANGED, AnswerChanged, on_answer)
    consumer.on(Topics.DIALOGUE_CHANGED, DialogueChanged, on_dialogue_changed)
    consumer.on(Topics.OBJECTION_RECORDED, ObjectionRecorded, apply_objection)
    consumer.register()
