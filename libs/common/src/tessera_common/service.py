"""The bootstrap every service's ``app.py`` calls: one place that wires settings,
telemetry, broker and store into a FastAPI app, with all I/O inside the lifespan.

Tests call the same ``create_app(settings)`` with their own settings (the ports of the
session's Kafka and store) instead of patching internals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import APIRouter, FastAPI
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace.export import SpanExporter
from pathlib import Path

from tessera_common.broker import ensure_topics, make_broker
from tessera_common.consume import Consumer
from tessera_common.http import document_errors, install_common
from tessera_common.kafka_access import own_topics
from tessera_common.logs import configure_logging, get_logger
from tessera_common.outbox import OutboxRelay
from tessera_common.postgres import Database
from tessera_common.settings import ServiceSettings
from tessera_common.telemetry import Telemetry, setup_telemetry

log = get_logger(__name__)


@dataclass
class Wiring:
    settings: ServiceSettings
    telemetry: Telemetry
    broker: KafkaBroker
    database: Database
    relay: OutboxRelay

    def consumer(self, name: str) -> Consumer:
        """The service's consumer group ``name`` (+ ``consumer_group_suffix``), one Kafka
        consumer for all its topics, a static member when ``consumer_instance_id`` is set."""
        return Consumer(self.broker, name + self.settings.consumer_group_suffix,
                        instance_id=self.settings.consumer_instance_id)


def wire(settings: ServiceSettings, migrations: list[Path], span_exporter: SpanExporter | None = None) -> Wiring:
    """Build the clients; nothing connects until the app's lifespan starts."""
    configure_logging(settings.service_name, settings.log_level)
    telemetry = setup_telemetry(settings.service_name, settings.otlp_endpoint, span_exporter)
    broker = make_broker(settings.kafka_bootstrap_servers, telemetry.tracer_provider, settings.kafka_credentials())
    owner_url = settings.database_owner_url.get_secret_value() if settings.database_owner_url else None
    database = Database(settings.database_url.get_secret_value(), owner_url, migrations,
                        max_size=settings.database_pool_size,
                        vacuum_interval_seconds=settings.vacuum_after_erasure_seconds)

    async def ensure_topic(topic: str) -> None:
        await ensure_topics(settings.kafka_bootstrap_servers, [topic], partitions=settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_replication_factor,
                            credentials=settings.kafka_credentials())

    return Wiring(settings, telemetry, broker, database, OutboxRelay(broker, database, ensure_topic=ensure_topic))


def service_app(
    wiring: Wiring,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    settings = wiring.settings
    relay = wiring.relay

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            own_topics(settings.service_name),
            credentials=settings.kafka_credentials(),
            partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
        )
        await wiring.database.open()
        if on_start is not None:
            await on_start()
        await wiring.broker.start()
        sweeper = asyncio.create_task(relay.run(settings.outbox_sweep_seconds))
        housekeeper = asyncio.create_task(_housekeeping(wiring))
        log.info("service_started", port=settings.port)
        try:
            yield
        finally:
            for task in (sweeper, housekeeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await relay.drain()
            if on_stop is not None:
                await on_stop()
            await wiring.broker.stop()
            await wiring.database.close()
            wiring.telemetry.shutdown()

    async def broker_ready() -> bool:
        try:
            return bool(await wiring.broker.ping(timeout=2.0))
        except Exception:
            return False

    async def store_ready() -> bool:
        return await wiring.database.ping()

    # FastAPI's own telemetry (0.16x) is off: the OpenTelemetry instrumentation below
    # already traces and measures every request, with paths and addresses scrubbed;
    # FastAPI's would put the raw path in spans and count every request a second time
    # (it turns itself on as soon as a global meter provider exists, as ours does).
    app = FastAPI(title=title, description=description, version="1", lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.wiring = wiring
    install_common(app, settings.max_body_bytes, {"broker": broker_ready, "store": store_ready})
    for router in routers:
        app.include_router(router)
    document_errors(app)
    wiring.telemetry.instrument_app(app)
    return app


async def _housekeeping(wiring: Wiring, interval_seconds: float = 3600.0) -> None:
    """Hourly: forget consumers' old delivery records, so the inbox stays small."""
    while True:
        try:
            forgotten = await wiring.database.forget_old_deliveries(wiring.settings.inbox_retention_days)
            if forgotten:
                log.info("inbox_pruned", forgotten=forgotten)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is down: next hour
            log.warning("inbox_prune_failed", error=type(exc).__name__)
        await asyncio.sleep(interval_seconds)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_config=None)
