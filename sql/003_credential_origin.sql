-- 003_credential_origin: which WhatsApp transport made each salon's credentials, and for which account.
-- A "logged out" answer deletes credentials only when it comes from the transport that made them: the
-- simulator answers 401 to real credentials, and a misconfigured node must not unlink every salon
-- (docs/data.md#credential-origin).
--
-- Rows stored before this migration have transport NULL (unknown). They are treated as "not proven":
-- a logged-out answer keeps them; the first successful connection through a transport records it.

ALTER TABLE whatsapp_credentials
    ADD COLUMN transport text CHECK (transport IN ('neonize', 'simulator')),
    -- the linked account's number, digits only (never the device suffix); NULL until known
    ADD COLUMN account text CHECK (account ~ '^[0-9]{5,20}$');

CREATE INDEX whatsapp_credentials_transport_idx ON whatsapp_credentials (transport);
