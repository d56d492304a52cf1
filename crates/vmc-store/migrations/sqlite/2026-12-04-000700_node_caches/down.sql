DROP TABLE event_outbox;
ALTER TABLE nodes DROP COLUMN url;
DROP INDEX cache_entries_expired_file;
DROP INDEX cache_entries_one_cached;
DELETE FROM cache_entries WHERE node <> '';
ALTER TABLE cache_entries DROP COLUMN node;
CREATE UNIQUE INDEX cache_entries_one_cached ON cache_entries (identifier)
    WHERE state IN ('cached', 'missing');
CREATE UNIQUE INDEX cache_entries_expired_file ON cache_entries (expired_file)
    WHERE expired_file IS NOT NULL;
