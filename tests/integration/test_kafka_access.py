"""Who may do what on the real broker: SASL/SCRAM and the StandardAuthorizer's ACLs.

Nothing anonymous gets in; each service's principal writes only the topics it produces
and reads only those it consumes; a tenant's credential, issued through the gateway,
reads its own topic and nothing else, and stops working when revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from support.apps import bearer, create_tenant
from support.kafka import produce
from tessera_common.broker import ensure_topics
from tessera_common.events import Topics
from tessera_common.kafka_access import MECHANISM, SERVICE_ACCESS, KafkaCredentials, aiokafka_options

pytestmark = pytest.mark.connected


@pytest.fixture(autouse=True)
def _authenticating_broker(stack) -> None:
    if stack.kafka.credentials is None:
        pytest.skip("this stack's broker runs without authentication (testcontainers' image)")


def _consumer(stack, credentials: KafkaCredentials | None, topic: str, group: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, group_id=group,
                            auto_offset_reset="earliest", enable_auto_commit=False, request_timeout_ms=10_000,
                            **aiokafka_options(credentials))


async def _read(stack, credentials: KafkaCredentials | None, topic: str, group: str | None,
                wanted: int = 1, timeout: float = 20.0) -> list[bytes]:
    """Values read from ``topic`` until ``wanted`` came; an authorisation error raises."""
    consumer = _consumer(stack, credentials, topic, group)
    await consumer.start()
    try:
        values: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(values) < wanted and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [r.value for r in records]
        return values
    finally:
        await consumer.stop()


async def _write(stack, credentials: KafkaCredentials | None, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, request_timeout_ms=10_000,
                                **aiokafka_options(credentials))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}")
    finally:
        await producer.stop()


def _credentials(issued: dict) -> KafkaCredentials:
    return KafkaCredentials(issued["username"], SecretStr(issued["password"]))


async def _tenant_topics(stack, *tenants: dict) -> dict[str, bytes]:
    """Each tenant's topic with one record in it (written as the administrator)."""
    marks = {}
    for tenant in tenants:
        topic = Topics.for_tenant(tenant["tenant_id"])
        await ensure_topics(stack.kafka_bootstrap, [topic], credentials=stack.kafka.credentials)
        marks[topic] = f'{{"mark": "{uuid4().hex}"}}'.encode()
        await produce(stack.kafka, topic, marks[topic])
    return marks


async def _issue(gateway, tenant: dict, name: str = "warehouse") -> dict:
    response = await gateway.post(f"/v1/tenants/{tenant['tenant_id']}/kafka-credentials",
                                  headers=bearer(tenant["api_key"]), json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


@contextlib.asynccontextmanager
async def _authentication_refused(caplog):
    """aiokafka reports a refused SASL handshake in its log and then raises that it
    could not bootstrap: both must happen, so that the refusal is the broker's."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        yield
    assert any("SaslAuthenticationFailed" in r.getMessage() for r in caplog.records), "not refused for its credential"


async def test_nothing_gets_in_without_a_valid_credential(stack, caplog):
    with pytest.raises(KafkaConnectionError):  # no SASL at all: the broker closes the connection
        await _read(stack, None, Topics.TENANT_REGISTERED, None)
    forged = KafkaCredentials(stack.kafka_principals["analytics"].username, SecretStr("not-its-password"))
    async with _authentication_refused(caplog):
        await _read(stack, forged, Topics.TENANT_REGISTERED, None)
    unknown = KafkaCredentials("tessera-nobody", SecretStr("any"))
    async with _authentication_refused(caplog):
        await _read(stack, unknown, Topics.TENANT_REGISTERED, None)


async def test_a_service_writes_only_what_it_produces_and_reads_only_what_it_consumes(stack):
    dialogue, enrolment = stack.kafka_principals["dialogue"], stack.kafka_principals["enrolment"]
    # Allowed: a tenant's topic (dialogue writes answers there). Not one of the platform's
    # own topics, which other tests read from their start and expect only events on.
    assert SERVICE_ACCESS["dialogue"].writes_tenant_topics
    probe = Topics.for_tenant(f"t_probe{uuid4().hex[:10]}")
    await ensure_topics(stack.kafka_bootstrap, [probe], credentials=stack.kafka.credentials)
    await _write(stack, dialogue, probe)
    with pytest.raises(TopicAuthorizationFailedError):  # enrolment's topic
        await _write(stack, dialogue, Topics.TENANT_REGISTERED)
    with pytest.raises(TopicAuthorizationFailedError):  # rights' topic
        await _write(stack, dialogue, Topics.ERASURE_REQUESTED)
    # Enrolment consumes erasure requests, not answers.
    with pytest.raises(TopicAuthorizationFailedError):
        await _read(stack, enrolment, Topics.ANSWER_SUBMITTED, "tessera-enrolment.probe")
    # A service's own topic, but in another service's consumer group.
    with pytest.raises(GroupAuthorizationFailedError):
        await _read(stack, enrolment, Topics.ERASURE_REQUESTED, "tessera-analytics")
    # Its own topic in its own group reads (what its consumer does).
    await _read(stack, enrolment, Topics.ERASURE_REQUESTED, f"tessera-enrolment.probe-{uuid4().hex[:6]}", wanted=0)


async def test_a_tenant_credential_reads_its_own_topic_and_nothing_else(stack, gateway):
    one, other = await create_tenant(gateway), await create_tenant(gateway)
    marks = await _tenant_topics(stack, one, other)
    issued = await _issue(gateway, one)
    assert issued["connection"] == {
        "bootstrap_servers": stack.kafka_bootstrap, "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM, "topic": Topics.for_tenant(one["tenant_id"]),
        "topic_prefix": f"tenant.{one['tenant_id']}.", "group_prefix": f"tenant.{one['tenant_id']}.",
    }
    mine, theirs = Topics.for_tenant(one["tenant_id"]), Topics.for_tenant(other["tenant_id"])
    credentials = _credentials(issued)
    group = f"tenant.{one['tenant_id']}.warehouse"

    assert await _read(stack, credentials, mine, group) == [marks[mine]]
    with pytest.raises(TopicAuthorizationFailedError):  # another tenant's topic
        await _read(stack, credentials, theirs, group)
    with pytest.raises(TopicAuthorizationFailedError):  # an internal topic
        await _read(stack, credentials, Topics.ANSWER_SUBMITTED, group)
    with pytest.raises(GroupAuthorizationFailedError):  # a group outside its prefix
        await _read(stack, credentials, mine, f"tenant.{other['tenant_id']}.warehouse")
    with pytest.raises(TopicAuthorizationFailedError):  # it reads; it never writes
        await _write(stack, credentials, mine)


async def test_a_revoked_credential_stops_working_and_a_rotated_password_replaces_the_old(stack, gateway, caplog):
    tenant = await create_tenant(gateway)
    marks = await _tenant_topics(stack, tenant)
    topic = Topics.for_tenant(tenant["tenant_id"])
    group = f"tenant.{tenant['tenant_id']}.ops"
    issued = await _issue(gateway, tenant)
    path = f"/v1/tenants/{tenant['tenant_id']}/kafka-credentials/{issued['credential_id']}"
    auth = bearer(tenant["api_key"])

    rotated = await gateway.post(f"{path}/rotation", headers=auth)
    assert rotated.status_code == 200
    assert rotated.json()["username"] == issued["username"] and rotated.json()["password"] != issued["password"]
    async with _authentication_refused(caplog):
        await _read(stack, _credentials(issued), topic, group)
    credentials = _credentials(rotated.json())

    # Connected and reading when the credential is revoked: its next request is refused.
    consumer = _consumer(stack, credentials, topic, group)
    await consumer.start()
    try:
        seen = []
        for _ in range(40):
            seen += [r.value for rs in (await consumer.getmany(timeout_ms=500)).values() for r in rs]
            if seen:
                break
        assert seen == [marks[topic]]
        assert (await gateway.delete(path, headers=auth)).status_code == 204
        # A fetch already waiting at the broker (a long poll of up to fetch_max_wait_ms,
        # 500 ms) was allowed when it came; every fetch after the revocation is refused.
        await asyncio.sleep(1.5)
        await produce(stack.kafka, topic, b'{"after": "revocation"}')
        with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
            for _ in range(40):
                late = [r.value for rs in (await consumer.getmany(timeout_ms=500)).values() for r in rs]
                assert late == [], "a revoked credential read a new record"
    finally:
        await consumer.stop()
    async with _authentication_refused(caplog):  # and cannot connect again
        await _read(stack, credentials, topic, f"{group}-2")

    listed = (await gateway.get(f"/v1/tenants/{tenant['tenant_id']}/kafka-credentials", headers=auth)).json()
    assert [(c["credential_id"], c["status"]) for c in listed["credentials"]] == [(issued["credential_id"], "revoked")]
    assert all("password" not in c for c in listed["credentials"])
    assert (await gateway.delete(path, headers=auth)).status_code == 204  # revoking again changes nothing
    refused = await gateway.post(f"{path}/rotation", headers=auth)
    assert (refused.status_code, refused.json()["detail"]["code"]) == (409, "credential_revoked")


async def test_the_credential_routes_refuse_bad_input_and_other_tenants(gateway):
    one, other = await create_tenant(gateway), await create_tenant(gateway)
    base = f"/v1/tenants/{one['tenant_id']}/kafka-credentials"
    issued = await _issue(gateway, one)

    wrong = await gateway.post(base, headers=bearer(other["api_key"]), json={"name": "theirs"})
    assert (wrong.status_code, wrong.json()["detail"]["code"]) == (403, "wrong_tenant")
    assert (await gateway.get(base, headers=bearer(other["api_key"]))).status_code == 403
    assert (await gateway.delete(f"{base}/{issued['credential_id']}", headers=bearer(other["api_key"]))).status_code \
        == 403
    assert (await gateway.post(base, json={"name": "x"})).status_code == 401
    forged = bearer(f"tak_{one['tenant_id']}.forged")
    assert (await gateway.post(base, headers=forged, json={"name": "x"})).status_code == 401

    auth = bearer(one["api_key"])
    for body in ({}, {"name": ""}, {"name": 5}, {"name": "x", "acl": "ALL"}, {"name": "a\nb"}, {"name": "x" * 101}):
        response = await gateway.post(base, headers=auth, json=body)
        assert response.status_code == 422, (body, response.text)
    missing = await gateway.delete(f"{base}/kc_{'a' * 16}", headers=auth)
    assert (missing.status_code, missing.json()["detail"]["code"]) == (404, "credential_not_found")
    assert (await gateway.delete(f"{base}/'; DROP TABLE x; --", headers=auth)).status_code == 422

    # Of the other tenant's credentials, none is found through this tenant's path.
    theirs = await _issue(gateway, other)
    assert (await gateway.delete(f"{base}/{theirs['credential_id']}", headers=auth)).status_code == 404
    listed = (await gateway.get(base, headers=auth)).json()["credentials"]
    assert [c["credential_id"] for c in listed] == [issued["credential_id"]]

    # At most MAX_ACTIVE at once; a revoked one frees its place.
    for n in range(9):
        await _issue(gateway, one, name=f"system {n}")
    full = await gateway.post(base, headers=auth, json={"name": "one too many"})
    assert (full.status_code, full.json()["detail"]["code"]) == (409, "too_many_credentials")
    assert (await gateway.delete(f"{base}/{issued['credential_id']}", headers=auth)).status_code == 204
    assert (await gateway.post(base, headers=auth, json={"name": "replacement"})).status_code == 201
