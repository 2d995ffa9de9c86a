#!/usr/bin/env bash
# The README's performance comparison in one go, on one server, in one session: the
# one-message-per-transaction baseline (pgbench, 4 clients, 15 s), then `notifyscope bench`
# for throughput (50,000 messages) and for latency (paced at 1,000 messages a second).
#
#   benches/pgbench/compare.sh [libpq connection string]
#
# Needs a release build (cargo build --release; NOTIFYSCOPE=path picks another binary),
# pgbench, psql and jq. Both sides work in scratch space of their own (a database for
# pgbench, a schema for the bench) and drop it.
set -euo pipefail

CONN=${1:-"host=127.0.0.1 port=5432 user=postgres dbname=postgres"}
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN=${NOTIFYSCOPE:-"$HERE/../../target/release/notifyscope"}

baseline=$("$HERE/pgbench-notify.sh" "$CONN" 15 4 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
echo "pgbench, one message per transaction, 4 clients: ${baseline} tps"

for notify in per-event per-batch; do
    json=$("$BIN" bench --messages 50000 --notify "$notify" --json --log warn --database-url "$CONN")
    jq -r --argjson base "$baseline" \
        '"bench --messages 50000 --notify \(.notify): \(.per_s | floor) msg/s (\(.per_s / $base * 10 | floor / 10)x pgbench), lost \(.lost), duplicates \(.duplicates)"' \
        <<<"$json"
done

json=$("$BIN" bench --messages 10000 --rate 1000 --json --log warn --database-url "$CONN")
jq -r '"bench --rate 1000: p50 \(.p50_ms) ms, p95 \(.p95_ms) ms, p99 \(.p99_ms) ms, max \(.max_ms) ms (bot path to row); outbox commit to row: p99 \(.stages.ingest.p99_ms) ms; lost \(.lost), duplicates \(.duplicates)"' \
    <<<"$json"
