-- One row per transaction, shaped like a colloquy message (uuid ids, a JSON payload of
-- ~200 bytes): the limit a hub's writes are compared with.
INSERT INTO raw_messages (id, conversation_id, turn, source, target, kind, content, sent_at)
VALUES (gen_random_uuid(), gen_random_uuid(), 1, 'client', 'server', 'request',
        '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"',
        1700000000000);
