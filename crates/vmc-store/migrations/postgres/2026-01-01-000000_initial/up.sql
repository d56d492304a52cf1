-- vmc schema, PostgreSQL flavour. Keep in step with ../../sqlite: both map to one src/schema.rs.
-- Ids are BIGINT; timestamps are TEXT in RFC 3339 UTC with nine fraction digits (fixed width,
-- so text order is time order; the same on both backends); raw bytes are BYTEA; JSON is TEXT.

-- A person or service whose signatures the site trusts for the lists it is linked to.
CREATE TABLE endorsers (
    id TEXT PRIMARY KEY NOT NULL
);

-- The certificates an endorser signs with. A (subject, issuer) pair belongs to one endorser
-- only, and an identity row is never updated: list versions point at it by id.
CREATE TABLE identities (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    endorser_id TEXT NOT NULL REFERENCES endorsers (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    issuer TEXT NOT NULL,
    UNIQUE (subject, issuer)
);
CREATE INDEX identities_endorser_id ON identities (endorser_id);
CREATE INDEX identities_subject ON identities (subject);

-- The lists the site follows. Credentials (auth_*) are never listed or logged.
-- current_version_id names the newest accepted version (its foreign key is added below,
-- once list_versions exists).
CREATE TABLE subscriptions (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    url TEXT NOT NULL UNIQUE,
    list_identifier TEXT,
    title TEXT,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    new_images TEXT NOT NULL DEFAULT 'refuse' CHECK (new_images IN ('refuse', 'accept', 'subscribe')),
    auth_kind TEXT CHECK (auth_kind IN ('basic', 'bearer')),
    auth_user TEXT,
    auth_secret TEXT,
    current_version_id BIGINT,
    updated TEXT,
    last_error_code TEXT,
    last_error_message TEXT,
    CHECK (
        (auth_kind IS NULL AND auth_user IS NULL AND auth_secret IS NULL)
        OR (auth_kind = 'basic' AND auth_user IS NOT NULL AND auth_secret IS NOT NULL)
        OR (auth_kind = 'bearer' AND auth_user IS NULL AND auth_secret IS NOT NULL)
    ),
    CHECK ((last_error_code IS NULL) = (last_error_message IS NULL))
);
CREATE INDEX subscriptions_list_identifier ON subscriptions (list_identifier);
CREATE INDEX subscriptions_current_version_id ON subscriptions (current_version_id);

-- Which endorser may sign for which subscription. A signature endorses a list only through
-- a row here: signer identity -> its endorser -> link to the list's subscription.
CREATE TABLE endorser_links (
    endorser_id TEXT NOT NULL REFERENCES endorsers (id) ON DELETE CASCADE,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    PRIMARY KEY (endorser_id, subscription_id)
);
CREATE INDEX endorser_links_subscription_id ON endorser_links (subscription_id);

-- Every accepted list version, as signed. signer_identity_id is the stored identity that
-- signed it (NULL once that identity is removed: the version then endorses nothing);
-- signer_subject/signer_issuer keep the signer for the record.
CREATE TABLE list_versions (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    signer_identity_id BIGINT REFERENCES identities (id) ON DELETE SET NULL,
    signer_subject TEXT NOT NULL,
    signer_issuer TEXT NOT NULL,
    list_identifier TEXT NOT NULL,
    title TEXT NOT NULL,
    vo TEXT,
    version TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT NOT NULL,
    imported TEXT NOT NULL,
    sha512 TEXT NOT NULL,
    raw BYTEA NOT NULL
);
CREATE INDEX list_versions_subscription_id ON list_versions (subscription_id, id);
CREATE INDEX list_versions_signer_identity_id ON list_versions (signer_identity_id);

ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_current_version_id_fkey
    FOREIGN KEY (current_version_id) REFERENCES list_versions (id) ON DELETE SET NULL;

-- The images of each list version; extra holds every other key of the image as a JSON
-- object in document order.
CREATE TABLE images (
    list_version_id BIGINT NOT NULL REFERENCES list_versions (id) ON DELETE CASCADE,
    identifier TEXT NOT NULL,
    position BIGINT NOT NULL,
    title TEXT NOT NULL,
    uri TEXT NOT NULL,
    size BIGINT NOT NULL CHECK (size >= 0),
    sha512 TEXT NOT NULL,
    version TEXT NOT NULL,
    extra TEXT NOT NULL,
    PRIMARY KEY (list_version_id, identifier)
);
CREATE INDEX images_identifier ON images (identifier);

-- Whether an image id of a subscription is selected for caching; a row exists for every
-- image id the subscription ever carried (so "new" means "no row yet").
CREATE TABLE image_selections (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    identifier TEXT NOT NULL,
    selected BOOLEAN NOT NULL,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (subscription_id, identifier)
);
CREATE INDEX image_selections_identifier ON image_selections (identifier);

-- Files in the cache (state 'cached', at most one per image id) and their history once
-- moved to the expired directory (state 'expired').
CREATE TABLE cache_entries (
    id BIGSERIAL PRIMARY KEY NOT NULL,
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
CREATE UNIQUE INDEX cache_entries_one_cached ON cache_entries (identifier) WHERE state = 'cached';
CREATE UNIQUE INDEX cache_entries_expired_file ON cache_entries (expired_file) WHERE expired_file IS NOT NULL;
CREATE INDEX cache_entries_subscription_id ON cache_entries (subscription_id);
CREATE INDEX cache_entries_list_version_id ON cache_entries (list_version_id);

-- The event journal: every event with its delivery outcome.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    session TEXT NOT NULL,
    event_type TEXT NOT NULL,
    identifier TEXT,
    payload TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('no_handler', 'delivered', 'failed')),
    failure TEXT,
    at TEXT NOT NULL,
    CHECK ((outcome = 'failed') = (failure IS NOT NULL))
);
