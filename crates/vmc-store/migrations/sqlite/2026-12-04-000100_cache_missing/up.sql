-- A cached file found gone from the cache directory is in state 'missing' (fetched again by
-- the next sync, forgotten when its image is no longer wanted), not an expiry with an empty
-- file name: those collided on cache_entries_expired_file from the second lost file on.
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt.
CREATE TABLE cache_entries_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    identifier TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('cached', 'expired', 'missing')),
    filename TEXT NOT NULL,
    size BIGINT NOT NULL CHECK (size >= 0),
    sha512 TEXT NOT NULL,
    subscription_id BIGINT REFERENCES subscriptions (id) ON DELETE SET NULL,
    list_version_id BIGINT REFERENCES list_versions (id) ON DELETE SET NULL,
    cached_at TEXT NOT NULL,
    expired_at TEXT,
    expiry_reason TEXT,
    expired_file TEXT,
    missing_since TEXT,
    CHECK (
        (state = 'cached' AND expired_at IS NULL AND expiry_reason IS NULL AND expired_file IS NULL
            AND missing_since IS NULL)
        OR (state = 'expired' AND expired_at IS NOT NULL AND expiry_reason IS NOT NULL
            AND expired_file IS NOT NULL AND expired_file <> '' AND missing_since IS NULL)
        OR (state = 'missing' AND expired_at IS NULL AND expiry_reason IS NULL AND expired_file IS NULL
            AND missing_since IS NOT NULL)
    )
);
INSERT INTO cache_entries_new (id, identifier, state, filename, size, sha512, subscription_id,
        list_version_id, cached_at, expired_at, expiry_reason, expired_file)
    SELECT id, identifier, state, filename, size, sha512, subscription_id, list_version_id,
        cached_at, expired_at, expiry_reason, expired_file
    FROM cache_entries
    WHERE NOT (state = 'expired' AND expired_file = '');
-- The old "expired with no file" record of a lost file becomes 'missing', unless the image
-- has been cached again since (then it named nothing and is dropped).
INSERT INTO cache_entries_new (id, identifier, state, filename, size, sha512, subscription_id,
        list_version_id, cached_at, missing_since)
    SELECT id, identifier, 'missing', filename, size, sha512, subscription_id, list_version_id,
        cached_at, expired_at
    FROM cache_entries AS old
    WHERE old.state = 'expired' AND old.expired_file = ''
        AND NOT EXISTS (SELECT 1 FROM cache_entries AS c
                        WHERE c.identifier = old.identifier AND c.state = 'cached');
DROP TABLE cache_entries;
ALTER TABLE cache_entries_new RENAME TO cache_entries;
-- At most one current record (cached or missing) per image id.
CREATE UNIQUE INDEX cache_entries_one_cached ON cache_entries (identifier)
    WHERE state IN ('cached', 'missing');
CREATE UNIQUE INDEX cache_entries_expired_file ON cache_entries (expired_file) WHERE expired_file IS NOT NULL;
CREATE INDEX cache_entries_subscription_id ON cache_entries (subscription_id);
CREATE INDEX cache_entries_list_version_id ON cache_entries (list_version_id);
