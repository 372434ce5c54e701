-- depends: 0005_allow_list
-- Passkeys (WebAuthn) as a console account's second factor, beside TOTP: the
-- credential's ID and public key (COSE), and the signature counter it last showed.

CREATE TABLE console_passkeys (
    tenant_id     text NOT NULL,
    account_id    text NOT NULL,
    credential_id bytea NOT NULL,
    public_key    bytea NOT NULL,
    sign_count    bigint NOT NULL DEFAULT 0,
    name          text NOT NULL,
    created_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    PRIMARY KEY (tenant_id, account_id, credential_id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES console_accounts ON DELETE CASCADE
);

-- The challenge of the ceremony a session is in (registration or sign-in), used once.
ALTER TABLE console_sessions ADD COLUMN webauthn_challenge bytea;

ALTER TABLE console_passkeys ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_passkeys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON console_passkeys USING (tenant_id = current_setting('tessera.tenant_id', true));
