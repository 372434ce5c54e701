-- depends: 0001_rights
-- Key epochs (DESIGN.md §4.10): every data key is wrapped under one epoch's wrapping
-- key, which lives outside this database (keyring.py). Rotation re-wraps the live keys
-- under the next epoch and then destroys the old epoch's key, so every copy of an
-- erased participant's wrapped key left in dead tuples, WAL or backups is unreadable.

-- Existing keys were wrapped under the one master key: epoch 1 (the keyring's first
-- epoch is made from that same key). New rows always name their epoch.
ALTER TABLE data_keys ADD COLUMN epoch integer NOT NULL DEFAULT 1 CHECK (epoch > 0);
ALTER TABLE data_keys ALTER COLUMN epoch DROP DEFAULT;
-- The re-wrap sweep walks one old epoch, tenant by tenant, in participant order
-- (keyset batches), and the retirement checks that an epoch has no key left.
CREATE INDEX data_keys_epoch ON data_keys (epoch, tenant_id, participant_id);

-- The epochs and when each was made and retired (its key destroyed). No key material:
-- the keys are in the keyring. Platform-wide, not tenant data, so no tenant_id and no
-- row-level security; the service may add and update rows, never remove one.
CREATE TABLE key_epochs (
    epoch      integer PRIMARY KEY CHECK (epoch > 0),
    created_at timestamptz NOT NULL,
    retired_at timestamptz,
    -- Set once every tenant concerned has the retirement in its audit chain.
    audited_at timestamptz
);
INSERT INTO key_epochs (epoch, created_at) VALUES (1, now());
REVOKE DELETE, TRUNCATE ON key_epochs FROM tessera_rights;

-- The epoch after whose retirement an erasure is final in every file and backup: the
-- epoch of the destroyed key's row (NULL for a dialogue-scoped erasure, which
-- destroys no key).
ALTER TABLE requests ADD COLUMN final_after_epoch integer;
CREATE INDEX requests_final_after_epoch ON requests (final_after_epoch, tenant_id)
    WHERE final_after_epoch IS NOT NULL;

-- Cross-tenant lookups of the rotation, each returning tenant IDs or a count only;
-- the keys themselves are read and re-wrapped in each tenant's own unit of work.

-- The first tenant after ``after`` that still has a key under ``wanted``.
CREATE FUNCTION next_tenant_with_epoch(wanted integer, after text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT tenant_id FROM data_keys WHERE epoch = wanted AND tenant_id > after
     ORDER BY epoch, tenant_id LIMIT 1
$$;

-- How many keys are still wrapped under ``wanted`` (zero before it may be retired).
CREATE FUNCTION keys_under_epoch(wanted integer) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT count(*) FROM data_keys WHERE epoch = wanted
$$;

-- Tenants with erasures that became final when ``wanted`` was retired (their audit
-- chains record the retirement).
CREATE FUNCTION tenants_final_after(wanted integer) RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT DISTINCT tenant_id FROM requests WHERE final_after_epoch = wanted ORDER BY tenant_id
$$;
