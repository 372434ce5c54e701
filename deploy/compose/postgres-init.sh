#!/usr/bin/env bash
# Run once by the postgres image (docker-compose.yml), as its superuser, on the first
# start with an empty data volume. The same as provision() in
# deploy/local/src/tessera_devstack/postgres.py: per service a database owned by
# tessera_<service>_owner (runs the migrations; BYPASSRLS for the few SECURITY
# DEFINER lookups that cross tenants) and a login role tessera_<service> that owns
# nothing, so row-level security binds everything the service does (DESIGN.md §5).
# Sourced or executed by the image's entrypoint: no `exit`, no `set` of its own.

tessera_provision() {
	local service=$1 password=$2 owner_password=$3
	psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
		-v app="tessera_${service}" -v owner="tessera_${service}_owner" -v db="tessera_${service}" \
		-v password="$password" -v owner_password="$owner_password" <<-'SQL'
		CREATE ROLE :"owner" LOGIN BYPASSRLS PASSWORD :'owner_password';
		CREATE ROLE :"app" LOGIN PASSWORD :'password';
		CREATE DATABASE :"db" OWNER :"owner";
		REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
		GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app", :"owner";
		\connect :"db"
		-- Whatever the owner's migrations create, the service's role may read and write
		-- rows of (a migration narrows that where a table is append-only), never alter.
		ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
			GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
		ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
			GRANT USAGE, SELECT ON SEQUENCES TO :"app";
		REVOKE CREATE ON SCHEMA public FROM PUBLIC;
	SQL
}

tessera_provision enrolment "${TESSERA_PG_ENROLMENT_PASSWORD:?}" "${TESSERA_PG_ENROLMENT_OWNER_PASSWORD:?}"
tessera_provision dialogue "${TESSERA_PG_DIALOGUE_PASSWORD:?}" "${TESSERA_PG_DIALOGUE_OWNER_PASSWORD:?}"
tessera_provision rights "${TESSERA_PG_RIGHTS_PASSWORD:?}" "${TESSERA_PG_RIGHTS_OWNER_PASSWORD:?}"
tessera_provision analytics "${TESSERA_PG_ANALYTICS_PASSWORD:?}" "${TESSERA_PG_ANALYTICS_OWNER_PASSWORD:?}"
