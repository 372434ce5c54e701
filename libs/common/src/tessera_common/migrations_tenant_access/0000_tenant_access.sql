-- Who may use a tenant's API routes, in the database of each service behind the gateway
-- (dialogue, rights, analytics): the latest `tenant-access-changed` the service has
-- applied (tessera_common.tenant_access). The gateway owns the keys and the allow-list;
-- this is its copy, so a key is checked without a call to the gateway.
--
-- api_keys: [{key_id, key_sha256, scopes}] of the active keys, read whole per request
-- and never filtered on in SQL. networks: the allow-list; empty: any address.
CREATE TABLE tenant_access (
    tenant_id text PRIMARY KEY,
    revision  integer NOT NULL,
    api_keys  jsonb NOT NULL,
    networks  cidr[] NOT NULL
);

-- When each key last opened one of this service's routes (to the minute): the console
-- shows the latest over every service.
CREATE TABLE api_key_use (
    tenant_id    text NOT NULL,
    key_id       text NOT NULL,
    last_used_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);

ALTER TABLE tenant_access ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_access FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON tenant_access USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE api_key_use ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_key_use FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON api_key_use USING (tenant_id = current_setting('tessera.tenant_id', true));
