"""The rights service's PostgreSQL tables (``migrations/``); nothing else touches them.

- ``data_keys``: a participant's data key, only wrapped under one key epoch's wrapping
  key (:mod:`.keyring`), never in plaintext; one per participant.
- ``key_epochs``: the epochs, when each was made and retired (its key destroyed); no
  key material. Platform-wide, not tenant data.
- ``erased_participants``: the erased marker (an HMAC of the participant ID,
  :func:`tessera_common.secrets.erased_marker`), never the raw ID.
- ``tenants``: tenant ID → API key hash (from ``tenant-registered``) and retention rules.
- ``requests``: one per rights request, with its deadline and per-store progress. The
  raw participant ID is kept (retries and access need it) until the participant's
  erasure completes, which removes it from all their requests; ``subject`` (the
  marker) stays.
- ``audit`` and ``audit_heads``: the hash-chained trail, one row per ``(tenant, seq)``,
  and per tenant the last seq and hash, so that removing the newest entries is
  detected too. The service role may only add to ``audit`` (the migration revokes
  UPDATE and DELETE).

Every method is one unit of work scoped to its tenant by row-level security. The
desk's multi-step changes use :class:`RightsUnit` directly: one transaction that
locks the tenant's chain head first, so a request's progress, its audit entries and
its outbox events commit together and in one order, from any number of replicas.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from tessera_common.events import (
    DataKeyDestroyed,
    DataKeyDestroyedData,
    TenantRegistered,
    Topics,
    partition_key,
)
from tessera_common.tenant_access import TenantAccessStore
from tessera_common.postgres import Database, UnitOfWork
from tessera_rights.domain import GENESIS_HASH, WrappedDataKey, chain_entry

#: A request's columns as the desk sees them (the status secret's hash apart).
REQUEST_COLUMNS = (
    "request_id, tenant_id, participant_id, subject, kind, actor, reason, scope, status, open_rank,"
    " received_at, deadline, completed_at, attempts, next_retry_at, progress, receipt, final_after_epoch,"
    " (SELECT retired_at FROM key_epochs WHERE key_epochs.epoch = requests.final_after_epoch) AS final_at"
)
#: What :meth:`RightsUnit.update_request` may change.
UPDATABLE = frozenset({"participant_id", "status", "open_rank", "completed_at", "attempts", "next_retry_at",
                       "progress", "receipt"})
#: Namespace of the advisory locks that put one participant's key creation and
#: destruction one after the other (pg_advisory_xact_lock(int, int) keys).
DATA_KEY_LOCKS = 0x7269  # "ri"
#: Namespace of the key-epoch locks: (EPOCH_LOCKS, epoch) is taken shared by a unit that
#: stores a key under that epoch and exclusively by the epoch's retirement, so no key is
#: stored under an epoch once its retirement found none left; (EPOCH_LOCKS, 0), a
#: session lock, makes one rotation at a time across replicas.
EPOCH_LOCKS = 0x6b65  # "ke"


class EpochClosed(Exception):
    """A key was wrapped under an epoch that is retired (this replica's keyring was
    behind a rotation): wrap it again under the current epoch."""


class RightsUnit(UnitOfWork):
    """One transaction of one tenant's rights data; see :class:`UnitOfWork`."""

    _head: tuple[int, str] | None = None

    # --- the audit trail -------------------------------------------------

    async def lock_chain(self) -> tuple[int, str]:
        """Lock the tenant's chain head until commit and return it.

        Every unit that appends takes this lock before any request row: one tenant's
        appends follow each other (no two entries claim a position, none is lost), and
        units never wait on each other's request rows in opposite orders."""
        if self._head is not None:
            return self._head
        head = await self.connection.fetchrow(
            "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE", self.tenant_id)
        if head is None:
            # The tenant's first entry: whoever inserts the head first wins, the other
            # waits for that commit and then locks the row it made.
            await self.connection.execute(
                "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
                self.tenant_id, GENESIS_HASH)
            head = await self.connection.fetchrow(
                "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE", self.tenant_id)
        self._head = (head["seq"], head["hash"])
        return self._head

    async def append_audit(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` to the tenant's chain and move the head, in this unit's
        transaction: an entry and the head never disagree, whatever crashes."""
        seq, prev_hash = await self.lock_chain()
        entry = chain_entry(prev_hash, seq + 1, record)
        await self.connection.execute(
            "INSERT INTO audit (tenant_id, seq, prev_hash, hash, record) VALUES ($1, $2, $3, $4, $5)",
            self.tenant_id, entry["seq"], entry["prev_hash"], entry["hash"], entry["record"])
        await self.connection.execute(
            "UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1",
            self.tenant_id, entry["seq"], entry["hash"])
        self._head = (entry["seq"], entry["hash"])
        return entry

    # --- requests --------------------------------------------------------

    async def insert_request(self, request: dict[str, Any]) -> None:
        """Raises :data:`UniqueViolation` if the participant already has an open
        request of this kind and scope (erasure, objection): the caller returns it."""
        await self.connection.execute(
            "INSERT INTO requests (tenant_id, request_id, participant_id, subject, kind, actor, reason, scope,"
            " status, open_rank, received_at, deadline, completed_at, attempts, next_retry_at, progress,"
            " receipt, status_secret_sha256, final_after_epoch)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            self.tenant_id, request["_id"], request["participant_id"], request["subject"], request["kind"],
            request["actor"], request["reason"], request["scope"], request["status"], request["open_rank"],
            request["received_at"], request["deadline"], request["completed_at"], request["attempts"],
            request["next_retry_at"], _progress_out(request["progress"]), request.get("receipt"),
            request.get("status_secret_sha256"), request.get("final_after_epoch"),
        )

    async def request_for_update(self, request_id: str) -> dict[str, Any] | None:
        """The request, locked until commit: concurrent confirmations of different
        stores apply one after the other, each to the progress the other left."""
        row = await self.connection.fetchrow(
            f"SELECT {REQUEST_COLUMNS} FROM requests WHERE tenant_id = $1 AND request_id = $2 FOR UPDATE",
            self.tenant_id, request_id)
        return _request(row) if row is not None else None

    async def update_request(self, request_id: str, fields: dict[str, Any]) -> None:
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"not a changeable request field: {sorted(unknown)}")
        names = sorted(fields)
        values = [_progress_out(fields[n]) if n == "progress" else fields[n] for n in names]
        assignments = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
        await self.connection.execute(
            f"UPDATE requests SET {assignments} WHERE tenant_id = $1 AND request_id = $2",
            self.tenant_id, request_id, *values)

    async def forget_participant(self, subject: str) -> None:
        """After an erasure: no request of the participant keeps their raw ID (the
        marker stays, so the requests are still theirs to list, by status secret)."""
        await self.connection.execute(
            "UPDATE requests SET participant_id = NULL"
            " WHERE tenant_id = $1 AND subject = $2 AND participant_id IS NOT NULL",
            self.tenant_id, subject)

    # --- data keys -------------------------------------------------------

    async def lock_participant_key(self, marker: str) -> None:
        """Until commit, no other unit creates or destroys this participant's key."""
        await self.connection.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", DATA_KEY_LOCKS, marker)

    async def destroy_data_key(self, marker: str, participant_id: str, now: datetime) -> tuple[int, int]:
        """The first step of an erasure: the marker, then the key, under the
        participant's key lock, so a key created concurrently either is deleted here or
        is refused because it sees the marker. Idempotent: the first erasure's time
        stays. Deletes only this tenant's key (row-level security).

        Returns the keys deleted and the epoch after whose retirement the erasure is
        final: the deleted row's epoch (epochs only grow, so every older copy of the
        wrapped key is under that epoch or an earlier one); with no row (destroyed
        before, or never made), the newest epoch, which covers any earlier copy."""
        await self.lock_participant_key(marker)
        await self.connection.execute(
            "INSERT INTO erased_participants (marker, erased_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            marker, now)
        epochs = await self.connection.fetch(
            "DELETE FROM data_keys WHERE tenant_id = $1 AND participant_id = $2 RETURNING epoch",
            self.tenant_id, participant_id)
        if epochs:
            return len(epochs), max(row["epoch"] for row in epochs)
        return 0, await self.connection.fetchval("SELECT max(epoch) FROM key_epochs")

    async def is_erased(self, marker: str) -> bool:
        return await self.connection.fetchval(
            "SELECT 1 FROM erased_participants WHERE marker = $1", marker) is not None

    async def outstanding_holds(self, participant_id: str, now: datetime) -> list[dict[str, Any]]:
        """The processes that may still have the participant's key in memory: those
        that have not confirmed dropping it and whose bound has not passed. Read after
        the key's destruction under the participant's key lock, the set can only
        shrink: no hold is added for a key that is gone."""
        rows = await self.connection.fetch(
            "SELECT holder, held_until FROM key_holders WHERE tenant_id = $1 AND participant_id = $2"
            " AND dropped_at IS NULL AND held_until > $3 ORDER BY holder",
            self.tenant_id, participant_id, now)
        return [dict(row) for row in rows]

    async def record_drop(self, participant_id: str, holder: str, now: datetime) -> bool:
        """A holder's word that it dropped the participant's key; False if it was not
        recorded as holding it (or said so already)."""
        status = await self.connection.execute(
            "UPDATE key_holders SET dropped_at = $4 WHERE tenant_id = $1 AND participant_id = $2 AND holder = $3"
            " AND dropped_at IS NULL", self.tenant_id, participant_id, holder, now)
        return status == "UPDATE 1"

    async def dropped_holds(self, participant_id: str) -> int:
        return await self.connection.fetchval(
            "SELECT count(*) FROM key_holders WHERE tenant_id = $1 AND participant_id = $2 AND dropped_at IS NOT NULL",
            self.tenant_id, participant_id)

    async def forget_holds(self, participant_id: str) -> None:
        await self.connection.execute(
            "DELETE FROM key_holders WHERE tenant_id = $1 AND participant_id = $2", self.tenant_id, participant_id)


class RightsStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        #: which keys open the tenant's routes (from the gateway's ``tenant-access-changed``)
        self.access = TenantAccessStore(database, "rights")

    def unit(self, tenant_id: str | None) -> RightsUnit:
        return RightsUnit(self.database, tenant_id)

    # --- tenants ---------------------------------------------------------

    async def register_tenant(self, event: TenantRegistered, consumer: str) -> None:
        async with self.unit(event.tenant_id) as uow:
            if not await uow.first_delivery(consumer, event.id):
                return
            await uow.connection.execute(
                "INSERT INTO tenants (tenant_id, api_key_sha256) VALUES ($1, $2)"
                " ON CONFLICT (tenant_id) DO UPDATE SET api_key_sha256 = EXCLUDED.api_key_sha256",
                event.tenant_id, event.data.api_key_sha256)


    async def retention(self, tenant_id: str) -> dict[str, Any]:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT answers_days_after_close, idle_device_days FROM tenants WHERE tenant_id = $1", tenant_id)
        return dict(row) if row is not None else {}

    async def set_retention(self, tenant_id: str, rules: dict[str, Any]) -> None:
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "UPDATE tenants SET answers_days_after_close = $2, idle_device_days = $3 WHERE tenant_id = $1",
                tenant_id, rules.get("answers_days_after_close"), rules.get("idle_device_days"))

    async def tenants_with_retention(self) -> list[dict[str, Any]]:
        """Across tenants through the migration's definer function, then each tenant's
        rules read in that tenant's own unit."""
        async with self.unit(None) as uow:
            tenant_ids = [row[0] for row in await uow.connection.fetch("SELECT * FROM tenants_with_retention()")]
        found = []
        for tenant_id in tenant_ids:
            rules = await self.retention(tenant_id)
            if any(v is not None for v in rules.values()):
                found.append({"_id": tenant_id, "retention": rules})
        return found

    # --- requests --------------------------------------------------------

    async def request(self, tenant_id: str, request_id: str, *, with_secret: bool = False) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            return await _read_request(uow.connection, tenant_id, request_id, with_secret)

    async def request_by_id(self, request_id: str, *, with_secret: bool = False) -> dict[str, Any] | None:
        """For the status-secret route, which names no tenant: the request's tenant
        from the definer function, then the request in that tenant's scope."""
        async with self.unit(None) as uow:
            tenant_id = await uow.connection.fetchval("SELECT request_tenant($1)", request_id)
            if tenant_id is None:
                return None
            await uow.connection.execute("SELECT set_config('tessera.tenant_id', $1, true)", tenant_id)
            return await _read_request(uow.connection, tenant_id, request_id, with_secret)

    async def open_request(self, tenant_id: str, kind: str, subject: str, scope: str | None) -> dict[str, Any] | None:
        """The participant's open request of this kind and scope, if any: a second
        erasure while one runs returns the first rather than starting another."""
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                f"SELECT {REQUEST_COLUMNS} FROM requests WHERE tenant_id = $1 AND subject = $2 AND kind = $3"
                " AND status = 'in_progress' AND coalesce(scope, '') = coalesce($4, '')",
                tenant_id, subject, kind, scope)
        return _request(row) if row is not None else None

    async def list_requests(self, tenant_id: str, *, status: str | None = None, kind: str | None = None,
                            subject: str | None = None, deadline_from: datetime | None = None,
                            deadline_before: datetime | None = None, limit: int = 100, skip: int = 0,
                            ) -> list[dict[str, Any]]:
        """Open requests first, nearest deadline first (so overdue, then at risk), then
        closed ones, newest first. ``deadline_before`` is exclusive, ``deadline_from``
        inclusive (the route's urgency filters)."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                f"SELECT {REQUEST_COLUMNS} FROM requests WHERE tenant_id = $1"
                " AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)"
                " AND ($4::text IS NULL OR subject = $4)"
                " AND ($5::timestamptz IS NULL OR deadline >= $5) AND ($6::timestamptz IS NULL OR deadline < $6)"
                " ORDER BY open_rank, deadline, received_at DESC, request_id LIMIT $7 OFFSET $8",
                tenant_id, status, kind, subject, deadline_from, deadline_before, limit, skip)
        return [_request(row) for row in rows]

    async def requests_of(self, tenant_id: str, subject: str, limit: int = 100) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                f"SELECT {REQUEST_COLUMNS} FROM requests WHERE tenant_id = $1 AND subject = $2"
                " ORDER BY received_at DESC, request_id LIMIT $3",
                tenant_id, subject, limit)
        return [_request(row) for row in rows]

    async def due_retries(self, now: datetime, limit: int = 100) -> list[tuple[str, str]]:
        """(tenant, request) pairs of open requests due for a retry, across tenants
        (the migration's definer function); each is then handled in its own tenant's
        unit, which checks again under the row's lock that it is still due."""
        async with self.unit(None) as uow:
            rows = await uow.connection.fetch("SELECT tenant_id, request_id FROM due_retries($1, $2)", now, limit)
        return [(row["tenant_id"], row["request_id"]) for row in rows]

    async def open_requests(self, now: datetime) -> tuple[int, int]:
        """(open, of which past their deadline), across tenants: counts for the metrics."""
        async with self.unit(None) as uow:
            row = await uow.connection.fetchrow("SELECT open, overdue FROM open_requests_summary($1)", now)
        return row["open"], row["overdue"]

    # --- the audit trail -------------------------------------------------

    async def audit_head(self, tenant_id: str) -> tuple[int, str] | None:
        async with self.unit(tenant_id) as uow:
            head = await uow.connection.fetchrow(
                "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 AND seq > 0", tenant_id)
        return (head["seq"], head["hash"]) if head else None

    async def audit_entries(self, tenant_id: str, after_seq: int = 0, limit: int | None = None,
                            ) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT seq, prev_hash, hash, record FROM audit WHERE tenant_id = $1 AND seq > $2"
                " ORDER BY seq LIMIT $3",
                tenant_id, after_seq, limit)
        return [dict(row) for row in rows]

    async def audit_chain(self, tenant_id: str) -> tuple[tuple[int, str] | None, list[dict[str, Any]]]:
        """The head and every entry, read by one statement (one snapshot), so an append
        committed meanwhile cannot make an intact chain look cut or overrun."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT h.seq AS head_seq, h.hash AS head_hash, a.seq, a.prev_hash, a.hash, a.record"
                " FROM (SELECT $1::text AS tenant_id) AS t"
                " LEFT JOIN audit_heads AS h ON h.tenant_id = t.tenant_id AND h.seq > 0"
                " LEFT JOIN audit AS a ON a.tenant_id = t.tenant_id"
                " ORDER BY a.seq",
                tenant_id)
        head = (rows[0]["head_seq"], rows[0]["head_hash"]) if rows and rows[0]["head_seq"] is not None else None
        entries = [{"seq": r["seq"], "prev_hash": r["prev_hash"], "hash": r["hash"], "record": r["record"]}
                   for r in rows if r["seq"] is not None]
        return head, entries

    # --- data keys -------------------------------------------------------

    async def add_data_key(self, record: WrappedDataKey, marker: str) -> tuple[WrappedDataKey | None, bool]:
        """Insert ``record`` unless the participant already has a key or was erased.
        Returns the key stored now and whether it is ``record``; ``(None, False)`` if
        the participant was erased (before, or by an erasure that won the race).
        Raises :class:`EpochClosed` if ``record``'s epoch is retired."""
        async with self.unit(record.tenant_id) as uow:
            await uow.lock_participant_key(marker)
            if await uow.is_erased(marker):
                return None, False
            await uow.connection.execute("SELECT pg_advisory_xact_lock_shared($1, $2)", EPOCH_LOCKS, record.epoch)
            if not await uow.connection.fetchval(
                    "SELECT retired_at IS NULL FROM key_epochs WHERE epoch = $1", record.epoch):
                raise EpochClosed(record.epoch)
            inserted = await uow.connection.fetchval(
                "INSERT INTO data_keys (tenant_id, participant_id, key_id, nonce, wrapped, created_at, epoch)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING 1",
                record.tenant_id, record.participant_id, record.key_id, record.nonce, record.wrapped,
                record.created_at, record.epoch)
        if inserted:
            return record, True
        return await self.data_key(record.participant_id), False

    async def data_key(self, participant_id: str) -> WrappedDataKey | None:
        """The participant's key, whichever tenant's (the caller compares tenants)."""
        async with self.unit(None) as uow:
            tenant_id = await uow.connection.fetchval("SELECT data_key_tenant($1)", participant_id)
            if tenant_id is None:
                return None
            await uow.connection.execute("SELECT set_config('tessera.tenant_id', $1, true)", tenant_id)
            row = await uow.connection.fetchrow(
                "SELECT participant_id, tenant_id, key_id, nonce, wrapped, created_at, epoch FROM data_keys"
                " WHERE tenant_id = $1 AND participant_id = $2", tenant_id, participant_id)
        return WrappedDataKey(**dict(row)) if row is not None else None

    async def destroy_data_key(self, marker: str, participant_id: str, now: datetime) -> int:
        """The internal route's erasure of a key, which names no tenant: the marker
        first, then the key of whichever tenant holds it, in one unit."""
        async with self.unit(None) as uow:
            # Locked before looking: a key created meanwhile is then either seen here
            # or refused by the marker this unit writes.
            await uow.lock_participant_key(marker)
            tenant_id = await uow.connection.fetchval("SELECT data_key_tenant($1)", participant_id)
            if tenant_id is not None:
                uow.tenant_id = tenant_id
                await uow.connection.execute("SELECT set_config('tessera.tenant_id', $1, true)", tenant_id)
            destroyed, _ = await uow.destroy_data_key(marker, participant_id, now)
            if destroyed and tenant_id is not None:  # every cache that holds it drops it
                event = DataKeyDestroyed(
                    source="tessera/rights", subject=marker, tenant_id=tenant_id,
                    data=DataKeyDestroyedData(participant_id=participant_id, destroyed_at=now))
                await uow.publish(event, Topics.DATA_KEY_DESTROYED, partition_key(participant_id),
                                  aggregatetype="data_key")
            return destroyed

    async def is_erased(self, marker: str) -> bool:
        async with self.unit(None) as uow:
            return await uow.is_erased(marker)

    async def data_keys_of(self, tenant_id: str, participant_ids: list[str]) -> list[WrappedDataKey]:
        """The keys of those of ``participant_ids`` that have one in this tenant (row-level
        security hides every other tenant's)."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT participant_id, tenant_id, key_id, nonce, wrapped, created_at, epoch FROM data_keys"
                " WHERE tenant_id = $1 AND participant_id = ANY($2::text[])", tenant_id, participant_ids)
        return [WrappedDataKey(**dict(row)) for row in rows]

    async def hold_keys(self, tenant_id: str, markers: dict[str, str], holder: str, until: datetime) -> set[str]:
        """Record ``holder`` as holding the keys of the participants in ``markers``
        (participant ID → erased marker) until ``until``, and return those whose key
        still exists: the caller hands out only those. Each participant's key lock is
        taken shared, so this waits for a destruction under way and a destruction waits
        for this: a destruction either comes first (the key is not handed out) or sees
        this hold (and waits for the holder to drop the key)."""
        participant_ids = sorted(markers)
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "SELECT pg_advisory_xact_lock_shared($1, hashtext(m)) FROM unnest($2::text[]) AS m ORDER BY m",
                DATA_KEY_LOCKS, [markers[p] for p in participant_ids])
            present = await uow.connection.fetch(
                "SELECT participant_id FROM data_keys WHERE tenant_id = $1 AND participant_id = ANY($2::text[])",
                tenant_id, participant_ids)
            held = [row["participant_id"] for row in present]
            if held:
                await uow.connection.execute(
                    "INSERT INTO key_holders (tenant_id, participant_id, holder, held_until)"
                    " SELECT $1, p, $3, $4 FROM unnest($2::text[]) AS p"
                    " ON CONFLICT (tenant_id, participant_id, holder) DO UPDATE"
                    " SET held_until = greatest(key_holders.held_until, EXCLUDED.held_until), dropped_at = NULL",
                    tenant_id, held, holder, until)
        return set(held)

    async def forget_expired_holds(self, now: datetime) -> int:
        async with self.unit(None) as uow:
            return await uow.connection.fetchval("SELECT forget_expired_key_holds($1)", now)

    # --- key epochs ------------------------------------------------------

    async def key_epochs(self) -> list[dict[str, Any]]:
        async with self.unit(None) as uow:
            rows = await uow.connection.fetch(
                "SELECT epoch, created_at, retired_at, audited_at FROM key_epochs ORDER BY epoch")
        return [dict(row) for row in rows]

    async def add_key_epoch(self, epoch: int, now: datetime) -> None:
        async with self.unit(None) as uow:
            await uow.connection.execute(
                "INSERT INTO key_epochs (epoch, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING", epoch, now)

    @contextlib.asynccontextmanager
    async def rotation_lock(self) -> AsyncIterator[bool]:
        """One rotation at a time across replicas: a session lock on a connection held
        for the whole rotation (a replica that dies releases it with its connection).
        Yields False, at once, while another replica holds it."""
        async with self.database.pool.acquire() as connection:
            held = await connection.fetchval("SELECT pg_try_advisory_lock($1, 0)", EPOCH_LOCKS)
            try:
                yield held
            finally:
                if held:
                    await connection.execute("SELECT pg_advisory_unlock($1, 0)", EPOCH_LOCKS)

    async def next_tenant_with_epoch(self, epoch: int, after: str) -> str | None:
        async with self.unit(None) as uow:
            return await uow.connection.fetchval("SELECT next_tenant_with_epoch($1, $2)", epoch, after)

    async def rewrap_batch(
        self, tenant_id: str, epoch: int, after: str, limit: int, to_epoch: int,
        rewrap: Callable[[WrappedDataKey], Awaitable[tuple[bytes, bytes]]],
    ) -> tuple[int, str | None]:
        """Re-wrap up to ``limit`` of the tenant's keys under ``epoch`` after participant
        ``after`` (keyset order) to ``to_epoch``, in one short unit. Rows another unit
        holds (a key being destroyed) are skipped, and the sweep comes back for them;
        reading a key never waits. Returns the keys re-wrapped and the last participant
        looked at (None: the tenant has no more under ``epoch`` after ``after``)."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT participant_id, tenant_id, key_id, nonce, wrapped, created_at, epoch FROM data_keys"
                " WHERE epoch = $1 AND tenant_id = $2 AND participant_id > $3"
                " ORDER BY participant_id LIMIT $4 FOR UPDATE SKIP LOCKED",
                epoch, tenant_id, after, limit)
            if not rows:
                return 0, None
            participants, nonces, wrapped = [], [], []
            for row in rows:
                nonce, sealed = await rewrap(WrappedDataKey(**dict(row)))
                participants.append(row["participant_id"])
                nonces.append(nonce)
                wrapped.append(sealed)
            status = await uow.connection.execute(
                "UPDATE data_keys AS d SET epoch = $3, nonce = u.nonce, wrapped = u.wrapped"
                " FROM unnest($2::text[], $4::bytea[], $5::bytea[]) AS u (participant_id, nonce, wrapped)"
                " WHERE d.tenant_id = $1 AND d.participant_id = u.participant_id AND d.epoch = $6",
                tenant_id, participants, to_epoch, nonces, wrapped, epoch)
        return int(status.split()[-1]), participants[-1]

    async def retire_epoch(self, epoch: int, now: datetime, destroy: Callable[[], Awaitable[None]]) -> bool:
        """Retire ``epoch`` if no key is left under it: under the epoch's exclusive lock
        (no unit is storing a key under it, and none will: they see it retired), count,
        destroy its key (``destroy``, in the keyring), and record the time. False, and
        nothing changed, if keys are left. A crash after ``destroy`` and before commit
        leaves it unretired here; the next rotation finds no key left and retires it."""
        async with self.unit(None) as uow:
            await uow.connection.execute("SELECT pg_advisory_xact_lock($1, $2)", EPOCH_LOCKS, epoch)
            if await uow.connection.fetchval("SELECT keys_under_epoch($1)", epoch):
                return False
            await destroy()
            await uow.connection.execute(
                "UPDATE key_epochs SET retired_at = $2 WHERE epoch = $1 AND retired_at IS NULL", epoch, now)
        return True

    async def tenants_final_after(self, epoch: int) -> list[str]:
        async with self.unit(None) as uow:
            return [row[0] for row in await uow.connection.fetch("SELECT * FROM tenants_final_after($1)", epoch)]

    async def epoch_audited(self, epoch: int, now: datetime) -> None:
        async with self.unit(None) as uow:
            await uow.connection.execute("UPDATE key_epochs SET audited_at = $2 WHERE epoch = $1", epoch, now)


async def _read_request(connection: asyncpg.Connection, tenant_id: str, request_id: str,
                        with_secret: bool) -> dict[str, Any] | None:
    secret = ", status_secret_sha256" if with_secret else ""
    row = await connection.fetchrow(
        f"SELECT {REQUEST_COLUMNS}{secret} FROM requests WHERE tenant_id = $1 AND request_id = $2",
        tenant_id, request_id)
    return _request(row) if row is not None else None


def _request(row: asyncpg.Record) -> dict[str, Any]:
    request = dict(row)
    request["_id"] = request.pop("request_id")
    request["progress"] = [
        {**p, "confirmed_at": datetime.fromisoformat(p["confirmed_at"]) if p.get("confirmed_at") else None}
        for p in request["progress"]
    ]
    return request


def _progress_out(progress: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """jsonb holds the confirmation times as ISO 8601 text."""
    return [{**p, "confirmed_at": p["confirmed_at"].isoformat() if p.get("confirmed_at") else None}
            for p in progress]
