#!/usr/bin/env bash
# The one-message-per-transaction baseline that `notifyscope bench` is compared with:
# INSERT + pg_notify, committed one message at a time, by pgbench with 4 clients.
#
#   benches/pgbench/pgbench-notify.sh [libpq connection string] [seconds] [clients]
#
# QUERY_MODE=simple (pgbench's default protocol) or prepared (the default here: the faster
# of the two for pgbench, so the stricter baseline).
#
# Works in a scratch database of its own (created, then dropped), so no table of the user's
# is touched. Needs pgbench and psql (Debian: postgresql-client).
set -euo pipefail

CONN=${1:-"host=127.0.0.1 port=5432 user=postgres dbname=postgres"}
SECONDS_TO_RUN=${2:-15}
CLIENTS=${3:-4}
SCRATCH="notifyscope_pgbench_$$"
HERE="$(cd "$(dirname "$0")" && pwd)"
# A Discord message event of 233 bytes, as the publisher sends it.
JSON='{"v":1,"event_type":"discord.message_created","event_id":"9b2f6a9e-3a51-4f0e-9d5c-3c1d2b7f8e10","message":{"message_id":"1199000000000000001","channel_id":"200000000000000002","author_id":"200000000000000003","content":"hi pgbench"}}'

psql "$CONN" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $SCRATCH"
cleanup() { psql "$CONN" -qc "DROP DATABASE IF EXISTS $SCRATCH" >/dev/null 2>&1 || true; }
trap cleanup EXIT

SCRATCH_CONN="$CONN dbname=$SCRATCH"
psql "$SCRATCH_CONN" -v ON_ERROR_STOP=1 -qc \
    "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL)"
QUERY_MODE=${QUERY_MODE:-prepared}
case "$QUERY_MODE" in
    # Bound as a parameter: the JSON goes as it is.
    prepared | extended) VALUE="$JSON" ;;
    # Pasted into the SQL text: it needs to be a quoted literal (it holds no quote).
    simple) VALUE="'$JSON'" ;;
    *) echo "QUERY_MODE must be simple, extended or prepared" >&2; exit 2 ;;
esac
echo "payload: ${#JSON} bytes; ${CLIENTS} clients, ${SECONDS_TO_RUN} s, ${QUERY_MODE} protocol"
pgbench -n -M "$QUERY_MODE" -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_TO_RUN" \
    -D "json=$VALUE" -f "$HERE/pgbench-notify.sql" "$SCRATCH_CONN"
