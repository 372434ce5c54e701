-- depends: 0006_passkeys
-- A tenant's API keys (tessera_enrolment.api_keys): named, scoped, revocable, with their
-- last use here. Only the SHA-256 of a key is kept; the key is shown once. The tenant's
-- first key (from POST /v1/tenants) becomes k_initial with every scope.
--
-- access_revision counts changes to the keys and the allow-list: each change publishes
-- the whole state as tenant-access-changed with the next revision.

CREATE TABLE api_keys (
    tenant_id    text NOT NULL REFERENCES tenants,
    key_id       text NOT NULL,
    name         text NOT NULL,
    scopes       text[] NOT NULL,
    key_sha256   text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    created_by   text,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    PRIMARY KEY (tenant_id, key_id)
);

ALTER TABLE tenants ADD COLUMN access_revision integer NOT NULL DEFAULT 0;

-- Every tenant's first key, across tenants: the owner runs this with the policies of
-- both tables lifted for the moment (FORCE would hide every tenant's row from it).
ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY;
INSERT INTO api_keys (tenant_id, key_id, name, scopes, key_sha256, created_at)
SELECT tenant_id, 'k_initial', 'Initial key', ARRAY['dialogues', 'figures', 'rights', 'codes', 'streams'],
       api_key_sha256, created_at
FROM tenants;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON api_keys USING (tenant_id = current_setting('tessera.tenant_id', true));
