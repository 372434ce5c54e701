"""Analytics consumes the real topics idempotently and releases only k-safe figures."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from uuid import uuid4
from datetime import UTC, datetime

import httpx
import pytest

from support.apps import running
from support.kafka import eventually, produce, read_topic
from tessera_analytics.app import AnalyticsSettings, create_app
from tessera_common.events import (
    DeviceEnrolled,
    DeviceEnrolledData,
    TenantRegistered,
    TenantRegisteredData,
    Topics,
    partition_key,
)
from tessera_common.secrets import new_id, new_split_secret, secret_hash

pytestmark = pytest.mark.connected


@pytest.fixture(scope="module")
async def analytics(stack) -> AsyncIterator[httpx.AsyncClient]:
    settings = AnalyticsSettings(kafka_bootstrap_servers=stack.kafka_bootstrap, environment="test",
                                 **stack.database("analytics"))
    async with running(create_app(settings)) as client:
        yield client


async def register_tenant(stack) -> tuple[str, str]:
    tenant_id = new_id("t")
    api_key = new_split_secret("tak", tenant_id)
    event = TenantRegistered(
        source="test", tenant_id=tenant_id, subject=tenant_id,
        data=TenantRegisteredData(region="eu-west", api_key_sha256=secret_hash(api_key)),
    )
    await produce(stack.kafka, Topics.TENANT_REGISTERED, event.model_dump_json().encode())
    return tenant_id, api_key


def device_event(tenant_id: str, platform: str, form_factor: str) -> DeviceEnrolled:
    participant_id = new_id("p")
    return DeviceEnrolled(
        source="test", tenant_id=tenant_id, subject=participant_id,
        data=DeviceEnrolledData(participant_id=participant_id, platform=platform, form_factor=form_factor,
                                enrolled_at=datetime.now(UTC)),
    )


async def publish(stack, event: DeviceEnrolled) -> None:
    await produce(stack.kafka, Topics.DEVICE_ENROLLED, event.model_dump_json().encode(),
                  partition_key(event.data.participant_id))


async def stats(client, tenant_id, api_key) -> httpx.Response:
    return await client.get(f"/v1/tenants/{tenant_id}/stats/devices", headers={"Authorization": f"Bearer {api_key}"})


def cells(body: dict) -> dict[tuple[str, str], int | None]:
    return {(c["platform"], c["form_factor"]): c["count"] for c in body["cells"]}


async def test_device_counts_suppress_small_cells_and_ignore_replays(analytics, stack):
    tenant_id, api_key = await register_tenant(stack)
    events = [device_event(tenant_id, "ios", "phone") for _ in range(6)]
    events += [device_event(tenant_id, "android", "phone") for _ in range(5)]
    events += [device_event(tenant_id, "android", "tablet") for _ in range(2)]
    for event in events:
        await publish(stack, event)
    for event in events[:4]:  # at-least-once delivery: the same events again
        await publish(stack, event)

    async def settled():
        response = await stats(analytics, tenant_id, api_key)
        return response.status_code == 200 and response.json()["total"] == 13 and response.json()

    body = await eventually(settled)

    assert body["min_group_size"] == 5
    # android/tablet (2) is below k; with ios/tablet (0) also hidden the pair adds up
    # to 2, which total − released would reveal, so the smallest released cell goes too.
    assert cells(body) == {("ios", "phone"): 6, ("ios", "tablet"): None,
                           ("android", "phone"): None, ("android", "tablet"): None}
    reasons = {(c["platform"], c["form_factor"]): c["reason"] for c in body["cells"]}
    assert reasons[("android", "phone")].startswith("complementary")


async def test_a_tenant_sees_only_its_own_figures(analytics, stack):
    alice, alice_key = await register_tenant(stack)
    bob, bob_key = await register_tenant(stack)
    for _ in range(5):
        await publish(stack, device_event(bob, "ios", "phone"))

    async def bob_counted():
        response = await stats(analytics, bob, bob_key)
        return response.status_code == 200 and response.json()["total"] == 5

    await eventually(bob_counted)
    async def alice_known():
        return (await stats(analytics, alice, alice_key)).status_code == 200

    await eventually(alice_known)
    cross = await stats(analytics, bob, alice_key)
    own = await stats(analytics, alice, alice_key)

    assert cross.status_code == 403
    assert own.json()["total"] is None and own.json()["total_suppressed"]
    assert (await stats(analytics, alice, "tak_not-a-key")).status_code == 401
    forged = alice_key.rsplit(".", 1)[0] + "." + "A" * 43  # the right tenant, a made-up secret
    assert (await stats(analytics, alice, forged)).status_code == 401
    assert (await analytics.get(f"/v1/tenants/{alice}/stats/devices")).status_code == 401


async def test_a_malformed_event_is_dead_lettered_and_the_consumer_moves_on(analytics, stack):
    tenant_id, api_key = await register_tenant(stack)
    poison = b'{"type": "io.tessera.device.enrolled.v1", "tenant_id": {"$gt": ""}, "secret": "x@y.nl"}'
    await produce(stack.kafka, Topics.DEVICE_ENROLLED, poison)
    for _ in range(5):
        await publish(stack, device_event(tenant_id, "android", "phone"))

    async def counted_after_poison():
        response = await stats(analytics, tenant_id, api_key)
        return response.status_code == 200 and response.json()["total"] == 5

    await eventually(counted_after_poison)
    def ours(record) -> bool:  # this poison, parked by analytics (its group: the service's name + this test's)
        value = record["value"] if isinstance(record["value"], dict) else {}
        return (value.get("payload_sha256") == hashlib.sha256(poison).hexdigest()
                and value.get("consumer", "").startswith("tessera-analytics"))

    letters = await read_topic(stack.kafka, Topics.DEAD_LETTER, lambda rs: any(map(ours, rs)))
    letter = next(filter(ours, letters))
    assert "DeviceEnrolled" in letter["value"]["reason"]
    assert letter["value"]["payload_bytes"] == len(poison)
    assert b"x@y.nl" not in letter["raw"]  # the reason describes; it does not copy


async def test_k_follows_the_tenants_settings_and_a_late_revision_never_rolls_it_back(analytics, stack):
    from tessera_common.events import TenantSettingsChanged, TenantSettingsChangedData

    tenant_id = new_id("t")
    api_key = new_split_secret("tak", tenant_id)

    async def settings(k: int, revision: int) -> None:
        event = TenantSettingsChanged(source="test", tenant_id=tenant_id, subject=tenant_id,
                                      data=TenantSettingsChangedData(min_group_size=k, pii_policy="warn",
                                                                     revision=revision))
        await produce(stack.kafka, Topics.TENANT_SETTINGS_CHANGED, event.model_dump_json().encode(),
                      key=tenant_id.encode())

    # The settings change arrives before the registration (another topic, another producer).
    await settings(3, revision=2)
    registered = TenantRegistered(source="test", tenant_id=tenant_id, subject=tenant_id,
                                  data=TenantRegisteredData(region="eu-west", api_key_sha256=secret_hash(api_key)))
    await produce(stack.kafka, Topics.TENANT_REGISTERED, registered.model_dump_json().encode())
    await settings(7, revision=1)  # late: an older revision
    # A barrier: a malformed message behind it in the same partition is dead-lettered
    # only after the late revision was handled.
    barrier = f"barrier {uuid4()}".encode()
    await produce(stack.kafka, Topics.TENANT_SETTINGS_CHANGED, barrier, key=tenant_id.encode())
    await read_topic(stack.kafka, Topics.DEAD_LETTER, until=lambda rs: any(
        r["value"]["payload_sha256"] == hashlib.sha256(barrier).hexdigest() for r in rs))

    async def k_is_three():
        response = await analytics.get(f"/v1/tenants/{tenant_id}/stats/devices",
                                       headers={"Authorization": f"Bearer {api_key}"})
        return response.status_code == 200 and response.json()["min_group_size"] == 3

    assert await eventually(k_is_three)
    await settings(4, revision=3)

    async def k_is_four():
        response = await analytics.get(f"/v1/tenants/{tenant_id}/stats/devices",
                                       headers={"Authorization": f"Bearer {api_key}"})
        return response.json()["min_group_size"] == 4

    assert await eventually(k_is_four)
