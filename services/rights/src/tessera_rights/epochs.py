"""Key epochs: participants' data keys wrapped under the keyring's current epoch, and the
rotation that retires an epoch (DESIGN.md §4.10).

An erased participant's wrapped key is deleted, but its bytes stay in the rights
database's dead tuples, free space, WAL and backups, readable by whoever holds the
key they were wrapped under. So the wrapping key rotates:

1. Epoch N+1 is made (in ``key_epochs``, then in the keyring) and is current for new
   wraps at once.
2. Every live key under an older epoch is re-wrapped under N+1, tenant by tenant in
   keyset batches, each batch its own short unit that skips rows another unit holds
   (a key being destroyed); reads never wait. Requests keep being served throughout.
3. Each old epoch is retired when no key is left under it: under the epoch's lock, so
   no replica stores a key under it any more, its key is destroyed in the keyring and
   ``retired_at`` is set. From then on, every leftover copy of a key erased under that
   epoch is unreadable with any key the system holds: the erasure is final.
4. The retirement is written into the audit chain of every tenant with erasures that
   it made final (an erasure records its epoch as ``final_after_epoch``). The chain is
   per tenant and a tenant's auditor reads only their own, so the platform-wide event
   appears where it proves something to that tenant; a tenant with no erasure under
   the epoch has nothing it changes, and an entry in every tenant's chain every day
   would grow every chain for nothing. The request itself shows ``final_at``.

Replicas: one rotation at a time (a database session lock); any replica may run the
daily round, the others find the lock taken and skip. A rotation that dies half-way is
finished by the next: an epoch already made is reused, keys left under old epochs are
swept, an epoch whose key was destroyed is retired, a missing audit entry is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tessera_common.logs import get_logger
from tessera_common.postgres import now_ms
from tessera_rights import domain
from tessera_rights.keyring import Keyring, UnknownEpoch
from tessera_rights.store import EpochClosed, RightsStore

log = get_logger(__name__)
#: Sweep passes before a rotation gives up retiring an epoch (keys held by long units
#: each pass); it is finished by the next rotation.
SWEEP_PASSES = 5


class KeyringMismatch(RuntimeError):
    """The database uses an epoch the keyring does not hold: the keyring is not the
    shared one (a replica with a file of its own, a lost volume)."""


@dataclass(frozen=True)
class Rotation:
    epoch: int
    retired: list[int]
    rewrapped: int
    #: Old epochs with keys still left (held by other units): the next rotation retires them.
    left: list[int]


class KeyEpochs:
    def __init__(self, store: RightsStore, keyring: Keyring, batch: int = 1000) -> None:
        self.store = store
        self.keyring = keyring
        self.batch = batch

    # --- wrapping data keys -----------------------------------------------

    async def wrap(self, key: bytes, *, participant_id: str, tenant_id: str, key_id: str,
                   created_at: datetime) -> domain.WrappedDataKey:
        epoch, nonce, wrapped = await self.keyring.wrap(key, domain.data_key_associated(participant_id, key_id))
        return domain.WrappedDataKey(participant_id, tenant_id, key_id, nonce, wrapped, created_at, epoch)

    async def unwrap(self, record: domain.WrappedDataKey) -> bytes:
        """Raises :class:`.domain.KeyUnwrapFailed` or :class:`.keyring.UnknownEpoch`."""
        return await self.keyring.unwrap(record.epoch, record.nonce, record.wrapped,
                                         domain.data_key_associated(record.participant_id, record.key_id))

    async def store_new(self, key: bytes, marker: str, **fields: Any) -> tuple[domain.WrappedDataKey | None, bool]:
        """Wrap ``key`` and store it (see :meth:`.store.RightsStore.add_data_key`); if
        a rotation retired the epoch it was wrapped under meanwhile, wrap it again."""
        for _ in range(3):
            record = await self.wrap(key, **fields)
            try:
                return await self.store.add_data_key(record, marker)
            except EpochClosed:
                log.info("data_key_wrapped_again", epoch=record.epoch)
        raise RuntimeError("the keyring's current epoch kept being retired")

    async def check(self) -> None:
        """At start: every epoch the database still uses must be in the keyring."""
        held = set(await self.keyring.held_epochs())
        missing = [e["epoch"] for e in await self.store.key_epochs()
                   if e["retired_at"] is None and e["epoch"] not in held
                   # an epoch with no key under it is harmless: a rotation that died
                   # between the database and the keyring; the next one finishes it
                   and await self.store.next_tenant_with_epoch(e["epoch"], "") is not None]
        if missing:
            raise KeyringMismatch(f"the keyring lacks epoch(s) {missing} that the database uses: "
                                  "is TESSERA_KEYRING_PATH the keyring every replica shares?")

    # --- rotation --------------------------------------------------------

    async def epochs(self) -> list[dict[str, Any]]:
        return await self.store.key_epochs()

    async def rotate_if_due(self, now: datetime, interval_seconds: float) -> Rotation | None:
        """The scheduled round, run by every replica: rotate when the newest epoch is
        ``interval_seconds`` old, or an older one is still unretired (a rotation that
        could not finish); otherwise nothing. Replicas that find it due together
        rotate once: the others find the lock taken, then the new epoch young."""
        if not _due(await self.store.key_epochs(), now, interval_seconds):
            return None
        rotation = await self.rotate(when_due=(now, interval_seconds))
        if rotation is not None:
            log.info("key_rotation_done", epoch=rotation.epoch, rewrapped=rotation.rewrapped,
                     retired=rotation.retired, left=rotation.left)
        return rotation

    async def rotate(self, when_due: tuple[datetime, float] | None = None) -> Rotation | None:
        """One rotation; None if another replica is rotating now (or, ``when_due``, if
        it is not due any more: another replica just rotated)."""
        if not self.keyring.durable:
            raise RuntimeError("this keyring is in memory only: rotation needs TESSERA_KEYRING_PATH")
        async with self.store.rotation_lock() as mine:
            if not mine or (when_due and not _due(await self.store.key_epochs(), *when_due)):
                return None
            new = await self.keyring.current_epoch() + 1
            await self.store.add_key_epoch(new, now_ms())
            await self.keyring.create_epoch(new)
            log.info("key_epoch_created", epoch=new)
            old = [e["epoch"] for e in await self.store.key_epochs() if e["retired_at"] is None and e["epoch"] < new]
            rewrapped, retired = 0, []
            for _ in range(SWEEP_PASSES):
                for epoch in old:
                    rewrapped += await self._sweep(epoch, new)
                for epoch in list(old):
                    if await self.store.retire_epoch(epoch, now_ms(), self._destroyer(epoch)):
                        old.remove(epoch)
                        retired.append(epoch)
                        log.info("key_epoch_retired", epoch=epoch)
                if not old:
                    break
            await self._audit_retirements(new)
        return Rotation(new, retired, rewrapped, old)

    def _destroyer(self, epoch: int):  # type: ignore[no-untyped-def]
        async def destroy() -> None:
            await self.keyring.destroy_epoch(epoch)
        return destroy

    async def _sweep(self, epoch: int, to_epoch: int) -> int:
        """One pass over every tenant's keys under ``epoch``."""
        rewrapped, tenant = 0, ""

        async def rewrap(record: domain.WrappedDataKey) -> tuple[bytes, bytes]:
            associated = domain.data_key_associated(record.participant_id, record.key_id)
            return await self.keyring.rewrap(epoch, record.nonce, record.wrapped, associated, to_epoch)

        while (tenant := await self.store.next_tenant_with_epoch(epoch, tenant)) is not None:
            after: str | None = ""
            while after is not None:
                done, after = await self.store.rewrap_batch(tenant, epoch, after, self.batch, to_epoch, rewrap)
                rewrapped += done
        return rewrapped

    async def _audit_retirements(self, successor: int) -> None:
        """Every retired epoch not yet audited (this rotation's, or one a crash left):
        an entry in each concerned tenant's chain, once (a tenant whose chain has it
        already is skipped), then the epoch is marked audited."""
        for epoch in await self.store.key_epochs():
            if epoch["retired_at"] is None or epoch["audited_at"] is not None:
                continue
            record = {
                "at": now_ms().isoformat(), "action": "key_epoch_retired", "request_id": None, "kind": None,
                "actor": "platform", "reason": "key_rotation", "subject": None, "scope": None,
                "epoch": epoch["epoch"], "successor": successor, "retired_at": epoch["retired_at"].isoformat(),
            }
            for tenant_id in await self.store.tenants_final_after(epoch["epoch"]):
                async with self.store.unit(tenant_id) as uow:
                    await uow.lock_chain()
                    if await uow.connection.fetchval(
                            "SELECT 1 FROM audit WHERE tenant_id = $1 AND record @> $2::jsonb", tenant_id,
                            {"action": "key_epoch_retired", "epoch": epoch["epoch"]}):
                        continue
                    await uow.append_audit(record)
            await self.store.epoch_audited(epoch["epoch"], now_ms())


def _due(found: list[dict[str, Any]], now: datetime, interval_seconds: float) -> bool:
    if not found:
        return False
    leftover = any(e["retired_at"] is None for e in found[:-1])
    return leftover or (now - found[-1]["created_at"]).total_seconds() >= interval_seconds


__all__ = ["KeyEpochs", "KeyringMismatch", "Rotation", "UnknownEpoch"]
