-- Several vmc nodes of one site may sync against one database (PostgreSQL). Each registers
-- here when it runs and beats while it works; `vmc node list` shows them.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    activity TEXT NOT NULL DEFAULT 'idle'
);

-- Site-wide leases: at most one node at a time does one piece of work (download one image,
-- import one list, decide expiry). A lease is taken when free, expired, or already held by the
-- taker; token counts the takes, so a holder that lost its lease cannot renew or release the
-- new holder's (a fencing token).
CREATE TABLE leases (
    resource TEXT PRIMARY KEY NOT NULL,
    node TEXT NOT NULL,
    token BIGINT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX leases_node ON leases (node);
