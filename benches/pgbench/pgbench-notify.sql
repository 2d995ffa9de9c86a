-- One message per transaction: the outbox row and its NOTIFY, committed together.
-- :json is bound by pgbench -D json=... (a ~230-byte event; see pgbench-notify.sh).
BEGIN;
INSERT INTO t(payload) VALUES (:json);
SELECT pg_notify('events', :json);
COMMIT;
