-- depends: 0000_outbox_inbox
-- Analytics: what the figures are computed from (DESIGN.md §2). tenant_id leads every
-- key, so the tables can be distributed by tenant later without re-keying.
--
-- There are no maintained counters: a figure is a GROUP BY over the typed answer rows
-- of one question or dialogue, read through an index that starts (tenant_id, ...). So
-- a figure is exact by construction (nothing to drift or to count twice), current as
-- soon as an event's transaction commits, and an erasure is a DELETE.

-- From tenant-registered (the key hash) and tenant-settings-changed (k); either may
-- arrive first, so the key hash may be missing for a moment.
CREATE TABLE tenants (
    tenant_id         text PRIMARY KEY,
    api_key_sha256    text,
    min_group_size    integer NOT NULL,
    settings_revision integer NOT NULL DEFAULT 0
);

-- From dialogue-changed: labels, choices and scale ranges, so an empty choice is
-- listed rather than absent. The definition is read whole and never filtered on.
CREATE TABLE dialogues (
    tenant_id   text NOT NULL,
    dialogue_id text NOT NULL,
    revision    integer NOT NULL,
    title       text NOT NULL,
    status      text NOT NULL,
    definition  jsonb NOT NULL,
    PRIMARY KEY (tenant_id, dialogue_id)
);

-- One row per enrolled participant: the device facts the device table counts.
CREATE TABLE device_contributions (
    tenant_id      text NOT NULL,
    participant_id text NOT NULL,
    platform       text NOT NULL CHECK (platform IN ('ios', 'android')),
    form_factor    text NOT NULL CHECK (form_factor IN ('phone', 'tablet')),
    event_id       text NOT NULL,
    PRIMARY KEY (tenant_id, participant_id)
);

-- One row per answer, at its highest version: what the figures count (choices or
-- scale point, the submission's UTC day, the device type), never the text, which stays
-- sealed in the dialogue service. The primary key serves a question's figures and the
-- cross-tab (tenant, question, then participant: one participant's answers together).
CREATE TABLE answer_contributions (
    tenant_id      text NOT NULL,
    question_id    text NOT NULL,
    participant_id text NOT NULL,
    answer_id      text NOT NULL,
    dialogue_id    text NOT NULL,
    question_kind  text NOT NULL,
    version        integer NOT NULL,
    live           boolean NOT NULL,          -- false once withdrawn
    choices        text[] NOT NULL DEFAULT '{}',
    scale_value    integer,
    day            date NOT NULL,             -- UTC day of the submission (see day_exact)
    day_exact      boolean NOT NULL,          -- the first version's event has been seen
    device         text,                      -- 'ios/phone', ...; null when no event said
    PRIMARY KEY (tenant_id, question_id, participant_id, answer_id)
);
-- A dialogue's figures and its participants (retention).
CREATE INDEX answer_contributions_dialogue ON answer_contributions (tenant_id, dialogue_id, participant_id);
-- Erasure, objection and retention take one participant's rows out.
CREATE INDEX answer_contributions_participant ON answer_contributions (tenant_id, participant_id);

-- Participants erased, as HMAC markers only, so a late event of theirs is dropped.
-- dialogue_id '' : the participant (every dialogue); a dialogue ID: only their
-- answers to that dialogue expired (retention), and they may still answer elsewhere.
CREATE TABLE erased (
    tenant_id   text NOT NULL,
    marker      text NOT NULL,
    dialogue_id text NOT NULL DEFAULT '',
    erased_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, marker, dialogue_id)
);

-- Participants who objected to analysis, as the same markers: they count in no figure
-- from then on, and their late events are dropped like an erased participant's.
CREATE TABLE objected (
    tenant_id   text NOT NULL,
    marker      text NOT NULL,
    objected_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, marker)
);

-- Row-level security: the second wall between tenants.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON tenants USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE dialogues ENABLE ROW LEVEL SECURITY;
ALTER TABLE dialogues FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON dialogues USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE device_contributions ENABLE ROW LEVEL SECURITY;
ALTER TABLE device_contributions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON device_contributions USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE answer_contributions ENABLE ROW LEVEL SECURITY;
ALTER TABLE answer_contributions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON answer_contributions USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE erased ENABLE ROW LEVEL SECURITY;
ALTER TABLE erased FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON erased USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE objected ENABLE ROW LEVEL SECURITY;
ALTER TABLE objected FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON objected USING (tenant_id = current_setting('tessera.tenant_id', true));
