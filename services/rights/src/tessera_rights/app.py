"""Rights' bootstrap: settings, broker, store, telemetry, the keyring, the stores it asks
for access data, and its background loops (retries, retention, key rotation) → one
FastAPI app."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import Field, SecretStr, model_validator

from tessera_common.broker import ensure_topics
from tessera_common.logs import get_logger
from tessera_common.postgres import migration_dirs
from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings
from tessera_rights.api import (
    build_data_key_router,
    build_key_epoch_router,
    build_requests_router,
    build_tenant_key_router,
)
from tessera_rights.desk import Desk, Timing
from tessera_rights.domain import parse_master_key, parse_signing_key
from tessera_rights.epochs import KeyEpochs
from tessera_rights.handlers import CONSUMER, register_handlers
from tessera_rights.keyring import LocalKeyring
from tessera_rights.retention import Retention
from tessera_rights.store import RightsStore

log = get_logger(__name__)

#: Known to everyone who reads this file, so refused in production.
DEV_DATA_KEY_MASTER_KEY = base64.b64encode(hashlib.sha256(b"tessera development data-key master key").digest()).decode()
DEV_RECEIPT_SIGNING_KEY = base64.b64encode(hashlib.sha256(b"tessera development receipt key").digest()).decode()


class RightsSettings(ServiceSettings):
    service_name: str = "tessera-rights"
    port: int = 8003
    database_url: SecretStr = SecretStr("postgresql://tessera_rights@127.0.0.1:5432/tessera_rights")
    #: Key-encryption key (base64, 32 raw bytes): key epoch 1, from which the keyring is
    #: made when its file does not exist yet (keys wrapped before epochs existed are
    #: under it). Once the keyring exists it is not read; after the first rotation it
    #: is a copy of a destroyed key and should be removed from the deployment.
    data_key_master_key: SecretStr = SecretStr(DEV_DATA_KEY_MASTER_KEY)
    #: The keyring: the wrapping keys by epoch, a JSON file outside the database
    #: (mode 0600), shared by every replica. Unset: in memory, epoch 1 only, no
    #: rotation (development and tests); required in production.
    keyring_path: Path | None = None
    #: How often the wrapping key rotates (live keys re-wrapped, the old epoch's key
    #: destroyed): an erasure is final at the latest this long after it.
    key_rotation_interval_seconds: float = Field(default=86400.0, gt=0)
    #: Ed25519 private key (base64, 32 raw bytes) that signs erasure receipts and audit
    #: verification statements; its public key is served at /v1/rights/receipt-key.
    receipt_signing_key: SecretStr = SecretStr(DEV_RECEIPT_SIGNING_KEY)
    #: The services whose stores give their part of an access or export request.
    enrolment_url: str = "http://127.0.0.1:8001"
    dialogue_url: str = "http://127.0.0.1:8002"
    analytics_url: str = "http://127.0.0.1:8004"
    store_timeout_seconds: float = Field(default=10.0, gt=0)
    #: A store that has not confirmed is asked again after base, 2·base, 4·base … ≤ cap.
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_cap_seconds: float = Field(default=900.0, gt=0)
    #: How often the loops look for due retries and expired data.
    retry_check_seconds: float = Field(default=5.0, gt=0)
    retention_check_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _keys_outside_development(self) -> RightsSettings:
        master_key = self.data_key_master_key.get_secret_value()
        parse_master_key(master_key)
        parse_signing_key(self.receipt_signing_key.get_secret_value())
        if self.environment == "production" and self.keyring_path is None:
            raise ValueError("TESSERA_KEYRING_PATH must be set in production (the shared keyring)")
        if (self.environment == "production" and master_key == DEV_DATA_KEY_MASTER_KEY
                and not (self.keyring_path and self.keyring_path.exists())):
            raise ValueError("TESSERA_DATA_KEY_MASTER_KEY must be set to a real secret in production")
        if self.environment == "production" and self.receipt_signing_key.get_secret_value() == DEV_RECEIPT_SIGNING_KEY:
            raise ValueError("TESSERA_RECEIPT_SIGNING_KEY must be set to a real secret in production")
        return self


def create_app(
    settings: RightsSettings | None = None,
    span_exporter: SpanExporter | None = None,
    store_transports: dict[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """``store_transports`` lets a test reach in-process enrolment, dialogue and
    analytics apps instead of ports."""
    settings = settings or RightsSettings()
    transports = store_transports or {}
    wiring = wire(settings, migration_dirs("rights"), span_exporter)
    store = RightsStore(wiring.database)
    internal_token = settings.internal_token.get_secret_value()
    stores = {
        name: httpx.AsyncClient(base_url=url, transport=transports.get(name), timeout=settings.store_timeout_seconds,
                                headers={"Authorization": f"Bearer {internal_token}"})
        for name, url in (("enrolment", settings.enrolment_url), ("dialogue", settings.dialogue_url),
                          ("analytics", settings.analytics_url))
    }
    signing_key: Ed25519PrivateKey = parse_signing_key(settings.receipt_signing_key.get_secret_value())

    async def ensure_tenant_topic(topic: str) -> None:
        await ensure_topics(settings.kafka_bootstrap_servers, [topic], partitions=settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_replication_factor,
                            credentials=settings.kafka_credentials())

    desk = Desk(store, stores, settings.erased_marker_key.get_secret_value(), signing_key,
                Timing(settings.retry_base_seconds, settings.retry_cap_seconds), ensure_tenant_topic)
    retention = Retention(desk)
    master_key = settings.data_key_master_key.get_secret_value()
    keyring = LocalKeyring(settings.keyring_path, parse_master_key(master_key))
    epochs = KeyEpochs(store, keyring)
    register_handlers(wiring.consumer(CONSUMER), desk)
    loops: list[asyncio.Task] = []

    async def rotate_if_due() -> None:
        await epochs.rotate_if_due(datetime.now(UTC), settings.key_rotation_interval_seconds)

    async def start() -> None:
        await epochs.check()
        if keyring.durable and master_key != DEV_DATA_KEY_MASTER_KEY and 1 not in await keyring.held_epochs():
            log.warning("data_key_master_key_still_set",
                        advice="epoch 1 is retired: remove TESSERA_DATA_KEY_MASTER_KEY, a copy of its destroyed key")
        loops.append(asyncio.create_task(every(settings.retry_check_seconds, desk.retry_due, "retry")))
        loops.append(asyncio.create_task(every(settings.retention_check_seconds, retention.run_once, "retention")))
        if keyring.durable:
            check = min(300.0, settings.key_rotation_interval_seconds / 10)
            loops.append(asyncio.create_task(every(check, rotate_if_due, "key_rotation")))

    async def stop() -> None:
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        for client in stores.values():
            await client.aclose()

    public_key = base64.b64encode(signing_key.public_key().public_bytes_raw()).decode()
    app = service_app(
        wiring,
        title="Tessera rights",
        description="Rights requests (access, export, rectification, erasure, objection), erasure fan-out to "
                    "every store, signed receipts, the hash-chained audit trail, and participants' data keys.",
        routers=[
            build_requests_router(desk, settings.gateway_public_key, public_key),
            build_data_key_router(
                store,
                desk,
                internal_token=internal_token,
                erased_marker_key=settings.erased_marker_key.get_secret_value(),
                epochs=epochs,
            ),
            build_key_epoch_router(epochs, internal_token),
            build_tenant_key_router(store, epochs),
        ],
        on_start=start,
        on_stop=stop,
    )
    app.state.desk = desk
    app.state.retention = retention
    app.state.epochs = epochs
    return app


SETTINGS_CLASS = RightsSettings


async def every(seconds: float, job, name: str) -> None:  # type: ignore[no-untyped-def]
    """Run ``job`` every ``seconds`` until cancelled; a failure (store or broker down)
    is logged and tried again next round."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("loop_failed", loop=name, error=type(exc).__name__)


def main() -> None:
    settings = RightsSettings()
    serve(create_app(settings), settings)
