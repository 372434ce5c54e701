-- depends: 0002_key_epochs
-- Vacuum after erasure: the tables an erasure deletes from (or, for requests, clears
-- the participant ID in) are vacuumed after a small number of dead rows rather than
-- autovacuum's default fifth of the table, so the space of erased rows is reused
-- promptly. The proof that an erasure is final does not rely on this (key epochs do);
-- it shortens how long erased bytes sit in the table files.
ALTER TABLE data_keys SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100);
ALTER TABLE requests SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100);
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100);
