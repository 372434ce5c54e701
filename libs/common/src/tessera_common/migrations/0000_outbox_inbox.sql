-- The transactional outbox and the consumers' inbox, in every service's database.
--
-- outbox: Debezium's outbox columns (id, aggregatetype, aggregateid, type, payload), so
-- change-data capture can replace the relay later, plus what the relay needs: the
-- topic, the Kafka key, the writer's trace context, and seq for the order of writes.
-- No tenant policy: only the relay reads it, and it serves every tenant.
CREATE TABLE outbox (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            uuid NOT NULL UNIQUE,
    aggregatetype text NOT NULL,
    aggregateid   text NOT NULL,
    type          text NOT NULL,
    payload       jsonb NOT NULL,
    topic         text NOT NULL,
    key           text,
    headers       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The relay sleeps until a commit wakes it (NOTIFY is delivered at commit).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- inbox: which events each consumer has applied, written in the transaction that
-- applies one, so a redelivery is recognised and changes nothing.
CREATE TABLE inbox (
    consumer   text NOT NULL,
    event_id   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
