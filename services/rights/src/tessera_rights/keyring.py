"""The wrapping keys, by epoch, kept outside the database they protect (DESIGN.md §4.10).

A participant's data key is stored only wrapped under one epoch's wrapping key. The
keys never sit beside the data: a dump, a dead tuple, a WAL segment or a backup of the
rights database holds wrapped bytes only, and once an epoch's key is destroyed every
copy wrapped under it, wherever it lingers, is unreadable to everyone.

:class:`Keyring` is the KMS-like interface the service uses: the current epoch, wrap
under it, unwrap or re-wrap by epoch, create the next epoch, destroy an epoch's key.
Key material never leaves it. :class:`LocalKeyring` implements it with a JSON key file
outside the database (``TESSERA_KEYRING_PATH``). A production deployment puts a KMS
(or an HSM) behind the same interface, where destroying a key version is a real
destruction; a file on a journalling file system or an SSD may keep old blocks.

Several rights replicas must share one keyring: one KMS, or one key file on a shared
volume. A replica re-reads the file whenever it changed on disk, and in any case when
it meets an epoch it does not know, so a rotation run by one replica reaches the others
before any of them needs the new epoch.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from tessera_rights import domain

FORMAT = "tessera.keyring.v1"


class UnknownEpoch(Exception):
    """The keyring holds no key for this epoch: it was destroyed, or never made."""


class Keyring(Protocol):
    #: A key made now survives a restart (and is seen by every replica), so the keyring
    #: may rotate; an in-memory keyring may not (its new epoch would die with it).
    durable: bool

    async def current_epoch(self) -> int:
        """The epoch new keys are wrapped under."""
        ...

    async def held_epochs(self) -> list[int]:
        """The epochs whose key the keyring still holds, oldest first."""
        ...

    async def wrap(self, plaintext: bytes, associated: bytes) -> tuple[int, bytes, bytes]:
        """Wrap under the current epoch: ``(epoch, nonce, wrapped)``."""
        ...

    async def unwrap(self, epoch: int, nonce: bytes, wrapped: bytes, associated: bytes) -> bytes:
        """Raises :class:`UnknownEpoch`, or :class:`.domain.KeyUnwrapFailed` when the
        bytes do not open under that epoch's key."""
        ...

    async def rewrap(self, epoch: int, nonce: bytes, wrapped: bytes, associated: bytes,
                     to_epoch: int) -> tuple[bytes, bytes]:
        """Unwrap under ``epoch`` and wrap under ``to_epoch`` inside the keyring (a KMS's
        re-encrypt): the plaintext never reaches the caller. ``(nonce, wrapped)``."""
        ...

    async def create_epoch(self, epoch: int) -> None:
        """Make ``epoch`` (the current one + 1) with a fresh random key and make it
        current. Idempotent: an epoch that exists already is kept as it is."""
        ...

    async def destroy_epoch(self, epoch: int) -> None:
        """Destroy ``epoch``'s key for good (never the current one). Idempotent."""
        ...


class LocalKeyring:
    """A JSON key file: ``{"format", "current", "keys": {epoch: base64 key}, "destroyed":
    [epochs]}``, mode 0600, written atomically (temp file, fsync, rename, fsync of the
    folder) under an exclusive lock on a lock file beside it, so a crash leaves the old
    file or the new one, never half of one.

    Bootstrap: when the file does not exist it is created with epoch 1 = ``first_key``
    (the former single master key, ``TESSERA_DATA_KEY_MASTER_KEY``), so keys wrapped
    before epochs existed (migrated to epoch 1) keep opening. With ``path=None`` the
    keyring lives in memory only (development and tests): epoch 1 for ever, no rotation.
    """

    def __init__(self, path: Path | None, first_key: bytes) -> None:
        self.path = path
        self.durable = path is not None
        self._guard = threading.Lock()
        self._keys: dict[int, bytes] = {1: first_key}
        self._current = 1
        self._seen: tuple[int, int, int] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not path.exists():
                    self._write({"current": 1, "keys": {1: first_key}, "destroyed": []})
                self._load()

    # --- the interface ---------------------------------------------------

    async def current_epoch(self) -> int:
        self._refresh()
        return self._current

    async def held_epochs(self) -> list[int]:
        self._refresh()
        return sorted(self._keys)

    async def wrap(self, plaintext: bytes, associated: bytes) -> tuple[int, bytes, bytes]:
        self._refresh()
        epoch = self._current
        nonce, wrapped = domain.seal_key(self._keys[epoch], plaintext, associated)
        return epoch, nonce, wrapped

    async def unwrap(self, epoch: int, nonce: bytes, wrapped: bytes, associated: bytes) -> bytes:
        return domain.open_key(self._key(epoch), nonce, wrapped, associated)

    async def rewrap(self, epoch: int, nonce: bytes, wrapped: bytes, associated: bytes,
                     to_epoch: int) -> tuple[bytes, bytes]:
        plaintext = domain.open_key(self._key(epoch), nonce, wrapped, associated)
        return domain.seal_key(self._key(to_epoch), plaintext, associated)

    async def create_epoch(self, epoch: int) -> None:
        self._change(lambda state: _create(state, epoch))

    async def destroy_epoch(self, epoch: int) -> None:
        self._change(lambda state: _destroy(state, epoch))

    # --- the file --------------------------------------------------------

    def _key(self, epoch: int) -> bytes:
        self._refresh()
        if epoch not in self._keys:
            self._refresh(force=True)  # another replica may have made it just now
        try:
            return self._keys[epoch]
        except KeyError:
            raise UnknownEpoch(epoch) from None

    def _change(self, change) -> None:  # type: ignore[no-untyped-def]
        if self.path is None:
            raise RuntimeError("an in-memory keyring cannot rotate: set TESSERA_KEYRING_PATH")
        with self._guard, self._locked():
            state = self._read()
            change(state)
            self._write(state)
            self._load()

    def _refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed on disk (a rotation by another replica)."""
        if self.path is None:
            return
        if force or self._stat() != self._seen:
            with self._guard:
                self._load()

    def _stat(self) -> tuple[int, int, int]:
        assert self.path is not None
        st = os.stat(self.path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _load(self) -> None:
        seen = self._stat()
        state = self._read()
        self._keys, self._current, self._seen = state["keys"], state["current"], seen

    def _read(self) -> dict:
        assert self.path is not None
        document = json.loads(self.path.read_text())
        if document.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a Tessera keyring ({FORMAT})")
        keys = {int(epoch): base64.b64decode(key, validate=True) for epoch, key in document["keys"].items()}
        if document["current"] not in keys:
            raise ValueError(f"{self.path}: the current epoch has no key")
        return {"current": document["current"], "keys": keys, "destroyed": list(document.get("destroyed", []))}

    def _write(self, state: dict) -> None:
        assert self.path is not None
        document = {
            "format": FORMAT,
            "current": state["current"],
            "keys": {str(epoch): base64.b64encode(key).decode() for epoch, key in sorted(state["keys"].items())},
            "destroyed": sorted(state["destroyed"]),
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(document, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Across processes on one host (and on file systems whose locks reach every
        host): one writer at a time. Rotation itself is one at a time across replicas
        by a database lock; this guards the bootstrap and a hand-run tool."""
        assert self.path is not None
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _create(state: dict, epoch: int) -> None:
    if epoch in state["keys"]:
        state["current"] = max(state["current"], epoch)
        return
    if epoch in state["destroyed"] or epoch != state["current"] + 1:
        raise ValueError(f"epoch {epoch} cannot follow epoch {state['current']}")
    state["keys"][epoch] = os.urandom(domain.MASTER_KEY_BYTES)
    state["current"] = epoch


def _destroy(state: dict, epoch: int) -> None:
    if epoch == state["current"]:
        raise ValueError("the current epoch's key is never destroyed")
    if state["keys"].pop(epoch, None) is not None or epoch not in state["destroyed"]:
        state["destroyed"].append(epoch)
