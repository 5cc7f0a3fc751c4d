#!/usr/bin/env bash
# First start: initdb into PGDATA with POSTGRES_USER / POSTGRES_PASSWORD (SCRAM over TCP,
# peer-less local socket trust inside the container only), create POSTGRES_DB. Then run the
# server with the arguments given (`postgres -c …`).
set -euo pipefail
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [ "${1:-postgres}" = postgres ]; then
  shift || true
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
      --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    {
      echo "listen_addresses = '*'"
      echo "unix_socket_directories = '/var/run/postgresql'"
    } >>"$PGDATA/postgresql.conf"
    {
      echo "host all all all scram-sha-256"
      # the backup profile's pg_basebackup and pg_receivewal (docs/backups.md)
      echo "host replication $POSTGRES_USER all scram-sha-256"
    } >>"$PGDATA/pg_hba.conf"
    # a socket-only server while the database is created
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
      psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres-entrypoint: initialised $PGDATA with database $POSTGRES_DB"
  fi
  exec postgres "$@"
fi
exec "$@"
