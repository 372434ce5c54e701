-- depends: 0090_vacuum
-- Tenants' Kafka credentials (tessera_common.kafka_access): which SCRAM users the
-- platform issued to a tenant's systems, to read the tenant's own topics. The password
-- is never stored here; Kafka keeps only its salted SCRAM verifier.

CREATE TABLE kafka_credentials (
    tenant_id     text NOT NULL REFERENCES tenants,
    credential_id text NOT NULL,
    name          text NOT NULL,
    username      text NOT NULL,
    created_at    timestamptz NOT NULL,
    rotated_at    timestamptz,
    revoked_at    timestamptz,
    PRIMARY KEY (tenant_id, credential_id)
);
CREATE UNIQUE INDEX kafka_credentials_username ON kafka_credentials (username);
CREATE INDEX kafka_credentials_by_creation ON kafka_credentials (tenant_id, created_at);

ALTER TABLE kafka_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE kafka_credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON kafka_credentials USING (tenant_id = current_setting('tessera.tenant_id', true));
