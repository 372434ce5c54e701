"""Analytics' bootstrap: settings, broker, store, telemetry → one FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings
from tessera_analytics.api import build_internal_router, build_router
from tessera_analytics.handlers import register_handlers
from tessera_analytics.store import AnalyticsStore


class AnalyticsSettings(ServiceSettings):
    service_name: str = "tessera-analytics"
    port: int = 8004
    mongo_database: str = "tessera_analytics"


def create_app(settings: AnalyticsSettings | None = None, span_exporter: SpanExporter | None = None) -> FastAPI:
    settings = settings or AnalyticsSettings()
    wiring = wire(settings, span_exporter)
    store = AnalyticsStore(wiring.db)
    marker_key = settings.erased_marker_key.get_secret_value()
    register_handlers(wiring.broker, store, marker_key)
    return service_app(
        wiring,
        title="Tessera analytics",
        description="Figures for tenants, never about fewer than k participants.",
        routers=[build_router(store),
                 build_internal_router(store, settings.internal_token.get_secret_value(), marker_key)],
        on_start=store.ensure_indexes,
    )


def main() -> None:
    settings = AnalyticsSettings()
    serve(create_app(settings), settings)
