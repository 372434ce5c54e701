"""Enrolment's bootstrap: settings, broker, store, telemetry → one FastAPI app."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import Field, SecretStr, model_validator

from tessera_common.asyncapi import asyncapi_document, asyncapi_page
from tessera_common.kafka_access import KafkaAccessAdmin, KafkaCredentials
from tessera_common.postgres import migration_dirs
from tessera_common.service import serve, service_app, wire
from tessera_common.settings import ServiceSettings
from tessera_enrolment.api import Downstream, GuessThrottle, build_internal_router, build_router
from tessera_enrolment.api_keys import ApiKeyStore
from tessera_enrolment.console_api import ConsoleConfig, build_console_router
from tessera_enrolment.console_domain import parse_console_key
from tessera_enrolment.console_store import ConsoleStore
from tessera_enrolment.handlers import CONSUMER, register_handlers
from tessera_enrolment.kafka_credentials import build_kafka_credentials_router
from tessera_enrolment.participant_api import document_forwarded_routes
from tessera_enrolment.store import EnrolmentStore
from tessera_enrolment.webapp import mount_console, mount_participant_app


#: The console key of development and tests (public, like the other placeholders).
DEV_CONSOLE_KEY = base64.b64encode(b"tessera-development-console-key!").decode()


class EnrolmentSettings(ServiceSettings):
    service_name: str = "tessera-enrolment"
    port: int = 8001
    database_url: SecretStr = SecretStr("postgresql://tessera_enrolment@127.0.0.1:5432/tessera_enrolment")
    #: Failed code attempts allowed per truncated client network (IPv4 /24, IPv6 /48).
    enrol_failures_per_network: str = Field(default="10/minute")
    #: Failed code attempts allowed across all clients: the brake on distributed guessing.
    enrol_failures_global: str = Field(default="300/minute")
    #: Ed25519 private key (base64, 32 raw bytes) signing participant assertions for
    #: downstream services; see tessera_common.identity.
    gateway_signing_key: SecretStr | None = None
    #: The dialogue service, to which the gateway forwards participants' dialogue routes.
    dialogue_url: str = "http://127.0.0.1:8002"
    #: The rights service, to which the gateway forwards participants' rights requests.
    rights_url: str = "http://127.0.0.1:8003"
    #: The analytics service, whose figures the console shows through the gateway.
    analytics_url: str = "http://127.0.0.1:8004"
    #: How long the gateway waits for a service behind it before answering 503.
    downstream_timeout_seconds: float = Field(default=10.0, gt=0)
    #: The principal that issues tenants' Kafka credentials (``tessera-provisioner``:
    #: it may create users and ACLs). Unset = the credential routes answer 503.
    kafka_provisioner_username: str | None = Field(default=None, max_length=200)
    kafka_provisioner_password: SecretStr | None = None
    #: The broker address given to tenants with their credentials (default: the
    #: service's own ``kafka_bootstrap_servers``).
    kafka_tenant_bootstrap_servers: str | None = None

    #: Base64 of 32 bytes: seals console accounts' TOTP secrets (AES-GCM) and derives
    #: their sessions' CSRF tokens. The default is public: refused in production.
    console_key: SecretStr = SecretStr(DEV_CONSOLE_KEY)
    #: A console session ends after this long unused, and after this long in any case.
    console_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    console_absolute_hours: int = Field(default=12, ge=1, le=24 * 7)
    #: The console's public origin (https://…): its host is the passkeys' relying party.
    #: Unset: the origin each request came to, which only development should rely on.
    console_origin: str | None = Field(default=None, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")

    @model_validator(mode="after")
    def _signing_key_outside_development(self) -> EnrolmentSettings:
        if self.environment == "production" and self.gateway_signing_key is None:
            raise ValueError("TESSERA_GATEWAY_SIGNING_KEY must be set in production")
        if self.environment == "production" and self.console_key.get_secret_value() == DEV_CONSOLE_KEY:
            raise ValueError("TESSERA_CONSOLE_KEY must be set to a real key in production")
        parse_console_key(self.console_key.get_secret_value())
        return self


def create_app(
    settings: EnrolmentSettings | None = None,
    span_exporter: SpanExporter | None = None,
    downstream_transports: dict[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """``downstream_transports`` lets a test put in-process apps behind the gateway."""
    settings = settings or EnrolmentSettings()
    transports = downstream_transports or {}
    downstreams = {
        name: Downstream(
            httpx.AsyncClient(base_url=url, transport=transports.get(name),
                              timeout=settings.downstream_timeout_seconds),
            audience=f"tessera-{name}",
        )
        for name, url in {"dialogue": settings.dialogue_url, "rights": settings.rights_url,
                          "analytics": settings.analytics_url}.items()
    }
    wiring = wire(settings, migration_dirs("enrolment"), span_exporter)
    store = EnrolmentStore(wiring.database)
    console_store = ConsoleStore(wiring.database)
    keys = ApiKeyStore(wiring.database)
    register_handlers(wiring.consumer(CONSUMER), store)
    router = build_router(
        store,
        operator_key=settings.operator_key.get_secret_value(),
        throttle=GuessThrottle(settings.enrol_failures_per_network, settings.enrol_failures_global),
        downstreams=downstreams,
        signing_key=settings.gateway_signing_key.get_secret_value() if settings.gateway_signing_key else None,
        keys=keys,
    )

    provisioner = None
    if settings.kafka_provisioner_username and settings.kafka_provisioner_password:
        provisioner = KafkaAccessAdmin(settings.kafka_bootstrap_servers, KafkaCredentials(
            settings.kafka_provisioner_username, settings.kafka_provisioner_password))
    console = ConsoleConfig(
        key=parse_console_key(settings.console_key.get_secret_value()),
        secure_cookies=settings.environment != "development",
        idle=timedelta(minutes=settings.console_idle_minutes), absolute=timedelta(hours=settings.console_absolute_hours),
        origin=settings.console_origin)
    credentials_router = build_kafka_credentials_router(
        store, provisioner, settings.kafka_tenant_bootstrap_servers or settings.kafka_bootstrap_servers, keys)

    async def close_downstreams() -> None:
        for downstream in downstreams.values():
            await downstream.client.aclose()

    app = service_app(
        wiring,
        title="Tessera enrolment gateway",
        description="Tenants, opp codes and device enrolment; the gateway for mobile clients, which forwards "
                    "their dialogue and rights routes (documented here as the services behind it define them).",
        routers=[router, credentials_router, build_console_router(console_store, console, store, downstreams,
                                      settings.gateway_signing_key.get_secret_value() if settings.gateway_signing_key else None,
                                      keys),
                 build_internal_router(store, settings.internal_token.get_secret_value()),
                 build_asyncapi_router()],
        on_stop=close_downstreams,
    )
    document_forwarded_routes(app, set(downstreams))
    mount_participant_app(app)  # the participant app at /app/: static files calling the routes above
    mount_console(app)  # the tenant console at /console/: static files calling /console/api
    return app


def build_asyncapi_router() -> APIRouter:
    """The contract of a tenant's own topic (tessera_common.asyncapi), for the tenant's
    engineers: the AsyncAPI 3 document, and the same as a page to read."""
    router = APIRouter(tags=["tenant"])
    document = asyncapi_document()
    page = asyncapi_page(document)

    @router.get("/asyncapi.json", summary="The AsyncAPI 3 document of a tenant's topic")
    async def asyncapi_json() -> JSONResponse:
        return JSONResponse(document)

    @router.get("/asyncapi", summary="The same, as a page", response_class=HTMLResponse)
    async def asyncapi_html() -> HTMLResponse:
        return HTMLResponse(page)

    return router


SETTINGS_CLASS = EnrolmentSettings


def main() -> None:
    settings = EnrolmentSettings()
    serve(create_app(settings), settings)
