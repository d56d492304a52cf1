//! What the site decides about publishing: the target's name, who may see images, which
//! project owns the images of which VO or list, the grace time before a replaced or expired
//! image is deleted, and how long a node that stopped beating is presumed alive.

use std::path::PathBuf;

use chrono::Duration;
use vmc_cache::store::ImageRecord;

use crate::convert::Converter;
use crate::service::Visibility;

/// Where the images of some lists go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Which images: those of lists with this `ad:vo`, or of the subscription with this URL.
    pub matches: RouteMatch,
    /// The owner project (`None`: the project the credentials are scoped to).
    pub owner: Option<String>,
    /// Who may see them.
    pub visibility: Visibility,
    /// The projects they are shared with (visibility `shared`).
    pub members: Vec<String>,
}

/// What a [`Route`] applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// Lists whose `ad:vo` is this.
    Vo(String),
    /// The subscription with this URL.
    ListUrl(String),
    /// Everything (the default route).
    Any,
}

/// The publisher's configuration, built once by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    /// The site's name for the image service and project published into (the state in the
    /// database is per target; it is also the `vmc_target` property).
    pub target: String,
    /// This node's name, recorded with its claims.
    pub node: String,
    /// Routes, first match wins; [`PublishConfig::default_route`] otherwise.
    pub routes: Vec<Route>,
    /// Where images no route matches go.
    pub default_route: Route,
    /// How long a replaced or expired image stays deactivated before it is deleted.
    pub grace: Duration,
    /// How long a node is alive after its last heartbeat (the site's lease time,
    /// `vmc_cache::Config::lease_time`). Another node's unfinished claim (`uploading`) is
    /// respected while that node is alive in the run that made the claim; it is repaired at
    /// once when the node is not registered, has not beaten within this time, or registered
    /// again after the claim (a newer run). This node's own unfinished claims are repaired at
    /// once (the caller holds the instance lock, so they belong to a run that ended).
    pub lease_time: std::time::Duration,
    /// The fallback: a claim older than this is repaired even when its node is alive (a run
    /// that beats but whose upload hangs).
    pub stale_claim: Duration,
    /// How files are checked and converted (`qemu-img`, the converted directory, the disk
    /// format the cloud wants).
    pub converter: Converter,
}

impl PublishConfig {
    /// A configuration for `target` on `node`: private images in the credentials' project, a
    /// grace time of 7 days, a lease time of 120 s (as the cache's), claims of live nodes
    /// stale after 6 hours, images published in
    /// the format their list declares (checked by `qemu-img` from `PATH`), converted files
    /// (OVA disks) kept in `converted_dir`.
    pub fn new(
        target: impl Into<String>,
        node: impl Into<String>,
        converted_dir: impl Into<PathBuf>,
    ) -> PublishConfig {
        PublishConfig {
            target: target.into(),
            node: node.into(),
            routes: Vec::new(),
            default_route: Route {
                matches: RouteMatch::Any,
                owner: None,
                visibility: Visibility::Private,
                members: Vec::new(),
            },
            grace: Duration::days(7),
            lease_time: std::time::Duration::from_secs(120),
            stale_claim: Duration::hours(6),
            converter: Converter {
                qemu_img: PathBuf::from("qemu-img"),
                dir: converted_dir.into(),
                want: None,
            },
        }
    }

    /// The route of `record`'s image.
    pub fn route_for(&self, record: &ImageRecord) -> &Route {
        self.routes
            .iter()
            .find(|r| match &r.matches {
                RouteMatch::Vo(vo) => record.list_vo.as_deref() == Some(vo.as_str()),
                RouteMatch::ListUrl(url) => record.subscription_url == *url,
                RouteMatch::Any => true,
            })
            .unwrap_or(&self.default_route)
    }
}
