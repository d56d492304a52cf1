-- Back to two states: a 'missing' record is dropped (the image is simply not cached, and the
-- next sync fetches it again).
CREATE TABLE cache_entries_old (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    identifier TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('cached', 'expired')),
    filename TEXT NOT NULL,
    size BIGINT NOT NULL CHECK (size >= 0),
    sha512 TEXT NOT NULL,
    subscription_id BIGINT REFERENCES subscriptions (id) ON DELETE SET NULL,
    list_version_id BIGINT REFERENCES list_versions (id) ON DELETE SET NULL,
    cached_at TEXT NOT NULL,
    expired_at TEXT,
    expiry_reason TEXT,
    expired_file TEXT,
    CHECK (
        (state = 'cached' AND expired_at IS NULL AND expiry_reason IS NULL AND expired_file IS NULL)
        OR (state = 'expired' AND expired_at IS NOT NULL AND expiry_reason IS NOT NULL AND expired_file IS NOT NULL)
    )
);
INSERT INTO cache_entries_old (id, identifier, state, filename, size, sha512, subscription_id,
        list_version_id, cached_at, expired_at, expiry_reason, expired_file)
    SELECT id, identifier, state, filename, size, sha512, subscription_id, list_version_id,
        cached_at, expired_at, expiry_reason, expired_file
    FROM cache_entries
    WHERE state <> 'missing';
DROP TABLE cache_entries;
ALTER TABLE cache_entries_old RENAME TO cache_entries;
CREATE UNIQUE INDEX cache_entries_one_cached ON cache_entries (identifier) WHERE state = 'cached';
CREATE UNIQUE INDEX cache_entries_expired_file ON cache_entries (expired_file) WHERE expired_file IS NOT NULL;
CREATE INDEX cache_entries_subscription_id ON cache_entries (subscription_id);
CREATE INDEX cache_entries_list_version_id ON cache_entries (list_version_id);
