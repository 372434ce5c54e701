"""How every Tessera consumer treats a message: at least once, idempotent, never stuck.

- A message that does not parse as its event model, or whose handler fails with a
  bug rather than an outage, is dead-lettered with the reason, and the consumer moves
  on (DESIGN.md §3).
- A store that is down is waited for: the handler is retried with capped exponential
  back-off until it succeeds, so a message is never skipped and order within the
  partition is kept. The offset is committed only after the handler succeeded.
- Handlers themselves must be idempotent (redelivery after a crash is normal).
- Offsets are committed at most every ``commit_interval_seconds`` (a message after a
  quiet spell is committed at once), and only after the message in hand was handled:
  a commit covers every message before it, all handled already, because one consumer
  handles its messages one at a time. A synchronous commit after every message cost
  more than the handling itself (p50 8.5 ms against 1 ms for analytics' store work)
  and capped a consumer below 100 messages a second. What a crash leaves uncommitted
  (less than one interval of messages) is redelivered and deduplicated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import metrics
from pydantic import BaseModel, ValidationError

from tessera_common.broker import dead_letter
from tessera_common.logs import get_logger
from tessera_common.postgres import TRANSIENT_ERRORS as STORE_UNAVAILABLE

log = get_logger(__name__)

E = TypeVar("E", bound=BaseModel)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (*STORE_UNAVAILABLE, ConnectionError, TimeoutError)
#: How long after it was written to Kafka a message is handled: a consumer's lag, in
#: time (a consumer that falls behind shows it whatever the rate).
EVENT_AGE = metrics.get_meter("tessera.consume").create_histogram(
    "tessera_consumer_event_age", unit="s",
    description="seconds from a message's write to Kafka until its handler finished, by consumer and topic")
DEAD_LETTERS = metrics.get_meter("tessera.consume").create_counter(
    "tessera_dead_letters", unit="1", description="messages sent to the dead-letter topic, by consumer and topic")


class Consumer:
    """A service's consumer group: every topic it reads, through ONE Kafka consumer.

    One consumer rather than one per topic: each FastStream subscriber is a group member
    of its own, and members join one after another, each join sending the others back
    to rejoin on their next heartbeat. Analytics' eight topics took about 20 s to be
    consumed again after a restart; one member joins once. Its messages are handled one
    at a time whatever their topic (order within a partition is all Kafka promises and
    all a handler relies on); what is slow is the store, not the dispatch.

    ``consumer.on(topic, Model, handler)`` for each topic, then ``consumer.register()``
    before the broker starts.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        group: str,
        *,
        instance_id: str | None = None,
        max_backoff_seconds: float = 30.0,
        commit_interval_seconds: float = 0.1,
        commit_timeout_seconds: float = 5.0,
    ) -> None:
        self.broker = broker
        self.group = group
        self.instance_id = instance_id
        self.max_backoff_seconds = max_backoff_seconds
        self.commit_interval_seconds = commit_interval_seconds
        self.commit_timeout_seconds = commit_timeout_seconds
        self.routes: dict[str, tuple[type[BaseModel], Callable[[Any], Awaitable[Any]]]] = {}
        self._last_commit = -commit_interval_seconds


    def on(self, topic: str, model: type[E], handler: Callable[[E], Awaitable[Any]]) -> Consumer:
        """Handle ``topic``'s messages as ``model`` with ``handler``."""
        if topic in self.routes:
            raise ValueError(f"{topic} already has a handler in {self.group}")
        self.routes[topic] = (model, handler)
        return self

    def register(self) -> None:
        """Subscribe the group to every topic given to :meth:`on`."""
        self.broker.subscriber(
            *self.routes,
            group_id=self.group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            title=self.group,
            # How long a rebalance waits for the group's members to rejoin. aiokafka's
            # default is max_poll_interval_ms, 300 s: a consumer that stops while a join
            # is under way can wait that long to leave. Members rejoin in milliseconds
            # when healthy; one that has not after 20 s is dropped and its partitions
            # reassigned.
            rebalance_timeout_ms=20_000,
            # Static membership (KIP-345): a process that dies and starts again with the
            # same id takes its own place at once, its partitions kept for it, instead of
            # joining as a stranger and waiting for the dead member's session to expire
            # (10 s). Two live processes must never share an id: the broker fences one.
            group_instance_id=self.instance_id,
        )(self._on_message)

    async def _on_message(self, message: KafkaMessage) -> None:
        topic = message.raw_message.topic
        model, handler = self.routes[topic]
        await handle(self.broker, message, consumer=self.group, topic=topic, model=model, handler=handler,
                     max_backoff_seconds=self.max_backoff_seconds)
        written_ms = getattr(message.raw_message, "timestamp", None)
        if isinstance(written_ms, int) and written_ms > 0:
            EVENT_AGE.record(max(0.0, time.time() - written_ms / 1000),
                             {"consumer": self.group.split(".")[0], "topic": topic})
        if time.monotonic() - self._last_commit >= self.commit_interval_seconds:
            try:
                # Commits this message's position: everything up to it is handled. Bounded:
                # a commit waiting on a rebalance must not hold the consumer (or its
                # shutdown) hostage; what stays uncommitted is redelivered and deduplicated.
                # asyncio.timeout rather than wait_for, which can swallow a cancellation
                # on Python 3.11 (see outbox.py).
                async with asyncio.timeout(self.commit_timeout_seconds):
                    await message.ack()
            except (KafkaError, TimeoutError) as exc:
                log.warning("offset_commit_failed", consumer=self.group, topic=topic, error=type(exc).__name__)
            self._last_commit = time.monotonic()


async def handle(
    broker: KafkaBroker,
    message: KafkaMessage,
    *,
    consumer: str,
    topic: str,
    model: type[E],
    handler: Callable[[E], Awaitable[Any]],
    max_backoff_seconds: float,
) -> None:
    """Parse one message and run its handler: dead-letter what cannot be handled,
    wait out what cannot be handled yet."""
    raw: bytes = message.body

    async def park(reason: str) -> None:
        DEAD_LETTERS.add(1, {"consumer": consumer.split(".")[0], "topic": topic})
        await dead_letter(
            broker,
            consumer=consumer,
            topic=topic,
            payload=raw,
            reason=reason,
            partition=getattr(message.raw_message, "partition", None),
            offset=getattr(message.raw_message, "offset", None),
        )

    try:
        event = model.model_validate_json(raw)
    except ValidationError as exc:
        # Locations and messages only: pydantic's error text never includes the input.
        reason = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
        )
        await park(f"does not match {model.__name__}: {reason}")
        return
    backoff = 0.2
    while True:
        try:
            await handler(event)
            return
        except TRANSIENT_ERRORS as exc:
            if not broker.running:
                # Shutting down: leave the message uncommitted for the group's next
                # owner rather than keep this process from stopping.
                raise
            log.warning(
                "handler_retrying",
                consumer=consumer,
                topic=topic,
                error=type(exc).__name__,
                retry_in=backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_seconds)
        except Exception as exc:  # a bug, not an outage: park it rather than lose it
            log.error("handler_failed", consumer=consumer, topic=topic, error=type(exc).__name__)
            await park(f"handler raised {type(exc).__name__}")
            return
