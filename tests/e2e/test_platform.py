"""The services as processes (their console scripts), HTTP in, Kafka through."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tessera_common.identity import generate_signing_key
from tessera_devstack.processes import Server, free_port, spawn

pytestmark = [pytest.mark.connected, pytest.mark.e2e]

SERVICES = ("enrolment", "dialogue", "rights", "analytics")
OPERATOR_KEY = "e2e-operator-key-0123456789"


@pytest.fixture(scope="module")
def platform(stack, tmp_path_factory) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("services")
    private, public = generate_signing_key()
    urls: dict[str, str] = {}
    servers: list[Server] = []
    suffix = os.urandom(4).hex()
    try:
        for service in SERVICES:
            port = free_port()
            command = shutil.which(f"tessera-{service}", path=str(Path(sys.executable).parent))
            assert command, f"console script tessera-{service} is not installed"
            env = {
                **os.environ,
                "TESSERA_PORT": str(port),
                "TESSERA_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
                "TESSERA_MONGO_URL": stack.mongo_url,
                "TESSERA_MONGO_DATABASE": f"e2e_{service}_{suffix}",
                "TESSERA_OPERATOR_KEY": OPERATOR_KEY,
                "TESSERA_GATEWAY_SIGNING_KEY": private,
                "TESSERA_GATEWAY_PUBLIC_KEY": public,
                "TESSERA_ENVIRONMENT": "test",
            }
            servers.append(spawn(service, [command], logs / f"{service}.log", env=env, port=port))
            urls[service] = f"http://127.0.0.1:{port}"
        for server in servers:
            _wait_ready(server, urls[server.name])
        yield urls
    finally:
        for server in servers:
            server.stop()


def _wait_ready(server: Server, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"{server.name} died:\n{server.tail()}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{server.name} not ready:\n{server.tail()}")


def test_every_service_is_alive_and_ready(platform):
    for url in platform.values():
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz").json()
        assert ready == {"status": "ready", "checks": {"broker": True, "store": True}}


def test_phones_enrol_through_the_gateway_and_analytics_counts_them(platform):
    gateway, analytics = platform["enrolment"], platform["analytics"]
    tenant = httpx.post(f"{gateway}/v1/tenants", json={"name": "E2E org", "region": "eu-central"},
                        headers={"Authorization": f"Bearer {OPERATOR_KEY}"}).json()
    as_tenant = {"Authorization": f"Bearer {tenant['api_key']}"}
    code = httpx.post(f"{gateway}/v1/tenants/{tenant['tenant_id']}/codes", json={"max_enrolments": 20},
                      headers=as_tenant).json()
    phones = [("ios", "phone")] * 6 + [("android", "phone")] * 5 + [("android", "tablet")] * 1
    participants = set()
    for platform_name, form_factor in phones:
        response = httpx.post(f"{gateway}/v1/enrolments",
                              json={"code": code["display"], "platform": platform_name, "form_factor": form_factor})
        assert response.status_code == 201, response.text
        participants.add(response.json()["participant_id"])
    assert len(participants) == len(phones)

    deadline = time.monotonic() + 30
    while True:
        figures = httpx.get(f"{analytics}/v1/tenants/{tenant['tenant_id']}/stats/devices", headers=as_tenant)
        if figures.status_code == 200 and figures.json()["total"] == len(phones):
            break
        assert time.monotonic() < deadline, f"analytics never counted the phones: {figures.text}"
        time.sleep(0.3)

    cells = {(c["platform"], c["form_factor"]): c["count"] for c in figures.json()["cells"]}
    assert cells[("ios", "phone")] == 6
    assert cells[("android", "tablet")] is None  # 1 < k
    other = httpx.post(f"{gateway}/v1/tenants", json={"name": "Other", "region": "eu-west"},
                       headers={"Authorization": f"Bearer {OPERATOR_KEY}"}).json()
    peek = httpx.get(f"{analytics}/v1/tenants/{tenant['tenant_id']}/stats/devices",
                     headers={"Authorization": f"Bearer {other['api_key']}"})
    assert peek.status_code in (401, 403)  # 401 until analytics has seen the new tenant
