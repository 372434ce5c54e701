-- depends: 0001_analytics
-- Vacuum after erasure: the tables an erasure deletes from are vacuumed after a small
-- number of dead rows rather than autovacuum's default fifth of the table, so the space
-- of erased rows is reused promptly (the service also asks for a VACUUM soon after an
-- erasure when it has the owner's address: Database.vacuum_soon). The proof that an
-- erasure is final does not rely on this: the rights service's key epochs do.
ALTER TABLE device_contributions SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100);
ALTER TABLE answer_contributions SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100);
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100);
