-- The outbox is a queue: every row is inserted, updated once and deleted by retention, so it
-- turns over its whole size every few minutes under load. The default thresholds (20 % of
-- the table) let dead rows pile up between vacuums and leave the planner's statistics far
-- behind the table; a queue table is vacuumed and analyzed after 1 % instead.
ALTER TABLE event_outbox SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01
);
