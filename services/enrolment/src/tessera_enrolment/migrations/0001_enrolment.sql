-- depends: 0000_outbox_inbox
-- Enrolment: tenants, opp codes, devices (DESIGN.md §2). tenant_id leads every key of
-- tenant data, so the tables can be distributed by tenant later without re-keying.

CREATE TABLE tenants (
    tenant_id      text PRIMARY KEY,
    name           text NOT NULL,
    region         text NOT NULL,
    api_key_sha256 text NOT NULL,
    created_at     timestamptz NOT NULL
);

CREATE TABLE codes (
    tenant_id      text NOT NULL REFERENCES tenants,
    code           text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz,
    max_enrolments integer,
    enrolments     integer NOT NULL DEFAULT 0,
    revoked_at     timestamptz,
    PRIMARY KEY (tenant_id, code)
);
-- An opp code names no tenant: it must be unique across all of them.
CREATE UNIQUE INDEX codes_code ON codes (code);
CREATE INDEX codes_by_creation ON codes (tenant_id, created_at);

-- Only the fields DESIGN.md §1 allows (domain.DEVICE_FIELDS); never an IP address.
CREATE TABLE devices (
    tenant_id      text NOT NULL REFERENCES tenants,
    participant_id text NOT NULL,
    token_sha256   text NOT NULL,
    platform       text NOT NULL CHECK (platform IN ('ios', 'android')),
    form_factor    text NOT NULL CHECK (form_factor IN ('phone', 'tablet')),
    enrolled_at    timestamptz NOT NULL,
    last_used_on   date,
    PRIMARY KEY (tenant_id, participant_id)
);
-- A device token names the participant only (tdt_<participant_id>.<secret>).
CREATE UNIQUE INDEX devices_participant ON devices (participant_id);
CREATE INDEX devices_idle ON devices (tenant_id, last_used_on);

-- Row-level security: the second wall between tenants.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON tenants USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON codes USING (tenant_id = current_setting('tessera.tenant_id', true));
ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE devices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON devices USING (tenant_id = current_setting('tessera.tenant_id', true));

-- The two lookups that must cross tenants, each returning only what it needs. They run
-- as the owner (SECURITY DEFINER), with RLS switched off for their one statement.

-- Take one enrolment from a usable code; its tenant, or nothing. One conditional
-- UPDATE: two devices can never both take a limited code's last place.
CREATE FUNCTION claim_opp_code(wanted text, at timestamptz) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    UPDATE codes SET enrolments = enrolments + 1
     WHERE code = wanted AND revoked_at IS NULL
       AND (expires_at IS NULL OR expires_at > at)
       AND (max_enrolments IS NULL OR enrolments < max_enrolments)
    RETURNING tenant_id
$$;

-- The device a token names, for checking the token: the gateway learns the tenant here.
CREATE FUNCTION device_for_token(wanted text)
RETURNS TABLE (participant_id text, tenant_id text, token_sha256 text, platform text,
               form_factor text, enrolled_at timestamptz, last_used_on date)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT participant_id, tenant_id, token_sha256, platform, form_factor, enrolled_at, last_used_on
      FROM devices WHERE participant_id = wanted
$$;
