"""``make bench``: the group view of 100 texts of 100 participants, with the texts sealed
at rest (issue 12), cold and warm key cache, beside the same dialogue's choice question
(no text, no key) measured in the same run.

Rights, two gateways and two dialogue processes run as processes (their console
scripts) against a Kafka and a PostgreSQL started here (durable settings). Dialogue
"warm" caches data keys (60 s, the default); dialogue "cold" caches none
(``TESSERA_KEY_CACHE_SECONDS=0``), so each of its views fetches the 100 keys from the
rights service in one batch call and opens the 100 texts. Each gateway forwards to one
of them. 100 phones answer a choice and an open-text question; then one phone reads
the group view of each question, one request at a time (``--views`` each, after a
warm-up), through each gateway: p50/p99 of the response time as the phone sees it.

Usage: ``uv run python -m bench.groupview [--participants 100] [--views 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from bench.answers import OPERATOR_KEY, INTERNAL_TOKEN
from bench.answers import _setup as setup_dialogue
from bench.enrolment import _percentile, _wait_ready
from bench.stack import start_stack
from tessera_common.identity import generate_signing_key
from tessera_devstack.processes import free_port

QUESTIONS = [
    {"kind": "single_choice", "prompt": "Which park first?",
     "choices": [{"key": "north", "label": "North"}, {"key": "south", "label": "South"}]},
    {"kind": "open_text", "prompt": "What would you change?"},
]
#: The issue asks for the figure; it sets no target.
PROCESSES = (("rights", "rights", "60"), ("dialogue", "dialogue-warm", "60"), ("dialogue", "dialogue-cold", "0"),
             ("enrolment", "gateway-warm", "60"), ("enrolment", "gateway-cold", "60"))


def _setup(gateway: str, dialogue_url: str, participants: int) -> tuple[dict, list[dict]]:
    """Every phone answers the choice and writes a text of its own."""
    dialogue, phones = setup_dialogue(gateway, dialogue_url, participants, QUESTIONS)
    with httpx.Client(timeout=30) as client:
        for i, phone in enumerate(phones):
            token = {"Authorization": f"Bearer {phone['device_token']}"}
            for question, value in zip(dialogue["questions"], (
                    "north" if i % 3 else "south",
                    f"Meer bankjes bij de vijver en schaduw bij de speeltuin, nummer {i}: {secrets.token_hex(24)}"),
                    strict=True):
                client.put(f"{gateway}/v1/me/dialogues/{dialogue['dialogue_id']}/questions/"
                           f"{question['question_id']}/answer", json={"value": value}, headers=token).raise_for_status()
    return dialogue, phones


async def _views(gateway: str, path: str, token: str, count: int, expect_texts: int) -> list[float]:
    seconds = []
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(count):
            started = time.perf_counter()
            response = await http.get(f"{gateway}{path}")
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
            view = response.json()
            if view["status"] != "ready" or len(view.get("texts", [])) < expect_texts:
                raise RuntimeError(f"the group view is not what was answered: {str(view)[:200]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--views", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tessera-bench-groupview-"))
    os.chmod(root, 0o755)
    stack = start_stack(root)
    try:
        private, public = generate_signing_key()
        ports = {name: free_port() for _, name, _ in PROCESSES}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        servers = {}
        for service, name, cache in PROCESSES:
            server = stack.spawn_service(
                service, ports[name], TESSERA_OPERATOR_KEY=OPERATOR_KEY, TESSERA_INTERNAL_TOKEN=INTERNAL_TOKEN,
                TESSERA_GATEWAY_SIGNING_KEY=private, TESSERA_GATEWAY_PUBLIC_KEY=public,
                TESSERA_RIGHTS_URL=urls["rights"], TESSERA_KEY_CACHE_SECONDS=cache, TESSERA_ENVIRONMENT="test",
                TESSERA_DIALOGUE_URL=urls["dialogue-cold" if name == "gateway-cold" else "dialogue-warm"])
            servers[name] = server
        for name, server in servers.items():
            _wait_ready(server, f"{urls[name]}/readyz")

        dialogue, phones = _setup(urls["gateway-warm"], urls["dialogue-warm"], args.participants)
        token = phones[0]["device_token"]
        choice_q, text_q = (q["question_id"] for q in dialogue["questions"])

        def path(question_id: str) -> str:
            return f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{question_id}/group"

        runs = (("choice question (no text)", "gateway-warm", choice_q, 0),
                (f"{args.participants} texts, cold cache", "gateway-cold", text_q, args.participants - 1),
                (f"{args.participants} texts, warm cache", "gateway-warm", text_q, args.participants - 1))
        results = {}
        for label, gateway, question_id, texts in runs:
            asyncio.run(_views(urls[gateway], path(question_id), token, args.warmup, texts))
            results[label] = asyncio.run(_views(urls[gateway], path(question_id), token, args.views, texts))

        print(f"\nTessera group view bench: {args.participants} participants, {args.views} views each after "
              f"{args.warmup} warm-up, one at a time, {os.cpu_count()} cores, Kafka + PostgreSQL 15 local")
        print("phone → gateway → dialogue (texts sealed at rest; keys from rights in one batch call when not cached)")
        print(f"{'':<32}{'p50 ms':>10}{'p99 ms':>10}")
        for label, seconds in results.items():
            print(f"{label:<32}{_percentile(seconds, 50) * 1000:>10.1f}{_percentile(seconds, 99) * 1000:>10.1f}")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
