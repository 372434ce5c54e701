"""Read and write the real broker from tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tessera_common.kafka_access import KafkaEndpoint


async def read_topic(
    kafka: KafkaEndpoint,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Every record of ``topic`` from the start (value, key, headers) until ``until`` holds."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.aiokafka(),
        group_id=f"test-{uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met on {topic} after {len(records)} records")
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for m in messages:
                    records.append(
                        {
                            "raw": m.value,
                            "value": _json_or_none(m.value),
                            "key": m.key,
                            "headers": {k: v.decode() for k, v in m.headers},
                        }
                    )
    finally:
        await consumer.stop()
    return records


def _json_or_none(raw: bytes | None) -> Any:
    try:
        return json.loads(raw) if raw is not None else None
    except ValueError:
        return None


async def produce(kafka: KafkaEndpoint, topic: str, value: bytes, key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(**kafka.aiokafka(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.3) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {result!r} after {timeout}s")
        await asyncio.sleep(interval)


async def read_to_end(kafka: KafkaEndpoint, topic: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every record of ``topic`` written before this call: read from the start up to
    each partition's end offset as it was when the call began."""
    consumer = AIOKafkaConsumer(**kafka.aiokafka(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end after {len(records)} records")
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                records += [{"raw": m.value, "value": _json_or_none(m.value), "key": m.key} for m in messages]
        return records
    finally:
        await consumer.stop()


async def start_group_at_end(kafka: KafkaEndpoint, group: str) -> None:
    """Commit, for consumer group ``group``, the current end of every partition of
    every topic on the broker, as if the group had read everything there so far.

    Each test runs its services with groups of its own (one per test database), so
    that no stopped or stopping app of an earlier test can be assigned this test's
    events. A new group would otherwise start at the earliest offset (as a service's
    does, so that it misses nothing) and read every earlier test's events into this
    test's databases. Topics created later have no committed offset and are read
    from their start: only this test's apps are running by then."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(**kafka.aiokafka(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in await consumer.topics()
                      if not topic.startswith("__") for p in consumer.partitions_for_topic(topic) or ()]
        if partitions:
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await consumer.commit({tp: offset for tp, offset in ends.items()})
    finally:
        await consumer.stop()
