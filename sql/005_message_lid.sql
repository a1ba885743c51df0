-- Inbound messages from chats WhatsApp addresses by LID (its privacy id, "…@lid") are stored, never
-- skipped: peer_lid keeps the sender's LID, and peer is '' when no phone number could be found for it
-- (docs/data.md#messages). A nullable column without a default rewrites nothing, and NOT VALID spares the
-- check a scan of old rows under lock (they all hold a phone number): it binds every row written from now on.
ALTER TABLE messages ADD COLUMN peer_lid text;
ALTER TABLE messages ADD CONSTRAINT messages_peer_known CHECK (peer <> '' OR peer_lid IS NOT NULL) NOT VALID;
