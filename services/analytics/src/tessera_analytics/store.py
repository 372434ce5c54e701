"""Analytics' PostgreSQL tables (``migrations/``); nothing else touches them.

- ``tenants``: tenant ID → API key hash and minimum group size (from ``tenant-registered``
  and ``tenant-settings-changed``).
- ``device_contributions``: one row per enrolled participant.
- ``answer_contributions``: one row per answer at its highest version: choices or scale
  point, the submission's day, the device type; never the text, which stays sealed.
  Versions order the two answer topics' events, so they may arrive in any order, and
  twice.
- ``dialogues``: each dialogue's definition (from ``dialogue-changed``): labels, and
  every choice and scale point, so an empty one is listed rather than absent.
- ``erased`` / ``objected``: erased and objecting participants as HMAC markers only, so
  their late events are dropped.

Figures are not kept as counters: a query groups a question's (or a dialogue's) live
answer rows through an index that starts with (tenant_id, question_id) or (tenant_id,
dialogue_id). So every figure is exact by construction: applying an event is one
row's upsert, taking a participant out is a DELETE, and nothing can be counted twice
or left behind, however many replicas consume at once.

Every method is one unit of work scoped to its tenant by row-level security (event
handlers use the event's own tenant).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from tessera_common.tenant_access import TenantAccessStore
from tessera_common.postgres import Database, UnitOfWork

#: The contributions' name in the data map (tessera_common.datamap): erasure and
#: objection are confirmed, and a participant's data is exported, under it.
STORE_NAME = "analytics.contributions"

#: The consumer name under which answer and device events are deduplicated (the
#: service's Kafka consumer group).
CONSUMER = "tessera-analytics"

UNKNOWN_DEVICE = "unknown"

#: The first key of the advisory locks that order a participant's events against their
#: erasure or objection (the two-key form: apart from the outbox relay's one-key lock).
_PARTICIPANT_LOCKS = 0x414E  # "AN"


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
    event_id: str | None = None  # for the inbox; None: not deduplicated by ID (versions still are)


# One answer's row after one more event, in one statement, so two replicas applying the
# two topics' events of one answer at once serialise on the row. The highest version's
# value wins whatever the arrival order; the day is the submission's, which only the
# first version says, so a later version that arrives first dates the answer only until
# the first arrives; a device once known is kept. RETURNING says whether anything
# changed (an older or repeated version changes nothing).
_FOLD_ANSWER = """
INSERT INTO answer_contributions AS a
    (tenant_id, question_id, participant_id, answer_id, dialogue_id, question_kind, version, live, choices,
     scale_value, day, day_exact, device)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (tenant_id, question_id, participant_id, answer_id) DO UPDATE SET
    version = greatest(a.version, EXCLUDED.version),
    live = CASE WHEN EXCLUDED.version > a.version THEN EXCLUDED.live ELSE a.live END,
    choices = CASE WHEN EXCLUDED.version > a.version THEN EXCLUDED.choices ELSE a.choices END,
    scale_value = CASE WHEN EXCLUDED.version > a.version THEN EXCLUDED.scale_value ELSE a.scale_value END,
    day = CASE WHEN a.day_exact THEN a.day
               WHEN EXCLUDED.day_exact OR EXCLUDED.version > a.version THEN EXCLUDED.day
               ELSE a.day END,
    day_exact = a.day_exact OR EXCLUDED.day_exact,
    device = CASE WHEN EXCLUDED.version > a.version THEN coalesce(EXCLUDED.device, a.device)
                  ELSE coalesce(a.device, EXCLUDED.device) END
WHERE EXCLUDED.version > a.version
   OR (EXCLUDED.day_exact AND NOT a.day_exact)
   OR (a.device IS NULL AND EXCLUDED.device IS NOT NULL)
RETURNING 1
"""

# A dialogue's figures, per question, from its live answers in one pass: every figure
# but ``answers`` counts participants (what k is about). A participant's device type is
# that of their earliest live answer that names one (by day, then answer ID), else
# "unknown"; each day they answered on counts them once. Hash aggregates only: no
# sort of the dialogue's answers.
_DIALOGUE_FIGURES = """
WITH live AS MATERIALIZED (
    SELECT question_id, participant_id, answer_id, choices, scale_value, day, device
      FROM answer_contributions
     WHERE tenant_id = $1 AND dialogue_id = $2 AND live
), per_participant AS MATERIALIZED (
    SELECT question_id, count(*) AS answers,
           (min(ARRAY[day::text, answer_id, device]) FILTER (WHERE device IS NOT NULL))[3] AS device
      FROM live GROUP BY question_id, participant_id
)
SELECT question_id, 'respondents' AS figure, '' AS key, count(*) AS n FROM per_participant GROUP BY question_id
UNION ALL
SELECT question_id, 'answers', '', sum(answers)::bigint FROM per_participant GROUP BY question_id
UNION ALL
SELECT question_id, 'devices', coalesce(device, 'unknown'), count(*) FROM per_participant
 GROUP BY question_id, coalesce(device, 'unknown')
UNION ALL
SELECT question_id, 'choices', choice, count(*) FROM live, unnest(choices) AS choice GROUP BY question_id, choice
UNION ALL
SELECT question_id, 'scale', scale_value::text, count(*) FROM live WHERE scale_value IS NOT NULL
 GROUP BY question_id, scale_value
UNION ALL
SELECT question_id, 'days', day::text, count(*) FROM (SELECT DISTINCT question_id, day, participant_id FROM live) AS d
 GROUP BY question_id, day
"""

#: Memory for one figures query's hash tables (a 100,000-answer dialogue needs about
#: 20 MB; the default 4 MB would spill them to disk). For that transaction only.
_FIGURES_WORK_MEM = "32MB"

# The one value a participant gives to a single-choice or scale question (the smallest,
# in byte order, should they have several live answers), for the cross-tab.
_ONE_VALUE = {
    "single_choice": "(SELECT min(c COLLATE \"C\") FROM unnest(choices) AS c)",
    "scale": "scale_value::text",
}


class AnalyticsStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        #: which keys open the tenant's routes (from the gateway's ``tenant-access-changed``)
        self.access = TenantAccessStore(database, "analytics")

    def unit(self, tenant_id: str | None) -> UnitOfWork:
        return UnitOfWork(self.database, tenant_id)

    # --- tenants ---------------------------------------------------------

    async def upsert_tenant(self, tenant_id: str, api_key_sha256: str, min_group_size: int) -> None:
        """From ``tenant-registered``: the key hash, and k only if no settings change
        (which may arrive first: another topic, another producer) has set it."""
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "INSERT INTO tenants (tenant_id, api_key_sha256, min_group_size, settings_revision)"
                " VALUES ($1, $2, $3, 0)"
                " ON CONFLICT (tenant_id) DO UPDATE SET api_key_sha256 = EXCLUDED.api_key_sha256",
                tenant_id, api_key_sha256, min_group_size,
            )

    async def apply_settings(self, tenant_id: str, min_group_size: int, revision: int) -> bool:
        """From ``tenant-settings-changed``: k, unless a later revision is already here,
        so a late or redelivered event never rolls k back."""
        async with self.unit(tenant_id) as uow:
            applied = await uow.connection.fetchval(
                "INSERT INTO tenants (tenant_id, min_group_size, settings_revision) VALUES ($1, $2, $3)"
                " ON CONFLICT (tenant_id) DO UPDATE SET min_group_size = EXCLUDED.min_group_size,"
                " settings_revision = EXCLUDED.settings_revision"
                " WHERE tenants.settings_revision < EXCLUDED.settings_revision RETURNING 1",
                tenant_id, min_group_size, revision,
            )
        return applied is not None


    async def min_group_size(self, tenant_id: str) -> int | None:
        async with self.unit(tenant_id) as uow:
            return await uow.connection.fetchval("SELECT min_group_size FROM tenants WHERE tenant_id = $1", tenant_id)

    # --- dialogues -------------------------------------------------------

    async def apply_dialogue(self, tenant_id: str, definition: dict[str, Any]) -> bool:
        """From ``dialogue-changed``: the dialogue's definition, unless a later revision
        is already here (a redelivered or late event never rolls it back)."""
        async with self.unit(tenant_id) as uow:
            applied = await uow.connection.fetchval(
                "INSERT INTO dialogues (tenant_id, dialogue_id, revision, title, status, definition)"
                " VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (tenant_id, dialogue_id) DO UPDATE SET revision = EXCLUDED.revision,"
                " title = EXCLUDED.title, status = EXCLUDED.status, definition = EXCLUDED.definition"
                " WHERE dialogues.revision < EXCLUDED.revision RETURNING 1",
                tenant_id, definition["dialogue_id"], definition["revision"], definition["title"],
                definition["status"], definition,
            )
        return applied is not None

    async def tenant_dialogues(self, tenant_id: str) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT dialogue_id AS _id, title, status FROM dialogues WHERE tenant_id = $1 ORDER BY dialogue_id",
                tenant_id,
            )
        return [dict(row) for row in rows]

    async def dialogue(self, tenant_id: str, dialogue_id: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            definition = await uow.connection.fetchval(
                "SELECT definition FROM dialogues WHERE tenant_id = $1 AND dialogue_id = $2", tenant_id, dialogue_id
            )
        if definition is None:
            return None
        document = {**definition, "_id": dialogue_id, "tenant_id": tenant_id}
        document.pop("dialogue_id", None)
        return document

    async def tenant_questions(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        """question ID → its definition and dialogue, across the tenant's dialogues."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT dialogue_id, definition -> 'questions' AS questions FROM dialogues"
                " WHERE tenant_id = $1 ORDER BY dialogue_id",
                tenant_id,
            )
        return {question["question_id"]: {**question, "dialogue_id": row["dialogue_id"]}
                for row in rows for question in row["questions"] or []}

    # --- figures ---------------------------------------------------------

    async def question_counters(self, tenant_id: str, dialogue_id: str) -> dict[str, dict[str, Any]]:
        """question ID → its counts (respondents, answers, and per choice, scale point,
        day and device type), grouped from the dialogue's live answers as they are
        now. A question with no live answer is absent (it counts nothing)."""
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute("SELECT set_config('work_mem', $1, true)", _FIGURES_WORK_MEM)
            rows = await uow.connection.fetch(_DIALOGUE_FIGURES, tenant_id, dialogue_id)
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            counters = found.setdefault(row["question_id"], {"respondents": 0, "answers": 0, "choices": {},
                                                             "scale": {}, "days": {}, "devices": {}})
            if row["key"] == "" and row["figure"] in ("respondents", "answers"):
                counters[row["figure"]] = row["n"]
            else:
                counters[row["figure"]][row["key"]] = row["n"]
        return found

    async def cross_counts(self, tenant_id: str, rows: tuple[str, str], columns: tuple[str, str]
                           ) -> dict[tuple[str, str], int]:
        """(row value, column value) → participants who gave both, for two one-value
        questions given as (question ID, kind): one join of the two questions' live
        answers by participant, each read through the primary key."""
        (row_question, row_kind), (column_question, column_kind) = rows, columns
        query = f"""
            WITH r AS (SELECT participant_id, min({_ONE_VALUE[row_kind]}) AS value FROM answer_contributions
                        WHERE tenant_id = $1 AND question_id = $2 AND live GROUP BY participant_id),
                 c AS (SELECT participant_id, min({_ONE_VALUE[column_kind]}) AS value FROM answer_contributions
                        WHERE tenant_id = $1 AND question_id = $3 AND live GROUP BY participant_id)
            SELECT r.value AS row_value, c.value AS column_value, count(*) AS n
              FROM r JOIN c USING (participant_id)
             WHERE r.value IS NOT NULL AND c.value IS NOT NULL
             GROUP BY r.value, c.value"""  # noqa: S608 - the fragments are constants, the values parameters
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute("SELECT set_config('work_mem', $1, true)", _FIGURES_WORK_MEM)
            found = await uow.connection.fetch(query, tenant_id, row_question, column_question)
        return {(row["row_value"], row["column_value"]): row["n"] for row in found}

    async def dialogue_overlap(self, tenant_id: str, dialogue_ids: list[str]
                               ) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """(participants with a live answer per dialogue, participants of both per
        ordered pair of different dialogues)."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "WITH p AS (SELECT DISTINCT dialogue_id, participant_id FROM answer_contributions"
                "            WHERE tenant_id = $1 AND dialogue_id = ANY($2::text[]) AND live)"
                " SELECT a.dialogue_id AS a, b.dialogue_id AS b, count(*) AS n"
                "   FROM p AS a JOIN p AS b USING (participant_id) GROUP BY a.dialogue_id, b.dialogue_id",
                tenant_id, dialogue_ids,
            )
        participants = {dialogue_id: 0 for dialogue_id in dialogue_ids}
        both: dict[tuple[str, str], int] = {}
        for row in rows:
            if row["a"] == row["b"]:
                participants[row["a"]] = row["n"]
            else:
                both[(row["a"], row["b"])] = row["n"]
        return participants, both

    async def device_counts(self, tenant_id: str) -> dict[tuple[str, str], int]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT platform, form_factor, count(*) AS n FROM device_contributions WHERE tenant_id = $1"
                " GROUP BY platform, form_factor",
                tenant_id,
            )
        return {(row["platform"], row["form_factor"]): row["n"] for row in rows}

    # --- contributions ---------------------------------------------------

    async def add_device(self, contribution: dict[str, Any], marker: str) -> bool:
        """Record one participant's device once; False when it was already counted, or
        when the participant was erased or objected (a late or redelivered event
        brings nothing back: see :meth:`_admit`)."""
        tenant_id, participant_id = contribution["tenant_id"], contribution["_id"]
        async with self.unit(tenant_id) as uow:
            if not await self._admit(uow, marker, None, contribution["event_id"]):
                return False
            inserted = await uow.connection.fetchval(
                "INSERT INTO device_contributions (tenant_id, participant_id, platform, form_factor, event_id)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                tenant_id, participant_id, contribution["platform"], contribution["form_factor"],
                contribution["event_id"],
            )
        return inserted is not None

    async def apply_answer(self, answer: AnswerState, marker: str) -> bool:
        """Fold one answer event into its row, in one transaction with the inbox entry
        and the look at the markers; False when nothing changed (an older or repeated
        version, a redelivered event) or when the participant was erased or objected, or
        their answers to this dialogue expired."""
        async with self.unit(answer.tenant_id) as uow:
            if not await self._admit(uow, marker, answer.dialogue_id, answer.event_id):
                return False
            changed = await uow.connection.fetchval(
                _FOLD_ANSWER, answer.tenant_id, answer.question_id, answer.participant_id, answer.answer_id,
                answer.dialogue_id, answer.question_kind, answer.version, answer.live, sorted(answer.choices),
                answer.scale_value, date.fromisoformat(answer.day), answer.submitted, answer.device,
            )
        return changed is not None

    async def _admit(self, uow: UnitOfWork, marker: str, dialogue_id: str | None, event_id: str | None) -> bool:
        """Whether an event of this participant may change anything: first delivered,
        and the participant neither erased (for this dialogue or all) nor objecting.

        The participant's advisory lock is taken shared first; erasure and objection
        take it exclusively before writing their marker and deleting. So an event
        either commits before the erasure deletes (which then sees and deletes its
        row) or looks at the markers after the erasure committed (and sees its marker):
        a late event never brings data back, whatever replica handles it."""
        await uow.connection.execute("SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
                                     _PARTICIPANT_LOCKS, marker)
        if await self._excluded(uow, marker, dialogue_id):
            return False
        return event_id is None or await uow.first_delivery(CONSUMER, event_id)

    async def _excluded(self, uow: UnitOfWork, marker: str, dialogue_id: str | None) -> bool:
        return bool(await uow.connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM erased WHERE tenant_id = $1 AND marker = $2 AND dialogue_id IN ('', $3))"
            " OR EXISTS (SELECT 1 FROM objected WHERE tenant_id = $1 AND marker = $2)",
            uow.tenant_id, marker, dialogue_id or "",
        ))

    async def contribution(self, tenant_id: str, participant_id: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT participant_id AS _id, platform, form_factor FROM device_contributions"
                " WHERE tenant_id = $1 AND participant_id = $2",
                tenant_id, participant_id,
            )
        return dict(row) if row is not None else None

    async def is_objected(self, marker: str, tenant_id: str) -> bool:
        async with self.unit(tenant_id) as uow:
            return bool(await uow.connection.fetchval(
                "SELECT EXISTS (SELECT 1 FROM objected WHERE tenant_id = $1 AND marker = $2)", tenant_id, marker))

    # --- erasure and objection -------------------------------------------

    async def erase_participant(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the erasure as an HMAC marker and delete the participant's
        contributions, together; redelivered, it deletes nothing more. Returns the
        device record and the (question) records deleted."""
        async with self.unit(tenant_id) as uow:
            await self._lock_out(uow, marker)
            await uow.connection.execute(
                "INSERT INTO erased (tenant_id, marker, dialogue_id, erased_at) VALUES ($1, $2, '', $3)"
                " ON CONFLICT DO NOTHING", tenant_id, marker, now)
            return await self._delete_contributions(uow, participant_id, None)

    async def apply_objection(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the objection as an HMAC marker and delete the participant's
        contributions, together; redelivered, it deletes nothing more."""
        async with self.unit(tenant_id) as uow:
            await self._lock_out(uow, marker)
            await uow.connection.execute(
                "INSERT INTO objected (tenant_id, marker, objected_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                tenant_id, marker, now)
            return await self._delete_contributions(uow, participant_id, None)

    async def erase_dialogue_answers(self, tenant_id: str, participant_id: str, dialogue_id: str, marker: str,
                                     now: datetime) -> int:
        """Retention: the participant's answers to one dialogue expired. A marker for
        that pair (the participant stays) keeps a late answer event out as well."""
        async with self.unit(tenant_id) as uow:
            await self._lock_out(uow, marker)
            await uow.connection.execute(
                "INSERT INTO erased (tenant_id, marker, dialogue_id, erased_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING", tenant_id, marker, dialogue_id, now)
            return await self._delete_contributions(uow, participant_id, dialogue_id)

    async def _lock_out(self, uow: UnitOfWork, marker: str) -> None:
        """Wait for the participant's events in flight to commit, and keep new ones
        waiting until this commits (see :meth:`_admit`)."""
        await uow.connection.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _PARTICIPANT_LOCKS, marker)

    async def _delete_contributions(self, uow: UnitOfWork, participant_id: str, dialogue_id: str | None) -> int:
        """Delete the participant's answer rows (one dialogue's, or all with their
        device row); the count is of records as the data map knows them: the device,
        and one per question answered."""
        deleted = 0
        if dialogue_id is None:
            status = await uow.connection.execute(
                "DELETE FROM device_contributions WHERE tenant_id = $1 AND participant_id = $2",
                uow.tenant_id, participant_id)
            deleted += int(status.split()[-1])
        questions = await uow.connection.fetchval(
            "WITH gone AS (DELETE FROM answer_contributions WHERE tenant_id = $1 AND participant_id = $2"
            "              AND ($3::text IS NULL OR dialogue_id = $3) RETURNING question_id)"
            " SELECT count(DISTINCT question_id) FROM gone",
            uow.tenant_id, participant_id, dialogue_id)
        return deleted + questions
