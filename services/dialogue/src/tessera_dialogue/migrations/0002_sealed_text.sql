-- depends: 0001_dialogue
-- Free text sealed at rest (issue 12): what a participant typed is stored only as
-- AES-256-GCM ciphertext under their data key (text_sealed: the 12-byte nonce, then the
-- ciphertext and its tag; text_key_id: which key), exactly as its events carry it.
-- Erasure destroys the key, so every copy of the row a file still holds (dead tuples,
-- free space, WAL, backups) is unreadable from then on. The plaintext column stays only
-- for rows written before this migration, which the service seals at start
-- (store.seal_legacy_texts) and then empties; nothing writes it any more.
ALTER TABLE answers ADD COLUMN text_key_id text, ADD COLUMN text_sealed bytea;
ALTER TABLE answers ADD CONSTRAINT answers_sealed_whole CHECK ((text_key_id IS NULL) = (text_sealed IS NULL));

-- Rows still in plaintext, found without reading the whole table at every start (the
-- index stays empty once they are sealed).
CREATE INDEX answers_plaintext ON answers (tenant_id, answer_id) WHERE text IS NOT NULL;

-- The tenants that still have answers with plaintext (rows from before sealing), so the
-- service can seal them tenant by tenant in each tenant's own unit of work.
CREATE FUNCTION tenants_with_plaintext_answers() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET row_security = off AS $$
    SELECT DISTINCT tenant_id FROM answers WHERE text IS NOT NULL
$$;
