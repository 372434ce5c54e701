-- depends: 0000_outbox_inbox
-- Dialogue: the tenants' settings, dialogues, answers and erasure markers (DESIGN.md §2).
-- tenant_id leads every key and index of tenant data, so the tables can later be
-- distributed by tenant without re-keying.

-- A tenant's API key (from tenant-registered) and the settings this service owns: the
-- minimum group size k and the personal-data policy. revision grows with each change
-- (a conditional UPDATE on it: two concurrent edits cannot both win).
CREATE TABLE tenants (
    tenant_id      text PRIMARY KEY,
    api_key_sha256 text NOT NULL,
    min_group_size integer NOT NULL CHECK (min_group_size >= 3),
    pii_policy     text NOT NULL CHECK (pii_policy IN ('warn', 'redact', 'reject')),
    revision       integer NOT NULL DEFAULT 0
);

-- questions is jsonb: read and written whole, never filtered on. version grows with
-- every change; has_answers is set by the first answer, in that answer's transaction,
-- and from then on an edit of the questions is refused (a conditional UPDATE on it).
-- closed_at: since when it takes no answers, which the answers' retention counts from.
CREATE TABLE dialogues (
    tenant_id   text NOT NULL REFERENCES tenants,
    dialogue_id text NOT NULL,
    title       text NOT NULL,
    intro       text NOT NULL,
    status      text NOT NULL CHECK (status IN ('draft', 'published', 'closed', 'archived')),
    opens_at    timestamptz,
    closes_at   timestamptz,
    questions   jsonb NOT NULL,
    has_answers boolean NOT NULL DEFAULT false,
    version     integer NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    closed_at   timestamptz,
    PRIMARY KEY (tenant_id, dialogue_id)
);
CREATE INDEX dialogues_by_status ON dialogues (tenant_id, status, created_at DESC, dialogue_id);
-- Retention: closed and archived dialogues by when they stopped taking answers.
CREATE INDEX dialogues_closed ON dialogues (tenant_id, (coalesce(closed_at, updated_at)))
    WHERE status IN ('closed', 'archived');

-- One row per participant and question (per idea for ideas); answer_id is derived
-- from both (domain.answer_id_for), so a retried create meets the same row. A
-- withdrawn answer stays as a tombstone with no value (text, choices, scale and
-- findings cleared): its ID is reused if the participant answers again, and the
-- version must go on from where it was, because consumers keep the highest version
-- of each answer. Erasure and retention delete tombstones too.
-- text is what the policy kept; findings are spans into it (only for 'flagged').
CREATE TABLE answers (
    tenant_id        text NOT NULL,
    answer_id        text NOT NULL,
    participant_id   text NOT NULL,
    dialogue_id      text NOT NULL,
    question_id      text NOT NULL,
    kind             text NOT NULL,
    text             text,
    choices          text[] NOT NULL DEFAULT '{}',
    scale_value      integer,
    screening_action text NOT NULL DEFAULT 'none' CHECK (screening_action IN ('none', 'flagged', 'redacted')),
    findings         jsonb NOT NULL DEFAULT '[]'::jsonb,
    screening_kinds  text[] NOT NULL DEFAULT '{}',
    idempotency_key  text,
    fingerprint      text,
    version          integer NOT NULL,
    submitted_at     timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    withdrawn_at     timestamptz,
    PRIMARY KEY (tenant_id, answer_id)
);
-- The group view (every current answer to one question) and the tenant's list by question.
CREATE INDEX answers_by_question ON answers (tenant_id, dialogue_id, question_id, participant_id);
-- A participant's own answers (/v1/me/answers, export), in order; erasure.
CREATE INDEX answers_by_participant ON answers (tenant_id, participant_id, submitted_at, answer_id);
-- A dialogue's answers for its tenant, in order and paged; who answered it (retention).
CREATE INDEX answers_by_dialogue ON answers (tenant_id, dialogue_id, submitted_at, answer_id);

-- Erased participants, as HMAC markers only (never the raw ID): written in the
-- erasure's transaction before its delete, and checked by every answer write in its
-- own transaction under the same per-participant lock, so an answer racing an
-- erasure never survives it.
CREATE TABLE erased (
    tenant_id text NOT NULL,
    marker    text NOT NULL,
    erased_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, marker)
);

-- Row-level security: the second wall between tenants.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON tenants USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE dialogues ENABLE ROW LEVEL SECURITY;
ALTER TABLE dialogues FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON dialogues USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE answers ENABLE ROW LEVEL SECURITY;
ALTER TABLE answers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON answers USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE erased ENABLE ROW LEVEL SECURITY;
ALTER TABLE erased FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON erased USING (tenant_id = current_setting('tessera.tenant_id', true));
