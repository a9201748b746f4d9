#!/bin/sh
# Run once by the postgres image, on an empty data volume (docker-entrypoint-initdb.d).
# Each service owns its own database through its own role: neither can read the other's data.
# Passwords come from deploy/postgres.env.
set -e

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v auth_password="$TESSERA_AUTH_DB_PASSWORD" \
    -v notes_password="$TESSERA_NOTES_DB_PASSWORD" <<'SQL'
CREATE ROLE tessera_auth LOGIN PASSWORD :'auth_password';
CREATE DATABASE tessera_auth OWNER tessera_auth;
REVOKE ALL ON DATABASE tessera_auth FROM PUBLIC;

CREATE ROLE tessera_notes LOGIN PASSWORD :'notes_password';
CREATE DATABASE tessera_notes OWNER tessera_notes;
REVOKE ALL ON DATABASE tessera_notes FROM PUBLIC;
SQL
