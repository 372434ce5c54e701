"""Run a service's real app in-process against the session's real stack."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
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
        **overrides,
    )
