"""Analytics' event subscribers: thin and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

from faststream.kafka import KafkaBroker

from tessera_common.broker import confirm_erasure
from tessera_common.consume import subscribe
from tessera_common.events import DeviceEnrolled, ErasureRequested, TenantRegistered, TenantSettingsChanged, Topics
from tessera_common.secrets import erased_marker
from tessera_analytics.store import AnalyticsStore

CONSUMER = "tessera-analytics"
#: This store's name in the data map (tessera_common.datamap).
STORE_NAME = "analytics.contributions"


def register_handlers(broker: KafkaBroker, store: AnalyticsStore, marker_key: str) -> None:
    async def on_tenant_registered(event: TenantRegistered) -> None:
        await store.upsert_tenant(event.tenant_id, event.data.api_key_sha256, event.data.min_group_size)

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

    async def erase_participant(event: ErasureRequested) -> None:
        """The participant no longer counts in any figure; confirm for this store."""
        deleted = await store.erase_participant(
            event.tenant_id, event.data.participant_id, erased_marker(marker_key, event.data.participant_id),
            datetime.now(UTC),
        )
        await confirm_erasure(broker, event, store=STORE_NAME, source="tessera/analytics",
                              documents_deleted=deleted)

    subscribe(broker, topic=Topics.TENANT_REGISTERED, consumer=CONSUMER, model=TenantRegistered,
              handler=on_tenant_registered)
    subscribe(broker, topic=Topics.TENANT_SETTINGS_CHANGED, consumer=CONSUMER, model=TenantSettingsChanged,
              handler=on_tenant_settings_changed)
    subscribe(broker, topic=Topics.ERASURE_REQUESTED, consumer=CONSUMER, model=ErasureRequested,
              handler=erase_participant)
    subscribe(broker, topic=Topics.DEVICE_ENROLLED, consumer=CONSUMER, model=DeviceEnrolled,
              handler=on_device_enrolled)
