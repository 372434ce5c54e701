-- Run by each service's `db-grants` init container as its database's owner role
-- (tessera_<service>_owner on tessera_<service>), before `tessera-migrate`: the
-- grants provision() in deploy/local/src/tessera_devstack/postgres.py makes as
-- superuser, all within the owner's own rights. Idempotent; kept out of the
-- migrations because default privileges must exist before the first table does.
DO $$
DECLARE
    owner_role text := current_user;
    app_role text := left(current_user, -length('_owner'));
BEGIN
    IF right(owner_role, length('_owner')) <> '_owner' THEN
        RAISE EXCEPTION 'connect as tessera_<service>_owner, not %', owner_role;
    END IF;
    -- Replicas start together: one at a time (concurrent catalog updates would fail).
    PERFORM pg_advisory_xact_lock(hashtext('tessera-db-grants'));
    -- CloudNativePG's Database leaves CONNECT to PUBLIC (its bootstrap `app` role too).
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I, %I',
                   current_database(), app_role, owner_role);
    -- Whatever the owner's migrations create, the service's role may read and write
    -- rows of (a migration narrows that where a table is append-only), never alter.
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', owner_role, app_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
                   'GRANT USAGE, SELECT ON SEQUENCES TO %I', owner_role, app_role);
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
END
$$;
