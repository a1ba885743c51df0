-- 007_unpublished_by_salon: a node re-announces its own salons' inbound messages that never reached the
-- inbound stream (docs/data.md#reannouncing). It asks "the unpublished rows of these salons, oldest
-- first", so the partial index on unpublished rows leads with the salon: a node reads its own salons'
-- backlog only, never the other nodes' nor that of salons nobody owns. It replaces the index on (id)
-- alone (001), so an inbound insert still updates one partial index, not two; "every unpublished row,
-- oldest first" is the whole (small) index read and sorted. Building it reads the whole table while
-- inserts into messages wait: 0.7 s for 2,000,000 rows on a shared 2-core host (in a transaction, so
-- not CONCURRENTLY).
CREATE INDEX messages_unpublished_salon_idx ON messages (salon_id, id) WHERE direction = 'in' AND published_at IS NULL;
DROP INDEX messages_unpublished_idx;
