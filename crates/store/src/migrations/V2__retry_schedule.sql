-- Retries are spaced: a row that failed waits until next_attempt_at before it is claimed
-- again. A row that will not be tried again (its payload breaks the contract, it failed on
-- its own too often, or a fault outlasted the schedule) is a dead letter: dead_at is set and
-- it stays with its last error and the class of that error.
ALTER TABLE event_outbox
    ADD COLUMN next_attempt_at TIMESTAMPTZ,
    ADD COLUMN error_class     TEXT,
    ADD COLUMN dead_at         TIMESTAMPTZ;

-- Rows given up before this column existed: five attempts was the limit.
UPDATE event_outbox SET dead_at = clock_timestamp()
WHERE processed_at IS NULL AND attempts >= 5;

-- Claims, the backlog and the diagnosis read pending rows only: keep the given-up ones out of
-- the index they walk.
DROP INDEX event_outbox_pending;
CREATE INDEX event_outbox_pending ON event_outbox (channel, id)
    WHERE processed_at IS NULL AND dead_at IS NULL;
