"""An organisation's system reading its own Tessera topic: a small, complete example.

It reads ``tenant.<tenant_id>.events.v1`` (see ``docs/asyncapi.json``, or ``/asyncapi``
on the gateway), opens the texts of answers with the participants' data keys fetched
in one call per batch from the rights service, and forgets a participant when an
erasure notice says so. It keeps no key: a text is opened when it is read, so once a
participant is erased (their key destroyed) nothing of theirs opens again, here or in
any copy this system kept of the ciphertext.

It connects with a Kafka credential the platform issued to the tenant
(``POST /v1/tenants/{tenant_id}/kafka-credentials`` on the gateway, with the tenant's
API key): SASL/SCRAM-SHA-512, allowed to read topics and use consumer groups that start
with ``tenant.<tenant_id>.``, and nothing else.

Needs aiokafka, httpx and cryptography. Run it as::

    python tenant_consumer.py --bootstrap 127.0.0.1:9092 --tenant t_... --api-key tak_... \
        --kafka-user tenant-t_...-kc_... --kafka-password ... --rights http://127.0.0.1:8003

``tests/integration/test_tenant_stream.py`` runs it against the real broker and services.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class TenantStream:
    """One tenant's topic, read by a consumer group of the tenant's own: its name
    (``group``) is appended to ``tenant.<tenant_id>.``, the prefix the credential's ACLs
    allow."""

    def __init__(self, bootstrap: str, tenant_id: str, api_key: str, rights_url: str, group: str,
                 *, username: str, password: str, from_start: bool = True) -> None:
        self.tenant_id = tenant_id
        self.topic = f"tenant.{tenant_id}.events.v1"
        self.consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=bootstrap, group_id=f"tenant.{tenant_id}.{group}",
            security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=username, sasl_plain_password=password,
            enable_auto_commit=False, auto_offset_reset="earliest" if from_start else "latest")
        self.rights = httpx.AsyncClient(base_url=rights_url, headers={"Authorization": f"Bearer {api_key}"},
                                        timeout=10)

    async def __aenter__(self) -> TenantStream:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.rights.aclose()

    async def batch(self, timeout_ms: int = 1000) -> list[dict[str, Any]]:
        """The next messages as events, each answer's text opened (``data.text_opened``:
        the text, or None when its participant's key is gone). Commit after handling."""
        records = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=500)
        events = [json.loads(r.value) for rs in records.values() for r in rs]
        sealed = {e["data"]["participant_id"] for e in events
                  if e["type"] == "io.tessera.tenant.answer.v1" and e["data"].get("text")}
        keys = await self.keys(sorted(sealed)) if sealed else {}
        for event in events:
            if event["type"] == "io.tessera.tenant.answer.v1" and event["data"].get("text"):
                event["data"]["text_opened"] = open_text(event["data"]["text"],
                                                         keys.get(event["data"]["participant_id"]),
                                                         event["data"]["participant_id"])
        return events

    async def keys(self, participant_ids: list[str]) -> dict[str, bytes]:
        """The data keys that still exist, up to 500 a call."""
        found: dict[str, bytes] = {}
        for start in range(0, len(participant_ids), 500):
            response = await self.rights.post(f"/v1/tenants/{self.tenant_id}/data-keys:batchGet",
                                              json={"participant_ids": participant_ids[start:start + 500]})
            response.raise_for_status()
            found |= {k["participant_id"]: base64.b64decode(k["key"]) for k in response.json()["keys"]}
        return found

    async def commit(self) -> None:
        await self.consumer.commit()


def open_text(sealed: dict[str, str], key: bytes | None, participant_id: str) -> str | None:
    """AES-256-GCM with the associated data the platform binds every answer text to."""
    if key is None:
        return None
    try:
        return AESGCM(key).decrypt(base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ciphertext"]),
                                   f"tessera:{participant_id}:answer-text".encode()).decode()
    except InvalidTag:
        return None


async def run(stream: TenantStream, on_answer: Callable[[dict], Awaitable[None]],
              forget: Callable[[str, str | None], Awaitable[None]]) -> None:
    """Handle events for ever: answers to ``on_answer``; an erasure notice to ``forget``
    (participant, dialogue or None), which must delete every copy this system keeps."""
    while True:
        for event in await stream.batch():
            if event["type"] == "io.tessera.tenant.answer.v1":
                await on_answer(event["data"])
            elif event["type"] == "io.tessera.tenant.participant-erasure.v1":
                await forget(event["data"]["participant_id"], event["data"].get("dialogue_id"))
        await stream.commit()


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--kafka-user", required=True)
    parser.add_argument("--kafka-password", required=True)
    parser.add_argument("--rights", required=True)
    args = parser.parse_args()

    async def on_answer(data: dict) -> None:
        print(data["answer_id"], data["change"], data.get("text_opened") or data.get("choices") or data.get("scale_value"))

    async def forget(participant_id: str, dialogue_id: str | None) -> None:
        print("erase", participant_id, dialogue_id or "everything")

    async with TenantStream(args.bootstrap, args.tenant, args.api_key, args.rights, "example",
                            username=args.kafka_user, password=args.kafka_password) as s:
        await run(s, on_answer, forget)


if __name__ == "__main__":
    asyncio.run(_main())
