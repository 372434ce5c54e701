-- depends: 0004_console
-- A tenant's IP allow-list (tessera_enrolment.console_api): the networks from which its
-- console accounts and its API keys may be used. No rows: no restriction. Checked in
-- SQL (`address <<= network`), IPv4 and IPv6 alike.

CREATE TABLE console_allow_list (
    tenant_id  text NOT NULL REFERENCES tenants,
    network    cidr NOT NULL,
    added_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, network)
);

ALTER TABLE console_allow_list ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_allow_list FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON console_allow_list USING (tenant_id = current_setting('tessera.tenant_id', true));
