"""Every service runs correctly as several replicas against one database and one broker
(DESIGN.md invariant 9).

Two gateways, two dialogue processes and two analytics processes (one consumer group,
so the partitions are split between them) share one database per service. Participants
answer through one gateway and change the same answers through both at once. At the
end, each answer's version equals the number of changes that succeeded (no lost
update), every version of every answer reached Kafka (no event lost), and the figures
analytics releases equal what the participants' answers really are (none applied twice).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from support.kafka import eventually, read_to_end
from tessera_common.events import Topics
from tessera_common.identity import generate_signing_key
from support.processes import spawn_service, wait_ready
from tessera_devstack.processes import Server, free_port

pytestmark = [pytest.mark.connected, pytest.mark.e2e]

OPERATOR_KEY = "replicas-operator-key-0123456789"
INTERNAL_TOKEN = "replicas-internal-token-" + os.urandom(8).hex()
#: Processes per service: (name, replica).
REPLICAS = (("rights", 0), ("dialogue", 0), ("dialogue", 1), ("analytics", 0), ("analytics", 1),
            ("enrolment", 0), ("enrolment", 1))
DEVICES = 12


@pytest.fixture(scope="module")
def replicas(stack, tmp_path_factory) -> Iterator[dict[tuple[str, int], str]]:
    logs = tmp_path_factory.mktemp("replicas")
    private, public = generate_signing_key()
    databases = {service: stack.database(service) for service in {name for name, _ in REPLICAS}}
    ports = {replica: free_port() for replica in REPLICAS}
    urls = {replica: f"http://127.0.0.1:{port}" for replica, port in ports.items()}
    servers: dict[tuple[str, int], Server] = {}
    try:
        for service, index in REPLICAS:
            servers[(service, index)] = spawn_service(
                f"{service}-{index}", service, ports[(service, index)], logs,
                kafka_bootstrap=stack.kafka_bootstrap, database=databases[service],
                TESSERA_OPERATOR_KEY=OPERATOR_KEY, TESSERA_GATEWAY_SIGNING_KEY=private,
                TESSERA_GATEWAY_PUBLIC_KEY=public, TESSERA_INTERNAL_TOKEN=INTERNAL_TOKEN,
                TESSERA_LOG_LEVEL="WARNING",
                # Gateway i forwards to dialogue replica i; everything else to replica 0.
                TESSERA_DIALOGUE_URL=urls[("dialogue", index % 2)], TESSERA_RIGHTS_URL=urls[("rights", 0)],
                TESSERA_ENROLMENT_URL=urls[("enrolment", 0)], TESSERA_ANALYTICS_URL=urls[("analytics", 0)],
            )
        for replica, server in servers.items():
            wait_ready(server, urls[replica])
        yield urls
    finally:
        for server in servers.values():
            server.stop()


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_two_replicas_of_dialogue_and_analytics_lose_no_update_and_count_exactly(replicas, stack):
    async with httpx.AsyncClient(timeout=30) as http:
        gateways = [replicas[("enrolment", 0)], replicas[("enrolment", 1)]]
        dialogues = [replicas[("dialogue", 0)], replicas[("dialogue", 1)]]
        tenant = (await http.post(f"{gateways[0]}/v1/tenants", json={"name": "Replicas", "region": "eu-west"},
                                  headers=_bearer(OPERATOR_KEY))).json()
        tid, auth = tenant["tenant_id"], _bearer(tenant["api_key"])

        async def known_to_both_dialogues():
            return all([(await http.get(f"{url}/v1/tenants/{tid}/settings", headers=auth)).status_code == 200
                        for url in dialogues])

        assert await eventually(known_to_both_dialogues, timeout=60)
        settings = await http.put(f"{dialogues[1]}/v1/tenants/{tid}/settings", json={"min_group_size": 3},
                                  headers=auth)
        assert settings.status_code == 200, settings.text
        created = await http.post(f"{dialogues[0]}/v1/tenants/{tid}/dialogues", headers=auth, json={
            "title": "Replicas",
            "questions": [
                {"kind": "single_choice", "prompt": "Which?",
                 "choices": [{"key": "a", "label": "A"}, {"key": "b", "label": "B"}, {"key": "c", "label": "C"}]},
                {"kind": "scale", "prompt": "How much?", "scale": {"min": 1, "max": 5}},
            ]})
        assert created.status_code == 201, created.text
        dialogue = created.json()
        did = dialogue["dialogue_id"]
        choice_q, scale_q = (q["question_id"] for q in dialogue["questions"])
        assert (await http.post(f"{dialogues[1]}/v1/tenants/{tid}/dialogues/{did}/publish",
                                headers=auth)).status_code == 200
        code = (await http.post(f"{gateways[1]}/v1/tenants/{tid}/codes", json={}, headers=auth)).json()["code"]
        devices = []
        for i in range(DEVICES):
            enrolled = await http.post(f"{gateways[i % 2]}/v1/enrolments",
                                       json={"code": code, "platform": "ios", "form_factor": "phone"})
            assert enrolled.status_code == 201, enrolled.text
            devices.append(enrolled.json())

        choices = ["a", "b", "c"]
        succeeded: Counter[str] = Counter()  # answer_id -> changes that succeeded
        answer_ids: dict[tuple[int, str], str] = {}

        def path(question_id: str) -> str:
            return f"/v1/me/dialogues/{did}/questions/{question_id}/answer"

        async def put(i: int, gateway: int, question_id: str, value) -> None:
            response = await http.put(f"{gateways[gateway]}{path(question_id)}", json={"value": value},
                                      headers=_bearer(devices[i]["device_token"]))
            assert response.status_code in (200, 201), response.text
            answer_ids[(i, question_id)] = response.json()["answer_id"]
            succeeded[response.json()["answer_id"]] += 1

        async def participant(i: int) -> None:
            await put(i, 0, choice_q, choices[i % 3])
            # The same answer changed through both replicas at once.
            await asyncio.gather(put(i, 0, choice_q, choices[(i + 1) % 3]), put(i, 1, choice_q, choices[(i + 2) % 3]))
            await put(i, 1, scale_q, i % 5 + 1)
            await put(i, 0, scale_q, (i + 2) % 5 + 1)
            if i % 4 == 0:
                withdrawn = await http.delete(f"{gateways[1]}{path(choice_q)}",
                                              headers=_bearer(devices[i]["device_token"]))
                assert withdrawn.status_code == 204, withdrawn.text
                succeeded[answer_ids[(i, choice_q)]] += 1

        await asyncio.gather(*(participant(i) for i in range(DEVICES)))

        # The truth, as each participant reads their own answers back.
        final: dict[str, dict] = {}
        for i, device in enumerate(devices):
            mine = (await http.get(f"{gateways[i % 2]}/v1/me/answers", headers=_bearer(device["device_token"])))
            assert mine.status_code == 200, mine.text
            for answer in mine.json()["answers"]:
                final[answer["answer_id"]] = answer

        # No lost update: every change that succeeded is one version of its answer.
        for (i, question_id), answer_id in answer_ids.items():
            withdrawn = question_id == choice_q and i % 4 == 0
            assert (answer_id not in final) == withdrawn
            if not withdrawn:
                assert final[answer_id]["version"] == succeeded[answer_id], (i, question_id)

        # No event lost: every version of every answer reached Kafka.
        seen: dict[str, set[int]] = {}

        async def every_version_published():
            records = (await read_to_end(stack.kafka, Topics.ANSWER_SUBMITTED)
                       + await read_to_end(stack.kafka, Topics.ANSWER_CHANGED))
            seen.clear()
            for record in records:
                data = (record["value"] or {}).get("data") or {}
                if data.get("answer_id") in succeeded:
                    seen.setdefault(data["answer_id"], set()).add(data["version"])
            complete = all(seen.get(a) == set(range(1, n + 1)) for a, n in succeeded.items())
            return complete or None

        try:
            await eventually(every_version_published, timeout=60)
        except TimeoutError:
            missing = {a: sorted(set(range(1, n + 1)) - seen.get(a, set())) for a, n in succeeded.items()}
            extra = {a: sorted(seen.get(a, set()) - set(range(1, n + 1))) for a, n in succeeded.items()}
            raise AssertionError(f"versions not on Kafka: { {a: m for a, m in missing.items() if m} }; "
                                 f"versions beyond the answer's: { {a: e for a, e in extra.items() if e} }") from None

        # Exact figures, from either analytics replica.
        truth_choices = Counter(a["value"] for a in final.values() if a["question_id"] == choice_q)
        truth_scale = Counter(a["value"] for a in final.values() if a["question_id"] == scale_q)

        async def figures_match(url: str):
            response = await http.get(f"{url}/v1/tenants/{tid}/dialogues/{did}/figures", headers=auth)
            if response.status_code != 200:
                return None
            by_id = {q["question_id"]: q for q in response.json()["questions"]}
            choice, scale = by_id[choice_q], by_id[scale_q]
            if (choice["respondents"]["value"], scale["respondents"]["value"]) != (
                    sum(truth_choices.values()), sum(truth_scale.values())):
                return None
            released_choices = {f["key"]: f["value"] for f in choice["choices"] if not f["suppressed"]}
            released_scale = {f["key"]: f["value"] for f in scale["scale"]["histogram"] if not f["suppressed"]}
            if any(value != truth_choices.get(key, 0) for key, value in released_choices.items()):
                return None
            if any(value != truth_scale.get(int(key), 0) for key, value in released_scale.items()):
                return None
            return released_choices or released_scale or None

        for url in (replicas[("analytics", 0)], replicas[("analytics", 1)]):
            assert await eventually(lambda url=url: figures_match(url), timeout=60)
