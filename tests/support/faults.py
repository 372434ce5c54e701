"""Faults under load (issue 13): a process killed, the broker or the store restarted,
while phones answer and a tenant asks for erasures.

Shared by ``tests/e2e/test_faults.py`` (each fault once, asserting) and
``bench/faults.py`` (more trials, the fault table). Nothing here is a mock: the four
services run as processes (their console scripts) on a Kafka and a PostgreSQL of their
own, each service a static group member named after itself (as ``make run`` runs
them), so a restart takes its place in the group again at once.

One trial, on a fresh tenant:

1. a published dialogue of choice questions; phones enrolled; two phones answer and
   are later erased;
2. a steady load of answers through the gateway from a background thread, each
   phone's answer sent with an ``Idempotency-Key`` and sent again, like an app would,
   until the gateway accepts it (2xx): a refused request (503, a closed port, a
   timeout) is not an accepted answer;
3. the fault, in the middle of the load: one erasure is asked for just before it and
   one while it lasts (the tenant, retrying until rights takes it), then the process,
   broker or store is started again on the same port and data;
4. after the load: every accepted answer must be in dialogue's store once (version 1),
   on Kafka at least once, and in analytics' rows once with its value, and the
   figures analytics releases must equal the accepted answers' choices; both
   erasures must complete with a receipt, and the erased devices stop working.

Time to recover is from the restart until an answer accepted after it has been counted
by analytics and every erasure asked for has completed: the platform whole again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tessera_common.events import Topics
from tessera_common.identity import generate_signing_key
from tessera_devstack.postgres import PostgresConfig, PostgresServer, start_postgres
from tessera_common.kafka_access import KafkaCredentials, KafkaEndpoint
from tessera_devstack.processes import KafkaConfig, Server, free_port, provision_kafka, start_kafka, wait_for_kafka

from .kafka import read_to_end
from .processes import spawn_service, wait_ready

SERVICES = ("rights", "dialogue", "analytics", "enrolment")
#: Every fault a trial can inject: ``kill <service>`` (SIGKILL, then the same command
#: again), ``restart broker`` and ``restart store`` (stopped, then started on the same
#: port and data directory).
FAULTS = tuple(f"kill {service}" for service in ("enrolment", "dialogue", "rights", "analytics")) + (
    "restart broker", "restart store")
OPERATOR_KEY = "faults-operator-key-0123456789"


def _principal(credentials: KafkaCredentials) -> dict[str, str]:
    return {"kafka_username": credentials.username, "kafka_password": credentials.password.get_secret_value()}
CHOICES = ("a", "b", "c")
QUESTIONS = 4


class Platform:
    """Kafka, PostgreSQL and the four services as processes, each one restartable in
    place: same command, environment, port and data."""

    def __init__(self, root: Path, *, durable: bool) -> None:
        self.root = root
        self.logs = root / "logs"
        self.kafka_config = KafkaConfig(root / "kafka")
        self.postgres_config = PostgresConfig(root / "postgres", durable=durable)
        self.kafka: Server | None = None
        #: The broker as its administrator, and each service's principal (made once).
        self.kafka_admin: KafkaEndpoint | None = None
        self.principals: dict[str, KafkaCredentials] = {}
        self.postgres: PostgresServer | None = None
        self.ports = {service: free_port() for service in SERVICES}
        self.servers: dict[str, Server] = {}
        self._settings: dict[str, dict[str, Any]] = {}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_config.port}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def owner_url(self, service: str) -> str:
        return self._settings[service]["database"]["database_owner_url"]

    def start(self) -> None:
        self.start_broker()
        self.start_store()
        private, public = generate_signing_key()
        internal_token = "faults-internal-token-" + os.urandom(8).hex()
        for service in SERVICES:
            self._settings[service] = dict(
                database={**self.postgres.database(service), **_principal(self.principals[service])},
                TESSERA_OPERATOR_KEY=OPERATOR_KEY, TESSERA_GATEWAY_SIGNING_KEY=private,
                TESSERA_GATEWAY_PUBLIC_KEY=public, TESSERA_INTERNAL_TOKEN=internal_token,
                **{f"TESSERA_{name.upper()}_URL": self.url(name) for name in SERVICES},
                TESSERA_CONSUMER_INSTANCE_ID=service, TESSERA_LOG_LEVEL="WARNING",
                # A store that has not confirmed an erasure is asked again after 2 s
                # (30 s by default): the trials' erasures are timed in seconds.
                TESSERA_RETRY_BASE_SECONDS="2", TESSERA_RETRY_CHECK_SECONDS="0.5",
                # A killed dialogue process cannot confirm dropping the keys it cached: an
                # erasure then waits for its bound (+5 s). 10 s rather than 60 keeps a
                # trial in seconds; the waiting is the same.
                TESSERA_KEY_CACHE_SECONDS="10",
            )
            self._spawn(service)
        for service in SERVICES:
            wait_ready(self.servers[service], self.url(service))

    def _spawn(self, service: str) -> None:
        self.servers[service] = spawn_service(
            service, service, self.ports[service], self.logs, kafka_bootstrap=self.bootstrap,
            **self._settings[service])

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown, no LeaveGroup, no commit; whatever it held is lost."""
        server = self.servers[service]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()

    def restart(self, service: str) -> None:
        self._spawn(service)
        wait_ready(self.servers[service], self.url(service))

    def start_broker(self) -> None:
        self.kafka = start_kafka(self.kafka_config)
        if self.kafka_admin is None:
            self.kafka_admin, self.principals = provision_kafka(self.kafka_config)
        else:  # restarted: its users and ACLs are in its metadata already
            wait_for_kafka(self.bootstrap, self.kafka_admin.credentials)

    def stop_broker(self) -> None:
        self.kafka.stop(timeout=60)

    def start_store(self) -> None:
        self.postgres = start_postgres(self.postgres_config)

    def stop_store(self) -> None:
        self.postgres.stop()

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres.discard()
        if self.kafka is not None:
            self.kafka.stop()


@dataclass
class Tenant:
    tenant_id: str
    api_key: str
    dialogue_id: str
    question_ids: list[str]
    phones: list[dict[str, str]]
    #: Phones that answered before the load and are erased during the fault.
    erased: list[dict[str, str]]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _eventually(call, ok, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        response = call()
        if ok(response):
            return response
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up: {response.status_code} {response.text[:300]}")
        time.sleep(0.2)


def new_tenant(platform: Platform, phones: int) -> Tenant:
    """A tenant every service knows, a published dialogue of choice questions that
    analytics knows, ``phones`` enrolled phones, and two more that have answered."""
    gateway, dialogue, rights, analytics = (platform.url(s) for s in ("enrolment", "dialogue", "rights", "analytics"))
    with httpx.Client(timeout=30) as http:
        created = http.post(f"{gateway}/v1/tenants", json={"name": "Faults", "region": "eu-west"},
                            headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
        created.raise_for_status()
        tenant_id, api_key = created.json()["tenant_id"], created.json()["api_key"]
        auth = {"Authorization": f"Bearer {api_key}"}
        for url in (f"{dialogue}/v1/tenants/{tenant_id}/settings", f"{rights}/v1/tenants/{tenant_id}/retention",
                    f"{analytics}/v1/tenants/{tenant_id}/stats/devices"):
            _eventually(lambda url=url: http.get(url, headers=auth), lambda r: r.status_code == 200)
        base = f"{dialogue}/v1/tenants/{tenant_id}/dialogues"
        made = http.post(base, headers=auth, json={"title": "Faults", "questions": [
            {"kind": "single_choice", "prompt": f"Question {i}?",
             "choices": [{"key": key, "label": key.upper()} for key in CHOICES]} for i in range(QUESTIONS)]})
        made.raise_for_status()
        dialogue_id = made.json()["dialogue_id"]
        question_ids = [q["question_id"] for q in made.json()["questions"]]
        http.post(f"{base}/{dialogue_id}/publish", headers=auth).raise_for_status()
        _eventually(lambda: http.get(f"{analytics}/v1/tenants/{tenant_id}/dialogues/{dialogue_id}/figures",
                                     headers=auth), lambda r: r.status_code == 200)
        code = http.post(f"{gateway}/v1/tenants/{tenant_id}/codes", json={}, headers=auth).json()["code"]
        enrolled = []
        for _ in range(phones + 2):
            response = http.post(f"{gateway}/v1/enrolments",
                                 json={"code": code, "platform": "android", "form_factor": "phone"})
            response.raise_for_status()
            enrolled.append(response.json())
        erased = enrolled[phones:]
        for phone in erased:
            http.put(f"{gateway}/v1/me/dialogues/{dialogue_id}/questions/{question_ids[0]}/answer",
                     json={"value": "a"}, headers={"Authorization": f"Bearer {phone['device_token']}"}
                     ).raise_for_status()
    return Tenant(tenant_id, api_key, dialogue_id, question_ids, enrolled[:phones], erased)


@dataclass(frozen=True)
class Accepted:
    answer_id: str
    question_id: str
    value: str
    at: float  # time.monotonic() when the gateway's 2xx arrived


@dataclass
class Load:
    """A steady load of answers through the gateway, in a thread with its own event
    loop, so the fault is injected from plain code beside it. Every answer is sent
    until accepted: a phone whose request failed sends the same answer again, with the
    same Idempotency-Key, so a request that was applied but whose response was lost
    is answered from the store instead of applied twice."""

    gateway: str
    tenant: Tenant
    rate: float
    concurrency: int = 16
    accepted: dict[str, Accepted] = field(default_factory=dict)
    #: Requests not accepted (status or error name → how many), all sent again.
    refusals: Counter[str] = field(default_factory=Counter)
    #: Answers refused for good (a 4xx other than 429): a bug, never retried.
    rejected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="answer-load", daemon=True)
        self._stopping = threading.Event()
        self._done = None

    def start(self) -> None:
        self._thread.start()
        self._done = self.submit(self._run())

    def submit(self, coroutine):
        """Run ``coroutine`` on the load's loop; a concurrent future of its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self, timeout: float = 180.0) -> None:
        """No new answers; wait until every one begun is accepted."""
        self._stopping.set()
        try:
            self._done.result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def _slots(self):
        base = f"/v1/me/dialogues/{self.tenant.dialogue_id}/questions"
        n = 0
        for phone in self.tenant.phones:
            for question_id in self.tenant.question_ids:
                yield (phone["device_token"], question_id, f"{base}/{question_id}/answer", CHOICES[n % len(CHOICES)],
                       f"load-{n:06d}")
                n += 1

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.gateway, limits=limits, timeout=10) as client:
            in_flight = asyncio.Semaphore(self.concurrency)
            tasks = set()
            due = time.monotonic()
            for slot in self._slots():
                if self._stopping.is_set():
                    break
                await in_flight.acquire()
                task = asyncio.create_task(self._answer(client, *slot))
                task.add_done_callback(lambda _: in_flight.release())
                tasks.add(task)
                # Steady pace; after an outage at most a second's answers at once.
                due = max(due + 1 / self.rate, time.monotonic() - 1)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await asyncio.gather(*tasks)

    async def _answer(self, client: httpx.AsyncClient, token: str, question_id: str, path: str, value: str,
                      key: str) -> None:
        backoff = 0.1
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        while True:
            try:
                response = await client.put(path, json={"value": value}, headers=headers)
            except httpx.HTTPError as exc:
                self.refusals[type(exc).__name__] += 1
            else:
                if response.is_success:
                    answer_id = response.json()["answer_id"]
                    self.accepted[answer_id] = Accepted(answer_id, question_id, value, time.monotonic())
                    return
                self.refusals[str(response.status_code)] += 1
                if response.status_code < 500 and response.status_code != 429:
                    self.rejected.append(f"{response.status_code} {response.text[:200]}")
                    return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)


async def request_erasure(rights: str, tenant: Tenant, participant_id: str) -> str:
    """The tenant asks rights to erase a participant, again and again until rights has
    taken the request (202, or 200: the one already open); a 409 after a retry means
    an earlier attempt was taken and has completed already. Returns its request ID."""
    body = {"kind": "erasure", "participant_id": participant_id}
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                response = await client.post(f"{rights}/v1/tenants/{tenant.tenant_id}/rights-requests",
                                             json=body, headers=tenant.auth)
                if response.status_code in (200, 202):
                    return response.json()["request_id"]
                if response.status_code == 409:
                    return response.json()["detail"]["message"].rsplit(" ", 1)[-1]
                if response.status_code < 500:
                    raise AssertionError(f"erasure refused: {response.status_code} {response.text[:300]}")
            await asyncio.sleep(0.2)


async def erasure_status(client: httpx.AsyncClient, rights: str, tenant: Tenant, request_id: str) -> str | None:
    with contextlib.suppress(httpx.HTTPError):
        response = await client.get(f"{rights}/v1/tenants/{tenant.tenant_id}/rights-requests/{request_id}",
                                    headers=tenant.auth)
        if response.status_code == 200:
            return response.json()["status"]
    return None


async def time_to_recover(platform: Platform, load: Load, since: float, erasures: list) -> tuple[float, float]:
    """Seconds from ``since`` (the restart) until an answer accepted after it is
    counted by analytics, and until every erasure in ``erasures`` (futures of
    request IDs) has completed."""
    analytics, rights = platform.owner_url("analytics"), platform.url("rights")

    async def counting() -> float:
        connection = None  # one connection for every look (each new one costs the store a process)
        try:
            while True:
                fresh = [a.answer_id for a in list(load.accepted.values()) if a.at >= since][:50]
                try:
                    connection = connection or await asyncpg.connect(analytics, timeout=2)
                    if fresh and await connection.fetchval(
                            "SELECT count(*) FROM answer_contributions WHERE tenant_id = $1"
                            " AND answer_id = ANY($2::text[])", load.tenant.tenant_id, fresh):
                        return time.monotonic() - since
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    connection = None
                await asyncio.sleep(0.1)
        finally:
            if connection is not None:
                await connection.close()

    async def erased() -> float:
        async with httpx.AsyncClient(timeout=5) as client:
            for erasure in erasures:
                request_id = await asyncio.wrap_future(erasure)
                while await erasure_status(client, rights, load.tenant, request_id) != "completed":
                    await asyncio.sleep(0.1)
        return time.monotonic() - since

    counted, completed = await asyncio.gather(counting(), erased())
    return counted, completed


@dataclass
class Trial:
    fault: str
    accepted: int
    #: Accepted answers found exactly once, with their value, in analytics' rows.
    counted: int
    #: Accepted answers missing from dialogue's store, Kafka or analytics, by where.
    missing: dict[str, list[str]]
    #: Rows or versions that no accepted answer explains, by where.
    unexpected: dict[str, list[str]]
    figures_exact: bool
    erasures_requested: int
    erasures_completed: int
    #: From the restart until an answer accepted after it was counted by analytics,
    #: and until every erasure had completed (inf: not within the trial's patience).
    counting_seconds: float
    erasures_seconds: float
    refusals: Counter[str]
    rejected: list[str]

    @property
    def recover_seconds(self) -> float:
        """Until the platform was whole again: counting, and every erasure done."""
        return max(self.counting_seconds, self.erasures_seconds)

    @property
    def exact(self) -> bool:
        return (self.counted == self.accepted and not any(self.missing.values())
                and not any(self.unexpected.values()) and self.figures_exact and not self.rejected)


def _fault(platform: Platform, fault: str):
    """What injects ``fault``, and what restores it."""
    action, target = fault.split(" ", 1)
    if action == "kill":
        return (lambda: platform.kill(target)), (lambda: platform.restart(target))
    return {"broker": (platform.stop_broker, platform.start_broker),
            "store": (platform.stop_store, platform.start_store)}[target]


def inject(platform: Platform, fault: str, down_seconds: float, during=lambda: None) -> float:
    """Inject ``fault``, call ``during()`` while it lasts, restore; returns the
    ``time.monotonic()`` of the restart."""
    stop, start = _fault(platform, fault)
    stop()
    during()
    time.sleep(down_seconds)
    restarted = time.monotonic()
    start()
    return restarted


def run_trial(platform: Platform, fault: str, *, rate: float = 20, before_seconds: float = 2.0,
              down_seconds: float = 2.0, after_seconds: float = 3.0, settle_timeout: float = 90.0) -> Trial:
    """One fault under load on a fresh tenant; what was accepted, what was counted."""
    phones = int(rate * (before_seconds + down_seconds + after_seconds + 30) / QUESTIONS) + 1
    tenant = new_tenant(platform, phones)
    rights = platform.url("rights")
    load = Load(platform.url("enrolment"), tenant, rate)
    load.start()
    erasures = []
    try:
        time.sleep(before_seconds)
        erasures.append(load.submit(request_erasure(rights, tenant, tenant.erased[0]["participant_id"])))
        time.sleep(0.05)  # on its way when the fault strikes
        restarted = inject(platform, fault, down_seconds, during=lambda: erasures.append(
            load.submit(request_erasure(rights, tenant, tenant.erased[1]["participant_id"]))))
        recovery = load.submit(time_to_recover(platform, load, restarted, erasures))
        time.sleep(after_seconds)
        try:
            recovered = recovery.result(settle_timeout)
        except TimeoutError:
            recovery.cancel()
            recovered = (float("inf"), float("inf"))  # not whole again: the checks below say what is missing
    finally:
        load.stop()
    return asyncio.run(_verify(platform, fault, load, [e.result() for e in erasures], recovered,
                               settle_timeout))


async def _rows(owner_url: str, query: str, *args) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(owner_url)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def _verify(platform: Platform, fault: str, load: Load, request_ids: list[str], recovered: tuple[float, float],
                  timeout: float) -> Trial:
    tenant, accepted = load.tenant, load.accepted
    expected = {a.answer_id: a for a in accepted.values()}
    erased_ids = {p["participant_id"] for p in tenant.erased}

    # Erasures: completed with a receipt, and the erased phone's device no longer works.
    completed = 0
    async with httpx.AsyncClient(timeout=10) as client:
        rights = platform.url("rights")
        deadline = time.monotonic() + timeout
        for request_id, phone in zip(request_ids, tenant.erased, strict=True):
            while (status := await erasure_status(client, rights, tenant, request_id)) != "completed":
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            receipt = await client.get(f"{rights}/v1/tenants/{tenant.tenant_id}/rights-requests/{request_id}/receipt",
                                       headers=tenant.auth)
            device = await client.get(f"{platform.url('enrolment')}/v1/me",
                                      headers={"Authorization": f"Bearer {phone['device_token']}"})
            completed += status == "completed" and receipt.status_code == 200 and device.status_code == 401

        # Analytics: one row per accepted answer, version 1, its value; nothing else.
        async def analytics_rows():
            return await _rows(platform.owner_url("analytics"),
                               "SELECT answer_id, participant_id, version, choices, live FROM answer_contributions"
                               " WHERE tenant_id = $1 AND dialogue_id = $2", tenant.tenant_id, tenant.dialogue_id)

        deadline = time.monotonic() + timeout
        rows = await analytics_rows()
        while {r["answer_id"] for r in rows} != set(expected) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            rows = await analytics_rows()
        per_answer = Counter(r["answer_id"] for r in rows)
        counted = sum(1 for r in rows if r["answer_id"] in expected and per_answer[r["answer_id"]] == 1
                      and r["version"] == 1 and r["live"] and r["choices"] == [expected[r["answer_id"]].value])
        missing: dict[str, list[str]] = {"analytics": sorted(set(expected) - set(per_answer))}
        unexpected: dict[str, list[str]] = {
            "analytics": sorted({r["answer_id"] for r in rows if r["answer_id"] not in expected
                                 or per_answer[r["answer_id"]] > 1 or r["version"] != 1
                                 or r["participant_id"] in erased_ids})}

        # Dialogue's store: each accepted answer once, never changed by a retry.
        stored = await _rows(platform.owner_url("dialogue"),
                             "SELECT answer_id, participant_id, version FROM answers"
                             " WHERE tenant_id = $1 AND dialogue_id = $2", tenant.tenant_id, tenant.dialogue_id)
        missing["dialogue"] = sorted(set(expected) - {r["answer_id"] for r in stored})
        unexpected["dialogue"] = sorted(r["answer_id"] for r in stored if r["answer_id"] not in expected
                                        or r["version"] != 1 or r["participant_id"] in erased_ids)

        # Kafka: every accepted answer's event at least once.
        on_kafka = {((record["value"] or {}).get("data") or {}).get("answer_id")
                    for record in await read_to_end(platform.kafka_admin, Topics.ANSWER_SUBMITTED, timeout=60)}
        missing["kafka"] = sorted(set(expected) - on_kafka)

        # The figures the tenant reads: respondents and every released choice count.
        figures = await client.get(f"{platform.url('analytics')}/v1/tenants/{tenant.tenant_id}/dialogues/"
                                   f"{tenant.dialogue_id}/figures", headers=tenant.auth)
        figures_exact = figures.status_code == 200
        if figures_exact:
            for question in figures.json()["questions"]:
                truth = Counter(a.value for a in expected.values() if a.question_id == question["question_id"])
                released = {c["key"]: c["value"] for c in question["choices"] if not c["suppressed"]}
                figures_exact &= question["respondents"]["value"] == sum(truth.values())
                figures_exact &= all(value == truth.get(key, 0) for key, value in released.items())
    return Trial(fault, len(expected), counted, missing, unexpected, figures_exact, len(request_ids), completed,
                 *recovered, load.refusals, load.rejected)
