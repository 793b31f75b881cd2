-- 100 rows per transaction, the same shape: the batched limit.
INSERT INTO raw_messages (id, conversation_id, turn, source, target, kind, content, sent_at)
SELECT gen_random_uuid(), gen_random_uuid(), n, 'client', 'server', 'request',
       '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"',
       1700000000000
FROM generate_series(1, 100) AS n;
