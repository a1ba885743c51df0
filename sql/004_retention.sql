-- 004_retention: old rows are pruned (docs/data.md#retention). Messages carry personal data, events
-- and finished outbox rows only grow; the pruning job deletes them in small batches, oldest first.

-- The batch scans: "the oldest N rows older than the cutoff" must be an index range scan, not a walk
-- over every recent row, or the last (empty) batch of every run reads the whole table.
CREATE INDEX messages_at_idx ON messages (at);
CREATE INDEX company_events_at_idx ON company_events (at);
-- Finished rows only (a pending row has neither time, so it can never fall under a cutoff).
CREATE INDEX outbox_finished_idx ON outbox ((COALESCE(delivered_at, failed_at)))
    WHERE delivered_at IS NOT NULL OR failed_at IS NOT NULL;

-- company_events stays append-only for everything but retention. The pruning transaction states its
-- horizon with SELECT set_config('actor_admin.prune_before', '<timestamptz>', true); a DELETE is let
-- through only for a row older than that horizon, and only when the horizon itself is at least a day
-- old, so no setting of any session can make the audit log lose a recent entry. UPDATE stays refused.
CREATE OR REPLACE FUNCTION company_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    stated  text := current_setting('actor_admin.prune_before', true);  -- '' once a local setting ended
    horizon timestamptz;
BEGIN
    IF TG_OP = 'DELETE' AND stated IS NOT NULL AND stated <> '' THEN
        horizon := stated::timestamptz;
        IF horizon <= now() - interval '1 day' AND OLD.at < horizon THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'company_events is append-only (% refused)', TG_OP;
END;
$$;
