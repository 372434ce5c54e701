"""Rights' bootstrap: settings, broker, store, telemetry → one FastAPI app.

Built so far: the internal data-key routes (DESIGN.md §4.3). Rights requests, erasure
fan-out and the audit trail come with their issue."""

from __future__ import annotations

import base64
import hashlib

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import SecretStr, model_validator

from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings
from tessera_rights.api import build_router
from tessera_rights.domain import parse_master_key
from tessera_rights.store import RightsStore

#: Known to everyone who reads this file, so refused in production.
DEV_DATA_KEY_MASTER_KEY = base64.b64encode(hashlib.sha256(b"tessera development data-key master key").digest()).decode()


class RightsSettings(ServiceSettings):
    service_name: str = "tessera-rights"
    port: int = 8003
    mongo_database: str = "tessera_rights"
    #: Key-encryption key (base64, 32 raw bytes) under which every participant's data
    #: key is wrapped at rest; losing it makes every stored data key unreadable.
    data_key_master_key: SecretStr = SecretStr(DEV_DATA_KEY_MASTER_KEY)

    @model_validator(mode="after")
    def _master_key_outside_development(self) -> RightsSettings:
        master_key = self.data_key_master_key.get_secret_value()
        parse_master_key(master_key)
        if self.environment == "production" and master_key == DEV_DATA_KEY_MASTER_KEY:
            raise ValueError("TESSERA_DATA_KEY_MASTER_KEY must be set to a real secret in production")
        return self


def create_app(settings: RightsSettings | None = None, span_exporter: SpanExporter | None = None) -> FastAPI:
    settings = settings or RightsSettings()
    wiring = wire(settings, span_exporter)
    store = RightsStore(wiring.db)
    router = build_router(
        store,
        internal_token=settings.internal_token.get_secret_value(),
        erased_marker_key=settings.erased_marker_key.get_secret_value(),
        master_key=parse_master_key(settings.data_key_master_key.get_secret_value()),
    )
    return service_app(
        wiring,
        title="Tessera rights",
        description="Per-participant data keys that erasure destroys; rights requests and audit trail to come.",
        routers=[router],
    )


def main() -> None:
    settings = RightsSettings()
    serve(create_app(settings), settings)
