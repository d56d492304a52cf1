-- What vmc published into which cloud image service (OpenStack Glance). One row per attempt
-- to publish one cached file (image id + sha512) into one target; at most one row per
-- (target, identifier, sha512) is not 'deleted', so two nodes sharing the database claim an
-- image once. state: 'uploading' (claimed by claimed_by; remote_id set once the remote image
-- exists), 'failed' (to be tried again), 'active' (uploaded and its checksum checked),
-- 'deactivated' (hidden and deactivated, for reason), 'deleted' (history); changed_at is the
-- time of the last change of state (the claim, for 'uploading'). token is a fresh value per
-- claim, also stored as a property of the remote image, so that an interrupted run's image is
-- found again; updates compare it.
CREATE TABLE publications (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    target TEXT NOT NULL,
    identifier TEXT NOT NULL,
    sha512 TEXT NOT NULL,
    version TEXT NOT NULL,
    list_url TEXT NOT NULL,
    disk_format TEXT NOT NULL,
    file_sha512 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('uploading', 'failed', 'active', 'deactivated', 'deleted')),
    token TEXT NOT NULL UNIQUE,
    remote_id TEXT,
    claimed_by TEXT NOT NULL,
    published_at TEXT,
    changed_at TEXT NOT NULL,
    reason TEXT,
    last_error TEXT
);
CREATE UNIQUE INDEX publications_one_live ON publications (target, identifier, sha512) WHERE state <> 'deleted';
CREATE INDEX publications_target_state ON publications (target, state);
