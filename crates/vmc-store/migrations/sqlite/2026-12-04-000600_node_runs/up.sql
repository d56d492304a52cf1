-- The last time each piece of site-wide work (the update of one list: `update:<subscription
-- id>`) was done, and by which node: a node that finds a list updated by another node within
-- the refresh interval does not fetch it again.
CREATE TABLE node_runs (
    resource TEXT PRIMARY KEY NOT NULL,
    node TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
