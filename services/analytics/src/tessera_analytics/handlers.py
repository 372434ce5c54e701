"""Analytics' event subscribers: thin and idempotent."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from tessera_common.consume import subscribe
from tessera_common.events import DeviceEnrolled, TenantRegistered, TenantSettingsChanged, Topics
from tessera_analytics.store import AnalyticsStore

CONSUMER = "tessera-analytics"


def register_handlers(broker: KafkaBroker, store: AnalyticsStore) -> None:
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
            }
        )

    subscribe(broker, topic=Topics.TENANT_REGISTERED, consumer=CONSUMER, model=TenantRegistered,
              handler=on_tenant_registered)
    subscribe(broker, topic=Topics.TENANT_SETTINGS_CHANGED, consumer=CONSUMER, model=TenantSettingsChanged,
              handler=on_tenant_settings_changed)
    subscribe(broker, topic=Topics.DEVICE_ENROLLED, consumer=CONSUMER, model=DeviceEnrolled,
              handler=on_device_enrolled)
