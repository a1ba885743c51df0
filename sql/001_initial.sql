-- 001_initial: the system of record of actor-admin (SPEC §7).
-- salon_id is the YClients branch id everywhere.

CREATE TABLE companies (
    salon_id              bigint PRIMARY KEY CHECK (salon_id > 0),
    title                 text,
    integration_status    text NOT NULL DEFAULT 'pending_whatsapp'
        CHECK (integration_status IN ('pending_whatsapp', 'activating', 'active',
                                      'activation_failed', 'frozen', 'uninstalled')),
    whatsapp_connected    boolean NOT NULL DEFAULT false,
    -- digits only, never the device suffix ("79006464263:15" was a fault of the original system)
    whatsapp_phone        text CHECK (whatsapp_phone ~ '^[0-9]{5,20}$'),
    whatsapp_connected_at timestamptz,          -- last time WhatsApp connected
    connected_at          timestamptz,          -- last time YClients confirmed the activation
    disconnected_at       timestamptz,          -- last time WhatsApp disconnected
    api_key               text,                 -- our per-salon key, sent to YClients on activation
    user_id               text,                 -- marketplace user from user_data (id or user_id)
    user_name             text,
    user_phone            text,
    user_email            text,
    registered_at         timestamptz NOT NULL DEFAULT now(),  -- start of the 1-hour activation window
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX companies_integration_status_idx ON companies (integration_status, salon_id);

CREATE TABLE whatsapp_credentials (
    salon_id   bigint PRIMARY KEY REFERENCES companies (salon_id) ON DELETE CASCADE,
    blob       bytea NOT NULL,          -- AES-256-GCM, salon_id bound as associated data
    key_id     text NOT NULL,           -- which CREDENTIALS_KEY encrypted it
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_credentials_key_id_idx ON whatsapp_credentials (key_id);

-- Append-only audit log. No foreign key: webhooks for unknown salons are recorded too.
CREATE TABLE company_events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    salon_id bigint NOT NULL,
    type     text NOT NULL,
    data     jsonb NOT NULL DEFAULT '{}'::jsonb,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX company_events_salon_idx ON company_events (salon_id, id);

CREATE FUNCTION company_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'company_events is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER company_events_append_only
    BEFORE UPDATE OR DELETE ON company_events
    FOR EACH ROW EXECUTE FUNCTION company_events_append_only();

-- Calls to YClients, written in the same transaction as the state change that requires them and
-- delivered with retries by the outbox worker. Claiming pushes next_attempt_at forward (a lease), so a
-- worker that dies mid-call lets the row become due again.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL,
    salon_id        bigint NOT NULL,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    deadline        timestamptz,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (delivered_at IS NULL OR failed_at IS NULL)
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_salon_idx ON outbox (salon_id, id);

CREATE TABLE messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    salon_id        bigint NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('in', 'out')),
    wa_id           text,               -- WhatsApp message id (outbound: known once sent)
    peer            text NOT NULL,      -- the other party's phone, digits only
    text            text NOT NULL,
    status          text NOT NULL
        CHECK (status IN ('received', 'queued', 'sent', 'delivered', 'read', 'failed')),
    idempotency_key text,               -- outbound only: the caller's key; a repeat never sends twice
    at              timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,        -- inbound only: when it was put on the actor-admin:inbound stream
    CONSTRAINT messages_wa_id_key UNIQUE (salon_id, direction, wa_id),
    CONSTRAINT messages_idempotency_key UNIQUE (salon_id, idempotency_key),
    CHECK ((direction = 'out') = (idempotency_key IS NOT NULL))
);
CREATE INDEX messages_latest_idx ON messages (salon_id, direction, at DESC, id DESC);
CREATE INDEX messages_unpublished_idx ON messages (id) WHERE direction = 'in' AND published_at IS NULL;
