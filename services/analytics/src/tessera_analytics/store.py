"""Analytics' MongoDB collections; nothing else touches them.

- ``tenants``: tenant ID → API key hash and minimum group size (from ``tenant-registered``).
- ``device_contributions``: one document per enrolled participant (``_id`` is the
  participant ID), so a redelivered ``device-enrolled`` is a no-op insert.
- ``answer_contributions``: one record per participant and question (``_id`` a hash of
  both): each of their answers to it at its highest version (choices or scale point,
  day, device type; never the text, which stays sealed), and ``counted``, what the
  question's figures hold for the record. Versions order the two answer topics'
  events, so they may arrive in any order, and twice.
- ``question_figures``: per question, counters of participants (respondents, per
  choice, scale point, day and device type) and of answers, moved by ``$inc`` as each
  record changes (see :meth:`AnalyticsStore._settle` for how a crash can't count one
  twice). A query reads these, never the records.
- ``dialogues``: each dialogue's definition (from ``dialogue-changed``): labels, and
  every choice and scale point, so an empty one is listed rather than absent.
- ``erased``: erased participants as HMAC markers only, so their late events are dropped.
- ``objected``: participants who objected to analysis, as the same HMAC markers (with
  their tenant, so only that tenant's questions see the objection): they count in no
  figure from then on, and their late events are dropped like an erased participant's.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tessera_common.mongo import document_lock

#: The contributions' name in the data map (tessera_common.datamap): erasure and
#: objection are confirmed, and a participant's data is exported, under it.
STORE_NAME = "analytics.contributions"

#: What a record contributes when it has no live answer (or is being taken out).
EMPTY: dict[str, Any] = {"respondents": 0, "answers": 0, "choices": {}, "scale": {}, "days": {}, "devices": {}}
UNKNOWN_DEVICE = "unknown"


@dataclass(frozen=True)
class AnswerState:
    """One answer event, as analytics needs it: never the text."""

    tenant_id: str
    participant_id: str
    dialogue_id: str
    question_id: str
    question_kind: str
    answer_id: str
    version: int
    live: bool  # False once withdrawn
    choices: tuple[str, ...]
    scale_value: int | None
    day: str  # UTC day of the event: of the submission for a first version
    submitted: bool  # the first version, which dates the answer for good
    device: str | None  # "ios/phone", …; None when the event did not say


def record_id_for(question_id: str, participant_id: str) -> str:
    """A participant's record for a question. Hashed, so the figures' in-flight marks
    (which name records) never carry a participant ID."""
    return "r_" + hashlib.blake2b(f"{question_id}/{participant_id}".encode(), digest_size=12).hexdigest()


def figures_id_for(tenant_id: str, question_id: str) -> str:
    return f"{tenant_id}/{question_id}"


def fold(entry: dict[str, Any] | None, answer: AnswerState) -> dict[str, Any]:
    """An answer's state after one more event. The highest version's value wins
    whatever the arrival order (two topics); the day is the submission's, which only
    the first version says, so a later version that arrives first dates it only until
    the first arrives."""
    if entry is not None and entry["version"] >= answer.version:
        if answer.submitted and not entry["day_exact"]:
            entry = {**entry, "day": answer.day, "day_exact": True}
        if entry.get("device") is None and answer.device is not None:
            entry = {**entry, "device": answer.device}
        return entry
    dated = entry is not None and entry["day_exact"]
    return {
        "version": answer.version,
        "live": answer.live,
        "choices": sorted(answer.choices),
        "scale_value": answer.scale_value,
        "day": entry["day"] if dated else answer.day,
        "day_exact": dated or answer.submitted,
        "device": answer.device or (entry or {}).get("device"),
    }


def contribution_of(record: dict[str, Any]) -> dict[str, Any]:
    """What one participant's record for a question adds to that question's counters:
    one respondent if any answer is live; each live answer to answers and its choices
    or scale point; each day they answered on and their device type once. So every
    counter but ``answers`` counts participants, which is what k is about."""
    live = [a for a in record["answers"].values() if a["live"]]
    if not live:
        return EMPTY
    out: dict[str, Any] = {"respondents": 1, "answers": len(live), "choices": {}, "scale": {}, "days": {},
                           "devices": {next((a["device"] for a in live if a.get("device")), UNKNOWN_DEVICE): 1}}
    for answer in live:
        out["days"][answer["day"]] = 1
        for choice in answer["choices"]:
            out["choices"][choice] = out["choices"].get(choice, 0) + 1
        if answer["scale_value"] is not None:
            point = str(answer["scale_value"])
            out["scale"][point] = out["scale"].get(point, 0) + 1
    return out


def stored(contribution: dict[str, Any]) -> list[str]:
    """A contribution as it is written (``counted`` and in-flight marks): sorted
    ``"path=n"`` strings, not a document. FerretDB 1.24 decides whether a ``$set``
    modifies anything by comparing values and not keys, so ``{"a": 1}`` → ``{"b": 1}``
    (a changed choice, day or device) is silently skipped (README, "FerretDB's $set");
    as strings, the keys are part of the values. (Not ``[path, n]`` pairs: FerretDB
    refuses nested arrays.)"""
    return sorted(f"{path}={n}" for path, n in counter_moves(EMPTY, contribution).items())


def loaded(written: list[str] | None) -> dict[str, Any]:
    """The contribution that :func:`stored` wrote; nothing written counts as nothing."""
    out: dict[str, Any] = {key: dict(value) if isinstance(value, dict) else value for key, value in EMPTY.items()}
    for item in written or []:
        path, _, n = item.rpartition("=")
        name, _, key = path.partition(".")
        if key:
            out[name][key] = int(n)
        else:
            out[name] = int(n)
    return out


def counter_moves(old: dict[str, Any], new: dict[str, Any]) -> dict[str, int]:
    """The ``$inc`` that turns counters holding ``old`` into counters holding ``new``."""
    moves: dict[str, int] = {}
    for name in ("respondents", "answers"):
        if new[name] != old[name]:
            moves[name] = new[name] - old[name]
    for name in ("choices", "scale", "days", "devices"):
        for key in old[name].keys() | new[name].keys():
            step = new[name].get(key, 0) - old[name].get(key, 0)
            if step:
                moves[f"{name}.{key}"] = step
    return moves


class AnalyticsStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.tenants = db["tenants"]
        self.device_contributions = db["device_contributions"]
        self.answer_contributions = db["answer_contributions"]
        self.question_figures = db["question_figures"]
        self.dialogues = db["dialogues"]
        self.erased = db["erased"]
        self.objected = db["objected"]

    async def ensure_indexes(self) -> None:
        await self.device_contributions.create_index([("tenant_id", ASCENDING)])
        await self.answer_contributions.create_index([("participant_id", ASCENDING)])
        await self.answer_contributions.create_index([("tenant_id", ASCENDING), ("question_id", ASCENDING)])
        await self.answer_contributions.create_index([("tenant_id", ASCENDING), ("dialogue_id", ASCENDING)])
        await self.question_figures.create_index([("dialogue_id", ASCENDING)])
        await self.dialogues.create_index([("tenant_id", ASCENDING)])

    async def upsert_tenant(self, tenant_id: str, api_key_sha256: str, min_group_size: int) -> None:
        """From ``tenant-registered``: the key hash, and k only if no settings change
        (which may arrive first: another topic, another producer) has set it."""
        async with document_lock(self.tenants, tenant_id):
            await self.tenants.update_one(
                {"_id": tenant_id},
                {"$set": {"api_key_sha256": api_key_sha256},
                 "$setOnInsert": {"min_group_size": min_group_size, "settings_revision": 0}},
                upsert=True,
            )

    async def apply_settings(self, tenant_id: str, min_group_size: int, revision: int) -> bool:
        """From ``tenant-settings-changed``: k, unless a later revision is already here,
        so a late or redelivered event never rolls k back."""
        async with document_lock(self.tenants, tenant_id):
            newer = await self.tenants.update_one(
                {"_id": tenant_id, "settings_revision": {"$lt": revision}},
                {"$set": {"min_group_size": min_group_size, "settings_revision": revision}},
            )
        if newer.matched_count:
            return True
        try:
            await self.tenants.insert_one(
                {"_id": tenant_id, "min_group_size": min_group_size, "settings_revision": revision}
            )
        except DuplicateKeyError:
            return False  # the tenant is here with this revision or a later one
        return True

    async def apply_dialogue(self, tenant_id: str, definition: dict[str, Any]) -> bool:
        """From ``dialogue-changed``: the dialogue's definition, unless a later revision
        is already here (a redelivered or late event never rolls it back)."""
        dialogue_id, revision = definition["dialogue_id"], definition["revision"]
        document = {**definition, "_id": dialogue_id, "tenant_id": tenant_id}
        del document["dialogue_id"]
        async with document_lock(self.dialogues, dialogue_id):
            newer = await self.dialogues.replace_one(
                {"_id": dialogue_id, "tenant_id": tenant_id, "revision": {"$lt": revision}}, document)
            if newer.matched_count:
                return True
            try:
                await self.dialogues.insert_one(document)
            except DuplicateKeyError:
                return False  # this revision or a later one is here (or another tenant's ID)
        return True

    async def tenant_dialogues(self, tenant_id: str) -> list[dict[str, Any]]:
        cursor = self.dialogues.find({"tenant_id": tenant_id}, {"title": 1, "status": 1}).sort("_id", ASCENDING)
        return await cursor.to_list(None)

    async def dialogue(self, tenant_id: str, dialogue_id: str) -> dict[str, Any] | None:
        return await self.dialogues.find_one({"_id": dialogue_id, "tenant_id": tenant_id})

    async def question_counters(self, tenant_id: str, dialogue_id: str) -> dict[str, dict[str, Any]]:
        """The dialogue's questions' counters, kept current by every answer event: a
        query reads one small document per question, never the answers."""
        cursor = self.question_figures.find({"dialogue_id": dialogue_id, "tenant_id": tenant_id}, {"inflight": 0})
        return {doc["question_id"]: doc async for doc in cursor}

    async def counted_values(self, tenant_id: str, question_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """participant → question → what their record counts, for the questions named:
        the cross-dialogue join, made per query from the records (see the README)."""
        cursor = self.answer_contributions.find(
            {"tenant_id": tenant_id, "question_id": {"$in": question_ids}},
            {"participant_id": 1, "question_id": 1, "counted": 1})
        joined: dict[str, dict[str, dict[str, Any]]] = {}
        async for record in cursor:
            counted = loaded(record.get("counted"))
            if counted["respondents"]:
                joined.setdefault(record["participant_id"], {})[record["question_id"]] = counted
        return joined

    async def dialogue_participants(self, tenant_id: str, dialogue_ids: list[str]) -> dict[str, set[str]]:
        """dialogue → the participants counted in it (with a live answer)."""
        cursor = self.answer_contributions.find(
            {"tenant_id": tenant_id, "dialogue_id": {"$in": dialogue_ids}},
            {"participant_id": 1, "dialogue_id": 1, "counted": 1})
        found: dict[str, set[str]] = {dialogue_id: set() for dialogue_id in dialogue_ids}
        async for record in cursor:
            if loaded(record.get("counted"))["respondents"]:
                found[record["dialogue_id"]].add(record["participant_id"])
        return found

    async def api_key_hash(self, tenant_id: str) -> str | None:
        tenant = await self.tenants.find_one({"_id": tenant_id}, {"api_key_sha256": 1})
        return tenant.get("api_key_sha256") if tenant else None

    async def min_group_size(self, tenant_id: str) -> int | None:
        tenant = await self.tenants.find_one({"_id": tenant_id}, {"min_group_size": 1})
        return tenant["min_group_size"] if tenant else None

    async def add_device(self, contribution: dict[str, Any], marker: str) -> bool:
        """Record one participant's device once; False when it was already counted, or
        when the participant was erased or objected (a late or redelivered event brings
        nothing back: the markers are looked at before the insert and, against a
        concurrent erasure or objection, once more after it)."""
        if await self.excluded(marker):
            return False
        try:
            await self.device_contributions.insert_one(contribution)
        except DuplicateKeyError:
            return False
        if await self.excluded(marker):
            await self.device_contributions.delete_one({"_id": contribution["_id"]})
            return False
        return True

    async def apply_answer(self, answer: AnswerState, marker: str) -> bool:
        """Fold one answer event into the participant's record for its question and
        bring the question's figures to match; False when nothing changed (an older or
        repeated version) or when the participant was erased or objected, or their
        answers to this dialogue expired (looked at before and, against a concurrent
        erasure, after the write, which then takes the record back out)."""
        scoped = f"{marker}:{answer.dialogue_id}"
        if await self.excluded(marker) or await self.is_erased(scoped):
            return False
        record_id = record_id_for(answer.question_id, answer.participant_id)
        async with document_lock(self.question_figures, figures_id_for(answer.tenant_id, answer.question_id)):
            held = await self.answer_contributions.find_one({"_id": record_id})
            record = held or {
                "_id": record_id, "tenant_id": answer.tenant_id, "dialogue_id": answer.dialogue_id,
                "question_id": answer.question_id, "participant_id": answer.participant_id,
                "question_kind": answer.question_kind, "answers": {}, "counted": None,
            }
            entry = fold(record["answers"].get(answer.answer_id), answer)
            changed = entry != record["answers"].get(answer.answer_id)
            if changed:
                record["answers"][answer.answer_id] = entry
                if held is None:
                    try:
                        await self.answer_contributions.insert_one(record)
                    except DuplicateKeyError:
                        return False
                else:
                    await self.answer_contributions.update_one(
                        {"_id": record_id}, {"$set": {f"answers.{answer.answer_id}": entry}})
            await self._settle(record)  # also finishes a settlement a crash interrupted
        if await self.excluded(marker) or await self.is_erased(scoped):
            await self._retract(answer.tenant_id, answer.question_id, record_id)
            return False
        return changed

    async def _settle(self, record: dict[str, Any]) -> None:
        """Make the question's figures count what ``record`` now contributes; the
        caller holds the question's lock.

        No transactions (DESIGN.md §5), so the figures' single-document update carries
        its own proof: the counters move and ``inflight.<record>`` records what they now
        count for this record, in one write; then the record notes it as ``counted``;
        then the mark goes. A crash between any two steps leaves either the mark (the
        figures already count it: finish the record's note) or no mark (the record's
        ``counted`` says what the figures hold): run again, nothing is counted twice."""
        figures_id = figures_id_for(record["tenant_id"], record["question_id"])
        record_id = record["_id"]
        figures = await self.question_figures.find_one({"_id": figures_id}, {"inflight": 1})
        pending = ((figures or {}).get("inflight") or {}).get(record_id)
        if pending is not None:
            await self.answer_contributions.update_one({"_id": record_id}, {"$set": {"counted": pending}})
            await self.question_figures.update_one({"_id": figures_id}, {"$unset": {f"inflight.{record_id}": ""}})
            record["counted"] = pending
        target = contribution_of(record)
        moves = counter_moves(loaded(record.get("counted")), target)
        if not moves and record.get("counted") == stored(target):
            return
        update: dict[str, Any] = {"$set": {f"inflight.{record_id}": stored(target)},
                                  "$setOnInsert": {"tenant_id": record["tenant_id"],
                                                   "dialogue_id": record["dialogue_id"],
                                                   "question_id": record["question_id"]}}
        if moves:
            update["$inc"] = moves
        await self.question_figures.update_one({"_id": figures_id}, update, upsert=True)
        await self.answer_contributions.update_one({"_id": record_id}, {"$set": {"counted": stored(target)}})
        await self.question_figures.update_one({"_id": figures_id}, {"$unset": {f"inflight.{record_id}": ""}})
        record["counted"] = stored(target)

    async def _retract(self, tenant_id: str, question_id: str, record_id: str) -> int:
        """Take one record out of its question's figures, then delete it: afterwards the
        figures are what they would be had its answers never arrived."""
        async with document_lock(self.question_figures, figures_id_for(tenant_id, question_id)):
            record = await self.answer_contributions.find_one({"_id": record_id})
            if record is None:
                return 0
            record["answers"] = {}
            await self._settle(record)
            result = await self.answer_contributions.delete_one({"_id": record_id})
        return result.deleted_count

    async def _retract_all(self, tenant_id: str, participant_id: str, query: dict[str, Any]) -> int:
        """Take a participant's records (all, or one dialogue's) out of the figures and
        delete them, under the locks of every question concerned (taken in order, so
        never deadlocked): an answer event racing this waits, then finds the marker on
        its second look and takes itself out. One ``delete_many``, not one delete per
        record, since every lookup by ID scans the whole collection on FerretDB."""
        found = await self.answer_contributions.find(query, {"question_id": 1}).to_list(None)
        figures_ids = sorted({figures_id_for(tenant_id, record["question_id"]) for record in found})
        async with contextlib.AsyncExitStack() as locks:
            for figures_id in figures_ids:
                await locks.enter_async_context(document_lock(self.question_figures, figures_id))
            # Read again under the locks: what each counts now. A record made since
            # (the marker was already set) takes itself out, so only these are deleted.
            ids = [record["_id"] for record in found]
            records = await self.answer_contributions.find({"_id": {"$in": ids}},
                                                           {"question_id": 1, "counted": 1}).to_list(None)
            by_question: dict[str, list[dict[str, Any]]] = {}
            for record in records:
                by_question.setdefault(figures_id_for(tenant_id, record["question_id"]), []).append(record)
            for figures_id, group in by_question.items():
                await self._take_out(figures_id, group)
            deleted = (await self.answer_contributions.delete_many({"_id": {"$in": ids}})).deleted_count
            for figures_id, group in by_question.items():
                await self.question_figures.update_one(
                    {"_id": figures_id}, {"$unset": {f"inflight.{record['_id']}": "" for record in group}})
        await self._sweep_marks(tenant_id, participant_id)
        return deleted

    async def _take_out(self, figures_id: str, records: list[dict[str, Any]]) -> None:
        """A question's counters lose what the records counted (or what an interrupted
        settlement left marked for them), and each record is marked as counting
        nothing, in one write."""
        figures = await self.question_figures.find_one({"_id": figures_id}, {"inflight": 1})
        inflight = (figures or {}).get("inflight") or {}
        moves: dict[str, int] = {}
        for record in records:
            pending = inflight.get(record["_id"])
            counted = loaded(pending if pending is not None else record.get("counted"))
            for path, step in counter_moves(counted, EMPTY).items():
                moves[path] = moves.get(path, 0) + step
        update: dict[str, Any] = {"$set": {f"inflight.{record['_id']}": [] for record in records}}
        if moves := {path: step for path, step in moves.items() if step}:
            update["$inc"] = moves
        await self.question_figures.update_one({"_id": figures_id}, update)

    async def _sweep_marks(self, tenant_id: str, participant_id: str) -> None:
        """Marks "counts nothing" left for the participant's deleted records by a crash
        after the delete (a redelivered erasure finds no record, but still this)."""
        cursor = self.question_figures.find({"tenant_id": tenant_id}, {"question_id": 1, "inflight": 1})
        async for figures in cursor:
            record_id = record_id_for(figures["question_id"], participant_id)
            if (figures.get("inflight") or {}).get(record_id) != []:
                continue
            async with document_lock(self.question_figures, figures["_id"]):
                again = await self.question_figures.find_one({"_id": figures["_id"]}, {"inflight": 1})
                if ((again or {}).get("inflight") or {}).get(record_id) == []:
                    await self.question_figures.update_one({"_id": figures["_id"]},
                                                           {"$unset": {f"inflight.{record_id}": ""}})

    async def erase_dialogue_answers(self, tenant_id: str, participant_id: str, dialogue_id: str, marker: str,
                                     now: datetime) -> int:
        """Retention: the participant's answers to one dialogue expired. A marker for
        that pair (the participant stays) keeps a late answer event out as well."""
        scoped = f"{marker}:{dialogue_id}"
        async with document_lock(self.erased, scoped):
            await self.erased.update_one({"_id": scoped}, {"$setOnInsert": {"erased_at": now}}, upsert=True)
        return await self._retract_all(tenant_id, participant_id, {
            "participant_id": participant_id, "tenant_id": tenant_id, "dialogue_id": dialogue_id})

    async def is_erased(self, marker: str) -> bool:
        return await self.erased.find_one({"_id": marker}, {"_id": 1}) is not None

    async def is_objected(self, marker: str, tenant_id: str) -> bool:
        return await self.objected.find_one({"_id": marker, "tenant_id": tenant_id}, {"_id": 1}) is not None

    async def excluded(self, marker: str) -> bool:
        """Erased or objected: the participant counts in no figure."""
        return (await self.is_erased(marker)
                or await self.objected.find_one({"_id": marker}, {"_id": 1}) is not None)

    async def contribution(self, tenant_id: str, participant_id: str) -> dict[str, Any] | None:
        return await self.device_contributions.find_one(
            {"_id": participant_id, "tenant_id": tenant_id}, {"platform": 1, "form_factor": 1}
        )

    async def device_counts(self, tenant_id: str) -> dict[tuple[str, str], int]:
        pipeline = [
            {"$match": {"tenant_id": tenant_id}},
            {"$group": {"_id": {"platform": "$platform", "form_factor": "$form_factor"}, "n": {"$sum": 1}}},
        ]
        cursor = await self.device_contributions.aggregate(pipeline)
        return {(row["_id"]["platform"], row["_id"]["form_factor"]): row["n"] async for row in cursor}

    async def erase_participant(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the erasure as an HMAC marker, then delete the participant's
        contributions; redelivered, it deletes nothing more."""
        return await self._exclude(self.erased, {"erased_at": now}, tenant_id, participant_id, marker)

    async def apply_objection(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the objection as an HMAC marker, then delete the participant's
        contributions; redelivered, it deletes nothing more."""
        return await self._exclude(self.objected, {"tenant_id": tenant_id, "objected_at": now},
                                   tenant_id, participant_id, marker)

    async def _exclude(self, markers: AsyncCollection, fields: dict[str, Any], tenant_id: str,
                       participant_id: str, marker: str) -> int:
        """Marker first, delete second: a contribution inserted meanwhile finds the
        marker on its second look and removes itself (see :meth:`add_device`)."""
        async with document_lock(markers, marker):
            await markers.update_one({"_id": marker}, {"$setOnInsert": fields}, upsert=True)
        devices = await self.device_contributions.delete_one({"_id": participant_id, "tenant_id": tenant_id})
        answers = await self._retract_all(tenant_id, participant_id,
                                          {"participant_id": participant_id, "tenant_id": tenant_id})
        return devices.deleted_count + answers
