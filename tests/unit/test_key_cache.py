"""The data-key client's bounded cache (issue 12): at most 60 s, every fetch names the
holder and its bound, keys for many participants in one call, a destroyed key dropped
at once. The rights side of holds is in tests/integration/test_sealed_at_rest.py and
tests/e2e/test_key_cache_replicas.py."""

import base64
import json

import httpx
import pytest

from tessera_common.crypto import new_data_key
from tessera_common.datakeys import BATCH_SIZE, DataKeyClient, KeyServiceUnavailable

KEYS = {f"p_{i:04d}": new_data_key() for i in range(1200)}


class FakeRights:
    """Answers the batch route from ``KEYS`` (only for tenant t_one) and records calls."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        wanted = body["participant_ids"] if body["tenant_id"] == "t_one" else []
        return httpx.Response(200, json={
            "keys": [{"participant_id": p, "tenant_id": "t_one", "key_id": f"k_{p}",
                      "key": base64.b64encode(KEYS[p]).decode()} for p in wanted if p in KEYS],
            "missing": [p for p in body["participant_ids"] if p not in KEYS or body["tenant_id"] != "t_one"],
        })


def client(rights: FakeRights, **options) -> DataKeyClient:
    return DataKeyClient("http://rights.test", "token", transport=httpx.MockTransport(rights), **options)


def test_a_key_may_not_be_cached_longer_than_a_minute():
    with pytest.raises(ValueError, match="at most 60"):
        DataKeyClient("http://rights.test", "token", cache_seconds=61)
    with pytest.raises(ValueError):
        DataKeyClient("http://rights.test", "token", cache_seconds=-1)


async def test_many_keys_come_in_one_call_per_batch_and_then_from_the_cache():
    rights = FakeRights()
    keys = client(rights, cache_seconds=30, holder="dialogue-test-1")
    wanted = [*list(KEYS)[:600], "p_nobody"]
    found = await keys.keys_for("t_one", wanted)
    assert len(rights.requests) == -(-len(wanted) // BATCH_SIZE) == 2
    assert {p: k.key for p, k in found.items()} == {p: KEYS[p] for p in wanted if p in KEYS}
    # The caller names itself and how long it keeps what it gets.
    assert {(r.headers["Tessera-Key-Holder"], r.headers["Tessera-Key-Hold-Seconds"]) for r in rights.requests} == {
        ("dialogue-test-1", "30")}
    again = await keys.keys_for("t_one", wanted[:100])
    assert len(rights.requests) == 2 and again.keys() == set(wanted[:100])
    # Another tenant's call is never answered from the cache.
    assert await keys.keys_for("t_two", wanted[:3]) == {} and len(rights.requests) == 3
    await keys.aclose()


async def test_a_dropped_key_is_fetched_again_and_no_cache_means_no_hold():
    rights = FakeRights()
    keys = client(rights, cache_seconds=30)
    participant = next(iter(KEYS))
    await keys.keys_for("t_one", [participant])
    assert keys.drop(participant) and not keys.drop(participant) and keys.cached == 0
    await keys.keys_for("t_one", [participant])
    assert len(rights.requests) == 2

    uncached = client(rights, cache_seconds=0)
    await uncached.keys_for("t_one", [participant])
    await uncached.keys_for("t_one", [participant])
    assert len(rights.requests) == 4 and "Tessera-Key-Holder" not in rights.requests[-1].headers
    assert uncached.cached == 0
    await keys.aclose()
    await uncached.aclose()


@pytest.mark.parametrize("answer", [httpx.Response(503), httpx.Response(200, text="not json"),
                                    httpx.Response(200, json={"keys": [{"participant_id": "p_0000"}]})])
async def test_an_unusable_batch_answer_is_an_outage_never_an_empty_result(answer):
    keys = DataKeyClient("http://rights.test", "token", transport=httpx.MockTransport(lambda request: answer))
    with pytest.raises(KeyServiceUnavailable):
        await keys.keys_for("t_one", ["p_0000"])
    await keys.aclose()
