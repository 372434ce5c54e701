"""Run a service's real app in-process against the session's real stack."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import uuid4

import httpx
from fastapi import FastAPI

from tessera_enrolment.app import EnrolmentSettings

OPERATOR_KEY = "test-operator-key-" + uuid4().hex


def unique_db(service: str) -> str:
    return f"test_{service}_{uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def running(app: FastAPI, client_ip: str = "203.0.113.7") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (broker, store, relay) and an HTTP client whose
    requests come from ``client_ip``."""
    async with app.router.lifespan_context(app):
        async with client_from(app, client_ip) as client:
            yield client


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
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        mongo_url=stack.mongo_url,
        mongo_database=unique_db("enrolment"),
        operator_key=OPERATOR_KEY,
        environment="test",
        outbox_sweep_seconds=0.5,
        **{"internal_token": INTERNAL_TOKEN, "erased_marker_key": MARKER_KEY, **overrides},
    )


INTERNAL_TOKEN = "test-internal-token-" + uuid4().hex
MARKER_KEY = "test-erased-marker-key-" + uuid4().hex


@dataclass
class Platform:
    """Gateway, dialogue and rights apps running in-process on the real stack, wired as
    in production: participant calls go through the gateway, which signs assertions
    for dialogue; dialogue fetches data keys from rights."""

    gateway: httpx.AsyncClient
    dialogue: httpx.AsyncClient
    rights: httpx.AsyncClient
    gateway_app: FastAPI
    dialogue_app: FastAPI
    rights_app: FastAPI
    signing_key: str

    def db_name(self, service: str) -> str:
        app = {"enrolment": self.gateway_app, "dialogue": self.dialogue_app, "rights": self.rights_app}[service]
        return app.state.wiring.settings.mongo_database


@contextlib.asynccontextmanager
async def running_platform(stack, spans: dict | None = None, **dialogue_overrides) -> AsyncIterator[Platform]:
    """``spans``: optional span exporters by service name ("enrolment", "dialogue", "rights")."""
    spans = spans or {}
    from tessera_common.identity import generate_signing_key
    from tessera_dialogue.app import DialogueSettings
    from tessera_dialogue.app import create_app as create_dialogue
    from tessera_enrolment.app import create_app as create_enrolment
    from tessera_rights.app import RightsSettings
    from tessera_rights.app import create_app as create_rights

    private, public = generate_signing_key()
    common = dict(
        kafka_bootstrap_servers=stack.kafka_bootstrap, mongo_url=stack.mongo_url, environment="test",
        internal_token=INTERNAL_TOKEN, erased_marker_key=MARKER_KEY, outbox_sweep_seconds=0.5,
    )
    rights_app = create_rights(RightsSettings(mongo_database=unique_db("rights"), **common),
                               span_exporter=spans.get("rights"))
    async with running(rights_app) as rights:
        dialogue_app = create_dialogue(
            DialogueSettings(mongo_database=unique_db("dialogue"), gateway_public_key=public,
                             **common, **dialogue_overrides),
            rights_transport=httpx.ASGITransport(app=rights_app),
            span_exporter=spans.get("dialogue"),
        )
        async with running(dialogue_app) as dialogue:
            gateway_app = create_enrolment(
                enrolment_settings(stack, gateway_signing_key=private),
                downstream_transports={"dialogue": httpx.ASGITransport(app=dialogue_app)},
                span_exporter=spans.get("enrolment"),
            )
            async with running(gateway_app) as gateway:
                yield Platform(gateway, dialogue, rights, gateway_app, dialogue_app, rights_app, private)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def tenant_known_to_dialogue(platform: Platform, tenant: dict) -> None:
    """Dialogue learns a tenant's key from ``tenant-registered``: wait until it has."""
    from support.kafka import eventually

    async def known():
        response = await platform.dialogue.get(f"/v1/tenants/{tenant['tenant_id']}/settings",
                                               headers=bearer(tenant["api_key"]))
        return response.status_code == 200

    await eventually(known, timeout=60)


async def enrol_devices(platform: Platform, tenant: dict, n: int) -> list[dict]:
    code = await create_code(platform.gateway, tenant)
    devices = []
    for _ in range(n):
        response = await enrol(platform.gateway, code["code"])
        assert response.status_code == 201, response.text
        devices.append(response.json())
    return devices
