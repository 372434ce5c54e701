"""The rights service's data keys, and the client other services use, against the real store."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest
from support.apps import running
from support.db import fetch, fetchval
from tessera_common.crypto import open_text, seal_text
from tessera_common.datakeys import DataKeyClient, KeyServiceUnavailable, ParticipantErased, WrongTenant
from tessera_common.secrets import erased_marker
from tessera_rights.app import RightsSettings, create_app

pytestmark = pytest.mark.connected

INTERNAL_TOKEN = "test-internal-token-" + uuid4().hex
MARKER_KEY = "test-erased-marker-key-" + uuid4().hex
AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


def new_participant() -> str:
    return f"p_{uuid4().hex[:16]}"


@pytest.fixture(scope="module")
def rights_app(stack):
    return create_app(
        RightsSettings(
            kafka_bootstrap_servers=stack.kafka_bootstrap,
            environment="test",
            internal_token=INTERNAL_TOKEN,
            erased_marker_key=MARKER_KEY,
            **stack.database("rights"),
        )
    )


@pytest.fixture(scope="module")
async def rights(rights_app) -> AsyncIterator[httpx.AsyncClient]:
    async with running(rights_app) as client:
        yield client


@pytest.fixture(scope="module")
def rights_db(rights_app) -> str:
    """The rights database, as its owner (row-level security does not bind it)."""
    return rights_app.state.wiring.settings.database_owner_url.get_secret_value()


async def put_key(client: httpx.AsyncClient, participant_id: str, tenant_id: str = "t_one", **kwargs):
    return await client.put(f"/internal/v1/data-keys/{participant_id}", json={"tenant_id": tenant_id}, **kwargs)


class CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.method)
        return await self.inner.handle_async_request(request)


async def test_a_key_is_created_once_then_the_same_key_is_returned(rights):
    participant_id = new_participant()

    created = await put_key(rights, participant_id, headers=AUTH)
    again = await put_key(rights, participant_id, headers=AUTH)
    fetched = await rights.get(f"/internal/v1/data-keys/{participant_id}", headers=AUTH)

    assert created.status_code == 201 and again.status_code == 200 and fetched.status_code == 200
    body = created.json()
    assert set(body) == {"participant_id", "tenant_id", "key_id", "key"}
    assert body["participant_id"] == participant_id and body["tenant_id"] == "t_one"
    assert body["key_id"].startswith("k_")
    assert len(base64.b64decode(body["key"], validate=True)) == 32
    assert again.json() == body and fetched.json() == body


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}])
async def test_every_route_needs_the_internal_token(rights, rights_db, headers):
    participant_id = new_participant()

    answers = [
        await put_key(rights, participant_id, headers=headers),
        await rights.get(f"/internal/v1/data-keys/{participant_id}", headers=headers),
        await rights.delete(f"/internal/v1/data-keys/{participant_id}", headers=headers),
    ]

    for answer in answers:
        assert answer.status_code == 401
        assert answer.json()["detail"]["code"] == "invalid_internal_token"
    assert await fetchval(rights_db, "SELECT count(*) FROM data_keys WHERE participant_id = $1", participant_id) == 0
    marker = erased_marker(MARKER_KEY, participant_id)
    assert await fetchval(rights_db, "SELECT count(*) FROM erased_participants WHERE marker = $1", marker) == 0


async def test_a_key_is_never_handed_to_another_tenant(rights):
    participant_id = new_participant()
    await put_key(rights, participant_id, "t_one", headers=AUTH)

    other = await put_key(rights, participant_id, "t_two", headers=AUTH)

    assert other.status_code == 409
    assert other.json()["detail"]["code"] == "wrong_tenant"
    assert "key" not in other.json()


async def test_an_unknown_participant_has_no_key(rights):
    answer = await rights.get(f"/internal/v1/data-keys/{new_participant()}", headers=AUTH)

    assert answer.status_code == 404
    assert answer.json()["detail"]["code"] == "no_key"


async def test_a_destroyed_key_is_gone_for_good_and_only_a_marker_remains(rights, rights_db):
    participant_id = new_participant()
    await put_key(rights, participant_id, headers=AUTH)

    destroyed = await rights.delete(f"/internal/v1/data-keys/{participant_id}", headers=AUTH)
    fetched = await rights.get(f"/internal/v1/data-keys/{participant_id}", headers=AUTH)
    recreated = await put_key(rights, participant_id, headers=AUTH)

    assert destroyed.status_code == 204
    assert fetched.status_code == 410 and fetched.json()["detail"]["code"] == "erased"
    assert recreated.status_code == 410 and recreated.json()["detail"]["code"] == "erased"
    assert await fetch(rights_db, "SELECT * FROM data_keys WHERE participant_id = $1", participant_id) == []
    markers = await fetch(rights_db, "SELECT * FROM erased_participants")
    assert participant_id not in repr(markers)
    [mine] = [m for m in markers if m["marker"] == erased_marker(MARKER_KEY, participant_id)]
    assert set(mine) == {"marker", "erased_at"}


async def test_destroying_is_idempotent_even_without_a_key(rights):
    participant_id = new_participant()

    answers = [await rights.delete(f"/internal/v1/data-keys/{participant_id}", headers=AUTH) for _ in range(2)]

    assert [a.status_code for a in answers] == [204, 204]
    assert (await put_key(rights, participant_id, headers=AUTH)).status_code == 410


@pytest.mark.parametrize(
    ("path", "body", "status_code"),
    [
        ("{p}", {"tenant_id": {"$gt": ""}}, 422),
        ("{p}", {"tenant_id": 5}, 422),
        ("{p}", {"tenant_id": "t_one", "_id": "x"}, 422),
        ("{p}", {"tenant_id": "t_one", "key": "AAAA"}, 422),
        ("{p}", {"tenant_id": "t one; drop"}, 422),
        ("{p}", {}, 422),
        ("$gt", {"tenant_id": "t_one"}, 422),
        ("{p}.%24ne", {"tenant_id": "t_one"}, 422),
        ("x" * 65, {"tenant_id": "t_one"}, 422),
        ("{p}/extra", {"tenant_id": "t_one"}, 404),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(rights, rights_db, path, body, status_code):
    participant_id = new_participant()
    before = await fetchval(rights_db, "SELECT count(*) FROM data_keys")

    answer = await rights.put(f"/internal/v1/data-keys/{path.format(p=participant_id)}", json=body, headers=AUTH)

    assert answer.status_code == status_code
    assert await fetchval(rights_db, "SELECT count(*) FROM data_keys") == before


async def test_the_stored_key_is_wrapped_never_plaintext(rights, rights_db):
    participant_id = new_participant()
    body = (await put_key(rights, participant_id, headers=AUTH)).json()
    key = base64.b64decode(body["key"])

    [document] = await fetch(rights_db, "SELECT * FROM data_keys WHERE participant_id = $1", participant_id)

    assert set(document) == {"participant_id", "tenant_id", "key_id", "nonce", "wrapped", "created_at", "epoch"}
    assert document["key_id"] == body["key_id"]
    stored = repr(document).encode() + document["nonce"] + document["wrapped"]
    for form in (key, body["key"].encode(), base64.urlsafe_b64encode(key), key.hex().encode()):
        assert form not in stored


async def test_concurrent_creates_end_with_one_key(rights, rights_db):
    participant_id = new_participant()

    answers = await asyncio.gather(*(put_key(rights, participant_id, headers=AUTH) for _ in range(5)))

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 201]
    assert len({a.json()["key_id"] for a in answers}) == 1
    assert len({a.json()["key"] for a in answers}) == 1
    assert await fetchval(rights_db, "SELECT count(*) FROM data_keys WHERE participant_id = $1", participant_id) == 1


async def test_the_client_caches_keys_and_stops_at_erasure(rights, rights_app):
    counting = CountingTransport(httpx.ASGITransport(app=rights_app))
    client = DataKeyClient("http://rights.test", INTERNAL_TOKEN, transport=counting)
    participant_id = new_participant()
    try:
        first = await client.key_for("t_one", participant_id)
        second = await client.key_for("t_one", participant_id)
        assert counting.requests == ["PUT"]
        assert second == first and len(first.key) == 32

        sealed = seal_text("mijn antwoord", first.key, first.key_id, participant_id, "answer")
        fetched = await client.fetch(participant_id)
        assert fetched == first
        assert open_text(sealed, fetched.key, participant_id, "answer") == "mijn antwoord"
        assert await client.fetch(new_participant()) is None
        with pytest.raises(WrongTenant):
            await client.key_for("t_two", participant_id)

        await client.destroy(participant_id)
        await client.destroy(participant_id)
        with pytest.raises(ParticipantErased):
            await client.key_for("t_one", participant_id)
        with pytest.raises(ParticipantErased):
            await client.fetch(participant_id)
    finally:
        await client.aclose()


async def test_the_client_with_a_wrong_token_reports_the_service_unusable(rights, rights_app):
    client = DataKeyClient("http://rights.test", "wrong", transport=httpx.ASGITransport(app=rights_app))
    try:
        with pytest.raises(KeyServiceUnavailable):
            await client.key_for("t_one", new_participant())
    finally:
        await client.aclose()


async def test_the_client_reports_an_unreachable_service():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = DataKeyClient(f"http://127.0.0.1:{port}", INTERNAL_TOKEN)
    try:
        for call in (client.key_for("t_one", "p_nobody"), client.fetch("p_nobody"), client.destroy("p_nobody")):
            with pytest.raises(KeyServiceUnavailable):
                await call
    finally:
        await client.aclose()


async def test_a_key_created_while_it_is_destroyed_never_outlives_the_erasure(rights, rights_db):
    participants = [new_participant() for _ in range(10)]

    await asyncio.gather(*(call for p in participants for call in (
        put_key(rights, p, headers=AUTH), rights.delete(f"/internal/v1/data-keys/{p}", headers=AUTH),
        put_key(rights, p, headers=AUTH))))

    assert await fetchval(rights_db, "SELECT count(*) FROM data_keys WHERE participant_id = ANY($1)",
                          participants) == 0
    assert await fetchval(rights_db, "SELECT count(*) FROM erased_participants WHERE marker = ANY($1)",
                          [erased_marker(MARKER_KEY, p) for p in participants]) == len(participants)
