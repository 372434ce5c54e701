"""Run a service's real app in-process against the session's real stack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import uuid4

import httpx
import uvicorn
from fastapi import FastAPI

from tessera_enrolment.app import EnrolmentSettings

OPERATOR_KEY = "test-operator-key-" + uuid4().hex


@contextlib.asynccontextmanager
async def running(app: FastAPI, client_ip: str = "203.0.113.7") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (broker, store, relay) and an HTTP client whose
    requests come from ``client_ip``."""
    async with app.router.lifespan_context(app):
        async with client_from(app, client_ip) as client:
            yield client


@contextlib.asynccontextmanager
async def opened(settings, service: str) -> AsyncIterator:
    """A service's database opened (and migrated) as the service would, without the
    service: for tests that act as the store alone, e.g. a process that dies after a
    commit and before its relay publishes."""
    from tessera_common.postgres import Database, migration_dirs

    database = Database(settings.database_url.get_secret_value(), settings.database_owner_url.get_secret_value(),
                        migration_dirs(service))
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """An app that is already running (inside ``running``) served over real HTTP on a
    free port of 127.0.0.1, for a browser; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def client_from(app: FastAPI, client_ip: str) -> httpx.AsyncClient:
    """Another client of an app that is already running, from another address."""
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://tessera.test")


async def create_tenant(client: httpx.AsyncClient, name: str = "Gemeente Test") -> dict:
    response = await client.post(
        "/v1/tenants",
        json={"name": name, "region": "eu-west"},
        headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def create_code(client: httpx.AsyncClient, tenant: dict, **body) -> dict:
    response = await client.post(
        f"/v1/tenants/{tenant['tenant_id']}/codes",
        json=body,
        headers={"Authorization": f"Bearer {tenant['api_key']}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def enrol(client: httpx.AsyncClient, code: str, platform: str = "ios", form_factor: str = "phone"):
    return await client.post(
        "/v1/enrolments", json={"code": code, "platform": platform, "form_factor": form_factor}
    )


def enrolment_settings(stack, **overrides) -> EnrolmentSettings:
    return EnrolmentSettings(
        operator_key=OPERATOR_KEY,
        environment="test",
        outbox_sweep_seconds=0.5,
        **{"kafka_bootstrap_servers": stack.kafka_bootstrap, "internal_token": INTERNAL_TOKEN, "erased_marker_key": MARKER_KEY, **stack.database("enrolment"),
           **overrides},
    )


INTERNAL_TOKEN = "test-internal-token-" + uuid4().hex
MARKER_KEY = "test-erased-marker-key-" + uuid4().hex


@dataclass
class Platform:
    """Gateway, dialogue, rights and analytics apps running in-process on the real
    stack, wired as in production: participant calls go through the gateway, which
    signs assertions for dialogue and rights; dialogue fetches data keys from rights;
    rights asks every store for its part of an access request."""

    gateway: httpx.AsyncClient
    dialogue: httpx.AsyncClient
    rights: httpx.AsyncClient
    analytics: httpx.AsyncClient
    gateway_app: FastAPI
    dialogue_app: FastAPI
    rights_app: FastAPI
    analytics_app: FastAPI
    signing_key: str
    #: How to build each service's app again (same settings, same database), its
    #: in-process transport, and the lifespans now running, for :meth:`stop`/:meth:`start`.
    factories: dict = field(default_factory=dict, repr=False)
    transports: dict = field(default_factory=dict, repr=False)
    lifespans: dict = field(default_factory=dict, repr=False)

    def app(self, service: str) -> FastAPI:
        return getattr(self, f"{_attribute(service)}_app")

    def database_url(self, service: str, owner: bool = False) -> str:
        """The service's database, as its own role (``owner``: as the owner, which
        row-level security does not bind: for tests that read every row)."""
        settings = self.app(service).state.wiring.settings
        return (settings.database_owner_url if owner else settings.database_url).get_secret_value()

    async def stop(self, service: str) -> None:
        """Stop a service as a crash would look to the others: its consumers leave the
        group, its HTTP routes stop answering (the transport has no app)."""
        await self.lifespans.pop(service).aclose()
        self.transports[service].app = None

    async def start(self, service: str) -> None:
        """Start a stopped service again: a new process on the same database and group."""
        app = self.factories[service]()
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(running(app))
        self.lifespans[service] = stack
        self.transports[service].app = app
        setattr(self, f"{_attribute(service)}_app", app)
        setattr(self, _attribute(service), client)


def _attribute(service: str) -> str:
    return "gateway" if service == "enrolment" else service


class LateTransport(httpx.AsyncBaseTransport):
    """An in-process transport to an app made after the client that uses it (rights
    and dialogue each call the other), or to no app while that service is stopped."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.app is None:
            raise httpx.ConnectError("the service is stopped", request=request)
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


@contextlib.asynccontextmanager
async def running_platform(stack, spans: dict | None = None, rights_overrides: dict | None = None,
                           gateway_overrides: dict | None = None, **dialogue_overrides) -> AsyncIterator[Platform]:
    """``spans``: optional span exporters by service name ("enrolment", "dialogue",
    "rights", "analytics"); ``rights_overrides``, ``gateway_overrides`` and the other
    keywords (dialogue's): settings of that service."""
    spans = spans or {}
    from tessera_analytics.app import AnalyticsSettings
    from tessera_analytics.app import create_app as create_analytics
    from tessera_common.identity import generate_signing_key
    from tessera_dialogue.app import DialogueSettings
    from tessera_dialogue.app import create_app as create_dialogue
    from tessera_enrolment.app import create_app as create_enrolment
    from tessera_rights.app import RightsSettings
    from tessera_rights.app import create_app as create_rights

    private, public = generate_signing_key()
    common = dict(
        kafka_bootstrap_servers=stack.kafka_bootstrap, environment="test",
        internal_token=INTERNAL_TOKEN, erased_marker_key=MARKER_KEY, outbox_sweep_seconds=0.5,
        gateway_public_key=public,
    )
    behind = {name: LateTransport() for name in ("enrolment", "dialogue", "analytics", "rights")}
    rights_settings = RightsSettings(**stack.database("rights"), retry_base_seconds=2.0,
                                     retry_check_seconds=0.5, **common, **(rights_overrides or {}))
    dialogue_settings = DialogueSettings(**stack.database("dialogue"), **common, **dialogue_overrides)
    analytics_settings = AnalyticsSettings(**stack.database("analytics"), **common)
    gateway_settings = enrolment_settings(stack, gateway_signing_key=private, **(gateway_overrides or {}))
    factories = {
        "rights": lambda: create_rights(rights_settings, span_exporter=spans.get("rights"),
                                        store_transports=behind),
        "dialogue": lambda: create_dialogue(dialogue_settings, rights_transport=behind["rights"],
                                            span_exporter=spans.get("dialogue")),
        "analytics": lambda: create_analytics(analytics_settings, span_exporter=spans.get("analytics")),
        "enrolment": lambda: create_enrolment(
            gateway_settings, downstream_transports={"dialogue": behind["dialogue"], "rights": behind["rights"],
                                                   "analytics": behind["analytics"]},
            span_exporter=spans.get("enrolment")),
    }
    apps = {name: factory() for name, factory in factories.items()}
    for name, app in apps.items():
        behind[name].app = app
    lifespans: dict[str, contextlib.AsyncExitStack] = {}
    clients = {}
    try:
        for name in ("rights", "dialogue", "analytics", "enrolment"):
            lifespans[name] = contextlib.AsyncExitStack()
            clients[name] = await lifespans[name].enter_async_context(running(apps[name]))
        yield Platform(clients["enrolment"], clients["dialogue"], clients["rights"], clients["analytics"],
                       apps["enrolment"], apps["dialogue"], apps["rights"], apps["analytics"], private,
                       factories=factories, transports=behind, lifespans=lifespans)
    finally:
        for name in ("enrolment", "analytics", "dialogue", "rights"):
            if name in lifespans:
                await lifespans.pop(name).aclose()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def tenant_known_to_dialogue(platform: Platform, tenant: dict) -> None:
    """Dialogue learns a tenant's key from ``tenant-registered``: wait until it has."""
    await _tenant_known(platform.dialogue, f"/v1/tenants/{tenant['tenant_id']}/settings", tenant)


async def tenant_known_to_rights(platform: Platform, tenant: dict) -> None:
    """Rights learns a tenant's key from ``tenant-registered`` too."""
    await _tenant_known(platform.rights, f"/v1/tenants/{tenant['tenant_id']}/retention", tenant)


async def _tenant_known(client: httpx.AsyncClient, path: str, tenant: dict) -> None:
    from support.kafka import eventually

    async def known():
        return (await client.get(path, headers=bearer(tenant["api_key"]))).status_code == 200

    await eventually(known, timeout=60)


async def dialogue_tenant(platform: Platform, **settings) -> dict:
    """A new tenant that the dialogue service knows, with these dialogue settings
    (``min_group_size``, ``pii_policy``)."""
    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_dialogue(platform, tenant)
    if settings:
        response = await platform.dialogue.put(f"/v1/tenants/{tenant['tenant_id']}/settings", json=settings,
                                               headers=bearer(tenant["api_key"]))
        assert response.status_code == 200, response.text
    return tenant


async def enrol_devices(platform: Platform, tenant: dict, n: int) -> list[dict]:
    code = await create_code(platform.gateway, tenant)
    devices = []
    for _ in range(n):
        response = await enrol(platform.gateway, code["code"])
        assert response.status_code == 201, response.text
        devices.append(response.json())
    return devices


#: A dialogue with one question of every kind, as a tenant would write it.
PARK_QUESTIONS = [
    {"kind": "single_choice", "prompt": "Which park needs work first?",
     "choices": [{"key": "north", "label": "North park"}, {"key": "south", "label": "South park"}]},
    {"kind": "multiple_choice", "prompt": "What would you add?",
     "choices": [{"key": "benches", "label": "Benches"}, {"key": "trees", "label": "Trees"},
                 {"key": "lights", "label": "Lights"}]},
    {"kind": "scale", "prompt": "How safe do you feel there?",
     "scale": {"min": 1, "max": 5, "labels": {"1": "not at all", "5": "very"}}},
    {"kind": "open_text", "prompt": "Why?"},
    {"kind": "idea", "prompt": "Your ideas for the park"},
]

