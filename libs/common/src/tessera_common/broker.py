"""The Kafka broker every service uses, and the topics it needs.

Producers wait for all in-sync replicas (``acks="all"``) and are idempotent, so a
retried send never writes a second copy. Trace context rides in message headers via
FastStream's telemetry middleware.
"""

from __future__ import annotations

import logging

import hashlib
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry.provider import (
    BatchKafkaTelemetrySettingsProvider,
    KafkaTelemetrySettingsProvider,
)
from faststream.opentelemetry.middleware import TelemetryMiddleware
from opentelemetry.semconv.trace import SpanAttributes
from opentelemetry.sdk.trace import TracerProvider

from datetime import UTC, datetime

from tessera_common.events import (
    DeadLetter,
    ErasureRequested,
    ObjectionApplied,
    ObjectionAppliedData,
    ObjectionRecorded,
    StoreErasureCompleted,
    StoreErasureCompletedData,
    Topics,
    partition_key,
)
from tessera_common.kafka_access import KafkaCredentials, aiokafka_options
from tessera_common.logs import get_logger

log = get_logger(__name__)


class _KeylessTelemetry(KafkaTelemetrySettingsProvider):
    """FastStream's Kafka span attributes without ``messaging.kafka.message.key``:
    participant-scoped events are keyed by participant ID, a pseudonym that is still
    personal data and must not reach a trace (DESIGN.md §1, SRE)."""

    def get_publish_attrs_from_cmd(self, cmd):  # type: ignore[no-untyped-def]
        attrs = super().get_publish_attrs_from_cmd(cmd)
        attrs.pop(SpanAttributes.MESSAGING_KAFKA_MESSAGE_KEY, None)
        return attrs

    def get_consume_attrs_from_message(self, msg):  # type: ignore[no-untyped-def]
        attrs = super().get_consume_attrs_from_message(msg)
        attrs.pop(SpanAttributes.MESSAGING_KAFKA_MESSAGE_KEY, None)
        return attrs


def _telemetry_attributes(msg):  # type: ignore[no-untyped-def]
    # Batches (not used here) carry no key attribute in FastStream's provider.
    if isinstance(msg, (list, tuple)):
        return BatchKafkaTelemetrySettingsProvider()
    return _KeylessTelemetry()


def make_broker(bootstrap_servers: str, tracer_provider: TracerProvider | None = None,
                credentials: KafkaCredentials | None = None) -> KafkaBroker:
    """The trace context still crosses Kafka in the W3C ``traceparent`` header, as with
    FastStream's ``KafkaTelemetryMiddleware``, whose span attributes this keeps but one.
    ``credentials``: the service's SASL/SCRAM principal (none for a broker without
    authentication)."""
    return KafkaBroker(
        bootstrap_servers,
        security=credentials.faststream() if credentials else None,
        acks="all",
        enable_idempotence=True,
        middlewares=[TelemetryMiddleware(settings_provider_factory=_telemetry_attributes,
                                         tracer_provider=tracer_provider)],
        # The level FastStream logs its per-message "Received"/"Processed" lines at: DEBUG,
        # so that they stay out of INFO and WARNING logs (they carry topic and offsets
        # only, but one each per message is noise at a hundred messages a second).
        log_level=logging.DEBUG,
        # Stopping waits this long for messages being handled, then leaves the group
        # anyway (what was not committed is redelivered to the next owner).
        graceful_timeout=10.0,
    )


async def ensure_topics(
    bootstrap_servers: str,
    topics: list[str] | None = None,
    partitions: int = 3,
    replication_factor: int = 1,
    credentials: KafkaCredentials | None = None,
) -> None:
    """Create Tessera's topics if they are missing; an existing topic is left alone.
    With ``credentials``, only topics that principal may see and create (its ACLs)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **aiokafka_options(credentials))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in (topics or Topics.all()) if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another service created it between our list and create
    finally:
        await admin.close()


async def dead_letter(
    broker: KafkaBroker,
    *,
    consumer: str,
    topic: str,
    payload: bytes,
    reason: str,
    partition: int | None = None,
    offset: int | None = None,
) -> None:
    """Park a message the consumer cannot handle, with why, so the consumer moves on.

    ``reason`` must be a description of the failure, never the payload's content."""
    letter = DeadLetter(
        consumer=consumer,
        topic=topic,
        partition=partition,
        offset=offset,
        reason=reason[:500],
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_bytes=len(payload),
    )
    await broker.publish(letter.model_dump(mode="json"), Topics.DEAD_LETTER)
    log.warning("dead_lettered", consumer=consumer, topic=topic, partition=partition, offset=offset)



async def confirm_erasure(broker: KafkaBroker, request: ErasureRequested, *, store: str, source: str,
                          documents_deleted: int) -> None:
    """Tell the rights service that ``store`` (its name in the data map) erased the
    participant of ``request``. Sent directly, not through an outbox: if it is lost,
    the request is redelivered or retried, erased again (a no-op) and confirmed again."""
    await _confirm(broker, request, StoreErasureCompleted, StoreErasureCompletedData, Topics.STORE_ERASURE_COMPLETED,
                   store=store, source=source, documents_deleted=documents_deleted)


async def confirm_objection(broker: KafkaBroker, request: ObjectionRecorded, *, store: str, source: str,
                            documents_deleted: int) -> None:
    """Tell the rights service that ``store`` no longer counts the objecting participant
    (sent directly, like :func:`confirm_erasure`, for the same reason)."""
    await _confirm(broker, request, ObjectionApplied, ObjectionAppliedData, Topics.OBJECTION_APPLIED,
                   store=store, source=source, documents_deleted=documents_deleted)


async def _confirm(broker: KafkaBroker, request: ErasureRequested | ObjectionRecorded, event_type: type,
                   data_type: type, topic: str, *, store: str, source: str, documents_deleted: int) -> None:
    confirmation = event_type(
        source=source,
        subject=request.data.request_id,
        tenant_id=request.tenant_id,
        data=data_type(request_id=request.data.request_id, store=store, documents_deleted=documents_deleted,
                       completed_at=datetime.now(UTC)),
    )
    await broker.publish(confirmation.model_dump(mode="json"), topic, key=partition_key(request.data.participant_id))
