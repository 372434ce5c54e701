-- depends: 0003_kafka_credentials
-- The tenant console's accounts (tessera_enrolment.console): the organisation's own
-- people, their factors, invitations, sessions and what each of them did. No
-- participant data lives here.

CREATE TABLE console_accounts (
    tenant_id      text NOT NULL REFERENCES tenants,
    account_id     text NOT NULL,
    email          text NOT NULL,
    display_name   text NOT NULL,
    role           text NOT NULL CHECK (role IN ('owner', 'editor', 'analyst', 'privacy_officer')),
    password_hash  text NOT NULL,            -- Argon2id, with its own salt and parameters
    totp_sealed    bytea,                    -- the TOTP secret, AES-GCM under the console key
    totp_last_step bigint NOT NULL DEFAULT 0, -- no code is accepted twice
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, account_id)
);
-- One account per address across the platform: sign-in names no tenant.
CREATE UNIQUE INDEX console_accounts_email ON console_accounts (lower(email));

-- One-time recovery codes: random, so SHA-256 (like API keys), each used once.
CREATE TABLE console_recovery_codes (
    tenant_id   text NOT NULL,
    account_id  text NOT NULL,
    code_sha256 text NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (tenant_id, account_id, code_sha256),
    FOREIGN KEY (tenant_id, account_id) REFERENCES console_accounts ON DELETE CASCADE
);

CREATE TABLE console_invitations (
    tenant_id      text NOT NULL REFERENCES tenants,
    invitation_id  text NOT NULL,
    token_sha256   text NOT NULL,
    email          text NOT NULL,
    role           text NOT NULL CHECK (role IN ('owner', 'editor', 'analyst', 'privacy_officer')),
    invited_by     text,                     -- an account, or NULL for the operator
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    -- Between choosing a password and confirming the first TOTP code.
    pending_password_hash text,
    pending_totp_sealed   bytea,
    pending_display_name  text,
    PRIMARY KEY (tenant_id, invitation_id)
);
CREATE UNIQUE INDEX console_invitations_id ON console_invitations (invitation_id);

CREATE TABLE console_sessions (
    tenant_id      text NOT NULL,
    session_id     text NOT NULL,
    account_id     text NOT NULL,
    token_sha256   text NOT NULL,
    created_at     timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    factor_at      timestamptz,              -- NULL: password given, second factor not yet
    ended_at       timestamptz,
    -- A new TOTP secret being set up (after an administrator reset the factors).
    pending_totp_sealed bytea,
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES console_accounts ON DELETE CASCADE
);
CREATE UNIQUE INDEX console_sessions_id ON console_sessions (session_id);
CREATE INDEX console_sessions_account ON console_sessions (tenant_id, account_id) WHERE ended_at IS NULL;

-- What each account did: never a participant ID, token, password or answer. The
-- network is truncated (IPv4 /24, IPv6 /48), as everywhere an address is kept.
CREATE TABLE console_activity (
    tenant_id  text NOT NULL REFERENCES tenants,
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    at         timestamptz NOT NULL,
    account_id text,
    action     text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}',
    network    text,
    PRIMARY KEY (tenant_id, seq)
);

ALTER TABLE console_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON console_accounts USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE console_recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_recovery_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON console_recovery_codes USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE console_invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON console_invitations USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE console_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON console_sessions USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE console_activity ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_activity FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON console_activity USING (tenant_id = current_setting('tessera.tenant_id', true));

-- The three lookups that name no tenant (a sign-in's address, an invitation's or a
-- session's ID), each returning only the tenant it belongs to; everything else is read
-- inside a unit of work for that tenant, behind row-level security.
CREATE FUNCTION console_tenant_of_email(wanted text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT tenant_id FROM console_accounts WHERE lower(email) = lower(wanted)
$$;
CREATE FUNCTION console_tenant_of_invitation(wanted text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT tenant_id FROM console_invitations WHERE invitation_id = wanted
$$;
CREATE FUNCTION console_tenant_of_session(wanted text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT tenant_id FROM console_sessions WHERE session_id = wanted
$$;
-- An invitation for an address that already has an account, anywhere, is refused.
CREATE FUNCTION console_email_taken(wanted text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT EXISTS (SELECT 1 FROM console_accounts WHERE lower(email) = lower(wanted))
$$;
