//! Publishing vmc's verified cache into cloud image services.
//!
//! Above `vmc-cache` (it reads the store's images and cached files), below the CLI. One trait
//! for an image service ([`ImageService`]) and its OpenStack implementation: [`Glance`] (v2
//! API) over the HTTP agent `vmc-fetch` configures, authenticated by a [`Keystone`] v3 token
//! (password or application credential; [`cloud`] reads the settings the OpenStack tools
//! read, from `clouds.yaml` text or `OS_*` variables the caller passes in) or, for a Glance
//! without Keystone, by trusted identity headers.
//!
//! [`Publisher::sync`] runs the life cycle (see [`sync`]): publish each new verified image
//! once per target (claims in the database make it once in total across nodes), check the
//! service's `os_hash_value` against the file's sha512, replace old versions (deactivated and
//! hidden, then deleted after a grace time unless in use), deactivate expired images, and
//! repair what an interrupted run left. It reads no environment and prints nothing.

pub mod cloud;
pub mod config;
pub mod convert;
pub mod error;
pub mod glance;
pub mod keystone;
pub mod meta;
pub mod service;
pub mod sync;

pub use config::{PublishConfig, Route, RouteMatch};
pub use convert::{Converter, Prepared};
pub use error::PublishError;
pub use glance::{Glance, GlanceAuth};
pub use keystone::{Credential, Keystone, KeystoneConfig, Named};
pub use service::{Deletion, ImageService, NewRemoteImage, RemoteImage, Visibility};
pub use sync::{Action, ActionKind, Outcome, PublishReport, Publisher};
