"""The outbox relay against the real PostgreSQL and Kafka: committed events reach Kafka
once each in the order they were written per key, even with two relays (two replicas)
publishing from one database at once; rolled-back events never do; old inbox entries
are forgotten."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from tessera_common.broker import ensure_topics, make_broker

from support.apps import enrolment_settings, opened
from support.db import fetchval
from support.kafka import read_topic
from tessera_common.events import EventEnvelope
from tessera_common.outbox import OutboxRelay
from tessera_common.postgres import UnitOfWork

pytestmark = pytest.mark.connected


class Numbered(EventEnvelope):
    type: str = "io.tessera.test.numbered.v1"
    data: dict


async def test_two_relays_publish_every_committed_event_once_in_order_per_key(stack):
    settings = enrolment_settings(stack)
    topic = f"tessera.test-outbox-{uuid4().hex[:8]}.v1"
    await ensure_topics(stack.kafka_bootstrap, [topic], credentials=stack.kafka.credentials)
    keys = [f"p_{uuid4().hex[:10]}" for _ in range(5)]
    async with opened(settings, "enrolment") as first, opened(settings, "enrolment") as second:
        written: list[Numbered] = []
        for n in range(40):
            async with UnitOfWork(first, None) as uow:
                for key in keys:
                    event = Numbered(source="tessera/test", tenant_id="t_outbox", subject=key,
                                     data={"key": key, "n": n})
                    await uow.publish(event, topic, key.encode(), aggregatetype="test")
                    written.append(event)
        with pytest.raises(RuntimeError):  # rolled back: its event must never appear
            async with UnitOfWork(first, None) as uow:
                await uow.publish(Numbered(source="tessera/test", tenant_id="t_outbox", subject=keys[0],
                                           data={"key": keys[0], "n": -1}), topic, keys[0].encode(),
                                  aggregatetype="test")
                raise RuntimeError("the change failed")

        brokers = [make_broker(stack.kafka_bootstrap, credentials=stack.kafka.credentials), make_broker(stack.kafka_bootstrap, credentials=stack.kafka.credentials)]
        for broker in brokers:
            await broker.start()
        try:
            relays = [OutboxRelay(brokers[0], first, batch=30), OutboxRelay(brokers[1], second, batch=30)]
            # Both replicas drain at once, repeatedly, until nothing is left.
            while await fetchval(settings.database_owner_url.get_secret_value(), "SELECT count(*) FROM outbox"):
                await asyncio.gather(*(relay.publish_pending() for relay in relays))
        finally:
            for broker in brokers:
                await broker.stop()

    ids = {event.id for event in written}
    records = await read_topic(stack.kafka, topic,
                               until=lambda rs: {r["value"]["id"] for r in rs} >= ids)
    assert sorted(r["value"]["id"] for r in records) == sorted(ids)  # each once, none extra
    for key in keys:
        numbers = [r["value"]["data"]["n"] for r in records if r["key"] == key.encode()]
        assert numbers == list(range(40)), key


async def test_events_committed_while_relays_publish_are_all_published(stack):
    """Writers commit concurrently with two relays' passes. A transaction that took a
    lower ``seq`` can commit after a pass read higher ones: that pass must not delete
    its row unpublished (it did, once: "DELETE ... WHERE seq <= last read")."""
    settings = enrolment_settings(stack)
    topic = f"tessera.test-outbox-{uuid4().hex[:8]}.v1"
    await ensure_topics(stack.kafka_bootstrap, [topic], credentials=stack.kafka.credentials)
    written: list[str] = []
    async with opened(settings, "enrolment") as first, opened(settings, "enrolment") as second:
        brokers = [make_broker(stack.kafka_bootstrap, credentials=stack.kafka.credentials), make_broker(stack.kafka_bootstrap, credentials=stack.kafka.credentials)]
        for broker in brokers:
            await broker.start()
        try:
            relays = [OutboxRelay(brokers[0], first, batch=10), OutboxRelay(brokers[1], second, batch=10)]

            async def writer(database, w: int) -> None:
                for n in range(60):
                    async with UnitOfWork(database, None) as uow:
                        event = Numbered(source="tessera/test", tenant_id="t_outbox", subject=f"p_w{w}",
                                         data={"key": f"p_w{w}_{n}", "n": n})
                        await uow.publish(event, topic, f"p_w{w}_{n}".encode(), aggregatetype="test")
                        await asyncio.sleep(0.002 * (n % 3))  # commit later than a neighbour took its seq
                    written.append(event.id)

            async def relay_until(done: asyncio.Event, relay: OutboxRelay) -> None:
                while not done.is_set():
                    await relay.publish_pending()
                    await asyncio.sleep(0.001)

            done = asyncio.Event()
            relaying = [asyncio.create_task(relay_until(done, relay)) for relay in relays]
            await asyncio.gather(*(writer(db, w) for w, db in enumerate([first, second, first, second])))
            done.set()
            await asyncio.gather(*relaying)
            while await fetchval(settings.database_owner_url.get_secret_value(), "SELECT count(*) FROM outbox"):
                await relays[0].publish_pending()
        finally:
            for broker in brokers:
                await broker.stop()

    records = await read_topic(stack.kafka, topic, until=lambda rs: len(rs) >= len(written), timeout=30)
    assert sorted({r["value"]["id"] for r in records}) == sorted(written)


async def test_inbox_entries_past_their_retention_are_forgotten(stack):
    settings = enrolment_settings(stack)
    async with opened(settings, "enrolment") as database:
        async with UnitOfWork(database, None) as uow:
            assert await uow.first_delivery("test", "old-event")
            assert await uow.first_delivery("test", "new-event")
            assert not await uow.first_delivery("test", "new-event")  # a redelivery
        owner = settings.database_owner_url.get_secret_value()
        await fetchval(owner, "UPDATE inbox SET applied_at = now() - interval '15 days'"
                              " WHERE event_id = 'old-event' RETURNING 1")
        assert await database.forget_old_deliveries(14) == 1
        assert await fetchval(owner, "SELECT array_agg(event_id) FROM inbox") == ["new-event"]


async def test_a_relay_stops_when_cancelled_even_as_it_is_woken(stack):
    """The lifespan stops the relay by cancelling it. A cancellation that arrived just as
    the relay was woken (a commit's NOTIFY, a request's wake) was swallowed on Python
    3.11 by asyncio.wait_for, and the app's shutdown then waited for ever."""
    settings = enrolment_settings(stack)
    async with opened(settings, "enrolment") as database:
        broker = make_broker(stack.kafka_bootstrap, credentials=stack.kafka.credentials)
        await broker.start()
        try:
            relay = OutboxRelay(broker, database)
            for _ in range(20):  # the race, many times over
                running = asyncio.create_task(relay.run(interval_seconds=30))
                await asyncio.sleep(0.05)  # it has passed once and now waits to be woken
                relay.wake()
                running.cancel()
                done, _ = await asyncio.wait({running}, timeout=5)
                assert done == {running}, "the relay did not stop"
                assert running.cancelled()
        finally:
            await broker.stop()
