-- depends: 0000_outbox_inbox
-- Rights: tenants, participants' data keys, erased markers, rights requests and the
-- hash-chained audit trail (DESIGN.md §1, §4.3–§4.6). tenant_id leads every key of
-- tenant data; the few indexes that do not lead with it serve the SECURITY DEFINER
-- lookups below, which are cross-tenant by nature (as in enrolment).

-- A tenant's API key hash (from tenant-registered) and its retention rules.
CREATE TABLE tenants (
    tenant_id                text PRIMARY KEY,
    api_key_sha256           text NOT NULL,
    answers_days_after_close integer CHECK (answers_days_after_close > 0),
    idle_device_days         integer CHECK (idle_device_days > 0)
);
CREATE INDEX tenants_with_retention ON tenants (tenant_id)
    WHERE answers_days_after_close IS NOT NULL OR idle_device_days IS NOT NULL;

-- A participant's data key, only ever wrapped under the master key (domain.wrap_data_key).
CREATE TABLE data_keys (
    tenant_id      text NOT NULL,
    participant_id text NOT NULL,
    key_id         text NOT NULL,
    nonce          bytea NOT NULL,
    wrapped        bytea NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, participant_id)
);
-- The internal data-key routes name the participant only; one key per participant.
CREATE UNIQUE INDEX data_keys_participant ON data_keys (participant_id);

-- Erased participants, by their keyed marker (an HMAC of the ID, never the ID). No
-- tenant column and so no row-level security: a marker reveals nothing, and the
-- data-key routes, which name no tenant, must refuse an erased participant's key.
CREATE TABLE erased_participants (
    marker    text PRIMARY KEY,
    erased_at timestamptz NOT NULL
);

-- One row per rights request. participant_id is the raw ID, kept while retries and
-- access need it and set to NULL when the participant's erasure completes; subject
-- (the marker) stays. progress is the per-store list shown as is (never filtered on),
-- changed only under the row's lock.
CREATE TABLE requests (
    tenant_id            text NOT NULL,
    request_id           text NOT NULL,
    participant_id       text,
    subject              text NOT NULL,
    kind                 text NOT NULL
        CHECK (kind IN ('access', 'export', 'rectification', 'erasure', 'objection')),
    actor                text NOT NULL,
    reason               text,
    scope                text,
    status               text NOT NULL CHECK (status IN ('in_progress', 'completed', 'refused')),
    -- 0 while open, 1 when closed: open requests sort first.
    open_rank            smallint NOT NULL,
    received_at          timestamptz NOT NULL,
    deadline             timestamptz NOT NULL,
    completed_at         timestamptz,
    attempts             integer NOT NULL DEFAULT 0,
    next_retry_at        timestamptz,
    progress             jsonb NOT NULL,
    receipt              jsonb,
    status_secret_sha256 text,
    PRIMARY KEY (tenant_id, request_id)
);
-- The status-secret route names the request only (rss_<request_id>.<secret>).
CREATE UNIQUE INDEX requests_id ON requests (request_id);
CREATE INDEX requests_listing ON requests (tenant_id, open_rank, deadline, received_at DESC);
CREATE INDEX requests_of_subject ON requests (tenant_id, subject, received_at DESC);
-- One open erasure or objection per participant (and scope): a second one, from any
-- replica, returns the first instead of starting another.
CREATE UNIQUE INDEX requests_one_open ON requests (tenant_id, subject, kind, coalesce(scope, ''))
    WHERE status = 'in_progress' AND kind IN ('erasure', 'objection');
-- The retry sweep looks across tenants at the few open requests that are due.
CREATE INDEX requests_due ON requests (next_retry_at) WHERE status = 'in_progress';

-- The audit trail, hash-chained per tenant (domain.chain_entry), and each tenant's
-- chain head: the last seq and hash, locked FOR UPDATE by every append, so one
-- tenant's appends follow each other, and removing the newest entries is detected.
CREATE TABLE audit (
    tenant_id text NOT NULL,
    seq       bigint NOT NULL CHECK (seq > 0),
    prev_hash text NOT NULL,
    hash      text NOT NULL,
    record    jsonb NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE TABLE audit_heads (
    tenant_id text PRIMARY KEY,
    seq       bigint NOT NULL,
    hash      text NOT NULL
);
-- Append-only for the service (DESIGN.md §4.6): it may add entries and read them,
-- never change or remove one. Only the owner (migrations) could, and verification
-- would show it.
REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM tessera_rights;

-- Row-level security: the second wall between tenants.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON tenants USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON data_keys USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON requests USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON audit USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON audit_heads USING (tenant_id = current_setting('tessera.tenant_id', true));

-- The lookups that must cross tenants, each returning only tenant IDs (and the ID it
-- was asked about); the rows themselves are then read in that tenant's unit of work.

-- Whose data key this participant has (the data-key routes name no tenant).
CREATE FUNCTION data_key_tenant(wanted text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT tenant_id FROM data_keys WHERE participant_id = wanted
$$;

-- Whose request this is (the status-secret route names the request only).
CREATE FUNCTION request_tenant(wanted text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT tenant_id FROM requests WHERE request_id = wanted
$$;

-- Open requests whose next retry is due, oldest due first, for the retry sweep.
CREATE FUNCTION due_retries(at timestamptz, most integer)
RETURNS TABLE (tenant_id text, request_id text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT r.tenant_id, r.request_id FROM requests AS r
     WHERE r.status = 'in_progress' AND r.next_retry_at <= at
     ORDER BY r.next_retry_at LIMIT most
$$;

-- Tenants with a retention rule, for the retention sweep.
CREATE FUNCTION tenants_with_retention() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT tenant_id FROM tenants
     WHERE answers_days_after_close IS NOT NULL OR idle_device_days IS NOT NULL
     ORDER BY tenant_id
$$;
