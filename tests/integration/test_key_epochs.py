"""Key epochs on the real stack (DESIGN.md §4.10): a rotation re-wraps every live data key
under the next epoch and destroys the old epoch's key in the keyring, while keys keep
being created and read; an erasure's receipt names the epoch after whose retirement it
is final, and the request shows when that happened. And the issue's proof: the erased
participant's wrapped key is still in the database's files after the erasure, and
after the next rotation no copy of it opens with any key the system still holds."""

from __future__ import annotations

import asyncio
import base64
import json
import mmap
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from support.apps import (
    INTERNAL_TOKEN,
    Platform,
    bearer,
    create_tenant,
    enrol_devices,
    running_platform,
    tenant_known_to_rights,
)
from support.db import connected, fetch, fetchval
from support.kafka import eventually
from tessera_common.crypto import new_data_key
from tessera_rights.domain import KeyUnwrapFailed, data_key_associated, open_key, verify_receipt

pytestmark = pytest.mark.connected

INTERNAL = bearer(INTERNAL_TOKEN)


@pytest.fixture(scope="module")
def keyring_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keyring") / "rights-keyring.json"


@pytest.fixture(scope="module")
async def platform(stack, keyring_path) -> AsyncIterator[Platform]:
    master = base64.b64encode(new_data_key()).decode()
    async with running_platform(stack, rights_overrides={"keyring_path": keyring_path,
                                                         "data_key_master_key": master}) as running:
        yield running


def held_keys(keyring_path: Path) -> dict[int, bytes]:
    """Every wrapping key the keyring still holds, read from its file."""
    document = json.loads(keyring_path.read_text())
    return {int(epoch): base64.b64decode(key) for epoch, key in document["keys"].items()}


async def put_key(platform: Platform, participant_id: str, tenant_id: str = "t_epochs") -> dict:
    response = await platform.rights.put(f"/internal/v1/data-keys/{participant_id}", json={"tenant_id": tenant_id},
                                         headers=INTERNAL)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def rotate(platform: Platform) -> dict:
    response = await platform.rights.post("/internal/v1/key-epochs/rotations", headers=INTERNAL)
    assert response.status_code == 201, response.text
    return response.json()


async def epochs(platform: Platform) -> list[dict]:
    response = await platform.rights.get("/internal/v1/key-epochs", headers=INTERNAL)
    assert response.status_code == 200, response.text
    return response.json()["epochs"]


def new_participant() -> str:
    return f"p_{uuid4().hex[:16]}"


async def test_a_rotation_rewraps_every_live_key_and_destroys_the_old_epochs_key(platform, keyring_path):
    participants = [new_participant() for _ in range(25)]
    keys = {p: await put_key(platform, p) for p in participants}
    before = (await epochs(platform))[-1]["epoch"]
    assert before in held_keys(keyring_path)

    rotation = await rotate(platform)

    assert rotation["epoch"] == before + 1 and before in rotation["retired"] and rotation["left"] == []
    assert rotation["rewrapped"] >= len(participants)
    for participant_id, key in keys.items():
        fetched = await platform.rights.get(f"/internal/v1/data-keys/{participant_id}", headers=INTERNAL)
        assert fetched.json() == key  # the same key bytes, now wrapped under the new epoch
    rights_db = platform.database_url("rights", owner=True)
    assert await fetchval(rights_db, "SELECT count(*) FROM data_keys WHERE epoch <> $1", before + 1) == 0
    assert set(held_keys(keyring_path)) == {before + 1}
    listed = {e["epoch"]: e for e in await epochs(platform)}
    assert listed[before]["retired_at"] is not None and not listed[before]["current"]
    assert listed[before + 1]["retired_at"] is None and listed[before + 1]["current"]
    assert all(set(e) == {"epoch", "created_at", "retired_at", "current"} for e in listed.values())


async def test_keys_created_and_read_during_a_rotation_all_open_afterwards(platform, keyring_path):
    existing = [new_participant() for _ in range(200)]
    keys = {p: await put_key(platform, p) for p in existing}
    created_meanwhile = [new_participant() for _ in range(40)]

    async def reads() -> list[int]:
        return [(await platform.rights.get(f"/internal/v1/data-keys/{p}", headers=INTERNAL)).status_code
                for p in existing[:40]]

    rotation, fresh, statuses = await asyncio.gather(
        rotate(platform), asyncio.gather(*(put_key(platform, p) for p in created_meanwhile)), reads())

    assert statuses == [200] * 40
    assert rotation["left"] == []
    keys.update({body["participant_id"]: body for body in fresh})
    for participant_id, key in keys.items():
        fetched = await platform.rights.get(f"/internal/v1/data-keys/{participant_id}", headers=INTERNAL)
        assert fetched.status_code == 200 and fetched.json() == key
    assert set(held_keys(keyring_path)) == {rotation["epoch"]}
    assert await fetchval(platform.database_url("rights", owner=True),
                          "SELECT count(*) FROM data_keys WHERE epoch <> $1", rotation["epoch"]) == 0


async def test_one_rotation_at_a_time_and_the_schedule_rotates_only_when_due(platform):
    store = platform.rights_app.state.epochs.store
    async with store.rotation_lock() as held:  # as another replica's rotation would
        assert held
        busy = await platform.rights.post("/internal/v1/key-epochs/rotations", headers=INTERNAL)
    assert busy.status_code == 409 and busy.json()["detail"]["code"] == "rotation_in_progress"

    key_epochs = platform.rights_app.state.epochs
    now = datetime.now(UTC)
    assert await key_epochs.rotate_if_due(now, 86400) is None  # the newest epoch is young
    due = await key_epochs.rotate_if_due(now + timedelta(days=1, seconds=1), 86400)
    assert due is not None and due.left == []
    assert await key_epochs.rotate_if_due(datetime.now(UTC), 86400) is None  # the new one is young


async def erased_participant(platform: Platform) -> tuple[dict, str, dict, dict]:
    """A tenant's participant with a data key, erased by the tenant: (tenant, participant
    ID, the key row as stored before the erasure, the erasure request)."""
    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_rights(platform, tenant)
    (device,) = await enrol_devices(platform, tenant, 1)
    pid = device["participant_id"]
    await put_key(platform, pid, tenant["tenant_id"])
    [row] = await fetch(platform.database_url("rights", owner=True),
                        "SELECT key_id, nonce, wrapped, epoch FROM data_keys WHERE participant_id = $1", pid)
    asked = await platform.rights.post(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                       json={"kind": "erasure", "participant_id": pid},
                                       headers=bearer(tenant["api_key"]))
    assert asked.status_code == 202, asked.text
    return tenant, pid, row, asked.json()


async def request_status(platform: Platform, request: dict) -> dict:
    response = await platform.rights.get(f"/v1/rights-requests/{request['request_id']}",
                                         headers=bearer(request["status_secret"]))
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_receipt_names_the_epoch_and_the_request_shows_when_it_became_final(platform):
    tenant, _, row, request = await erased_participant(platform)
    assert request["final_after_epoch"] == row["epoch"] and request["final_at"] is None

    async def done():
        status = await request_status(platform, request)
        return status if status["status"] == "completed" else None

    completed = await eventually(done, timeout=60)
    assert completed["final_after_epoch"] == row["epoch"] and completed["final_at"] is None
    receipt = (await platform.rights.get(f"/v1/rights-requests/{request['request_id']}/receipt",
                                         headers=bearer(request["status_secret"]))).json()
    public = (await platform.rights.get("/v1/rights/receipt-key")).json()
    assert verify_receipt(public["public_key"], receipt)
    assert receipt["receipt"]["final_after_epoch"] == row["epoch"]

    rotation = await rotate(platform)

    assert row["epoch"] in rotation["retired"]
    final = await request_status(platform, request)
    retired_at = next(e["retired_at"] for e in await epochs(platform) if e["epoch"] == row["epoch"])
    assert final["final_at"] == retired_at
    auth = bearer(tenant["api_key"])
    trail = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/audit", headers=auth)).json()["entries"]
    retirements = [e["record"] for e in trail if e["record"]["action"] == "key_epoch_retired"]
    assert [(r["epoch"], r["successor"]) for r in retirements] == [(row["epoch"], rotation["epoch"])]
    verification = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/audit/verification",
                                              headers=auth)).json()
    assert verification["valid"] is True and verification["entries"] == len(trail)


def copies_on_disk(data_dir: Path, needle: bytes) -> list[tuple[Path, bytes]]:
    """Every place under the cluster's folder (tables, free space, pg_wal, everything)
    where ``needle`` occurs, with the 12 bytes before its one-byte length header: where
    a tuple (or its WAL record) keeps the nonce column just before the wrapped column."""
    found = []
    for folder, _, names in os.walk(data_dir):
        for name in names:
            path = Path(folder) / name
            try:
                with open(path, "rb") as handle:
                    if os.fstat(handle.fileno()).st_size == 0:
                        continue
                    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as content:
                        at = content.find(needle)
                        while at != -1:
                            found.append((path, bytes(content[max(0, at - 13):max(0, at - 1)])))
                            at = content.find(needle, at + 1)
            except (OSError, ValueError):
                continue  # a file removed or being written meanwhile
    return found


def opens_with(keys: dict[int, bytes], nonces: set[bytes], wrapped: bytes, associated: bytes) -> list[int]:
    opened = []
    for epoch, key in keys.items():
        for nonce in nonces:
            try:
                open_key(key, nonce, wrapped, associated)
            except KeyUnwrapFailed:
                continue
            opened.append(epoch)
    return opened


async def test_after_the_next_rotation_no_leftover_copy_of_an_erased_key_opens(platform, stack, keyring_path):
    async with connected(stack.superuser_url) as superuser:
        data_dir = Path(await superuser.fetchval("SHOW data_directory"))
    if not data_dir.is_dir():
        pytest.skip("the cluster's files are not on this machine (testcontainers)")
    _, pid, row, _ = await erased_participant(platform)
    associated = data_key_associated(pid, row["key_id"])
    rights_db = platform.database_url("rights", owner=True)
    assert await fetchval(rights_db, "SELECT count(*) FROM data_keys WHERE key_id = $1", row["key_id"]) == 0
    async with connected(stack.superuser_url) as superuser:
        await superuser.execute("CHECKPOINT")

    copies = copies_on_disk(data_dir, row["wrapped"])
    # Not vacuous: the erased key's wrapped bytes are still on disk, and with the
    # keyring as it is now (before the rotation) they open.
    assert copies, "the wrapped key should still be in the database's files (dead tuple or WAL)"
    nonces = {row["nonce"]} | {nonce for _, nonce in copies}
    assert any(nonce == row["nonce"] for _, nonce in copies)
    assert opens_with(held_keys(keyring_path), nonces, row["wrapped"], associated) == [row["epoch"]]

    await rotate(platform)
    async with connected(stack.superuser_url) as superuser:
        await superuser.execute("CHECKPOINT")

    copies = copies_on_disk(data_dir, row["wrapped"])
    nonces = {row["nonce"]} | {nonce for _, nonce in copies}
    assert row["epoch"] not in held_keys(keyring_path)
    assert opens_with(held_keys(keyring_path), nonces, row["wrapped"], associated) == []
