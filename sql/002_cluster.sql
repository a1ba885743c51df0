-- 002_cluster: several nodes — membership, one owner per salon, and fencing refused by PostgreSQL itself.
-- The protocol (who writes what, with which fence, and why it is safe) is docs/cluster.md.

-- One row per running node process. A node renews only its own row (heartbeat_seq + 1 every
-- interval): that is the lease of every salon it owns, so upkeep costs O(nodes), not O(salons).
-- Liveness is judged by other nodes watching heartbeat_seq on their own clocks; heartbeat_at is
-- PostgreSQL's clock and is for operators only (ages in /status), never for decisions.
CREATE TABLE cluster_nodes (
    node_id       text PRIMARY KEY CHECK (length(node_id) BETWEEN 1 AND 200),
    incarnation   text NOT NULL CHECK (length(incarnation) BETWEEN 1 AND 64),  -- one per process start
    version       text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_seq bigint NOT NULL DEFAULT 1 CHECK (heartbeat_seq > 0),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    draining      boolean NOT NULL DEFAULT false    -- shutting down: hands its salons over, claims none
);

-- Every change of a salon's owner takes a new fence from this one sequence, so fences only grow and
-- a fence names exactly one ownership (or one release) of one salon, cluster-wide.
CREATE SEQUENCE salon_owner_fence AS bigint;

CREATE TABLE salon_owners (
    salon_id   bigint PRIMARY KEY REFERENCES companies (salon_id) ON DELETE CASCADE,
    -- NULL = released: any node the placement points at may claim it. A node row cannot be
    -- deleted while it still owns salons (the node leaves by releasing them first).
    node_id    text REFERENCES cluster_nodes (node_id),
    fence      bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    cause      text NOT NULL
        CHECK (cause IN ('claimed', 'taken_after_expiry', 'handed_over', 'released')),
    CHECK ((node_id IS NULL) = (cause IN ('handed_over', 'released')))
);
CREATE INDEX salon_owners_node_idx ON salon_owners (node_id, salon_id) INCLUDE (fence);

-- A writer that acts for a salon's owner states its fence for the transaction:
--     SELECT set_config('actor_admin.fence', '<fence>', true)
-- and from then on every write to a salon's rows is refused (SQLSTATE AAF01) unless that fence is
-- the salon's current one. Writers that state no fence (webhooks, admin, the outbox worker) are not
-- checked. The owner row is locked FOR SHARE, so an ownership change waits for a fenced
-- transaction in flight to end, and a fenced transaction that starts after the change sees it.
CREATE FUNCTION actor_admin_check_fence(p_salon_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    stated text := current_setting('actor_admin.fence', true);  -- '' once a local setting ended
    owner  record;
BEGIN
    IF stated IS NULL OR stated = '' THEN
        RETURN;
    END IF;
    IF stated !~ '^[0-9]{1,18}$' THEN
        RAISE EXCEPTION 'actor_admin.fence must be a fence number, not %', quote_literal(stated)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT o.node_id, o.fence INTO owner FROM salon_owners o WHERE o.salon_id = p_salon_id FOR SHARE;
    IF NOT FOUND OR owner.node_id IS NULL OR owner.fence <> stated::bigint THEN
        RAISE EXCEPTION 'salon % is fenced: fence % is not its current one', p_salon_id, stated
            USING ERRCODE = 'AAF01',
                  DETAIL = format('current fence %s, owner %s',
                                  COALESCE(owner.fence::text, 'none'), COALESCE(owner.node_id, 'none'));
    END IF;
END;
$$;

-- How the store opens a fenced transaction: state the fence and check it up front, in one round trip,
-- so a stale owner fails before doing any work (and a write to a table without a trigger is covered).
CREATE FUNCTION actor_admin_use_fence(p_salon_id bigint, p_fence bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('actor_admin.fence', p_fence::text, true);
    PERFORM actor_admin_check_fence(p_salon_id);
END;
$$;

CREATE FUNCTION actor_admin_fence_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A delete cascaded from a company's delete was checked as that delete; checking it again here
    -- would depend on whether the cascade already removed the salon's owner row (cascades fire in the
    -- order of their triggers' names, which PostgreSQL derives from OIDs: no order to rely on).
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM actor_admin_check_fence(OLD.salon_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.salon_id IS DISTINCT FROM OLD.salon_id) THEN
        PERFORM actor_admin_check_fence(NEW.salon_id);
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;

-- Every table an actor writes for its salon.
CREATE TRIGGER companies_fence BEFORE INSERT OR UPDATE OR DELETE ON companies
    FOR EACH ROW EXECUTE FUNCTION actor_admin_fence_guard();
CREATE TRIGGER whatsapp_credentials_fence BEFORE INSERT OR UPDATE OR DELETE ON whatsapp_credentials
    FOR EACH ROW EXECUTE FUNCTION actor_admin_fence_guard();
CREATE TRIGGER company_events_fence BEFORE INSERT ON company_events
    FOR EACH ROW EXECUTE FUNCTION actor_admin_fence_guard();
CREATE TRIGGER messages_fence BEFORE INSERT OR UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION actor_admin_fence_guard();
CREATE TRIGGER outbox_fence BEFORE INSERT OR UPDATE OR DELETE ON outbox
    FOR EACH ROW EXECUTE FUNCTION actor_admin_fence_guard();
