"""Erasure completion time, p50/p99, for participants with 10 and 1,000 answers while N
answers are stored, and whether it grows with the total stored.

Rights, dialogue, analytics and enrolment run as processes (their console scripts)
against a Kafka and a FerretDB started here. The measured participants are real: a
tenant, a published dialogue and a code made through the APIs, each participant
enrolled through the gateway and answering the open-text question through it, so each
has a real data key, device and ``answer-submitted`` event. The rest of their answers,
and the background answers of other (synthetic) participants that make up the total,
are bulk-loaded straight into ``tessera_dialogue.answers`` and
``tessera_analytics.answer_contributions`` with pymongo (copies of the documents the
services wrote, under fresh IDs): a million answers through the API would take hours.

For each total, the store is grown to it, then the participants are erased one at a
time, interleaved (10, 1,000, 10, …), the store topped up to the total before each so
that every erasure runs with the same amount stored: a tenant's erasure request to the
rights service (202), then its status polled with the status secret every 50 ms until
``completed``. Completion time runs from just before the request to the first poll
that sees it completed; each store's share is its ``confirmed_at`` − ``received_at``.
Afterwards the participant's answers are checked gone from both collections.

FerretDB 1.24 on SQLite scans a whole collection for every query (an index does not
help), so each store's ``delete_many`` by participant costs in proportion to all it
holds, not to what the participant had: expect the time to grow with the total. The
rights service asks a store that has not confirmed again after 30 s, 60 s, … (its
production back-off), and only that store; a repeat scans that store again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from bench.answers import QUESTIONS, TEXTS
from bench.enrolment import _percentile, _wait_ready
from tessera_common.identity import generate_signing_key
from tessera_devstack.processes import (
    FerretConfig,
    KafkaConfig,
    Server,
    free_port,
    spawn,
    start_ferretdb,
    start_kafka,
    wait_for_kafka,
)

OPERATOR_KEY = "bench-operator-key-0123456789"
INTERNAL_TOKEN = "bench-internal-token-0123456789"
#: Start order: rights first (dialogue asks it for data keys), the gateway last.
SERVICES = ("rights", "dialogue", "analytics", "enrolment")
SIZES = (10, 1000)
BATCH = 5000
POLL_SECONDS = 0.05


class Stack:
    """The running services' URLs, the tenant, the dialogue and the direct store access."""

    def __init__(self, urls: dict[str, str], mongo_url: str) -> None:
        self.urls = urls
        self.http = httpx.Client(timeout=60)
        self.mongo = MongoClient(mongo_url)
        self.answers = self.mongo["tessera_dialogue"]["answers"]
        self.contributions = self.mongo["tessera_analytics"]["answer_contributions"]
        self.tenant: dict[str, Any] = {}
        self.dialogue: dict[str, Any] = {}
        self.code = ""
        #: Answers in ``answers`` (and as many in ``answer_contributions``), as loaded here.
        self.stored = 0
        self.background = 0  # synthetic answers written so far: answer k belongs to p_bulk{k // 10}
        self.template: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.load_seconds = 0.0
        self.loaded = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tenant['api_key']}"}

    def close(self) -> None:
        self.http.close()
        self.mongo.close()

    # --- through the APIs ------------------------------------------------

    def setup(self) -> None:
        gateway = self.urls["enrolment"]
        response = self.http.post(f"{gateway}/v1/tenants", json={"name": "Bench", "region": "eu-west"},
                                  headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
        response.raise_for_status()
        self.tenant = response.json()
        tenant_id = self.tenant["tenant_id"]
        for service, path in (("dialogue", "settings"), ("rights", "retention")):
            deadline = time.monotonic() + 60
            while self.http.get(f"{self.urls[service]}/v1/tenants/{tenant_id}/{path}",
                                headers=self.auth).status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the {service} service never learnt the tenant")
                time.sleep(0.3)
        base = f"{self.urls['dialogue']}/v1/tenants/{tenant_id}/dialogues"
        questions = [q for q in QUESTIONS if q["kind"] in ("open_text", "single_choice")]
        response = self.http.post(base, json={"title": "Bench erasure", "questions": questions}, headers=self.auth)
        response.raise_for_status()
        self.dialogue = response.json()
        self.http.post(f"{base}/{self.dialogue['dialogue_id']}/publish", headers=self.auth).raise_for_status()
        response = self.http.post(f"{gateway}/v1/tenants/{tenant_id}/codes", json={}, headers=self.auth)
        response.raise_for_status()
        self.code = response.json()["code"]

    def enrol_and_answer(self, count: int) -> list[dict[str, Any]]:
        """``count`` phones enrolled through the gateway, each answering the open-text
        question through it; returned once analytics holds each answer's contribution."""
        gateway = self.urls["enrolment"]
        question = next(q for q in self.dialogue["questions"] if q["kind"] == "open_text")
        path = f"{gateway}/v1/me/dialogues/{self.dialogue['dialogue_id']}/questions/{question['question_id']}/answer"
        phones = []
        for i in range(count):
            response = self.http.post(f"{gateway}/v1/enrolments",
                                      json={"code": self.code, "platform": "android", "form_factor": "phone"})
            response.raise_for_status()
            phone = response.json()
            response = self.http.put(path, json={"value": TEXTS[i % len(TEXTS)]},
                                     headers={"Authorization": f"Bearer {phone['device_token']}"})
            if response.status_code not in (200, 201):
                raise RuntimeError(f"answer refused {response.status_code}: {response.text[:200]}")
            phone["answer_id"] = response.json()["answer_id"]
            phones.append(phone)
        self.stored += count
        deadline = time.monotonic() + 60
        for phone in phones:
            while (self.answers.find_one({"_id": phone["answer_id"], "outbox_since": {"$exists": False}}) is None
                   or self.contributions.find_one({"_id": phone["answer_id"]}) is None):
                if time.monotonic() > deadline:
                    raise TimeoutError("an answer never reached analytics (or its event never left dialogue)")
                time.sleep(0.2)
        return phones

    # --- straight into the stores ----------------------------------------

    def _templates(self, answer_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        answer = self.answers.find_one({"_id": answer_id})
        contribution = self.contributions.find_one({"_id": answer_id})
        if answer is None or contribution is None:
            raise RuntimeError(f"answer {answer_id} is missing from a store")
        answer.pop("outbox", None)
        answer.pop("outbox_since", None)
        return answer, contribution

    def _insert(self, templates: tuple[dict[str, Any], dict[str, Any]], rows: list[tuple[str, str]]) -> None:
        """One answer and one contribution per (document ID, participant ID), in batches."""
        answer, contribution = templates
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            batch = rows[start:start + BATCH]
            self.answers.insert_many([{**answer, "_id": _id, "participant_id": p} for _id, p in batch])
            self.contributions.insert_many([{**contribution, "_id": _id, "participant_id": p} for _id, p in batch])
        self.load_seconds += time.perf_counter() - started
        self.loaded += len(rows)
        self.stored += len(rows)

    def fill_participant(self, phone: dict[str, Any], answers: int) -> None:
        """Copies of the participant's real answer (and its contribution) up to ``answers``."""
        templates = self._templates(phone["answer_id"])
        if self.template is None:
            self.template = templates
        pid = phone["participant_id"]
        self._insert(templates, [(f"bulk_{pid}_{i}", pid) for i in range(1, answers)])

    def top_up(self, total: int) -> None:
        """Background answers of synthetic participants (10 each) until ``total`` are stored."""
        missing = total - self.stored
        if missing <= 0 or self.template is None:
            return
        rows = []
        for k in range(self.background, self.background + missing):
            pid = f"p_bulk{k // 10}"
            rows.append((f"bulk_{pid}_{k % 10}", pid))
        self.background += missing
        self._insert(self.template, rows)

    def remaining(self, participant_id: str) -> tuple[int, int]:
        with ThreadPoolExecutor(2) as pool:
            counts = pool.map(lambda c: c.count_documents({"participant_id": participant_id}),
                              (self.answers, self.contributions))
            return tuple(counts)  # type: ignore[return-value]

    # --- the measurement -------------------------------------------------

    def erase(self, participant_id: str, timeout: float) -> tuple[float | None, dict[str, float], int]:
        """Seconds from just before the request to the first poll that sees it
        completed (None on timeout), each store's confirmed_at − received_at, and how
        often the rights service asked the stores again (its ``attempts``)."""
        rights = self.urls["rights"]
        started = time.perf_counter()
        response = self.http.post(f"{rights}/v1/tenants/{self.tenant['tenant_id']}/rights-requests",
                                  json={"kind": "erasure", "participant_id": participant_id}, headers=self.auth)
        if response.status_code != 202:
            raise RuntimeError(f"erasure request answered {response.status_code}: {response.text[:200]}")
        request = response.json()
        status_url = f"{rights}/v1/rights-requests/{request['request_id']}"
        secret = {"Authorization": f"Bearer {request['status_secret']}"}
        while True:
            response = self.http.get(status_url, headers=secret)
            response.raise_for_status()
            body = response.json()
            if body["status"] == "completed":
                elapsed = time.perf_counter() - started
                break
            if time.perf_counter() - started > timeout:
                return None, {}, body.get("attempts", 0)
            time.sleep(POLL_SECONDS)
        received = datetime.fromisoformat(body["received_at"])
        stores = {p["store"]: (datetime.fromisoformat(p["confirmed_at"]) - received).total_seconds()
                  for p in body["progress"]}
        return elapsed, stores, body["attempts"]


def _start_stores(servers: list[Server], root: Path) -> tuple[str, str]:
    """Kafka and FerretDB, appended to ``servers`` as each starts: bootstrap, Mongo URL."""
    kafka = start_kafka(KafkaConfig(root / "kafka"))
    servers.append(kafka)
    ferret = start_ferretdb(FerretConfig(root / "ferretdb"))
    servers.append(ferret)
    return f"127.0.0.1:{kafka.port}", f"mongodb://127.0.0.1:{ferret.port}/"


def _spawn_services(servers: list[Server], root: Path, bootstrap: str, mongo_url: str) -> dict[str, str]:
    wait_for_kafka(bootstrap)
    private, public = generate_signing_key()
    ports = {service: free_port() for service in SERVICES}
    urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
    bin_dir = Path(sys.executable).parent
    for service in SERVICES:
        command = shutil.which(f"tessera-{service}", path=str(bin_dir)) or f"tessera-{service}"
        env = {
            **os.environ, "TESSERA_PORT": str(ports[service]), "TESSERA_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TESSERA_MONGO_URL": mongo_url, "TESSERA_OPERATOR_KEY": OPERATOR_KEY,
            "TESSERA_INTERNAL_TOKEN": INTERNAL_TOKEN, "TESSERA_GATEWAY_SIGNING_KEY": private,
            "TESSERA_GATEWAY_PUBLIC_KEY": public, "TESSERA_ENROLMENT_URL": urls["enrolment"],
            "TESSERA_DIALOGUE_URL": urls["dialogue"], "TESSERA_RIGHTS_URL": urls["rights"],
            "TESSERA_ANALYTICS_URL": urls["analytics"], "TESSERA_LOG_LEVEL": "WARNING",
            "TESSERA_ENVIRONMENT": "test",
        }
        if service == "rights":
            env.update(TESSERA_RETRY_CHECK_SECONDS="1")  # back-off as in production: 30 s, 60 s, …
        server = spawn(service, [command], root / f"{service}.log", port=ports[service], env=env)
        servers.append(server)
        _wait_ready(server, f"{urls[service]}/readyz")
    return urls


def _totals(text: str) -> list[int]:
    totals = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if not totals or totals[0] < 1:
        raise argparse.ArgumentTypeError("totals are positive integers, e.g. 10000,100000,1000000")
    return totals


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--totals", type=_totals, default=_totals("10000,100000"),
                        help="answers stored while erasing, comma-separated (e.g. 10000,100000,1000000)")
    parser.add_argument("--participants", type=int, default=5, help="erased per size (10 and 1,000 answers) per total")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one erasure may take")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tessera-bench-erasure-"))
    servers: list[Server] = []
    stack: Stack | None = None
    #: (total, answers per participant) → completion seconds; per store → seconds; stored at each erasure
    times: dict[tuple[int, int], list[float]] = {}
    per_store: dict[tuple[int, int], dict[str, list[float]]] = {}
    held: dict[tuple[int, int], list[int]] = {}
    timeouts: dict[tuple[int, int], int] = {}
    retries: dict[tuple[int, int], int] = {}
    bench_started = time.perf_counter()
    try:
        bootstrap, mongo_url = _start_stores(servers, root)
        urls = _spawn_services(servers, root, bootstrap, mongo_url)
        stack = Stack(urls, mongo_url)
        stack.setup()

        # Warm-up, not counted: the first erasure of a tenant creates its notice topic
        # and the consumers' first fetches of the erasure topic.
        warmup = stack.enrol_and_answer(1)[0]
        stack.template = stack._templates(warmup["answer_id"])
        elapsed, _, _ = stack.erase(warmup["participant_id"], args.timeout)
        stack.stored -= 1
        print(f"warm-up erasure (1 answer, nothing else stored): "
              f"{'timed out' if elapsed is None else f'{elapsed:.2f} s'}", flush=True)

        for total in args.totals:
            phones = stack.enrol_and_answer(2 * args.participants)
            sizes = {p["participant_id"]: SIZES[i % 2] for i, p in enumerate(phones)}  # 10, 1000, 10, …
            for phone in phones:
                stack.fill_participant(phone, sizes[phone["participant_id"]])
            stack.top_up(total)
            counted = (stack.answers.count_documents({}), stack.contributions.count_documents({}))
            if counted != (stack.stored, stack.stored):
                if not timeouts:
                    raise RuntimeError(f"expected {stack.stored} answers in each store, found {counted}")
                # An erasure that timed out may have finished since: go on from what is there.
                print(f"after a timed-out erasure the stores hold {counted[0]:,} answers and "
                      f"{counted[1]:,} contributions", flush=True)
                stack.stored = counted[0]
            print(f"total {total:,}: {stack.stored:,} answers stored in each collection "
                  f"(loaded {stack.loaded:,} × 2 documents so far at "
                  f"{stack.loaded / max(stack.load_seconds, 1e-9):,.0f} per collection/s)", flush=True)
            for phone in phones:
                pid, size = phone["participant_id"], sizes[phone["participant_id"]]
                key = (total, size)
                stack.top_up(total)
                held.setdefault(key, []).append(stack.stored)
                elapsed, stores, attempts = stack.erase(pid, args.timeout)
                retries[key] = retries.get(key, 0) + attempts
                if elapsed is None:
                    timeouts[key] = timeouts.get(key, 0) + 1
                    print(f"  {size:>5}-answer participant: no completion within {args.timeout:.0f} s; "
                          "going on", flush=True)
                    stack.stored = stack.answers.count_documents({})
                    continue
                left = stack.remaining(pid)
                if left != (0, 0):
                    raise RuntimeError(f"erasure completed but {left[0]} answers and {left[1]} contributions "
                                       f"of the participant are still stored")
                stack.stored -= size
                times.setdefault(key, []).append(elapsed)
                for store, seconds in stores.items():
                    per_store.setdefault(key, {}).setdefault(store, []).append(seconds)
                slowest = max(stores.items(), key=lambda item: item[1])
                print(f"  {size:>5}-answer participant erased in {elapsed:6.2f} s "
                      f"(slowest store {slowest[0]} {slowest[1]:.2f} s, asked again {attempts}×)", flush=True)

        cores = os.cpu_count()
        print(f"\nTessera erasure bench: {args.participants} participants with 10 and {args.participants} "
              f"with 1,000 answers erased one at a time per total stored, {cores} cores, "
              "Kafka + FerretDB (SQLite) local")
        print("tenant request → rights (data key destroyed) → Kafka → enrolment, dialogue, analytics delete "
              "and confirm → completed; polled every 50 ms")
        print(f"{'stored answers':>16}{'answers/participant':>21}{'n':>4}{'p50 s':>9}{'p99 s':>9}{'max s':>9}"
              f"{'retries':>9}   slowest store (median s)")
        for key in sorted(held):
            values = times.get(key, [])
            missed = f"   ({timeouts[key]} timed out)" if timeouts.get(key) else ""
            if not values:
                print(f"{_span(held[key]):>16}{key[1]:>21,}{0:>4}{'—':>9}{'—':>9}{'—':>9}{retries.get(key, 0):>9}{missed}")
                continue
            medians = {store: statistics.median(s) for store, s in per_store[key].items()}
            store, seconds = max(medians.items(), key=lambda item: item[1])
            print(f"{_span(held[key]):>16}{key[1]:>21,}{len(values):>4}{_percentile(values, 50):>9.2f}"
                  f"{_percentile(values, 99):>9.2f}{max(values):>9.2f}{retries.get(key, 0):>9}   {store} {seconds:.2f}{missed}")
        print("retries: how often, summed over the row, the rights service re-sent the erasure to stores "
              "that had not confirmed (after 30 s, then doubling); a repeat goes to those stores only")
        print("each store's median confirmed_at − received_at, s:")
        for key in sorted(per_store):
            print(f"  {key[0]:>10,} stored, {key[1]:>5,} answers: " + ", ".join(
                f"{store} {statistics.median(s):.2f}" for store, s in sorted(per_store[key].items())))
        smallest, largest = args.totals[0], args.totals[-1]
        if smallest != largest:
            parts = []
            for size in SIZES:
                low, high = times.get((smallest, size)), times.get((largest, size))
                if low and high:
                    ratio = _percentile(high, 50) / _percentile(low, 50)
                    verdict = "grew" if ratio >= 1.25 else "shrank" if ratio <= 0.8 else "about flat"
                    parts.append(f"{size:,} answers ×{ratio:.2f} ({verdict})")
            print(f"p50 from {smallest:,} to {largest:,} stored: " + ("; ".join(parts) or "not measured"))
        print(f"bench wall time {time.perf_counter() - bench_started:.0f} s")
    finally:
        if stack is not None:
            stack.close()
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
