"""Analytics' bootstrap: settings, broker, store, telemetry → one FastAPI app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import SecretStr
from starlette.responses import Response

from tessera_common.postgres import migration_dirs
from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings
from tessera_analytics.api import build_internal_router, build_router
from tessera_analytics.handlers import register_handlers
from tessera_analytics.store import CONSUMER, AnalyticsStore


DASHBOARD = Path(__file__).parent / "dashboard"


class DashboardFiles(StaticFiles):
    """The dashboard's static files, with headers that keep its key-holding page to
    itself: scripts and data from this origin only (no inline script, nothing from a
    CDN), never framed, no referrer, not cached."""

    HEADERS = {
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                   "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(self.HEADERS)
        return response


class AnalyticsSettings(ServiceSettings):
    service_name: str = "tessera-analytics"
    port: int = 8004
    database_url: SecretStr = SecretStr("postgresql://tessera_analytics@127.0.0.1:5432/tessera_analytics")


def create_app(settings: AnalyticsSettings | None = None, span_exporter: SpanExporter | None = None) -> FastAPI:
    settings = settings or AnalyticsSettings()
    wiring = wire(settings, migration_dirs("analytics"), span_exporter)
    store = AnalyticsStore(wiring.database)
    marker_key = settings.erased_marker_key.get_secret_value()
    register_handlers(wiring.consumer(CONSUMER), store, marker_key)
    app = service_app(
        wiring,
        title="Tessera analytics",
        description="Figures for tenants, never about fewer than k participants.",
        routers=[build_router(store, settings.gateway_public_key),
                 build_internal_router(store, settings.internal_token.get_secret_value(), marker_key)],
    )
    # The tenant dashboard: static files only; its data comes from the routes above,
    # with the tenant's API key, so serving it needs no credentials.
    app.mount("/dashboard", DashboardFiles(directory=DASHBOARD, html=True), name="dashboard")
    return app


SETTINGS_CLASS = AnalyticsSettings


def main() -> None:
    settings = AnalyticsSettings()
    serve(create_app(settings), settings)
