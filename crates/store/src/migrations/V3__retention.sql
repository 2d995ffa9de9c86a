-- The pruner deletes the oldest processed rows, given-up rows and dead letters first: each
-- by an index on its time, so a delete batch reads only what it removes.
CREATE INDEX event_outbox_processed ON event_outbox (channel, processed_at)
    WHERE processed_at IS NOT NULL;
CREATE INDEX event_outbox_dead ON event_outbox (channel, dead_at)
    WHERE processed_at IS NULL AND dead_at IS NOT NULL;
CREATE INDEX dead_letters_received ON dead_letters (channel, received_at);
