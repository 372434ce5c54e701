-- depends: 0001_enrolment
--
-- An enrolment in one statement: take a place of the code, record the device and its
-- device-enrolled event in the outbox, or do nothing when the code is not usable.
-- It was five round trips (BEGIN, the claim, the device, the outbox row, COMMIT) for
-- what the bare baseline does in one; the gateway's enrolment rate was held by them.
-- SECURITY DEFINER like claim_opp_code, and no wider: the device is written for the
-- tenant whose code was claimed, the only tenant this statement can name. The event is
-- built by the service without its tenant (which the code decides here) and gets it
-- here. One statement is one transaction: a failure after the claim gives it back.
CREATE FUNCTION enrol_device(wanted text, at timestamptz, participant text, token_hash text,
                             device_platform text, device_form_factor text, used_on date,
                             event_id uuid, event_type text, event jsonb, event_topic text,
                             trace jsonb) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    WITH claimed AS (
        UPDATE codes SET enrolments = enrolments + 1
         WHERE code = wanted AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > at)
           AND (max_enrolments IS NULL OR enrolments < max_enrolments)
        RETURNING tenant_id
    ), device AS (
        INSERT INTO devices (tenant_id, participant_id, token_sha256, platform, form_factor, enrolled_at,
                             last_used_on)
        SELECT tenant_id, participant, token_hash, device_platform, device_form_factor, at, used_on
          FROM claimed
        RETURNING tenant_id
    ), published AS (
        INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, topic, key, headers)
        SELECT event_id, 'device', participant, event_type, jsonb_set(event, '{tenant_id}', to_jsonb(tenant_id)),
               event_topic, participant, trace
          FROM device
    )
    SELECT tenant_id FROM device
$$;
