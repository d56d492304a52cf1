-- Per-node caches (issue 17): several nodes of a site, each with its own cache directory, on
-- one database. A cache record belongs to the node whose directory holds the file ('' for the
-- one cache of a one-node site or of a shared cache directory); at most one current record
-- per image id and node.
ALTER TABLE cache_entries ADD COLUMN node TEXT NOT NULL DEFAULT '';
DROP INDEX cache_entries_one_cached;
CREATE UNIQUE INDEX cache_entries_one_cached ON cache_entries (node, identifier)
    WHERE state IN ('cached', 'missing');
DROP INDEX cache_entries_expired_file;
CREATE UNIQUE INDEX cache_entries_expired_file ON cache_entries (node, expired_file)
    WHERE expired_file IS NOT NULL;
-- Where the other nodes copy a node's cached files from (its cache directory as served by
-- the site's web server), if it serves them.
ALTER TABLE nodes ADD COLUMN url TEXT;
-- The event outbox: an event that announces work (AvailablePostfix, ExpirePostfix) is written
-- here in the transaction of that work, and moves to the journal (events) once its handler
-- has run. A row left here by a run that died is delivered by the next run (replay).
CREATE TABLE event_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    node TEXT NOT NULL,
    session TEXT NOT NULL,
    event_type TEXT NOT NULL,
    identifier TEXT,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
