"""Schemathesis against every service's OpenAPI document, on the real stack.

The four apps run in-process on the session's Kafka and PostgreSQL (``running_platform``),
each served over real HTTP on 127.0.0.1; Schemathesis reads each service's
``/openapi.json`` and sends generated requests (valid and invalid) to every operation,
with the credentials the operation needs: the operator key, a tenant's API key (its
``tenant_id`` fixed in every path), a device token from a real enrolment on the gateway
(a fresh device every few seconds, since a generated erasure request erases the one in
use), and the internal token for ``/internal`` routes. Every response must be
documented: no 5xx, a status the operation declares, a body and content type its schema
describes, and no valid request (by the document) refused as malformed.

Bounded for CI: ``TESSERA_SCHEMATHESIS_EXAMPLES`` examples per operation in the fuzzing
phase (default 10) plus the deterministic coverage phase, a fixed seed. Raise it to look
harder: ``TESSERA_SCHEMATHESIS_EXAMPLES=200 uv run pytest tests/integration/test_openapi_contract.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from support.apps import (
    INTERNAL_TOKEN,
    OPERATOR_KEY,
    bearer,
    create_code,
    create_tenant,
    running_platform,
    served,
    tenant_known_to_dialogue,
    tenant_known_to_rights,
)
from support.kafka import eventually

pytestmark = pytest.mark.connected

EXAMPLES = int(os.environ.get("TESSERA_SCHEMATHESIS_EXAMPLES", "10"))
SEED = int(os.environ.get("TESSERA_SCHEMATHESIS_SEED", "20261127"))
#: How long one enrolled device is used before the next request gets a new one.
DEVICE_SECONDS = 3.0


@schemathesis.check
def valid_input_not_refused(ctx, response, case) -> None:
    """A request the document calls valid is never refused as malformed: no 400, and no
    422 in FastAPI's validation shape (a list naming fields). A 422 with a ``code`` is a
    rule the schema cannot state (a choice that is not offered, a window that closes
    before it opens) and is documented as such; 404 and 409 are about the state (an ID
    that names nothing, a dialogue not open), not the input."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code == 400 or (
        response.status_code == 422 and isinstance(_json(response).get("detail"), list)
    ):
        raise AssertionError(f"valid input refused with {response.status_code}: {response.text[:300]}")
    return None


def _json(response) -> dict:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


@dataclass
class Outcome:
    service: str
    operations: int = 0
    requests: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


class Devices:
    """Device tokens for participant routes, from real enrolments on the gateway, a new
    one every ``DEVICE_SECONDS``: requests run in Schemathesis's thread, the gateway in
    the test's event loop, so enrolments go over HTTP like a phone's."""

    def __init__(self, base_url: str, code: str) -> None:
        self.base_url = base_url
        self.code = code
        self.lock = threading.Lock()
        self.token = ""
        self.made = 0.0

    def current(self) -> str:
        with self.lock:
            if time.monotonic() - self.made > DEVICE_SECONDS:
                response = httpx.post(f"{self.base_url}/v1/enrolments", timeout=30,
                                      json={"code": self.code, "platform": "android", "form_factor": "phone"})
                assert response.status_code == 201, response.text
                self.token = response.json()["device_token"]
                self.made = time.monotonic()
            return self.token


def run_schemathesis(service: str, base_url: str, tenant: dict, devices: Devices | None = None,
                     parameters: dict[str, str] | None = None) -> Outcome:
    """One service's document, every operation, in this (worker) thread. ``parameters``:
    values fixed for parameters of these names (besides the tenant's ID)."""
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "base-url": base_url,
        "max-failures": 200,
        "cache": {"enabled": False},  # the same requests every run, nothing learnt from the last one
        "generation": {"max-examples": EXAMPLES, "mode": "all", "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "valid_input_not_refused": {"enabled": True},
        },
        "parameters": {"tenant_id": tenant["tenant_id"], **(parameters or {})},
    })
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    credentials = {r"^/v1/tenants$": lambda: OPERATOR_KEY, r"^/v1/tenants/": lambda: tenant["api_key"],
                   r"^/internal/": lambda: INTERNAL_TOKEN}
    if devices is not None:
        credentials[r"^/v1/me"] = devices.current
    for path_regex, secret in credentials.items():
        _bearer(schema, path_regex, secret)
    outcome = Outcome(service)
    started = time.monotonic()
    seen: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            seen.add(recorder.label)
            outcome.requests += len(recorder.interactions)
            outcome.statuses.update(i.response.status_code for i in recorder.interactions.values()
                                    if i.response is not None)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        interaction = recorder.interactions.get(case_id)
                        sent = (f"{interaction.request.method} {interaction.request.uri} {_headers(interaction)}"
                                if interaction is not None else "")
                        outcome.failures.append(f"{recorder.label} [{check.name}] {failure.title}: "
                                                f"{failure.message[:400]} ← {sent}")
        elif isinstance(event, events.NonFatalError):
            outcome.failures.append(f"{event.label}: error {event.info.message[:400]}")
        elif isinstance(event, events.FatalError):
            outcome.failures.append(f"fatal: {event.exception!r}")
    outcome.operations = len(seen)
    outcome.seconds = time.monotonic() - started
    return outcome


def _headers(interaction) -> dict[str, list[str]]:
    """The headers a failing request was sent with, but its credential."""
    return {name: values for name, values in interaction.request.headers.items()
            if name.lower() in ("content-type", "idempotency-key", "accept", "tessera-key-hold")}


def _bearer(schema, path_regex: str, secret) -> None:
    """Send ``secret()`` as the bearer credential on the operations whose path matches."""

    class Bearer:
        def get(self, case, context):
            return secret()

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    schema.auth(refresh_interval=None).apply_to(path_regex=path_regex)(Bearer)


async def test_every_service_keeps_its_openapi_contract(stack) -> None:
    async with running_platform(stack, gateway_overrides={"enrol_failures_per_network": "100000/minute"}) as platform:
        tenant = await create_tenant(platform.gateway, "Schemathesis")
        await tenant_known_to_dialogue(platform, tenant)
        await tenant_known_to_rights(platform, tenant)

        async def known_to_analytics():
            response = await platform.analytics.get(f"/v1/tenants/{tenant['tenant_id']}/dialogues",
                                                    headers=bearer(tenant["api_key"]))
            return response.status_code == 200

        await eventually(known_to_analytics, timeout=60)
        # The devices belong to a tenant of their own: Schemathesis revokes the codes it
        # finds under its tenant's routes, and would revoke the one the devices use.
        phones = await create_tenant(platform.gateway, "Schemathesis phones")
        code = await create_code(platform.gateway, phones)
        # Their tenant's open dialogue, so the participant routes reach an answer's whole
        # path (validation, screening, the data key, the store) rather than a 404.
        await tenant_known_to_dialogue(platform, phones)
        dialogues = f"/v1/tenants/{phones['tenant_id']}/dialogues"
        dialogue = (await platform.dialogue.post(dialogues, headers=bearer(phones["api_key"]), json={
            "title": "Open", "questions": [{"kind": "open_text", "prompt": "Why?"}]})).json()
        published = await platform.dialogue.post(f"{dialogues}/{dialogue['dialogue_id']}/publish",
                                                 headers=bearer(phones["api_key"]))
        assert published.status_code == 200, published.text
        open_question = {"dialogue_id": dialogue["dialogue_id"],
                         "question_id": dialogue["questions"][0]["question_id"]}
        outcomes = []
        async with contextlib.AsyncExitStack() as serving:
            urls = {name: await serving.enter_async_context(served(platform.app(name)))
                    for name in ("enrolment", "dialogue", "rights", "analytics")}
            devices = Devices(urls["enrolment"], code["code"])
            for name, url in urls.items():
                gateway = name == "enrolment"
                outcomes.append(await asyncio.to_thread(
                    run_schemathesis, name, url, tenant, devices if gateway else None,
                    open_question if gateway else None))
    report = "\n".join(f"{o.service}: {o.operations} operations, {o.requests} requests, {o.seconds:.1f} s, "
                       f"{len(o.failures)} failures; statuses {dict(sorted(o.statuses.items()))}"
                       for o in outcomes)
    print(f"\nschemathesis (seed {SEED}, {EXAMPLES} examples per operation):\n{report}")
    failures = [f for o in outcomes for f in o.failures]
    assert not failures, report + "\n" + "\n".join(failures[:60])
