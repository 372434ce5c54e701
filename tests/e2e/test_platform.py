"""The services as processes (their console scripts), HTTP in, Kafka through."""

from __future__ import annotations

import os
from uuid import uuid4
import time
from collections.abc import Iterator

import httpx
import pytest

from tessera_common.identity import generate_signing_key
from support.processes import spawn_service, wait_ready
from tessera_devstack.processes import Server, free_port

pytestmark = [pytest.mark.connected, pytest.mark.e2e]

SERVICES = ("enrolment", "dialogue", "rights", "analytics")
OPERATOR_KEY = "e2e-operator-key-0123456789"
INTERNAL_TOKEN = "e2e-internal-token-" + os.urandom(8).hex()


@pytest.fixture(scope="module")
def platform(stack, tmp_path_factory) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("services")
    private, public = generate_signing_key()
    urls: dict[str, str] = {}
    servers: list[Server] = []
    ports = {service: free_port() for service in SERVICES}
    try:
        for service in SERVICES:
            port = ports[service]
            servers.append(spawn_service(
                service, service, port, logs, kafka_bootstrap=stack.kafka_bootstrap,
                database=stack.database(service),
                TESSERA_OPERATOR_KEY=OPERATOR_KEY, TESSERA_GATEWAY_SIGNING_KEY=private,
                TESSERA_GATEWAY_PUBLIC_KEY=public, TESSERA_INTERNAL_TOKEN=INTERNAL_TOKEN,
                **{f"TESSERA_{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in SERVICES},
                TESSERA_RETRY_BASE_SECONDS="2", TESSERA_RETRY_CHECK_SECONDS="0.5",
            ))
            urls[service] = f"http://127.0.0.1:{port}"
        for server in servers:
            wait_ready(server, urls[server.name])
        yield urls
    finally:
        for server in servers:
            server.stop()


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


def _eventually(call, ok, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        response = call()
        if ok(response):
            return response
        assert time.monotonic() < deadline, f"gave up: {response.status_code} {response.text}"
        time.sleep(0.3)


def test_phones_answer_through_the_gateway_and_see_the_group_at_k(platform, stack):
    import asyncio

    from support.kafka import read_topic
    from tessera_common.events import Topics

    gateway, dialogue = platform["enrolment"], platform["dialogue"]
    tenant = httpx.post(f"{gateway}/v1/tenants", json={"name": "E2E dialogue", "region": "eu-west"},
                        headers={"Authorization": f"Bearer {OPERATOR_KEY}"}).json()
    as_tenant = {"Authorization": f"Bearer {tenant['api_key']}"}
    settings_url = f"{dialogue}/v1/tenants/{tenant['tenant_id']}/settings"
    _eventually(lambda: httpx.put(settings_url, json={"min_group_size": 3}, headers=as_tenant),
                lambda r: r.status_code == 200)
    base = f"{dialogue}/v1/tenants/{tenant['tenant_id']}/dialogues"
    created = httpx.post(base, headers=as_tenant, json={"title": "Library hours", "questions": [
        {"kind": "single_choice", "prompt": "Open on Sundays?",
         "choices": [{"key": "yes", "label": "Yes"}, {"key": "no", "label": "No"}]},
        {"kind": "open_text", "prompt": "Anything else?"}]}).json()
    assert httpx.post(f"{base}/{created['dialogue_id']}/publish", headers=as_tenant).status_code == 200
    choice_q, text_q = (q["question_id"] for q in created["questions"])
    code = httpx.post(f"{gateway}/v1/tenants/{tenant['tenant_id']}/codes", json={}, headers=as_tenant).json()
    phones = [httpx.post(f"{gateway}/v1/enrolments",
                         json={"code": code["code"], "platform": "android", "form_factor": "phone"}).json()
              for _ in range(3)]
    secret_text = f"Longer evening hours {uuid4().hex}"
    route = f"{gateway}/v1/me/dialogues/{created['dialogue_id']}/questions"
    for i, phone in enumerate(phones):
        auth = {"Authorization": f"Bearer {phone['device_token']}"}
        put = httpx.put(f"{route}/{choice_q}/answer", json={"value": "yes" if i else "no"}, headers=auth)
        assert put.status_code == 201, put.text
        group = httpx.get(f"{route}/{choice_q}/group", headers=auth).json()
        assert group["status"] == ("ready" if i == 2 else "not_enough_answers")
    assert {c["key"]: c["count"] for c in group["choices"]} == {"yes": 2, "no": 1}
    text = httpx.put(f"{route}/{text_q}/answer", json={"value": secret_text},
                     headers={"Authorization": f"Bearer {phones[0]['device_token']}"})
    assert text.status_code == 201, text.text

    records = asyncio.run(read_topic(stack.kafka, Topics.ANSWER_SUBMITTED, until=lambda rs: any(
        r["value"]["data"]["answer_id"] == text.json()["answer_id"] for r in rs)))
    assert not any(secret_text.encode() in r["raw"] for r in records)


def test_a_phone_is_erased_across_every_process_and_gets_a_receipt_it_can_verify(platform, stack):
    from tessera_rights.domain import verify_receipt

    gateway, rights = platform["enrolment"], platform["rights"]
    tenant = httpx.post(f"{gateway}/v1/tenants", json={"name": "E2E rights", "region": "eu-west"},
                        headers={"Authorization": f"Bearer {OPERATOR_KEY}"}).json()
    as_tenant = {"Authorization": f"Bearer {tenant['api_key']}"}
    _eventually(lambda: httpx.get(f"{rights}/v1/tenants/{tenant['tenant_id']}/retention", headers=as_tenant),
                lambda r: r.status_code == 200)
    code = httpx.post(f"{gateway}/v1/tenants/{tenant['tenant_id']}/codes", json={}, headers=as_tenant).json()
    phone = httpx.post(f"{gateway}/v1/enrolments",
                       json={"code": code["code"], "platform": "ios", "form_factor": "tablet"}).json()
    auth = {"Authorization": f"Bearer {phone['device_token']}"}

    asked = httpx.post(f"{gateway}/v1/me/rights-requests", json={"kind": "erasure"}, headers=auth)
    assert asked.status_code == 202, asked.text
    request_id, secret = asked.json()["request_id"], asked.json()["status_secret"]
    with_secret = {"Authorization": f"Bearer {secret}"}
    done = _eventually(lambda: httpx.get(f"{rights}/v1/rights-requests/{request_id}", headers=with_secret),
                       lambda r: r.json()["status"] == "completed", timeout=60)
    assert all(p["status"] == "confirmed" for p in done.json()["progress"])
    assert httpx.get(f"{gateway}/v1/me", headers=auth).status_code == 401
    receipt = httpx.get(f"{rights}/v1/rights-requests/{request_id}/receipt", headers=with_secret).json()
    public_key = httpx.get(f"{rights}/v1/rights/receipt-key").json()["public_key"]
    assert verify_receipt(public_key, receipt)
    verification = httpx.get(f"{rights}/v1/tenants/{tenant['tenant_id']}/audit/verification",
                             headers=as_tenant).json()
    assert verification["valid"] and verification["entries"] >= 6
