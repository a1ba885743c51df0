-- 006_row_fence: a fence stated on the row itself, so that one statement writing many salons' messages
-- (the inbound group commit: inserts and publication marks) is checked by the same rule, in a trigger,
-- as every other fenced write. The protocol is docs/cluster.md (fencing).

-- The rule, in one place: a write stating fence p_fence for salon p_salon_id is refused (SQLSTATE
-- AAF01) unless the salon is owned and p_fence is its current fence. The owner row is locked FOR SHARE,
-- so an ownership change waits for the writing transaction to end. Answers true, never false (a stale
-- fence raises): a trigger calls it as an expression, which costs no query per row as PERFORM would.
CREATE FUNCTION actor_admin_check_fence(p_salon_id bigint, p_fence bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    owner record;
BEGIN
    SELECT o.node_id, o.fence INTO owner FROM salon_owners o WHERE o.salon_id = p_salon_id FOR SHARE;
    IF NOT FOUND OR owner.node_id IS NULL OR owner.fence <> p_fence THEN
        RAISE EXCEPTION 'salon % is fenced: fence % is not its current one', p_salon_id, p_fence
            USING ERRCODE = 'AAF01',
                  DETAIL = format('current fence %s, owner %s',
                                  COALESCE(owner.fence::text, 'none'), COALESCE(owner.node_id, 'none'));
    END IF;
    RETURN true;
END;
$$;

-- The fence a transaction states for every salon it writes (SELECT set_config('actor_admin.fence', …,
-- true), or actor_admin_use_fence), checked by the rule above; no fence stated: not checked.
CREATE OR REPLACE FUNCTION actor_admin_check_fence(p_salon_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    stated text := current_setting('actor_admin.fence', true);  -- '' once a local setting ended
BEGIN
    IF stated IS NULL OR stated = '' THEN
        RETURN;
    END IF;
    IF stated !~ '^[0-9]{1,18}$' THEN
        RAISE EXCEPTION 'actor_admin.fence must be a fence number, not %', quote_literal(stated)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM actor_admin_check_fence(p_salon_id, stated::bigint);
END;
$$;

-- The fence a row's writer states for that row alone (NULL: none): a statement writing for many salons
-- gives each row its own writer's fence. Never kept: the trigger below checks it and stores NULL.
ALTER TABLE messages ADD COLUMN stated_fence bigint;

CREATE FUNCTION actor_admin_row_fence_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    checked boolean;  -- the rule's answer: true, or it raised
BEGIN
    IF TG_OP = 'UPDATE' THEN
        checked := actor_admin_check_fence(OLD.salon_id, NEW.stated_fence);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.salon_id IS DISTINCT FROM OLD.salon_id THEN
        checked := actor_admin_check_fence(NEW.salon_id, NEW.stated_fence);
    END IF;
    NEW.stated_fence := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER messages_row_fence BEFORE INSERT OR UPDATE ON messages
    FOR EACH ROW WHEN (NEW.stated_fence IS NOT NULL) EXECUTE FUNCTION actor_admin_row_fence_guard();

-- The transaction's fence (002_cluster.sql), now looked at only when one is stated: a statement stating
-- none — webhooks, admin, and the batches above, whose rows state their own — no longer calls the
-- function for every row only for it to return at once. What it checks is unchanged.
DROP TRIGGER companies_fence ON companies;
CREATE TRIGGER companies_fence BEFORE INSERT OR UPDATE OR DELETE ON companies
    FOR EACH ROW WHEN (current_setting('actor_admin.fence', true) <> '') EXECUTE FUNCTION actor_admin_fence_guard();
DROP TRIGGER whatsapp_credentials_fence ON whatsapp_credentials;
CREATE TRIGGER whatsapp_credentials_fence BEFORE INSERT OR UPDATE OR DELETE ON whatsapp_credentials
    FOR EACH ROW WHEN (current_setting('actor_admin.fence', true) <> '') EXECUTE FUNCTION actor_admin_fence_guard();
DROP TRIGGER company_events_fence ON company_events;
CREATE TRIGGER company_events_fence BEFORE INSERT ON company_events
    FOR EACH ROW WHEN (current_setting('actor_admin.fence', true) <> '') EXECUTE FUNCTION actor_admin_fence_guard();
DROP TRIGGER messages_fence ON messages;
CREATE TRIGGER messages_fence BEFORE INSERT OR UPDATE OR DELETE ON messages
    FOR EACH ROW WHEN (current_setting('actor_admin.fence', true) <> '') EXECUTE FUNCTION actor_admin_fence_guard();
DROP TRIGGER outbox_fence ON outbox;
CREATE TRIGGER outbox_fence BEFORE INSERT OR UPDATE OR DELETE ON outbox
    FOR EACH ROW WHEN (current_setting('actor_admin.fence', true) <> '') EXECUTE FUNCTION actor_admin_fence_guard();

-- How the store opens a statement that writes for many salons (as actor_admin_use_fence opens a
-- transaction): every (salon, fence) its rows state, checked up front in salon_id order — the lock order
-- of salon_owners rows (docs/cluster.md), so it queues behind an ownership change instead of
-- deadlocking with it — and the first stale one fails the statement before any row is written, even
-- one whose rows turn out to change nothing. NULL fences are not checked.
CREATE FUNCTION actor_admin_check_fences(p_salon_ids bigint[], p_fences bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    salon bigint;
    fence bigint;
    checked boolean;  -- the rule's answer: true, or it raised
BEGIN
    FOR salon, fence IN
        SELECT DISTINCT s, f FROM unnest(p_salon_ids, p_fences) AS u(s, f) WHERE f IS NOT NULL ORDER BY s, f
    LOOP
        checked := actor_admin_check_fence(salon, fence);
    END LOOP;
END;
$$;
