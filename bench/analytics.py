"""Analytics on PostgreSQL: event-to-figure lag under a steady answer load, and what a
dashboard waits for on a 100,000-answer dialogue (its figures and a cross-tab).

The analytics service runs as ``--replicas`` processes (its console script; default
two: two replicas in one consumer group, sharing the three partitions) against a Kafka
and a PostgreSQL (durable settings) started here. Events are the real contracts
(``tenant-registered``, ``dialogue-changed``, ``answer-submitted``) produced onto the
real topics, as the dialogue service would send them: this measures analytics, not the
answer path in front of it (``bench.answers`` measures that).

Figures are not kept as counters (see ``tessera_analytics.store``): a dialogue's
figures and a cross-tab are GROUP BYs over ``answer_contributions``, one row per
answer, so their cost grows with the answers read, and an answer counts as soon as its
event's transaction commits.

Query: a dialogue of ``--answers`` answers (a quarter of that in participants, each
answering a single-choice, a scale, a multiple-choice and an idea question), with an
equal-sized second tenant beside it, COPYed into ``answer_contributions`` as the
database's owner (which bypasses row-level security), then ANALYZEd; its definition
comes through Kafka like any other. Timed over HTTP: the dialogue's figures route, and
the cross-tab of its single-choice by its scale question, p50/p99 of repeated reads.

Lag: answers of new participants at a steady rate, each rate held ``--seconds`` on a
fresh dialogue of that tenant; the figures route is polled every ``--poll`` seconds
(the next poll starts 50 ms after the previous one started, or when it answered if
that took longer). An answer's lag runs from just before its send to the answer of the
first poll whose respondents count includes it: the i-th answer sent counts once the
count reaches i. That is exact while answers commit in the order sent; across
partitions they need not, and then this pairs sends and commits in order, which keeps
the mean exact but can understate the tail by the reordering (milliseconds, against
the poll's 50 ms resolution). The first k-1 answers are left out (below k the count is
suppressed). Printed with the rate the producer kept, how long after the last send the
last answer counted, and the CPU each process used per answer (``/proc``).

Each figure is printed beside its target (from the issue); nothing is asserted.

Usage: ``uv run python -m bench.analytics [--rates 50,100,200] [--seconds 25]
[--replicas 2] [--answers 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.answers import _cpu_seconds
from bench.enrolment import _percentile, _wait_ready
from bench.stack import BenchStack, start_stack
from tessera_analytics.store import CONSUMER
from tessera_common.events import (
    AnswerSubmitted,
    AnswerSubmittedData,
    ChoiceDefinition,
    DialogueChanged,
    DialogueChangedData,
    QuestionDefinition,
    TenantRegistered,
    TenantRegisteredData,
    Topics,
    partition_key,
)
from tessera_common.secrets import new_id, new_split_secret, secret_hash
from tessera_common.kafka_access import KafkaEndpoint
from tessera_devstack.processes import Server, free_port

INTERNAL_TOKEN = "bench-internal-token-0123456789"
K = 5
DEVICES = ("ios/phone", "android/phone", "ios/tablet", "android/tablet")
#: The issue's targets, printed beside the figures.
LAG_TARGET = 1.0  # p99 at 200 answers/s
CROSS_TAB_TARGET = 0.5  # p99


def questions() -> list[QuestionDefinition]:
    """A single-choice, a scale, a multiple-choice and an idea question."""
    return [
        QuestionDefinition(question_id=new_id("q"), kind="single_choice", prompt="Which park?",
                           choices=[ChoiceDefinition(key=k, label=k.upper()) for k in "abcde"]),
        QuestionDefinition(question_id=new_id("q"), kind="scale", prompt="How safe?", scale_min=1, scale_max=7),
        QuestionDefinition(question_id=new_id("q"), kind="multiple_choice", prompt="What is missing?",
                           choices=[ChoiceDefinition(key=k, label=k.upper()) for k in "vwxyz"]),
        QuestionDefinition(question_id=new_id("q"), kind="idea", prompt="Your idea?"),
    ]


def answer_rows(tenant_id: str, dialogue_id: str, defined: list[QuestionDefinition], participants: int,
                rng: random.Random) -> list[tuple]:
    """``participants`` × one answer to each question, as ``answer_contributions`` rows
    (the columns in the migration's order)."""
    rows = []
    for n in range(participants):
        participant_id = f"p_{tenant_id}_{n}"
        device = rng.choice(DEVICES)
        day = date(2026, 11, 1 + rng.randrange(20))
        for q in defined:
            choices = {"single_choice": [rng.choice("abcde")],
                       "multiple_choice": sorted(rng.sample("vwxyz", rng.randint(1, 3)))}.get(q.kind, [])
            scale = rng.randint(1, 7) if q.kind == "scale" else None
            rows.append((tenant_id, q.question_id, participant_id, f"a_{participant_id}_{q.kind}", dialogue_id,
                         q.kind, 1, True, choices, scale, day, True, device))
    return rows


def _quantiles(samples: list[float]) -> str:
    return (f"p50 {_percentile(samples, 50) * 1000:.1f} ms, p99 {_percentile(samples, 99) * 1000:.1f} ms, "
            f"max {max(samples) * 1000:.1f} ms")


def _verdict(value: float, target: float) -> str:
    return f"target < {target * 1000:.0f} ms: {'met' if value < target else 'MISSED'}"


class Bench:
    def __init__(self, stack: BenchStack, urls: list[str]) -> None:
        self.stack = stack
        self.tenant_id = new_id("t")
        self.api_key = new_split_secret("tak", self.tenant_id)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        # Polls and timed reads go to the replicas in turn (a dashboard behind a load
        # balancer); each read is one figures query whichever answers it.
        self.clients = [httpx.AsyncClient(base_url=url, timeout=60, headers=headers) for url in urls]
        self.turn = 0
        self.producer: AIOKafkaProducer | None = None

    def client(self) -> httpx.AsyncClient:
        self.turn += 1
        return self.clients[self.turn % len(self.clients)]

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(**self.stack.kafka.aiokafka(), acks="all", linger_ms=0)
        await self.producer.start()
        await self.send(Topics.TENANT_REGISTERED, TenantRegistered(
            source="bench", tenant_id=self.tenant_id, subject=self.tenant_id,
            data=TenantRegisteredData(region="eu-west", api_key_sha256=secret_hash(self.api_key),
                                      min_group_size=K)), self.tenant_id)

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        for client in self.clients:
            await client.aclose()

    async def send(self, topic: str, event, key: str) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(topic, event.model_dump_json().encode(), key=partition_key(key))

    async def dialogue(self, title: str) -> tuple[str, list[QuestionDefinition]]:
        """A published dialogue, sent as ``dialogue-changed``; back once every replica
        serves its figures."""
        dialogue_id, defined = new_id("d"), questions()
        await self.send(Topics.DIALOGUE_CHANGED, DialogueChanged(
            source="bench", tenant_id=self.tenant_id, subject=dialogue_id,
            data=DialogueChangedData(dialogue_id=dialogue_id, title=title, status="published", revision=1,
                                     questions=defined, changed_at=datetime.now(UTC))), dialogue_id)
        deadline = time.monotonic() + 60
        for client in self.clients:
            while (await client.get(self.figures_path(dialogue_id))).status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError("analytics never learnt the tenant or the dialogue")
                await asyncio.sleep(0.2)
        return dialogue_id, defined

    def figures_path(self, dialogue_id: str) -> str:
        return f"/v1/tenants/{self.tenant_id}/dialogues/{dialogue_id}/figures"

    async def figures(self, dialogue_id: str) -> dict:
        response = await self.client().get(self.figures_path(dialogue_id))
        response.raise_for_status()
        return response.json()

    async def cross_tab(self, rows: str, columns: str) -> dict:
        response = await self.client().get(f"/v1/tenants/{self.tenant_id}/analyses/cross-tab",
                                           params={"row_question_id": rows, "column_question_id": columns})
        response.raise_for_status()
        return response.json()

    # --- query -------------------------------------------------------------

    async def load(self, dialogue_id: str, defined: list[QuestionDefinition], participants: int) -> float:
        """The dialogue's answers, and as many of another tenant's, COPYed as the owner."""
        rng = random.Random(1)
        started = time.perf_counter()
        owner = await asyncpg.connect(self.stack.database("analytics")["database_owner_url"])
        try:
            for tenant_id in (self.tenant_id, "t_bench_other"):
                await owner.copy_records_to_table(
                    "answer_contributions", records=answer_rows(tenant_id, dialogue_id, defined, participants, rng))
            await owner.execute("ANALYZE answer_contributions")
        finally:
            await owner.close()
        return time.perf_counter() - started

    async def query(self, dialogue_id: str, defined: list[QuestionDefinition], repeats: int) -> dict:
        single, scale = defined[0].question_id, defined[1].question_id
        body, table = await self.figures(dialogue_id), await self.cross_tab(single, scale)  # warm
        times: dict[str, list[float]] = {"figures": [], "cross": []}
        for _ in range(repeats):
            started = time.perf_counter()
            body = await self.figures(dialogue_id)
            times["figures"].append(time.perf_counter() - started)
            started = time.perf_counter()
            table = await self.cross_tab(single, scale)
            times["cross"].append(time.perf_counter() - started)
        return {**times, "answers": sum(q["answers"]["value"] for q in body["questions"]),
                "respondents": body["questions"][0]["respondents"]["value"], "cross_total": table["total"]["value"]}

    # --- lag ---------------------------------------------------------------

    async def lag(self, rate: float, seconds: float, poll: float, servers: list[Server]) -> dict:
        dialogue_id, (single, *_) = await self.dialogue(f"Lag at {rate:g}/s")
        assert self.producer is not None
        count = int(rate * seconds)
        sent_at: list[float] = []
        seen: list[tuple[float, int]] = []  # (when a poll answered, respondents it released)
        done = asyncio.Event()

        async def poller() -> None:
            next_poll = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(max(0.0, next_poll - time.perf_counter()))
                next_poll = time.perf_counter() + poll
                body = await self.figures(dialogue_id)
                value = body["questions"][0]["respondents"]["value"]
                seen.append((time.perf_counter(), int(value or 0)))
                if value == count:
                    done.set()

        polling = asyncio.create_task(poller())
        cpu_before = {s.name: _cpu_seconds(s.process.pid) for s in servers} | {"bench": _cpu_seconds()}
        rng = random.Random(5)
        acks = []
        started = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            participant_id = new_id("p")
            event = AnswerSubmitted(source="bench", tenant_id=self.tenant_id, subject=participant_id,
                                    data=AnswerSubmittedData(
                                        participant_id=participant_id, dialogue_id=dialogue_id,
                                        question_id=single.question_id, answer_id=new_id("a"),
                                        question_kind="single_choice", choices=[rng.choice("abcde")],
                                        platform="ios", form_factor="phone", submitted_at=datetime.now(UTC)))
            payload = event.model_dump_json().encode()
            sent_at.append(time.perf_counter())
            # Not awaiting the broker's ack here keeps the rate steady; every ack is
            # checked below.
            acks.append(await self.producer.send(Topics.ANSWER_SUBMITTED, payload, key=partition_key(participant_id)))
        sending = time.perf_counter() - started
        await asyncio.gather(*acks)
        await asyncio.wait_for(done.wait(), timeout=600)
        await polling
        cpu = {name: seconds - cpu_before[name] for name, seconds in
               ({s.name: _cpu_seconds(s.process.pid) for s in servers} | {"bench": _cpu_seconds()}).items()}
        wall = seen[-1][0] - started
        lags = []
        for i, sent in enumerate(sent_at):
            if i + 1 < K:
                continue  # below k the count is suppressed, so not observable
            first = next(t for t, n in seen if n >= i + 1 and t >= sent)
            lags.append(first - sent)
        polls = [b[0] - a[0] for a, b in zip(seen, seen[1:], strict=False)]
        return {"count": count, "sent_rate": count / sending, "lags": lags, "drained": seen[-1][0] - sent_at[-1],
                "poll_p50": _percentile(polls, 50), "cpu": cpu, "wall": wall}


def _spawn(stack: BenchStack, replicas: int) -> tuple[list[Server], list[str]]:
    ports = [free_port() for _ in range(replicas)]
    servers = [stack.spawn_service("analytics", port, TESSERA_INTERNAL_TOKEN=INTERNAL_TOKEN,
                                   TESSERA_ENVIRONMENT="test") for port in ports]
    for n, server in enumerate(servers):
        server.name = f"analytics {n + 1}"
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for server, url in zip(servers, urls, strict=True):
        _wait_ready(server, f"{url}/readyz")
    return servers, urls


async def _settled(kafka: KafkaEndpoint, quiet: float = 5.0, timeout: float = 180.0) -> int:
    """Wait until analytics' consumer group has been Stable with the same members for
    ``quiet`` seconds: every subscriber of every replica is a member of the one group,
    and each joins with a rebalance that pauses them all. Returns the members."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka())
    await admin.start()
    try:
        deadline, since, last = time.monotonic() + timeout, time.monotonic(), None
        while time.monotonic() < deadline:
            group = (await admin.describe_consumer_groups([CONSUMER]))[0].groups[0]
            state = (group[2], len(group[5]))
            if state != last or state[0] != "Stable":
                since, last = time.monotonic(), state
            elif time.monotonic() - since >= quiet:
                return state[1]
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the consumer group never settled: {last}")
    finally:
        await admin.close()


async def run(args: argparse.Namespace, stack: BenchStack, servers: list[Server], urls: list[str]) -> None:
    bench = Bench(stack, urls)
    try:
        await bench.start()
        members = await _settled(stack.kafka)
        print(f"\nTessera analytics bench: {args.replicas} analytics replica(s) in one consumer group "
              f"({members} consumers, one per topic per replica; three partitions a topic), "
              f"{os.cpu_count()} cores, Kafka + PostgreSQL 15 local (durable)", flush=True)

        participants = args.answers // 4
        dialogue_id, defined = await bench.dialogue("Query")
        loaded = await bench.load(dialogue_id, defined, participants)
        print(f"COPYed {participants * 4:,} answers ({participants:,} participants × 4 questions: single choice, "
              f"scale, multiple choice, idea) and as many of another tenant's, ANALYZEd, in {loaded:.1f} s", flush=True)
        query = await bench.query(dialogue_id, defined, args.repeats)
        p99 = _percentile(query["cross"], 99)
        print(f"figures of the {int(query['answers']):,}-answer dialogue over HTTP: {_quantiles(query['figures'])} "
              f"({args.repeats} reads; {int(query['respondents']):,} respondents)", flush=True)
        print(f"cross-tab single choice × scale ({int(query['cross_total']):,} participants) over HTTP: "
              f"{_quantiles(query['cross'])} ({args.repeats} reads; p99 {_verdict(p99, CROSS_TAB_TARGET)})",
              flush=True)

        print(f"event-to-figure lag, answers of new participants, figures polled every {args.poll * 1000:.0f} ms:",
              flush=True)
        for rate in args.rates:
            lag = await bench.lag(rate, args.seconds, args.poll, stack.servers)
            p99 = _percentile(lag["lags"], 99)
            target = f"; p99 {_verdict(p99, LAG_TARGET)} at 200/s" if rate >= 200 else ""
            print(f"  {rate:g}/s (sent {lag['sent_rate']:.1f}/s, {lag['count']:,} answers): {_quantiles(lag['lags'])}"
                  f"{target}; last counted {lag['drained']:.2f} s after the last send; polls every "
                  f"{lag['poll_p50'] * 1000:.0f} ms (p50)", flush=True)
            print("    CPU per answer: " + ", ".join(
                f"{name} {seconds / lag['count'] * 1000:.2f} ms" for name, seconds in lag["cpu"].items())
                + f" ({sum(lag['cpu'].values()) / lag['wall'] / (os.cpu_count() or 1):.0%} of the cores)",
                flush=True)
    finally:
        await bench.close()


def _rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=_rates, default=_rates("50,100,200"), help="steady answers/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=25, help="how long each rate is held")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between figure polls")
    parser.add_argument("--replicas", type=int, default=2, help="analytics processes in one consumer group")
    parser.add_argument("--answers", type=int, default=100_000, help="answers in the queried dialogue")
    parser.add_argument("--repeats", type=int, default=50, help="reads of the figures and of the cross-tab timed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tessera-bench-analytics-"))
    os.chmod(root, 0o755)
    stack = start_stack(root)
    try:
        servers, urls = _spawn(stack, args.replicas)
        asyncio.run(run(args, stack, servers, urls))
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    main()
