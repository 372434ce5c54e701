"""Data keys at rest (rights' domain) and the client's reading of the rights service's
answers; the client against the real rights app is in tests/integration/test_data_keys.py."""

import base64
import dataclasses
from datetime import UTC, datetime

import httpx
import pytest

from tessera_common.crypto import new_data_key
from tessera_common.datakeys import DataKey, DataKeyClient, KeyServiceUnavailable, ParticipantErased, WrongTenant
from tessera_rights.app import DEV_DATA_KEY_MASTER_KEY, RightsSettings
from tessera_rights.domain import KeyUnwrapFailed, parse_master_key, unwrap_data_key, wrap_data_key

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def wrapped(master_key: bytes, key: bytes):
    return wrap_data_key(master_key, key, participant_id="p_alice", tenant_id="t_one", key_id="k_1", created_at=NOW)


def test_a_wrapped_key_unwraps_to_itself_and_holds_no_plaintext():
    master_key, key = new_data_key(), new_data_key()
    record = wrapped(master_key, key)

    assert unwrap_data_key(master_key, record) == key
    assert key not in record.wrapped and base64.b64encode(key) not in record.wrapped


@pytest.mark.parametrize(
    "change",
    [
        {"participant_id": "p_bob"},
        {"key_id": "k_2"},
        {"nonce": bytes(12)},
    ],
)
def test_a_wrapped_key_moved_to_another_participant_or_key_id_does_not_unwrap(change):
    master_key = new_data_key()
    record = dataclasses.replace(wrapped(master_key, new_data_key()), **change)

    with pytest.raises(KeyUnwrapFailed):
        unwrap_data_key(master_key, record)


def test_a_tampered_or_foreign_wrapped_key_does_not_unwrap():
    master_key = new_data_key()
    record = wrapped(master_key, new_data_key())
    flipped = bytearray(record.wrapped)
    flipped[0] ^= 1

    with pytest.raises(KeyUnwrapFailed):
        unwrap_data_key(master_key, dataclasses.replace(record, wrapped=bytes(flipped)))
    with pytest.raises(KeyUnwrapFailed):
        unwrap_data_key(new_data_key(), record)


def test_the_master_key_must_be_base64_of_32_bytes():
    assert len(parse_master_key(DEV_DATA_KEY_MASTER_KEY)) == 32
    for bad in ("", "not base64!", base64.b64encode(bytes(16)).decode()):
        with pytest.raises(ValueError):
            parse_master_key(bad)


def test_production_refuses_the_development_master_key(tmp_path):
    keyring = tmp_path / "keyring.json"
    real = {"operator_key": "o" * 40, "internal_token": "i" * 40, "erased_marker_key": "e" * 40,
            "keyring_path": keyring, "kafka_username": "tessera-rights", "kafka_password": "k" * 40}
    with pytest.raises(ValueError, match="DATA_KEY_MASTER_KEY"):
        RightsSettings(environment="production", **real)
    master_key = base64.b64encode(new_data_key()).decode()
    with pytest.raises(ValueError, match="RECEIPT_SIGNING_KEY"):
        RightsSettings(environment="production", data_key_master_key=master_key, **real)
    receipt_key = base64.b64encode(new_data_key()).decode()  # any 32 bytes are an Ed25519 private key
    assert RightsSettings(environment="production", data_key_master_key=master_key,
                          receipt_signing_key=receipt_key, **real)
    # The keyring is required; once it exists the master key (epoch 1's) is not needed.
    with pytest.raises(ValueError, match="KEYRING_PATH"):
        RightsSettings(environment="production", data_key_master_key=master_key, receipt_signing_key=receipt_key,
                       **{**real, "keyring_path": None})
    keyring.write_text("{}")
    assert RightsSettings(environment="production", receipt_signing_key=receipt_key, **real)


def test_a_data_key_never_shows_its_bytes():
    key = DataKey(key_id="k_1", key=b"\x01" * 32)
    assert "k_1" in repr(key) and repr(b"\x01" * 32) not in repr(key)


def answering(status_code: int, body: object = None, error: Exception | None = None) -> DataKeyClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if error is not None:
            raise error
        return httpx.Response(status_code, json=body)

    return DataKeyClient("http://rights.test", "token", transport=httpx.MockTransport(handler))


SHORT_KEY = base64.b64encode(bytes(16)).decode()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((409, {"detail": {"code": "wrong_tenant"}}), WrongTenant),
        ((410, {"detail": {"code": "erased"}}), ParticipantErased),
        ((401, {"detail": {"code": "invalid_internal_token"}}), KeyServiceUnavailable),
        ((503,), KeyServiceUnavailable),
        ((201, {"key_id": "k_1", "key": "not base64!"}), KeyServiceUnavailable),
        ((201, {"key_id": "k_1", "key": SHORT_KEY}), KeyServiceUnavailable),
        ((0, None, httpx.ReadTimeout("slow")), KeyServiceUnavailable),
    ],
)
async def test_the_client_turns_each_unusable_answer_into_its_exception(answer, expected):
    client = answering(*answer)
    with pytest.raises(expected):
        await client.key_for("t_one", "p_alice")
    await client.aclose()


# --- the audit chain ------------------------------------------------------------

from tessera_rights.domain import GENESIS_HASH, chain_entry, verify_chain  # noqa: E402


def _chain(n: int) -> list[dict]:
    entries, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        entry = chain_entry(prev, seq, {"action": "store_confirmed", "store": f"s{seq}", "actor": "participant",
                                        "subject": "hmac-of-participant", "time": f"2026-11-22T10:00:0{seq % 10}Z"})
        entries.append(entry)
        prev = entry["hash"]
    return entries


def test_an_untouched_chain_verifies():
    result = verify_chain(_chain(5))
    assert (result.valid, result.entries, result.broken_at) == (True, 5, None)
    assert verify_chain([]).valid


def test_changing_any_entry_is_detected_at_that_entry():
    for victim in range(5):
        entries = _chain(5)
        entries[victim] = {**entries[victim], "record": {**entries[victim]["record"], "store": "forged"}}
        result = verify_chain(entries)
        assert (result.valid, result.broken_at, result.reason) == (False, victim + 1, "its content was changed")


def test_rehashing_a_changed_entry_breaks_the_next_one():
    entries = _chain(5)
    forged = chain_entry(entries[1]["hash"], 3, {**entries[2]["record"], "store": "forged"})
    entries[2] = forged
    result = verify_chain(entries)
    assert (result.valid, result.broken_at) == (False, 4)


def test_removing_or_reordering_entries_is_detected():
    entries = _chain(5)
    assert verify_chain(entries[:2] + entries[3:]).broken_at == 3
    assert verify_chain([entries[0], entries[2], entries[1], *entries[3:]]).broken_at == 2
    assert verify_chain(entries[1:]).broken_at == 1
