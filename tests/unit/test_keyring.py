"""The local keyring: wrapping keys by epoch in a key file outside the database."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tessera_common.crypto import new_data_key
from tessera_rights.domain import KeyUnwrapFailed, data_key_associated
from tessera_rights.keyring import LocalKeyring, UnknownEpoch

AAD = data_key_associated("p_alice", "k_1")


async def test_a_missing_keyring_starts_at_epoch_1_from_the_master_key(tmp_path):
    master = new_data_key()
    path = tmp_path / "keys" / "keyring.json"
    keyring = LocalKeyring(path, master)

    assert await keyring.current_epoch() == 1 and await keyring.held_epochs() == [1]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["format"] == "tessera.keyring.v1" and document["current"] == 1
    # Epoch 1 is the master key: what it wrapped before epochs existed still opens.
    epoch, nonce, wrapped = await LocalKeyring(None, master).wrap(b"k" * 32, AAD)
    assert epoch == 1 and await keyring.unwrap(1, nonce, wrapped, AAD) == b"k" * 32
    # An existing file is used as it is; the master key is then not read.
    assert await LocalKeyring(path, new_data_key()).unwrap(1, nonce, wrapped, AAD) == b"k" * 32


async def test_an_epoch_created_wraps_new_keys_and_a_destroyed_one_opens_nothing(tmp_path):
    keyring = LocalKeyring(tmp_path / "keyring.json", new_data_key())
    _, nonce, wrapped = await keyring.wrap(b"k" * 32, AAD)

    await keyring.create_epoch(2)
    await keyring.create_epoch(2)  # idempotent
    epoch, *_ = await keyring.wrap(b"k" * 32, AAD)
    new_nonce, rewrapped = await keyring.rewrap(1, nonce, wrapped, AAD, 2)
    with pytest.raises(ValueError):
        await keyring.destroy_epoch(2)  # never the current one
    await keyring.destroy_epoch(1)

    assert epoch == 2 and await keyring.held_epochs() == [2]
    assert await keyring.unwrap(2, new_nonce, rewrapped, AAD) == b"k" * 32
    with pytest.raises(UnknownEpoch):
        await keyring.unwrap(1, nonce, wrapped, AAD)
    with pytest.raises(KeyUnwrapFailed):
        await keyring.unwrap(2, nonce, wrapped, AAD)
    with pytest.raises(ValueError):
        await keyring.create_epoch(4)  # epochs follow each other
    assert json.loads((tmp_path / "keyring.json").read_text())["destroyed"] == [1]


async def test_a_replica_sees_another_replicas_rotation(tmp_path):
    path = tmp_path / "keyring.json"
    first, second = LocalKeyring(path, new_data_key()), LocalKeyring(path, new_data_key())

    await first.create_epoch(2)
    epoch, nonce, wrapped = await first.wrap(b"k" * 32, AAD)
    await first.destroy_epoch(1)

    assert await second.unwrap(epoch, nonce, wrapped, AAD) == b"k" * 32
    assert await second.current_epoch() == 2 and await second.held_epochs() == [2]


async def test_an_in_memory_keyring_does_not_rotate():
    keyring = LocalKeyring(None, new_data_key())

    assert not keyring.durable
    with pytest.raises(RuntimeError):
        await keyring.create_epoch(2)
