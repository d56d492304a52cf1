-- Back to two states: a 'missing' record is dropped (the image is simply not cached, and the
-- next sync fetches it again).
DELETE FROM cache_entries WHERE state = 'missing';
DROP INDEX cache_entries_one_cached;
CREATE UNIQUE INDEX cache_entries_one_cached ON cache_entries (identifier) WHERE state = 'cached';
ALTER TABLE cache_entries DROP CONSTRAINT cache_entries_check;
ALTER TABLE cache_entries DROP CONSTRAINT cache_entries_state_check;
ALTER TABLE cache_entries DROP COLUMN missing_since;
ALTER TABLE cache_entries ADD CONSTRAINT cache_entries_state_check
    CHECK (state IN ('cached', 'expired'));
ALTER TABLE cache_entries ADD CONSTRAINT cache_entries_check CHECK (
    (state = 'cached' AND expired_at IS NULL AND expiry_reason IS NULL AND expired_file IS NULL)
    OR (state = 'expired' AND expired_at IS NOT NULL AND expiry_reason IS NOT NULL AND expired_file IS NOT NULL)
);
