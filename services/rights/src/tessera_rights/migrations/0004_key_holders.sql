-- depends: 0001_rights
-- Who may hold a participant's unwrapped data key in memory, and until when (DESIGN.md
-- §4.3; issue 12). A process that caches keys names itself (holder) and its cache's
-- bound on every key it fetches; the row is written in the same order as the key's
-- destruction (the participant's key lock), so an erasure sees every holder that could
-- still have the key, and is not completed before each has confirmed dropping it or
-- its bound has passed. Rows go when the participant's erasure completes, or once
-- their bound has passed.
CREATE TABLE key_holders (
    tenant_id      text NOT NULL,
    participant_id text NOT NULL,
    holder         text NOT NULL,
    held_until     timestamptz NOT NULL,
    dropped_at     timestamptz,
    PRIMARY KEY (tenant_id, participant_id, holder)
);
CREATE INDEX key_holders_expiry ON key_holders (held_until);

ALTER TABLE key_holders ENABLE ROW LEVEL SECURITY;
ALTER TABLE key_holders FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON key_holders USING (tenant_id = current_setting('tessera.tenant_id', true));

-- Holds whose bound has passed, in every tenant: nothing can still have those keys.
CREATE FUNCTION forget_expired_key_holds(at timestamptz) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    WITH gone AS (DELETE FROM key_holders WHERE held_until < at RETURNING 1) SELECT count(*)::integer FROM gone
$$;
