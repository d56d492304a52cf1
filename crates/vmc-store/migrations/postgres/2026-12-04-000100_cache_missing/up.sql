-- A cached file found gone from the cache directory is in state 'missing' (fetched again by
-- the next sync, forgotten when its image is no longer wanted), not an expiry with an empty
-- file name: those collided on cache_entries_expired_file from the second lost file on.
ALTER TABLE cache_entries ADD COLUMN missing_since TEXT;
-- The old "expired with no file" record of a lost file becomes 'missing', unless the image
-- has been cached again since (then it named nothing and is dropped).
DELETE FROM cache_entries AS old
    WHERE old.state = 'expired' AND old.expired_file = ''
        AND EXISTS (SELECT 1 FROM cache_entries AS c
                    WHERE c.identifier = old.identifier AND c.state = 'cached');
ALTER TABLE cache_entries DROP CONSTRAINT cache_entries_state_check;
ALTER TABLE cache_entries DROP CONSTRAINT cache_entries_check;
UPDATE cache_entries
    SET state = 'missing', missing_since = expired_at, expired_at = NULL, expiry_reason = NULL,
        expired_file = NULL
    WHERE state = 'expired' AND expired_file = '';
ALTER TABLE cache_entries ADD CONSTRAINT cache_entries_state_check
    CHECK (state IN ('cached', 'expired', 'missing'));
ALTER TABLE cache_entries ADD CONSTRAINT cache_entries_check CHECK (
    (state = 'cached' AND expired_at IS NULL AND expiry_reason IS NULL AND expired_file IS NULL
        AND missing_since IS NULL)
    OR (state = 'expired' AND expired_at IS NOT NULL AND expiry_reason IS NOT NULL
        AND expired_file IS NOT NULL AND expired_file <> '' AND missing_since IS NULL)
    OR (state = 'missing' AND expired_at IS NULL AND expiry_reason IS NULL AND expired_file IS NULL
        AND missing_since IS NOT NULL)
);
-- At most one current record (cached or missing) per image id.
DROP INDEX cache_entries_one_cached;
CREATE UNIQUE INDEX cache_entries_one_cached ON cache_entries (identifier)
    WHERE state IN ('cached', 'missing');
