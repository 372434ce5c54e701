"""A replica that had a participant's key cached serves none of their text once their
erasure completes, and the erasure does not complete before it dropped the key
(issue 12: key caches with a bound).

Two dialogue processes on one database: A caches no keys, B caches them for 60 s. B
opens the texts (a tenant's listing), so it holds every participant's key. B is then
frozen (SIGSTOP) while a participant asks for erasure: every store confirms, but the
request stays ``in_progress`` with ``key_caches`` pending, because B may still hold the
key. Thawed, B reads ``data-key-destroyed``, drops the key and says so; the erasure
completes with one cache confirmed, and B shows the others' texts and none of the
erased participant's.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator

import httpx
import pytest

from support.kafka import eventually
from support.processes import spawn_service, wait_ready
from tessera_common.identity import generate_signing_key
from tessera_devstack.processes import Server, free_port

pytestmark = [pytest.mark.connected, pytest.mark.e2e]

OPERATOR_KEY = "keycache-operator-key-0123456789"
INTERNAL_TOKEN = "keycache-internal-token-" + os.urandom(8).hex()
PROCESSES = ("rights", "enrolment", "analytics", "dialogue-a", "dialogue-b")


@pytest.fixture(scope="module")
def platform(stack, tmp_path_factory) -> Iterator[dict[str, tuple[str, Server]]]:
    logs = tmp_path_factory.mktemp("keycache")
    private, public = generate_signing_key()
    databases = {service: stack.database(service) for service in ("rights", "enrolment", "analytics", "dialogue")}
    ports = {name: free_port() for name in PROCESSES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    servers: dict[str, Server] = {}
    try:
        for name in PROCESSES:
            service = name.split("-")[0]
            servers[name] = spawn_service(
                name, service, ports[name], logs, kafka_bootstrap=stack.kafka_bootstrap, database=databases[service],
                TESSERA_OPERATOR_KEY=OPERATOR_KEY, TESSERA_GATEWAY_SIGNING_KEY=private,
                TESSERA_GATEWAY_PUBLIC_KEY=public, TESSERA_INTERNAL_TOKEN=INTERNAL_TOKEN, TESSERA_LOG_LEVEL="WARNING",
                TESSERA_DIALOGUE_URL=urls["dialogue-a"], TESSERA_RIGHTS_URL=urls["rights"],
                TESSERA_ENROLMENT_URL=urls["enrolment"], TESSERA_ANALYTICS_URL=urls["analytics"],
                TESSERA_RETRY_BASE_SECONDS="2", TESSERA_RETRY_CHECK_SECONDS="0.5",
                TESSERA_KEY_CACHE_SECONDS="0" if name == "dialogue-a" else "60",
            )
        for name, server in servers.items():
            wait_ready(server, urls[name])
        yield {name: (urls[name], servers[name]) for name in PROCESSES}
    finally:
        for server in servers.values():
            os.killpg(server.process.pid, signal.SIGCONT)  # a frozen process cannot stop
            server.stop()


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_replica_with_the_key_cached_drops_it_before_the_erasure_completes(platform):
    gateway, rights, dialogue_a = (platform[n][0] for n in ("enrolment", "rights", "dialogue-a"))
    dialogue_b, server_b = platform["dialogue-b"]
    async with httpx.AsyncClient(timeout=30) as http:
        tenant = (await http.post(f"{gateway}/v1/tenants", json={"name": "Caches", "region": "eu-west"},
                                  headers=_bearer(OPERATOR_KEY))).json()
        tid, auth = tenant["tenant_id"], _bearer(tenant["api_key"])

        async def known():
            return all([(await http.get(f"{url}/v1/tenants/{tid}/settings", headers=auth)).status_code == 200
                        for url in (dialogue_a, dialogue_b)])

        assert await eventually(known, timeout=60)
        created = await http.post(f"{dialogue_a}/v1/tenants/{tid}/dialogues", headers=auth, json={
            "title": "Caches", "questions": [{"kind": "open_text", "prompt": "What would you change?"}]})
        did, qid = created.json()["dialogue_id"], created.json()["questions"][0]["question_id"]
        assert (await http.post(f"{dialogue_a}/v1/tenants/{tid}/dialogues/{did}/publish",
                                headers=auth)).status_code == 200
        code = (await http.post(f"{gateway}/v1/tenants/{tid}/codes", json={}, headers=auth)).json()["code"]
        devices, texts = [], []
        for i in range(3):
            device = (await http.post(f"{gateway}/v1/enrolments",
                                      json={"code": code, "platform": "android", "form_factor": "phone"})).json()
            text = f"tekst {i} {secrets.token_hex(16)}"
            put = await http.put(f"{gateway}/v1/me/dialogues/{did}/questions/{qid}/answer", json={"value": text},
                                 headers=_bearer(device["device_token"]))
            assert put.status_code == 201, put.text
            devices.append(device)
            texts.append(text)

        async def listed(url: str) -> list[str]:
            response = await http.get(f"{url}/v1/tenants/{tid}/dialogues/{did}/answers", headers=auth)
            assert response.status_code == 200, response.text
            return sorted(a["value"] for a in response.json()["answers"])

        assert await listed(dialogue_b) == sorted(texts)  # B opened them: it holds the three keys now

        os.killpg(server_b.process.pid, signal.SIGSTOP)
        try:
            asked = await http.post(f"{gateway}/v1/me/rights-requests", json={"kind": "erasure"},
                                    headers=_bearer(devices[0]["device_token"]))
            assert asked.status_code == 202, asked.text
            request_id, secret = asked.json()["request_id"], asked.json()["status_secret"]

            async def status() -> dict:
                return (await http.get(f"{rights}/v1/rights-requests/{request_id}", headers=_bearer(secret))).json()

            async def stores_confirmed():
                now = await status()
                others = [p for p in now["progress"] if p["store"] != "key_caches"]
                return now if all(p["status"] == "confirmed" for p in others) else None

            waiting = await eventually(stores_confirmed, timeout=60)
            # Every store deleted and confirmed, but B may still hold the key: not complete.
            assert waiting["status"] == "in_progress"
            assert {p["store"]: p["status"] for p in waiting["progress"]}["key_caches"] == "pending"
        finally:
            os.killpg(server_b.process.pid, signal.SIGCONT)

        async def completed():
            now = await status()
            return now if now["status"] == "completed" else None

        done = await eventually(completed, timeout=60)
        caches = next(p for p in done["progress"] if p["store"] == "key_caches")
        assert caches["status"] == "confirmed" and caches["documents_deleted"] == 1  # B's word, not a timeout
        # B serves none of the erased participant's text, and still the others'.
        assert await listed(dialogue_b) == sorted(texts[1:])
        assert await listed(dialogue_a) == sorted(texts[1:])
