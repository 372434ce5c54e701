"""Nothing is lost when Kafka is down: the enrolment succeeds, its event waits in the
outbox, and goes out once the broker is back (DESIGN.md §3, invariant 8)."""

from __future__ import annotations

import asyncio

import pytest

from support.apps import create_code, create_tenant, enrol, enrolment_settings, running
from support.kafka import read_topic
from tessera_common.events import Topics
from tessera_devstack.processes import KafkaConfig, provision_kafka, start_kafka, wait_for_kafka
from tessera_enrolment.app import create_app

pytestmark = pytest.mark.connected


async def test_an_enrolment_during_a_broker_outage_is_published_when_the_broker_returns(stack, tmp_path):
    config = KafkaConfig(tmp_path / "kafka")  # a broker of its own, to stop without harming others
    kafka = await asyncio.to_thread(start_kafka, config)
    try:
        admin, principals = await asyncio.to_thread(provision_kafka, config)
        settings = enrolment_settings(stack, kafka_bootstrap_servers=admin.bootstrap_servers,
                                      kafka_username=principals["enrolment"].username,
                                      kafka_password=principals["enrolment"].password)
        async with running(create_app(settings)) as gateway:
            tenant = await create_tenant(gateway)
            code = await create_code(gateway, tenant)
            await asyncio.to_thread(kafka.stop)

            during_outage = await enrol(gateway, code["code"])

            kafka = await asyncio.to_thread(start_kafka, config)
            await asyncio.to_thread(wait_for_kafka, admin.bootstrap_servers, admin.credentials)
            participant = during_outage.json()["participant_id"]
            records = await read_topic(
                admin, Topics.DEVICE_ENROLLED,
                lambda rs: any(participant in (r["raw"] or b"").decode() for r in rs),
                timeout=120,
            )
    finally:
        await asyncio.to_thread(kafka.stop)

    assert during_outage.status_code == 201
    assert sum(participant in (r["raw"] or b"").decode() for r in records) >= 1
