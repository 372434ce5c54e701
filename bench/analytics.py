"""Analytics: event-to-figure lag under a steady answer load, and the query latency of
a dialogue with 100,000 answers.

The analytics service runs as a process (its console script) against a Kafka and a
FerretDB started here. The events are the real contracts (``tenant-registered``,
``dialogue-changed``, ``answer-submitted``) produced onto the real topics, as the
dialogue service would send them: this measures analytics, not the answer path in
front of it (``bench.answers`` measures that).

Lag: answers of new participants at a steady rate; the figures route is polled every
``--poll`` seconds, and an answer's lag runs from just before it was sent to the first
poll whose respondents count includes it (so it carries up to one poll interval of
resolution). Reported with the rate the consumer kept up.

Query: a second dialogue whose 100,000 answers (two questions, 50,000 participants)
are loaded straight into the store with pymongo — records built with the service's own
``fold`` and ``contribution_of``, and the questions' counters as their sum — since
100,000 answers through the consumer would take an hour here (each event's lookup by
ID scans the records on FerretDB, see the README). Then the figures route is timed
over HTTP (what a dashboard asks), and the cross-tab of the two questions, which is
computed per query from the records (the one analysis that is not kept incrementally).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import MongoClient

from bench.enrolment import _percentile, _wait_ready
from bench.erasure import _start_stores
from tessera_analytics.store import (
    EMPTY,
    AnswerState,
    contribution_of,
    counter_moves,
    figures_id_for,
    fold,
    record_id_for,
    stored,
)
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
from tessera_devstack.processes import Server, free_port, spawn, wait_for_kafka

INTERNAL_TOKEN = "bench-internal-token-0123456789"
BATCH = 5000
DEVICES = (("ios", "phone"), ("ios", "tablet"), ("android", "phone"), ("android", "tablet"))


def questions() -> list[QuestionDefinition]:
    return [
        QuestionDefinition(question_id=new_id("q"), kind="single_choice", prompt="Which park?",
                           choices=[ChoiceDefinition(key=k, label=k.upper()) for k in ("a", "b", "c", "d")]),
        QuestionDefinition(question_id=new_id("q"), kind="scale", prompt="How safe?", scale_min=1, scale_max=7),
    ]


class Bench:
    def __init__(self, bootstrap: str, mongo_url: str, url: str) -> None:
        self.bootstrap = bootstrap
        self.url = url
        self.mongo = MongoClient(mongo_url)
        self.db = self.mongo["tessera_analytics"]
        self.tenant_id = new_id("t")
        self.api_key = new_split_secret("tak", self.tenant_id)
        self.http = httpx.AsyncClient(base_url=url, timeout=60,
                                      headers={"Authorization": f"Bearer {self.api_key}"})
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        await self.producer.start()
        await self.send(Topics.TENANT_REGISTERED, TenantRegistered(
            source="bench", tenant_id=self.tenant_id, subject=self.tenant_id,
            data=TenantRegisteredData(region="eu-west", api_key_sha256=secret_hash(self.api_key),
                                      min_group_size=5)), self.tenant_id)

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        await self.http.aclose()
        self.mongo.close()

    async def send(self, topic: str, event, key: str) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(topic, event.model_dump_json().encode(), key=partition_key(key))

    async def dialogue(self, title: str) -> tuple[str, list[QuestionDefinition]]:
        dialogue_id, defined = new_id("d"), questions()
        await self.send(Topics.DIALOGUE_CHANGED, DialogueChanged(
            source="bench", tenant_id=self.tenant_id, subject=dialogue_id,
            data=DialogueChangedData(dialogue_id=dialogue_id, title=title, status="published", revision=1,
                                     questions=defined, changed_at=datetime.now(UTC))), dialogue_id)
        deadline = time.monotonic() + 60
        while (await self.http.get(f"/v1/tenants/{self.tenant_id}/dialogues/{dialogue_id}/figures")).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("analytics never learnt the tenant or the dialogue")
            await asyncio.sleep(0.2)
        return dialogue_id, defined

    async def figures(self, dialogue_id: str) -> dict:
        response = await self.http.get(f"/v1/tenants/{self.tenant_id}/dialogues/{dialogue_id}/figures")
        response.raise_for_status()
        return response.json()

    # --- lag ---------------------------------------------------------------

    async def lag(self, rate: float, seconds: float, poll: float) -> dict[str, float]:
        dialogue_id, (single, _) = await self.dialogue("Lag")
        count = int(rate * seconds)
        sent_at: list[float] = []
        seen: list[tuple[float, int]] = []  # (time, respondents released)
        done = asyncio.Event()

        async def poller() -> None:
            while not done.is_set():
                body = await self.figures(dialogue_id)
                value = body["questions"][0]["respondents"]["value"]
                seen.append((time.perf_counter(), int(value or 0)))
                if value == count:
                    done.set()
                await asyncio.sleep(poll)

        polling = asyncio.create_task(poller())
        rng = random.Random(5)
        started = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            participant_id = new_id("p")
            event = AnswerSubmitted(source="bench", tenant_id=self.tenant_id, subject=participant_id,
                                    data=AnswerSubmittedData(
                                        participant_id=participant_id, dialogue_id=dialogue_id,
                                        question_id=single.question_id, answer_id=new_id("a"),
                                        question_kind="single_choice", choices=[rng.choice("abcd")],
                                        platform="ios", form_factor="phone", submitted_at=datetime.now(UTC)))
            sent_at.append(time.perf_counter())
            await self.send(Topics.ANSWER_SUBMITTED, event, participant_id)
        sending = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), timeout=600)
        await polling
        lags = []
        for i, sent in enumerate(sent_at):
            if i + 1 < 5:
                continue  # below k the count is not released, so not observable
            first = next(t for t, n in seen if n >= i + 1 and t >= sent)
            lags.append(first - sent)
        return {"count": count, "sent_rate": count / sending, "p50": _percentile(lags, 50),
                "p99": _percentile(lags, 99), "max": max(lags), "drained": seen[-1][0] - started}

    # --- query -------------------------------------------------------------

    def load(self, dialogue_id: str, defined: list[QuestionDefinition], participants: int) -> float:
        """``participants`` × 2 answers straight into the records and the counters."""
        started = time.perf_counter()
        rng = random.Random(9)
        records = self.db["answer_contributions"]
        totals = {q.question_id: {key: dict(value) if isinstance(value, dict) else value for key, value in EMPTY.items()}
                  for q in defined}
        batch = []
        for n in range(participants):
            participant_id = f"p_bulk{n}"
            device = "/".join(DEVICES[n % 4])
            for question in defined:
                answer = AnswerState(
                    tenant_id=self.tenant_id, participant_id=participant_id, dialogue_id=dialogue_id,
                    question_id=question.question_id, question_kind=question.kind, answer_id=f"a_bulk{n}_{question.kind}",
                    version=1, live=True,
                    choices=(rng.choice("abcd"),) if question.kind == "single_choice" else (),
                    scale_value=rng.randint(1, 7) if question.kind == "scale" else None,
                    day=f"2026-11-{1 + n % 20:02d}", submitted=True, device=device)
                record = {"_id": record_id_for(question.question_id, participant_id), "tenant_id": self.tenant_id,
                          "dialogue_id": dialogue_id, "question_id": question.question_id,
                          "participant_id": participant_id, "question_kind": question.kind,
                          "answers": {answer.answer_id: fold(None, answer)}}
                counted = contribution_of(record)
                record["counted"] = stored(counted)
                for path, step in counter_moves(EMPTY, counted).items():
                    if "." in path:
                        group, key = path.split(".", 1)
                        totals[question.question_id][group][key] = totals[question.question_id][group].get(key, 0) + step
                    else:
                        totals[question.question_id][path] += step
                batch.append(record)
            if len(batch) >= BATCH:
                records.insert_many(batch)
                batch = []
        if batch:
            records.insert_many(batch)
        for question in defined:
            self.db["question_figures"].update_one(
                {"_id": figures_id_for(self.tenant_id, question.question_id)},
                {"$set": {**totals[question.question_id], "tenant_id": self.tenant_id, "dialogue_id": dialogue_id,
                          "question_id": question.question_id, "inflight": {}}}, upsert=True)
        return time.perf_counter() - started

    async def query(self, dialogue_id: str, defined: list[QuestionDefinition], repeats: int,
                    cross_repeats: int) -> dict[str, float]:
        await self.figures(dialogue_id)  # warm
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            body = await self.figures(dialogue_id)
            times.append(time.perf_counter() - started)
        cross = []
        for _ in range(cross_repeats):
            started = time.perf_counter()
            response = await self.http.get(f"/v1/tenants/{self.tenant_id}/analyses/cross-tab", params={
                "row_question_id": defined[0].question_id, "column_question_id": defined[1].question_id})
            response.raise_for_status()
            cross.append(time.perf_counter() - started)
        return {"p50": _percentile(times, 50), "p99": _percentile(times, 99),
                "respondents": body["questions"][0]["respondents"]["value"],
                "answers": sum(q["answers"]["value"] for q in body["questions"]),
                "cross_p50": _percentile(cross, 50), "cross_max": max(cross),
                "cross_total": response.json()["total"]["value"]}


def _spawn_analytics(servers: list[Server], root: Path, bootstrap: str, mongo_url: str) -> str:
    wait_for_kafka(bootstrap)
    port = free_port()
    command = shutil.which("tessera-analytics", path=str(Path(sys.executable).parent)) or "tessera-analytics"
    env = {**os.environ, "TESSERA_PORT": str(port), "TESSERA_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "TESSERA_MONGO_URL": mongo_url, "TESSERA_INTERNAL_TOKEN": INTERNAL_TOKEN,
           "TESSERA_LOG_LEVEL": "WARNING", "TESSERA_ENVIRONMENT": "test"}
    server = spawn("analytics", [command], root / "analytics.log", port=port, env=env)
    servers.append(server)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(server, f"{url}/readyz")
    return url


async def run(args: argparse.Namespace, bootstrap: str, mongo_url: str, url: str) -> None:
    bench = Bench(bootstrap, mongo_url, url)
    try:
        await bench.start()
        for rate in args.rates:
            lag = await bench.lag(rate, args.seconds, args.poll)
            print(f"lag at {lag['sent_rate']:.0f} answers/s for {lag['count']} answers: p50 {lag['p50'] * 1000:.0f} ms, "
                  f"p99 {lag['p99'] * 1000:.0f} ms, max {lag['max'] * 1000:.0f} ms "
                  f"(polled every {args.poll * 1000:.0f} ms; last counted {lag['drained']:.1f} s after the first send)",
                  flush=True)
        dialogue_id, defined = await bench.dialogue("Query")
        loaded = bench.load(dialogue_id, defined, args.answers // 2)
        print(f"loaded {args.answers:,} answers ({args.answers // 2:,} participants × 2 questions) in {loaded:.0f} s",
              flush=True)
        query = await bench.query(dialogue_id, defined, args.repeats, args.cross_repeats)
        print(f"figures of a {int(query['answers']):,}-answer dialogue over HTTP: p50 {query['p50'] * 1000:.1f} ms, "
              f"p99 {query['p99'] * 1000:.1f} ms ({args.repeats} queries; {int(query['respondents']):,} respondents)",
              flush=True)
        print(f"cross-tab of its two questions ({int(query['cross_total']):,} participants), computed per query from the "
              f"records: p50 {query['cross_p50']:.2f} s, max {query['cross_max']:.2f} s ({args.cross_repeats} queries)",
              flush=True)
    finally:
        await bench.close()


def _rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=_rates, default=_rates("10,25"), help="steady answers/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=40, help="how long each rate is held")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between figure polls")
    parser.add_argument("--answers", type=int, default=100_000, help="answers in the queried dialogue")
    parser.add_argument("--repeats", type=int, default=200, help="figure queries timed")
    parser.add_argument("--cross-repeats", type=int, default=3, help="cross-tab queries timed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tessera-bench-analytics-"))
    servers: list[Server] = []
    try:
        bootstrap, mongo_url = _start_stores(servers, root)
        url = _spawn_analytics(servers, root, bootstrap, mongo_url)
        asyncio.run(run(args, bootstrap, mongo_url, url))
    finally:
        for server in reversed(servers):
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
