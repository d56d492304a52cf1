//! The tables, as `diesel print-schema` reads them from the SQLite migrations (see
//! `diesel.toml`); the PostgreSQL migrations map to the same Rust types. Never edit by hand:
//! the test `schema_rs_matches_migrations` fails when this file and the migrations disagree.

// @generated automatically by Diesel CLI.

diesel::table! {
    cache_entries (id) {
        id -> BigInt,
        identifier -> Text,
        state -> Text,
        filename -> Text,
        size -> BigInt,
        sha512 -> Text,
        subscription_id -> Nullable<BigInt>,
        list_version_id -> Nullable<BigInt>,
        cached_at -> Text,
        expired_at -> Nullable<Text>,
        expiry_reason -> Nullable<Text>,
        expired_file -> Nullable<Text>,
        missing_since -> Nullable<Text>,
        node -> Text,
    }
}

diesel::table! {
    endorser_links (endorser_id, subscription_id) {
        endorser_id -> Text,
        subscription_id -> BigInt,
    }
}

diesel::table! {
    endorsers (id) {
        id -> Text,
    }
}

diesel::table! {
    event_outbox (id) {
        id -> BigInt,
        node -> Text,
        session -> Text,
        event_type -> Text,
        identifier -> Nullable<Text>,
        payload -> Text,
        created_at -> Text,
        claimed_at -> Text,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        session -> Text,
        event_type -> Text,
        identifier -> Nullable<Text>,
        payload -> Text,
        outcome -> Text,
        failure -> Nullable<Text>,
        at -> Text,
    }
}

diesel::table! {
    identities (id) {
        id -> BigInt,
        endorser_id -> Text,
        subject -> Text,
        issuer -> Text,
    }
}

diesel::table! {
    image_selections (subscription_id, identifier) {
        subscription_id -> BigInt,
        identifier -> Text,
        selected -> Bool,
        first_seen -> Text,
    }
}

diesel::table! {
    images (list_version_id, identifier) {
        list_version_id -> BigInt,
        identifier -> Text,
        position -> BigInt,
        title -> Text,
        uri -> Text,
        size -> BigInt,
        sha512 -> Text,
        version -> Text,
        extra -> Text,
    }
}

diesel::table! {
    leases (resource) {
        resource -> Text,
        node -> Text,
        token -> BigInt,
        acquired_at -> Text,
        expires_at -> Text,
    }
}

diesel::table! {
    list_versions (id) {
        id -> BigInt,
        subscription_id -> BigInt,
        signer_identity_id -> Nullable<BigInt>,
        signer_subject -> Text,
        signer_issuer -> Text,
        list_identifier -> Text,
        title -> Text,
        vo -> Nullable<Text>,
        version -> Text,
        created -> Text,
        expires -> Text,
        imported -> Text,
        sha512 -> Text,
        raw -> Binary,
    }
}

diesel::table! {
    node_runs (resource) {
        resource -> Text,
        node -> Text,
        finished_at -> Text,
    }
}

diesel::table! {
    nodes (name) {
        name -> Text,
        host -> Text,
        pid -> BigInt,
        version -> Text,
        started_at -> Text,
        last_seen -> Text,
        activity -> Text,
        url -> Nullable<Text>,
        cache_mode -> Nullable<Text>,
    }
}

diesel::table! {
    publications (id) {
        id -> BigInt,
        target -> Text,
        identifier -> Text,
        sha512 -> Text,
        version -> Text,
        list_url -> Text,
        disk_format -> Text,
        file_sha512 -> Text,
        state -> Text,
        token -> Text,
        remote_id -> Nullable<Text>,
        claimed_by -> Text,
        published_at -> Nullable<Text>,
        changed_at -> Text,
        reason -> Nullable<Text>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> BigInt,
        url -> Text,
        list_identifier -> Nullable<Text>,
        title -> Nullable<Text>,
        enabled -> Bool,
        new_images -> Text,
        auth_kind -> Nullable<Text>,
        auth_user -> Nullable<Text>,
        auth_secret -> Nullable<Text>,
        current_version_id -> Nullable<BigInt>,
        updated -> Nullable<Text>,
        last_error_code -> Nullable<Text>,
        last_error_message -> Nullable<Text>,
        kind -> Text,
        oci_allow -> Nullable<Text>,
    }
}

diesel::joinable!(cache_entries -> list_versions (list_version_id));
diesel::joinable!(cache_entries -> subscriptions (subscription_id));
diesel::joinable!(endorser_links -> endorsers (endorser_id));
diesel::joinable!(endorser_links -> subscriptions (subscription_id));
diesel::joinable!(identities -> endorsers (endorser_id));
diesel::joinable!(image_selections -> subscriptions (subscription_id));
diesel::joinable!(images -> list_versions (list_version_id));
diesel::joinable!(list_versions -> identities (signer_identity_id));

diesel::allow_tables_to_appear_in_same_query!(
    cache_entries,
    endorser_links,
    endorsers,
    event_outbox,
    events,
    identities,
    image_selections,
    images,
    leases,
    list_versions,
    node_runs,
    nodes,
    publications,
    subscriptions,
);
