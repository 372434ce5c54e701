"""The rights desk: what happens to a rights request, shared by the routes, the event
handlers and the background loops (retries, retention). The service layer between
the thin entry points and :mod:`.domain` (rules) and :mod:`.store` (persistence).

An erasure, in order (DESIGN.md §1, §4.3–§4.6):

1. The participant's data key is destroyed (an erased marker first), so every copy of
   their free text in Kafka is unreadable at once.
2. The request is written with its per-store progress, its audit entries, the
   ``erasure-requested`` event and the tenant's erasure notice: one unit of work, the
   events in its outbox, so all of it commits (key destruction included) or none.
3. Every store in the data map deletes and confirms with ``store-erasure-completed``;
   each confirmation is recorded, in the request and in the audit trail, in the unit
   that records the event as delivered (a redelivery changes nothing).
4. A store that has not confirmed is asked again with capped exponential back-off, for
   as long as it takes; the request stays ``in_progress`` and visible as such.
5. Only when every store confirmed is the request ``completed``: the raw participant ID
   is removed from it, and a receipt listing the stores is signed (Ed25519). The receipt
   names ``final_after_epoch``, the key epoch the destroyed key was wrapped under: once
   that epoch is retired (:mod:`.epochs`), no leftover copy of the wrapped key in any
   file or backup can be opened, and the request shows ``final_at``.

The audit trail gets an entry for each step, with the keyed marker in place of the
participant ID and nothing of the erased data.

Several replicas act on one database: every unit that changes a request locks the
tenant's audit chain head first (:meth:`.store.RightsUnit.lock_chain`), then the
request's row, so two confirmations, a confirmation and a retry, or two replicas'
retry sweeps apply one after the other, each to what the other committed. No HTTP call
to another service is made while a unit is open.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from opentelemetry import metrics
from opentelemetry.metrics import Observation
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tessera_common.datamap import erasure_stores, objection_stores
from tessera_common.events import (
    DataKeyDestroyed,
    DataKeyDestroyedData,
    ErasureRequested,
    ErasureRequestedData,
    EventEnvelope,
    ObjectionRecorded,
    ObjectionRecordedData,
    ParticipantErasureNotice,
    ParticipantErasureNoticeData,
    TenantRightsRequest,
    TenantRightsRequestData,
    Topics,
    partition_key,
)
from tessera_common.logs import get_logger
from tessera_common.postgres import UniqueViolation, now_ms
from tessera_common.secrets import erased_marker, new_id, new_split_secret, secret_hash
from tessera_rights import domain
from tessera_rights.store import RightsStore, RightsUnit

log = get_logger(__name__)
SOURCE = "tessera/rights"
STATUS_SECRET_PREFIX = "rss"
#: The outbox's aggregate type of the events a request causes (keyed by participant).
AGGREGATE = "rights_request"
#: This service's own store in the data map: it erases the data key itself, first.
OWN_STORE = "rights.data_keys"
#: Not a store but every process that may hold the destroyed key in memory (a bounded
#: cache, :mod:`tessera_common.datakeys`): an erasure waits for each to confirm that it
#: dropped the key, or for its bound to pass, and the receipt says so.
KEY_CACHES = "key_caches"
#: The stores that hold a participant's data and give it for access and export, by
#: the service that answers for them.
ACCESS_STORES = {"enrolment": "enrolment.devices", "dialogue": "dialogue.answers",
                 "analytics": "analytics.contributions"}


#: The desks of this process (one per service; several only where tests run several
#: apps in one process): the gauges below report the latest counts any of them made,
#: which every desk of a process counts alike (all tenants of one database).
_DESKS: weakref.WeakSet[Desk] = weakref.WeakSet()


def _observe(attribute: str):  # type: ignore[no-untyped-def]
    def observe(_options: Any) -> list[Observation]:
        return [Observation(max((getattr(desk, attribute) for desk in list(_DESKS)), default=0))]
    return observe


_METER = metrics.get_meter("tessera.rights")
_METER.create_observable_gauge("tessera_rights_requests_open", callbacks=[_observe("open_requests")], unit="1",
                               description="rights requests in progress, every tenant")
_METER.create_observable_gauge("tessera_rights_requests_overdue", callbacks=[_observe("overdue_requests")],
                               unit="1", description="rights requests in progress past their statutory deadline, "
                                                     "every tenant")


class RequestRefused(Exception):
    """The request cannot be taken: ``status`` and ``code`` for the 4xx that says why."""

    def __init__(self, status: int, code: str, message: str, more: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        #: What the refusal says besides code and message, passed on as the store said it
        #: (``personal_data``'s ``findings``: the spans an app points at).
        self.more = more or {}


class StoreUnavailable(Exception):
    """A store behind the request did not answer; the caller may retry."""


@dataclass(frozen=True)
class Timing:
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 900.0


@dataclass
class Received:
    request: dict[str, Any]
    created: bool
    #: Shown once, to the requester of an erasure: status and receipt after the device
    #: token stopped working.
    status_secret: str | None = None


class Desk:
    def __init__(
        self,
        store: RightsStore,
        stores: dict[str, httpx.AsyncClient],
        marker_key: str,
        signing_key: Ed25519PrivateKey,
        timing: Timing,
        ensure_topic: Callable[[str], Awaitable[None]],
    ) -> None:
        self.store = store
        self.stores = stores
        self.marker_key = marker_key
        self.signing_key = signing_key
        self.timing = timing
        self.ensure_topic = ensure_topic
        self._tenant_topics: set[str] = set()
        #: Counted by each retry sweep (every few seconds), reported as gauges.
        self.open_requests = self.overdue_requests = 0
        _DESKS.add(self)

    def marker(self, participant_id: str) -> str:
        return erased_marker(self.marker_key, participant_id)

    # --- receiving -------------------------------------------------------

    async def participant_of_tenant(self, tenant_id: str, participant_id: str, kind: str) -> None:
        """For a tenant's request: the participant must be the tenant's (enrolment
        knows), else 404, as for an ID that never existed; 409 if this tenant had them
        erased (another tenant's erased participant is as unknown as any other ID). An
        erasure asked for again while it still runs passes: :meth:`receive` answers
        with the open one, as for any repeated erasure."""
        try:
            response = await self.stores["enrolment"].get(
                f"/internal/v1/tenants/{tenant_id}/participants/{participant_id}")
        except httpx.HTTPError:
            raise StoreUnavailable("enrolment") from None
        if response.status_code == 404:
            erasures = [r for r in await self.store.requests_of(tenant_id, self.marker(participant_id))
                        if r["kind"] == "erasure" and r.get("scope") is None]
            if kind == "erasure" and any(r["status"] == "in_progress" for r in erasures):
                return  # the device is gone already, the erasure still runs: asked again, it is the answer
            if erasures:
                raise RequestRefused(409, "participant_erased", "this participant was erased; see request "
                                     + erasures[0]["_id"])
            raise RequestRefused(404, "participant_not_found", "this tenant has no such participant")
        if response.status_code != 200:
            raise StoreUnavailable("enrolment")

    async def receive(self, actor: domain.Actor, tenant_id: str, participant_id: str, kind: str,
                      *, answer_id: str | None = None, value: Any = None, scope: str | None = None) -> Received:
        """Take a request. A second erasure or objection of a participant (and scope)
        while one is open returns the open one: the store's unique index on open
        requests decides between replicas that take the same one at once."""
        subject = self.marker(participant_id)
        for _ in range(3):
            if kind in ("erasure", "objection"):
                existing = await self.store.open_request(tenant_id, kind, subject, scope)
                if existing is not None:
                    return Received(existing, created=False)
            try:
                return await self._receive(actor, tenant_id, participant_id, subject, kind, answer_id, value, scope)
            except UniqueViolation:
                if kind not in ("erasure", "objection"):
                    raise
                # Another replica opened the same request first: return that one.
        raise RuntimeError("the participant's open request kept changing")

    async def _receive(self, actor: domain.Actor, tenant_id: str, participant_id: str, subject: str, kind: str,
                       answer_id: str | None, value: Any, scope: str | None) -> Received:
        if kind != "erasure" and await self.store.is_erased(subject):
            raise RequestRefused(410, "participant_erased", "this participant was erased")
        now = now_ms()
        request: dict[str, Any] = {
            "_id": new_id("rr"),
            "tenant_id": tenant_id,
            "participant_id": participant_id,
            "subject": subject,
            "kind": kind,
            "actor": actor,
            "reason": actor if kind == "erasure" else None,
            "scope": scope,
            "status": "in_progress",
            "open_rank": 0,
            "received_at": now,
            "deadline": domain.statutory_deadline(now),
            "completed_at": None,
            "attempts": 0,
            "next_retry_at": None,
            "progress": [],
            "receipt": None,
            "final_after_epoch": None,
        }
        if kind == "erasure":
            return await self._erase(request)
        if kind == "objection":
            return await self._object(request)
        if kind == "rectification":
            return await self._rectify(request, answer_id, value)
        return await self._gather(request)

    async def _erase(self, request: dict[str, Any]) -> Received:
        participant_id, now = request["participant_id"], request["received_at"]
        status_secret = new_split_secret(STATUS_SECRET_PREFIX, request["_id"])
        request["status_secret_sha256"] = secret_hash(status_secret)
        stores = erasure_stores() - {OWN_STORE}
        request["next_retry_at"] = now + retry_delay(0, self.timing)
        notices = await self._tenant_topic(request["tenant_id"])  # exists before its event commits
        key = partition_key(participant_id)
        async with self.store.unit(request["tenant_id"]) as uow:
            await uow.lock_chain()
            await self.audit(uow, request, "request_received")
            destroyed_key = request["scope"] is None
            if destroyed_key:
                destroyed, request["final_after_epoch"] = await uow.destroy_data_key(
                    request["subject"], participant_id, now)
                await self.audit(uow, request, "data_key_destroyed", store=OWN_STORE)
                holds = await uow.outstanding_holds(participant_id, now)
                request["progress"] = [_confirmed(OWN_STORE, now, destroyed),
                                       _pending(KEY_CACHES) if holds else _confirmed(KEY_CACHES, now, 0)]
                if holds:  # settled by the holders' word, or at the latest when their bound passes
                    request["next_retry_at"] = min(request["next_retry_at"], max(h["held_until"] for h in holds))
            request["progress"] += [_pending(name) for name in sorted(stores)]
            await uow.insert_request(request)
            await self._tell_tenant(uow, request)
            if destroyed_key:
                await uow.publish(self._key_destroyed_event(request), Topics.DATA_KEY_DESTROYED, key,
                                  aggregatetype=AGGREGATE)
            erasure = self._erasure_event(request)
            notice = ParticipantErasureNotice(
                source=SOURCE, subject=request["_id"], tenant_id=request["tenant_id"],
                data=ParticipantErasureNoticeData(**erasure.data.model_dump(exclude={"stores"})),
            )
            await uow.publish(erasure, Topics.ERASURE_REQUESTED, key, aggregatetype=AGGREGATE)
            await uow.publish(notice, notices, key, aggregatetype=AGGREGATE)
            await self.audit(uow, request, "erasure_requested", stores=sorted(stores))
        self.store.database.vacuum_soon(["data_keys", "outbox"])
        log.info("erasure_requested", actor=request["actor"], scoped=request["scope"] is not None)
        return Received(_public(request), created=True, status_secret=status_secret)

    async def _tell_tenant(self, uow: RightsUnit, request: dict[str, Any]) -> None:
        """The request, as it is now, on the tenant's own topic, in the unit that made it
        so (received, completed)."""
        event = TenantRightsRequest(
            source=SOURCE, subject=request["_id"], tenant_id=request["tenant_id"],
            data=TenantRightsRequestData(
                request_id=request["_id"], participant_id=request.get("participant_id"), kind=request["kind"],
                actor=request["actor"], status=request["status"], received_at=request["received_at"],
                deadline=request["deadline"], completed_at=request.get("completed_at"),
                dialogue_id=request.get("scope")))
        # Keyed by the request (its completion carries no participant ID), so a request's
        # events stay in order on one partition.
        await uow.publish(event, Topics.for_tenant(request["tenant_id"]), request["_id"].encode(),
                          aggregatetype=AGGREGATE, aggregateid=request["_id"])

    def _key_destroyed_event(self, request: dict[str, Any]) -> DataKeyDestroyed:
        """To every process that caches data keys (each replica reads it)."""
        return DataKeyDestroyed(
            source=SOURCE, subject=request["_id"], tenant_id=request["tenant_id"],
            data=DataKeyDestroyedData(participant_id=request["participant_id"], request_id=request["_id"],
                                      destroyed_at=request["received_at"]),
        )

    async def key_dropped(self, tenant_id: str, participant_id: str, holder: str, request_id: str | None) -> bool:
        """A holder's confirmation that it dropped the participant's key from its
        cache; when it was the last that may hold it, the erasure's ``key_caches`` step
        is confirmed (and the erasure completes if nothing else is pending). Repeated,
        it changes nothing. False if the holder was not known to hold the key."""
        async with self.store.unit(tenant_id) as uow:
            await uow.lock_chain()
            recorded = await uow.record_drop(participant_id, holder, now_ms())
            if request_id is not None:
                request = await uow.request_for_update(request_id)
                if (request is not None and request["kind"] == "erasure" and request["status"] == "in_progress"
                        and request.get("participant_id") == participant_id):
                    await self._settle_key_caches(uow, request)
        return recorded

    async def _settle_key_caches(self, uow: RightsUnit, request: dict[str, Any]) -> bool:
        """Confirm ``key_caches`` once no holder may still have the key: each confirmed
        the drop or outlived its bound. True if it is (or was already) confirmed."""
        entry = next((p for p in request["progress"] if p["store"] == KEY_CACHES), None)
        if entry is None or entry["status"] == "confirmed":
            return True
        now = now_ms()
        if await uow.outstanding_holds(request["participant_id"], now):
            return False
        dropped = await uow.dropped_holds(request["participant_id"])
        await self.audit(uow, request, "store_confirmed", store=KEY_CACHES, documents_deleted=dropped)
        await self._advance(uow, request, [_confirmed(KEY_CACHES, now, dropped) if p["store"] == KEY_CACHES else p
                                           for p in request["progress"]])
        return True

    def _erasure_event(self, request: dict[str, Any], stores: list[str] | None = None) -> ErasureRequested:
        """To every store, or (a retry) to ``stores`` only."""
        return ErasureRequested(
            source=SOURCE, subject=request["_id"], tenant_id=request["tenant_id"],
            data=ErasureRequestedData(request_id=request["_id"], participant_id=request["participant_id"],
                                      reason=request["reason"], requested_at=request["received_at"],
                                      dialogue_id=request["scope"], stores=stores),
        )

    async def _object(self, request: dict[str, Any]) -> Received:
        request["progress"] = [_pending(name) for name in sorted(objection_stores())]
        request["next_retry_at"] = request["received_at"] + retry_delay(0, self.timing)
        async with self.store.unit(request["tenant_id"]) as uow:
            await uow.lock_chain()
            await self.audit(uow, request, "request_received")
            await uow.insert_request(request)
            await self._tell_tenant(uow, request)
            await uow.publish(self._objection_event(request), Topics.OBJECTION_RECORDED,
                              partition_key(request["participant_id"]), aggregatetype=AGGREGATE)
        return Received(_public(request), created=True)

    def _objection_event(self, request: dict[str, Any]) -> ObjectionRecorded:
        return ObjectionRecorded(
            source=SOURCE, subject=request["_id"], tenant_id=request["tenant_id"],
            data=ObjectionRecordedData(request_id=request["_id"], participant_id=request["participant_id"],
                                       recorded_at=request["received_at"]),
        )

    async def _rectify(self, request: dict[str, Any], answer_id: str | None, value: Any) -> Received:
        """Synchronous: dialogue applies the change (a closed dialogue's answer too) or
        says why not; a refusal is passed on, audited, and leaves no request behind.
        Dialogue is asked before any unit opens; a dialogue that does not answer leaves
        nothing at all (the caller hears 503 and may ask again)."""
        path = (f"/internal/v1/tenants/{request['tenant_id']}/participants/{request['participant_id']}"
                f"/answers/{answer_id}")
        try:
            response = await self.stores["dialogue"].put(path, json={"value": value})
        except httpx.HTTPError:
            raise StoreUnavailable("dialogue") from None
        if 400 <= response.status_code < 500:
            detail = _detail(response)
            async with self.store.unit(request["tenant_id"]) as uow:
                await uow.lock_chain()
                await self.audit(uow, request, "request_received")
                await self.audit(uow, request, "request_refused", store="dialogue.answers", outcome=detail[0])
            raise RequestRefused(response.status_code, *detail, more=_more(response))
        if response.status_code != 200:
            raise StoreUnavailable("dialogue")
        now = now_ms()
        request["progress"] = [_confirmed("dialogue.answers", now, 1)]
        request.update(status="completed", open_rank=1, completed_at=now)
        async with self.store.unit(request["tenant_id"]) as uow:
            await uow.lock_chain()
            await self.audit(uow, request, "request_received")
            await uow.insert_request(request)
            await self._tell_tenant(uow, request)
            await self.audit(uow, request, "request_completed", store="dialogue.answers")
        return Received(_public(request), created=True)

    async def _gather(self, request: dict[str, Any]) -> Received:
        """Access and export: ask each store for its part once now, so the request says
        which stores answered; the data itself is gathered again when it is fetched
        and never kept here (this service would otherwise hold a copy of everything)."""
        parts = await self._collect(request["tenant_id"], request["participant_id"], tolerate_missing=True)
        request["progress"] = [_pending(name) for name in sorted(ACCESS_STORES.values())]
        request["next_retry_at"] = request["received_at"] + retry_delay(0, self.timing)
        async with self.store.unit(request["tenant_id"]) as uow:
            await uow.lock_chain()
            await self.audit(uow, request, "request_received")
            await uow.insert_request(request)
            await self._tell_tenant(uow, request)
            await self._advance(uow, request, _access_progress(parts, now_ms()))
        return Received(_public(request), created=True)

    async def _collect(self, tenant_id: str, participant_id: str, *, tolerate_missing: bool,
                       ) -> dict[str, dict[str, Any]]:
        parts: dict[str, dict[str, Any]] = {}

        async def ask(service: str, name: str) -> None:
            try:
                response = await self.stores[service].get(
                    f"/internal/v1/tenants/{tenant_id}/participants/{participant_id}/data")
                response.raise_for_status()
                parts[name] = response.json()
            except (httpx.HTTPError, ValueError):
                if not tolerate_missing:
                    raise StoreUnavailable(name) from None
                log.warning("store_did_not_answer", store=name)

        await asyncio.gather(*(ask(service, name) for service, name in ACCESS_STORES.items()))
        return parts

    async def participant_data(self, request: dict[str, Any]) -> dict[str, Any]:
        """Everything every store holds about the request's participant, now."""
        if request.get("participant_id") is None:
            raise RequestRefused(410, "participant_erased", "this participant's data no longer exists")
        parts = await self._collect(request["tenant_id"], request["participant_id"], tolerate_missing=False)
        key = await self.store.data_key(request["participant_id"])
        if key is not None and key.tenant_id != request["tenant_id"]:
            key = None
        own = await self.store.requests_of(request["tenant_id"], request["subject"])
        return {
            "participant_id": request["participant_id"],
            "tenant_id": request["tenant_id"],
            "generated_at": datetime.now(UTC),
            "format": "tessera.participant-data.v1",
            "stores": [parts[name] for name in sorted(parts)] + [
                {"store": OWN_STORE, "categories": ["data_keys"],
                 "records": [{"key_id": key.key_id, "created_at": key.created_at}] if key else []},
                {"store": "rights.requests", "categories": ["rights_requests"],
                 "records": [{"request_id": r["_id"], "kind": r["kind"], "status": r["status"],
                              "received_at": r["received_at"]} for r in own]},
            ],
        }

    # --- progress --------------------------------------------------------

    async def confirm(self, event: EventEnvelope, store: str, documents_deleted: int, kind: str,
                      consumer: str) -> None:
        """A store's confirmation (erasure or objection), applied in the event's tenant
        under the request's row lock, with the event recorded as delivered in the same
        unit: a redelivered event, or a second confirmation of the same store, changes
        nothing and is not audited again; two stores confirming at once both count."""
        request_id = event.data.request_id  # type: ignore[attr-defined]
        async with self.store.unit(event.tenant_id) as uow:
            await uow.lock_chain()
            if not await uow.first_delivery(consumer, event.id):
                return
            request = await uow.request_for_update(request_id)
            if request is None or request["kind"] != kind:
                log.warning("confirmation_for_unknown_request", kind=kind, store=store)
                return
            entry = next((p for p in request["progress"] if p["store"] == store), None)
            if entry is None:
                log.warning("confirmation_from_undeclared_store", store=store)
                return
            if entry["status"] == "confirmed":
                return
            await self.audit(uow, request, "store_confirmed", store=store, documents_deleted=documents_deleted)
            await self._advance(uow, request, [_confirmed(store, now_ms(), documents_deleted)
                                               if p["store"] == store else p for p in request["progress"]])

    async def _advance(self, uow: RightsUnit, request: dict[str, Any], progress: list[dict[str, Any]]) -> None:
        """Write new progress; when nothing is pending any more, complete the request in
        the same unit: audited and, for an erasure, signed, with the raw participant ID
        removed from it and from every other request of the participant. The caller
        holds the request's row (or just inserted it) in ``uow``."""
        fields: dict[str, Any] = {"progress": progress}
        erased = False
        if not domain.pending_stores({p["store"]: p for p in progress}):
            fields.update(status="completed", open_rank=1, completed_at=now_ms(), next_retry_at=None)
            completed = {**request, **fields}
            entry = await self.audit(uow, completed, "request_completed")
            if request["kind"] == "erasure":
                fields["receipt"] = domain.sign_receipt(self.signing_key, _receipt(completed, entry))
                erased = request.get("scope") is None  # a whole participant, not one dialogue's answers
                if erased:
                    fields["participant_id"] = None
            log.info("rights_request_completed", kind=request["kind"])
        await uow.update_request(request["_id"], fields)
        if fields.get("status") == "completed":
            await self._tell_tenant(uow, {**request, **fields})
        if erased:
            await uow.forget_holds(request["participant_id"])
            await uow.forget_participant(request["subject"])
            self.store.database.vacuum_soon(["requests"])  # the old row versions hold the raw ID
        request.update(fields)

    async def retry_due(self) -> int:
        """Ask every store that has not confirmed again, with back-off; a new event ID
        each time, the same request ID (stores treat a repeat as a no-op + confirm).
        Every replica sweeps; a request is retried by the one that locks it first while
        it is still due."""
        retried = 0
        await self.store.forget_expired_holds(now_ms())  # nobody can hold those keys any more
        self.open_requests, self.overdue_requests = await self.store.open_requests(now_ms())
        for tenant_id, request_id in await self.store.due_retries(now_ms()):
            retried += await self._retry(tenant_id, request_id)
        return retried

    async def _retry(self, tenant_id: str, request_id: str) -> int:
        request = await self.store.request(tenant_id, request_id)
        if request is None or request["status"] != "in_progress":
            return 0
        parts = None
        if request["kind"] in ("access", "export") and request.get("participant_id"):
            parts = await self._collect(tenant_id, request["participant_id"], tolerate_missing=True)
        async with self.store.unit(tenant_id) as uow:
            await uow.lock_chain()
            request = await uow.request_for_update(request_id)
            now = now_ms()
            if (request is None or request["status"] != "in_progress" or request["next_retry_at"] is None
                    or request["next_retry_at"] > now):
                return 0  # completed meanwhile, or another replica retried it already
            if parts is not None:
                await self._advance(uow, request, _access_progress(parts, now))
                if request["status"] != "in_progress":
                    return 0
            if request["kind"] == "erasure" and request.get("participant_id"):
                await self._settle_key_caches(uow, request)
                if request["status"] != "in_progress":
                    return 0
            pending = domain.pending_stores({p["store"]: p for p in request["progress"]})
            await self._schedule_retry(uow, request, pending, self._event_to_repeat(request, pending))
        return 1

    def _event_to_repeat(self, request: dict[str, Any], pending: list[str]) -> tuple[EventEnvelope, str] | None:
        if request["kind"] == "erasure":
            stores = [name for name in pending if name != KEY_CACHES]
            if not stores:  # only caches are waited for: tell them again
                return self._key_destroyed_event(request), Topics.DATA_KEY_DESTROYED
            return self._erasure_event(request, stores), Topics.ERASURE_REQUESTED
        if request["kind"] == "objection":
            return self._objection_event(request), Topics.OBJECTION_RECORDED
        return None

    async def _schedule_retry(self, uow: RightsUnit, request: dict[str, Any], pending: list[str],
                              event: tuple[EventEnvelope, str] | None) -> None:
        attempts = request["attempts"] + 1
        next_retry_at = now_ms() + retry_delay(attempts, self.timing)
        if KEY_CACHES in pending and request.get("participant_id"):
            holds = await uow.outstanding_holds(request["participant_id"], now_ms())
            if holds:  # look again when the last bound passes, whatever the back-off says
                next_retry_at = min(next_retry_at, max(h["held_until"] for h in holds))
        await uow.update_request(request["_id"], {"attempts": attempts, "next_retry_at": next_retry_at})
        await self.audit(uow, request, "retry", stores=pending, attempt=attempts)
        if event is not None and request.get("participant_id"):
            await uow.publish(event[0], event[1], partition_key(request["participant_id"]), aggregatetype=AGGREGATE)

    # --- the audit trail -------------------------------------------------

    async def audit(self, uow: RightsUnit, request: dict[str, Any], action: str, **details: Any) -> dict[str, Any]:
        """One entry, in ``uow``: who asked (actor), what happened, for which request and
        which subject (the keyed marker, never the participant ID), and nothing erased."""
        record = {
            "at": now_ms().isoformat(),
            "action": action,
            "request_id": request["_id"],
            "kind": request["kind"],
            "actor": request["actor"],
            "reason": request.get("reason"),
            "subject": request["subject"],
            "scope": request.get("scope"),
            **details,
        }
        return await uow.append_audit(record)

    async def _tenant_topic(self, tenant_id: str) -> str:
        topic = Topics.for_tenant(tenant_id)
        if topic not in self._tenant_topics:
            await self.ensure_topic(topic)
            self._tenant_topics.add(topic)
        return topic


def _access_progress(parts: dict[str, dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Which access stores answered, and with how many records."""
    return [_confirmed(name, now, len(parts[name]["records"])) if name in parts else _pending(name)
            for name in sorted(ACCESS_STORES.values())]


def _pending(store: str) -> dict[str, Any]:
    return {"store": store, "status": "pending", "confirmed_at": None, "documents_deleted": None}


def _confirmed(store: str, at: datetime, documents: int) -> dict[str, Any]:
    return {"store": store, "status": "confirmed", "confirmed_at": at, "documents_deleted": documents}


def _public(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "status_secret_sha256"}


def _detail(response: httpx.Response) -> tuple[str, str]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, dict):
        return str(detail.get("code", "refused")), str(detail.get("message", "refused by the store"))
    if isinstance(detail, list):  # FastAPI's validation errors
        return "invalid_value", "; ".join(str(e.get("msg")) for e in detail[:3] if isinstance(e, dict))
    return "refused", "refused by the store"


def _more(response: httpx.Response) -> dict[str, Any]:
    """The findings of a ``personal_data`` refusal (spans into the text as sent), checked
    to be what the dialogue service documents before they are passed on."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        return {}
    findings = detail.get("findings") if isinstance(detail, dict) else None
    if not isinstance(findings, list) or not all(
            isinstance(f, dict) and set(f) == {"kind", "start", "end"} and isinstance(f["kind"], str)
            and isinstance(f["start"], int) and isinstance(f["end"], int) for f in findings):
        return {}
    return {"findings": findings}


def _receipt(request: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """What the receipt proves: this request, for this (keyed) subject, was confirmed by
    these stores at these times, at this position of the tenant's audit chain, and is
    final in every file once ``final_after_epoch`` is retired."""
    return {
        "type": "tessera.erasure-receipt.v1",
        "request_id": request["_id"],
        "tenant_id": request["tenant_id"],
        "subject": request["subject"],
        "actor": request["actor"],
        "reason": request["reason"],
        "scope": request.get("scope"),
        "received_at": request["received_at"].isoformat(),
        "completed_at": request["completed_at"].isoformat(),
        "stores": [{"store": p["store"], "confirmed_at": p["confirmed_at"].isoformat(),
                    "documents_deleted": p["documents_deleted"]} for p in request["progress"]],
        "audit": {"seq": entry["seq"], "hash": entry["hash"]},
        # After this key epoch's retirement no copy of the participant's wrapped data
        # key in any file or backup opens (null: a dialogue-scoped erasure, no key).
        "final_after_epoch": request.get("final_after_epoch"),
    }


def retry_delay(attempts: int, timing: Timing) -> timedelta:
    return domain.next_retry_delay(attempts, timing.retry_base_seconds, timing.retry_cap_seconds)
