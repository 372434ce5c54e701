"""``make bench``: answers per second end to end, and what screening costs per answer.

End to end means what a phone's answer goes through: HTTP to the gateway (device token
checked, assertion signed) → the dialogue service (assertion verified, answer
validated, personal-data screening, the participant's data key from the rights service
for text, one store write carrying the event) → Kafka (published in the background).
Gateway, dialogue and rights run as processes (their console scripts) against a Kafka
and a PostgreSQL started here (durable settings); the load comes from this process at a
fixed concurrency, beside the bare baseline (one row inserted by a FastAPI endpoint
through asyncpg, the same server and driver) measured in the same run,
each phone answering a choice, a scale and a text question, after a warm-up on other
phones. Delivery is read back from the topic after the load (so the reader takes no
core from it) and timed by the records' own timestamps (set by the relay's producer as
it sends): how long after the load's start, and after its last response, the last of
this run's ``answer-submitted`` events went onto the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from bench.enrolment import _percentile, _wait_ready
from tessera_common.events import Topics
from tessera_common.identity import generate_signing_key
from bench.stack import start_stack
from tessera_common.kafka_access import KafkaEndpoint
from tessera_devstack.processes import Server, free_port, spawn
from tessera_dialogue.domain import Question, apply_pii_policy, validate_answer

OPERATOR_KEY = "bench-operator-key-0123456789"
INTERNAL_TOKEN = "bench-internal-token-0123456789"
SERVICES = ("enrolment", "dialogue", "rights")
TEXTS = [
    "More benches along the river, and shade near the playground.",
    "Mail me at jan.jansen@example.nl if you want to know more.",
    "De fietsenstalling bij het station is altijd vol.",
    "Bedre belysning på stien om aftenen, tak.",
    "Call me on +31 6 12345678, I live at Kerkstraat 12.",
    "Open the library on Sundays for students.",
]
QUESTIONS = [
    {"kind": "single_choice", "prompt": "Which park first?",
     "choices": [{"key": "north", "label": "North"}, {"key": "south", "label": "South"}]},
    {"kind": "scale", "prompt": "How safe do you feel?", "scale": {"min": 1, "max": 5}},
    {"kind": "open_text", "prompt": "Why?"},
]


def _answers_for(phones: list[dict], dialogue: dict) -> list[tuple[str, str, object]]:
    """(device token, path, value): every phone answers every question."""
    work = []
    base = f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions"
    for i, phone in enumerate(phones):
        for question in dialogue["questions"]:
            value = {"single_choice": ("north", "south")[i % 2], "scale": 1 + i % 5,
                     "open_text": TEXTS[i % len(TEXTS)]}[question["kind"]]
            work.append((phone["device_token"], f"{base}/{question['question_id']}/answer", value))
    return work


async def _load(gateway: str, work: list[tuple[str, str, object]], concurrency: int
                ) -> tuple[float, list[float], set[str], float, float]:
    """answers/s, latencies, answer IDs, and the wall-clock (``time.time``) start and end."""
    latencies: list[float] = []
    answer_ids: set[str] = set()
    queue: asyncio.Queue[tuple[str, str, object]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=gateway, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                token, path, value = queue.get_nowait()
                started = time.perf_counter()
                response = await client.put(path, json={"value": value}, headers={"Authorization": f"Bearer {token}"})
                latencies.append(time.perf_counter() - started)
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
                answer_ids.add(response.json()["answer_id"])

        wall_started, started = time.time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, wall_finished = time.perf_counter() - started, time.time()
    return len(work) / elapsed, latencies, answer_ids, wall_started, wall_finished


async def _last_event_time(kafka: KafkaEndpoint, answer_ids: set[str], timeout: float = 120) -> float:
    """Wall-clock time (the record timestamp) of the latest of ``answer_ids`` on the topic,
    reading it from the beginning until every one of them has been seen."""
    import json

    consumer = AIOKafkaConsumer(Topics.ANSWER_SUBMITTED, **kafka.aiokafka(), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    missing = set(answer_ids)
    latest_ms = 0
    deadline = time.perf_counter() + timeout
    try:
        while missing:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(missing)} answer-submitted events never arrived")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    answer_id = json.loads(record.value)["data"]["answer_id"]
                    if answer_id in missing:
                        missing.discard(answer_id)
                        latest_ms = max(latest_ms, record.timestamp)
        return latest_ms / 1000
    finally:
        await consumer.stop()


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds a process and its children (PostgreSQL's backends)
    have used so far (Linux ``/proc``; this process when ``pid`` is None); NaN where
    that cannot be read."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        children = Path(f"/proc/{pid}/task/{pid}/children")
        own = ticks / os.sysconf("SC_CLK_TCK")
        return own + sum(_cpu_seconds(int(child)) for child in children.read_text().split())
    except (OSError, ValueError, IndexError):
        return float("nan")


def _cpu_all(servers: list[Server]) -> dict[str, float]:
    return {**{s.name: _cpu_seconds(s.process.pid) for s in servers}, "load generator": _cpu_seconds()}


async def _baseline(url: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    from bench.enrolment import _load as load

    return await load(url, lambda i: {}, total, concurrency)


def _screening_cost(repetitions: int) -> tuple[list[float], list[float]]:
    """Seconds per answer: screening alone, and the whole per-answer rule work."""
    question = Question("q", "open_text", "Why?")
    screening, rules = [], []
    for _ in range(repetitions):
        for text in TEXTS:
            started = time.perf_counter()
            apply_pii_policy(text, "warn")
            screening.append(time.perf_counter() - started)
            started = time.perf_counter()
            answer = validate_answer(question, text)
            apply_pii_policy(answer.text or "", "warn")
            rules.append(time.perf_counter() - started)
    return screening, rules


def _setup(gateway: str, dialogue_url: str, phones: int, questions: list[dict] | None = None,
           ) -> tuple[dict, list[dict]]:
    """A tenant, a published dialogue of ``questions`` and ``phones`` phones enrolled in it."""
    tenant = httpx.post(f"{gateway}/v1/tenants", json={"name": "Bench", "region": "eu-west"},
                        headers={"Authorization": f"Bearer {OPERATOR_KEY}"}).json()
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    deadline = time.monotonic() + 60
    while httpx.get(f"{dialogue_url}/v1/tenants/{tenant['tenant_id']}/settings", headers=auth).status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("the dialogue service never learnt the tenant")
        time.sleep(0.3)
    base = f"{dialogue_url}/v1/tenants/{tenant['tenant_id']}/dialogues"
    dialogue = httpx.post(base, json={"title": "Bench", "questions": questions or QUESTIONS}, headers=auth).json()
    httpx.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=auth).raise_for_status()
    code = httpx.post(f"{gateway}/v1/tenants/{tenant['tenant_id']}/codes", json={}, headers=auth).json()["code"]
    enrolled = []
    with httpx.Client(timeout=30) as client:
        for _ in range(phones):
            response = client.post(f"{gateway}/v1/enrolments",
                                   json={"code": code, "platform": "android", "form_factor": "phone"})
            response.raise_for_status()
            enrolled.append(response.json())
    return dialogue, enrolled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phones", type=int, default=200, help="phones measured; each answers 3 questions")
    parser.add_argument("--warmup-phones", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--screening-repetitions", type=int, default=2000)
    args = parser.parse_args()

    screening, rules = _screening_cost(args.screening_repetitions)

    root = Path(tempfile.mkdtemp(prefix="tessera-bench-answers-"))
    os.chmod(root, 0o755)
    stack = start_stack(root)
    servers = stack.servers
    try:
        private, public = generate_signing_key()
        ports = {service: free_port() for service in SERVICES}
        urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
        for service in reversed(SERVICES):  # rights first: dialogue needs it
            stack.spawn_service(
                service, ports[service], TESSERA_OPERATOR_KEY=OPERATOR_KEY, TESSERA_INTERNAL_TOKEN=INTERNAL_TOKEN,
                TESSERA_GATEWAY_SIGNING_KEY=private, TESSERA_GATEWAY_PUBLIC_KEY=public,
                TESSERA_DIALOGUE_URL=urls["dialogue"], TESSERA_RIGHTS_URL=urls["rights"],
                TESSERA_ENVIRONMENT="test")
        baseline_port = free_port()
        servers.append(spawn(
            "baseline", [sys.executable, "-m", "bench.baseline_app"], root / "baseline.log", port=baseline_port,
            env={**os.environ, "BENCH_PORT": str(baseline_port),
                 "BENCH_DATABASE_URL": stack.database("baseline")["database_owner_url"]}))
        for service in SERVICES:
            _wait_ready(next(s for s in servers if s.name == service), f"{urls[service]}/readyz")
        _wait_ready(servers[-1], f"http://127.0.0.1:{baseline_port}/docs")

        dialogue, phones = _setup(urls["enrolment"], urls["dialogue"], args.warmup_phones + args.phones)
        warmup, measured = phones[: args.warmup_phones], phones[args.warmup_phones:]
        asyncio.run(_load(urls["enrolment"], _answers_for(warmup, dialogue), args.concurrency))
        work = _answers_for(measured, dialogue)
        cpu_before = _cpu_all(servers)
        rate, latencies, answer_ids, started, finished = asyncio.run(
            _load(urls["enrolment"], work, args.concurrency))
        cpu = {name: seconds - cpu_before[name] for name, seconds in _cpu_all(servers).items()}
        if len(answer_ids) != len(work):
            raise RuntimeError(f"{len(work)} answers sent but {len(answer_ids)} distinct answer IDs returned")
        last_event = asyncio.run(_last_event_time(stack.kafka, answer_ids))
        baseline_url = f"http://127.0.0.1:{baseline_port}/insert"
        asyncio.run(_baseline(baseline_url, 200, args.concurrency))
        baseline_rate, baseline_latencies = asyncio.run(_baseline(baseline_url, len(work), args.concurrency))

        print(f"\nTessera answers bench: {len(answer_ids)} answers ({len(measured)} phones × 3 questions: "
              f"choice, scale, text) after {len(warmup) * 3} warm-up, concurrency {args.concurrency}, "
              f"{os.cpu_count()} cores, Kafka + PostgreSQL 15 local")
        print("phone → gateway → dialogue (+ rights for the text's data key) → store → Kafka")
        print(f"{'':<24}{'answers/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'baseline insert':<24}{baseline_rate:>10.1f}{_percentile(baseline_latencies, 50) * 1000:>10.1f}"
              f"{_percentile(baseline_latencies, 99) * 1000:>10.1f}")
        print(f"{'answer through gateway':<24}{rate:>10.1f}{_percentile(latencies, 50) * 1000:>10.1f}"
              f"{_percentile(latencies, 99) * 1000:>10.1f}")
        print(f"answers / baseline throughput: {rate / baseline_rate:.2f}")
        print(f"all {len(answer_ids)} answer-submitted events on Kafka {last_event - started:.2f} s after the "
              f"load's start ({len(answer_ids) / (last_event - started):.1f} events/s); the last one "
              f"{abs(last_event - finished):.2f} s {'after' if last_event >= finished else 'before'} "
              "the last response (record timestamps, ms)")
        print(f"CPU per answer during the load ({finished - started:.1f} s wall, "
              f"{sum(cpu.values()) / (finished - started) / (os.cpu_count() or 1):.0%} of {os.cpu_count()} cores): "
              + ", ".join(f"{name} {seconds / len(work) * 1000:.1f} ms"
                          for name, seconds in sorted(cpu.items(), key=lambda item: -item[1])))
        print(f"\nper-answer rule cost in-process ({len(screening)} texts of {len(TEXTS)} kinds, warn policy):")
        for name, values in (("screening", screening), ("validate + screening", rules)):
            print(f"  {name:<22} mean {statistics.fmean(values) * 1e6:7.1f} µs   "
                  f"p99 {_percentile(values, 99) * 1e6:7.1f} µs")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
