//! The command line, as clap derive types (the contract is `spec/cli.md`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::env;

/// Keep a verified local cache of the virtual machine images that trusted endorsers publish in
/// signed HEPiX image lists.
#[derive(Debug, Parser)]
#[command(name = "vmc", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes (flag > environment > default).
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Home for the database and the default cache directories
    /// [default: /var/lib/vmc as root, else $XDG_DATA_HOME/vmc]
    #[arg(long, global = true, value_name = "DIR", env = env::VMC_HOME)]
    pub home: Option<PathBuf>,
    /// Database URL: sqlite:///abs/path, sqlite://rel/path, a plain path, or postgres://…
    /// (also VMCATCHER_RDBMS) [default: sqlite://<home>/vmc.db]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = env::VMC_DATABASE,
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// CA directory: <hash>.0 CA certificates and <hash>.r0 CRLs (also VMCATCHER_DIR_CERT)
    /// [default: /etc/grid-security/certificates]
    #[arg(long, global = true, value_name = "DIR", env = env::VMC_CA_DIR)]
    pub ca_dir: Option<PathBuf>,
    /// Directory of verified images (also VMCATCHER_CACHE_DIR_CACHE) [default: <home>/cache]
    #[arg(long, global = true, value_name = "DIR", env = env::VMC_CACHE_DIR)]
    pub cache_dir: Option<PathBuf>,
    /// Directory of downloads in progress (also VMCATCHER_CACHE_DIR_DOWNLOAD)
    /// [default: <home>/partial]
    #[arg(long, global = true, value_name = "DIR", env = env::VMC_PARTIAL_DIR)]
    pub partial_dir: Option<PathBuf>,
    /// Directory of expired images (also VMCATCHER_CACHE_DIR_EXPIRE) [default: <home>/expired]
    #[arg(long, global = true, value_name = "DIR", env = env::VMC_EXPIRED_DIR)]
    pub expired_dir: Option<PathBuf>,
    /// Command run through /bin/sh -c for every event (also VMCATCHER_CACHE_EVENT)
    #[arg(long, global = true, value_name = "CMD", env = env::VMC_EVENT_HANDLER)]
    pub event_handler: Option<String>,
    /// Seconds an event handler may run before its process group is killed
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 300)]
    pub event_timeout: u64,
    /// Seconds a connection may take to open, or go without data, before the transfer is
    /// retried (default: 30 to connect, 60 without data)
    #[arg(long, global = true, value_name = "SECONDS", env = env::VMC_TIMEOUT)]
    pub timeout: Option<u64>,
    /// CRL checking: require (the CRL of every CA of the chain must be present and current),
    /// if-present, or off
    #[arg(long, global = true, value_name = "MODE", env = env::VMC_CRL)]
    pub crl: Option<CrlArg>,
    /// Fetch from a mirror: replace the URL prefix FROM by TO (repeatable), e.g.
    /// https://appliances.example.org/=http://mirror.site/ — lists and images are still verified
    #[arg(long = "mirror", global = true, value_name = "FROM=TO")]
    pub mirrors: Vec<String>,
    /// This node's name in the site, when several vmc nodes share one database
    /// [default: the host name]
    #[arg(long, global = true, value_name = "NAME", env = env::VMC_NODE)]
    pub node: Option<String>,
    /// Seconds a lease on site-wide work (a list update) lasts unless renewed; the node's
    /// heartbeat beats every third of it
    #[arg(long, global = true, value_name = "SECONDS", env = env::VMC_LEASE_TIME, default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(3..=86_400))]
    pub lease_time: u64,
    /// Seconds during which a list another node updated is not fetched again
    #[arg(long, global = true, value_name = "SECONDS", env = env::VMC_REFRESH_INTERVAL,
          default_value_t = 600)]
    pub refresh_interval: u64,
    /// How the nodes sharing one database hold their caches: shared (one cache directory on a
    /// file system every node mounts; also a one-node site) or per-node (each its own; one
    /// node downloads an image, the others copy it from that node's --node-url)
    #[arg(long, global = true, value_name = "MODE", env = env::VMC_CACHE_MODE, default_value = "shared")]
    pub cache_mode: CacheModeArg,
    /// With per-node caches: the URL under which the site's web server serves this node's
    /// cache directory, where the other nodes copy its images from
    #[arg(long, global = true, value_name = "URL", env = env::VMC_NODE_URL)]
    pub node_url: Option<String>,
    /// Whose event handler hears of the site's images: site (once per site, on the node
    /// that did the work) or node (with per-node caches: each node, for its own cache)
    #[arg(long, global = true, value_name = "SCOPE", env = env::VMC_EVENTS, default_value = "site")]
    pub events: EventsArg,
    /// Print one JSON document on stdout (VMC_OUTPUT=json does the same)
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// How the nodes of a site hold their caches (`--cache-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheModeArg {
    /// One cache directory for the site.
    Shared,
    /// One cache directory per node.
    PerNode,
}

/// Whose handler hears of the site's images (`--events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventsArg {
    /// Once per site.
    Site,
    /// Each node, for its own cache.
    Node,
}

/// CRL checking mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CrlArg {
    /// The CRL of every CA of the chain must be present and current.
    Require,
    /// Check a CA's CRL when the CA directory has one.
    IfPresent,
    /// No revocation checks.
    Off,
}

/// What a subscription follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// A signed HEPiX image list.
    List,
    /// The disk images in an OCI registry.
    Oci,
}

/// New-image policy of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NewImagesArg {
    /// Recorded as known, not selected.
    Refuse,
    /// Known, not selected.
    Accept,
    /// Selected for caching (and every image present now too).
    Subscribe,
}

/// The four command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Who may sign which list
    #[command(subcommand)]
    Endorser(EndorserCmd),
    /// Which image lists to follow
    #[command(subcommand)]
    Subscribe(SubscribeCmd),
    /// Which images to keep
    #[command(subcommand)]
    Image(ImageCmd),
    /// The files: sync (the cron job), download, expire, verify, list, purge, events
    #[command(subcommand)]
    Cache(CacheCmd),
    /// Publish the cache into a cloud image service (OpenStack Glance)
    #[command(subcommand)]
    Publish(PublishCmd),
    /// The nodes of this site (vmc processes sharing this database)
    #[command(subcommand)]
    Node(NodeCmd),
    /// Check this site's set-up (CA directory, CRLs, database, directories, disk, handler,
    /// lock, subscriptions) and say how to fix each problem
    Doctor,
    /// Import a vmcatcher installation: endorsers, subscriptions, image selection, its newest
    /// signed lists (verified again) and the cached files whose sha512 matches
    ImportVmcatcher(ImportArgs),
    /// Write the man pages into DIR (for packagers)
    #[command(hide = true)]
    GenerateMan {
        /// Output directory
        dir: PathBuf,
    },
    /// Print the completion script for SHELL (for packagers)
    #[command(hide = true)]
    GenerateCompletions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// `vmc import-vmcatcher`
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// vmcatcher's database: its SQLAlchemy URL (sqlite:////abs/path, sqlite:///rel/path) or
    /// a file path. vmc's own database stays --database
    #[arg(
        long,
        value_name = "PATH",
        env = env::VMCATCHER_RDBMS,
        hide_env_values = true
    )]
    pub vmcatcher_database: String,
    /// vmcatcher's cache directory, with its cache.index: files whose sha512 matches the
    /// verified list are adopted (hard-linked, or recorded in place when it is vmc's cache
    /// directory too) [default: none, no files adopted]
    #[arg(long, value_name = "DIR", env = env::VMCATCHER_CACHE_DIR_CACHE)]
    pub vmcatcher_cache: Option<PathBuf>,
    /// Do not fetch a list whose stored copy fails a check (it is fetched by the next update)
    #[arg(long)]
    pub no_fetch: bool,
    /// Lock options
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `vmc endorser …`
#[derive(Debug, Subcommand)]
pub enum EndorserCmd {
    /// Add an endorser with one or more certificate identities (subject + issuer pairs)
    Add {
        /// The endorser's id [default: a new UUID]
        #[arg(long)]
        id: Option<String>,
        /// Subject DN of a certificate, OpenSSL one-line form (/C=XX/O=Grid/CN=Jane Doe)
        #[arg(long = "subject", value_name = "DN", required = true)]
        subjects: Vec<String>,
        /// Issuer DN of that certificate, paired with --subject by position
        #[arg(long = "issuer", value_name = "DN", required = true)]
        issuers: Vec<String>,
        /// Link the endorser to this subscription (repeatable)
        #[arg(long = "subscription", value_name = "SUB")]
        subscriptions: Vec<String>,
    },
    /// List endorsers
    List,
    /// Show one endorser
    Show {
        /// Id or subject DN
        endorser: String,
    },
    /// Remove an endorser: its lists endorse nothing any more
    Remove {
        /// Id or subject DN
        endorser: String,
    },
    /// Let an endorser sign a subscription's list
    Link {
        /// Id or subject DN
        endorser: String,
        /// List identifier or URL
        subscription: String,
    },
    /// Withdraw an endorser from a subscription
    Unlink {
        /// Id or subject DN
        endorser: String,
        /// List identifier or URL
        subscription: String,
    },
}

/// Credentials options shared by `subscribe add` and `subscribe set`.
#[derive(Debug, Clone, Args)]
pub struct CredentialArgs {
    /// User name for HTTP Basic authentication
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// File holding the password for --username (its first line)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "token_file",
        requires = "username"
    )]
    pub password_file: Option<PathBuf>,
    /// File holding a bearer token (its first line)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `vmc subscribe …`
#[derive(Debug, Subcommand)]
pub enum SubscribeCmd {
    /// Subscribe to an image list (fetch it, verify it completely, store it) or to the disk
    /// images a VO publishes in an OCI registry (oci://REGISTRY/PROJECT, or a repository and
    /// tag of it)
    Add {
        /// Where the signed list is published (http, https or file), or an oci:// reference
        url: String,
        /// What the URL names [default: oci for an oci:// URL, else list]
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// OCI: the registry host and repositories the site allows, e.g.
        /// registry.egi.eu/vo.access.egi.eu/** [default: what the reference names]
        #[arg(long, value_name = "RULE")]
        allow: Option<String>,
        /// Create the endorser whose certificate signed the list if it is unknown
        #[arg(long)]
        auto_endorse: bool,
        /// Link this endorser to the subscription (repeatable)
        #[arg(long = "endorser", value_name = "ENDORSER")]
        endorsers: Vec<String>,
        /// What later updates do with images not seen before
        #[arg(long, value_enum, default_value = "refuse")]
        new_images: NewImagesArg,
        /// Credentials for the URL
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// List subscriptions
    List,
    /// Show one subscription
    Show {
        /// List identifier or URL
        subscription: String,
    },
    /// Remove a subscription: its images expire at the next sync
    Remove {
        /// List identifier or URL
        subscription: String,
    },
    /// Fetch, verify and store lists (all enabled ones when none is named)
    Update {
        /// List identifiers or URLs
        subscriptions: Vec<String>,
        /// Seconds to wait for the instance lock
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        lock_wait: u64,
    },
    /// Change a subscription's settings
    Set {
        /// List identifier or URL
        subscription: String,
        /// What updates do with images not seen before
        #[arg(long, value_enum)]
        new_images: Option<NewImagesArg>,
        /// Credentials for the URL
        #[command(flatten)]
        credentials: CredentialArgs,
        /// Forget the stored credentials
        #[arg(long, conflicts_with_all = ["username", "token_file"])]
        no_credentials: bool,
        /// OCI: a new rule of the registry host and repositories the site allows
        #[arg(long, value_name = "RULE")]
        allow: Option<String>,
        /// Use the subscription again
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop using the subscription (its images expire at the next sync)
        #[arg(long)]
        disable: bool,
    },
    /// Run every check that needs no stored state on a list and print the verdict
    Check {
        /// URL or file of the signed list
        source: String,
        /// Also check that the signer is an identity of this endorser
        #[arg(long, value_name = "ENDORSER")]
        endorser: Option<String>,
    },
}

/// `vmc image …`
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List the images of the current lists
    List {
        /// Only this subscription's images
        #[arg(long, value_name = "SUB")]
        subscription: Option<String>,
        /// Only images selected for caching
        #[arg(long)]
        selected: bool,
    },
    /// Show one image
    Show {
        /// Image identifier (or use --sha512)
        #[arg(required_unless_present = "sha512")]
        image: Option<String>,
        /// Find the image by its sha512
        #[arg(long, value_name = "HEX")]
        sha512: Option<String>,
    },
    /// Select images for caching
    Subscribe {
        /// Image identifiers
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Stop caching images (they expire at the next sync)
    Unsubscribe {
        /// Image identifiers
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// Options of the commands that take the instance lock.
#[derive(Debug, Clone, Copy, Args)]
pub struct LockArgs {
    /// Seconds to wait for the instance lock before giving up
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub lock_wait: u64,
}

/// `vmc node …`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List the nodes: name, host, pid, version, started, last seen, activity, leases
    List,
    /// Forget a node that is gone for good, freeing its leases at once
    Remove {
        /// The node's name
        name: String,
    },
}

/// `vmc cache …`
#[derive(Debug, Subcommand)]
pub enum CacheCmd {
    /// The cron job: update lists, expire, download, fire events
    Sync {
        /// Parallel downloads
        #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Re-hash the cache first
        #[arg(long)]
        verify: bool,
        /// Write Prometheus metrics of the run to FILE (node_exporter textfile collector:
        /// name it *.prom in its directory), replaced atomically
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        /// Then publish into the cloud image service (`vmc publish sync`)
        #[arg(long, env = env::VMC_PUBLISH)]
        publish: bool,
        /// Lock options
        #[command(flatten)]
        lock: LockArgs,
        /// Publishing options (with --publish)
        #[command(flatten)]
        publish_args: Box<PublishArgs>,
    },
    /// Download selected, available images missing from the cache
    Download {
        /// Parallel downloads
        #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Lock options
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Move images that are no longer endorsed or selected to the expired directory
    Expire {
        /// Lock options
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Re-hash every cached file; expire corrupt ones
    Verify {
        /// Parallel hashing
        #[arg(long, short = 'j', default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Lock options
        #[command(flatten)]
        lock: LockArgs,
    },
    /// List the cached images
    List,
    /// Delete files from the expired directory
    Purge {
        /// Only files expired longer ago than this (e.g. 30d, 12h, 90m)
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
    },
    /// Show the event journal
    Events {
        /// Only events whose handler failed
        #[arg(long)]
        failed: bool,
    },
}

/// `vmc publish …`
#[derive(Debug, Subcommand)]
pub enum PublishCmd {
    /// Publish new verified images, replace old versions, deactivate expired images, delete
    /// deactivated ones after the grace time, and repair interrupted runs
    Sync {
        /// Say what would be done; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Lock options
        #[command(flatten)]
        lock: LockArgs,
        /// Publishing options
        #[command(flatten)]
        publish_args: Box<PublishArgs>,
    },
    /// List the publications (all targets, or one)
    List {
        /// Only this target
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
}

/// Where and how to publish (flag > environment > default). The cloud is a clouds.yaml entry
/// (--os-cloud / OS_CLOUD), else the OS_* variables (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD,
/// OS_PROJECT_NAME, OS_APPLICATION_CREDENTIAL_ID…), else --glance-url with trusted identity
/// headers (a Glance deployed without Keystone).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Publishing")]
pub struct PublishArgs {
    /// The site's name for the cloud and project published into (state is kept per target)
    /// [default: the clouds.yaml entry's name, else "openstack"]
    #[arg(long, value_name = "NAME", env = env::VMC_PUBLISH_TARGET)]
    pub target: Option<String>,
    /// The clouds.yaml entry to use (clouds.yaml is read from OS_CLIENT_CONFIG_FILE, ./,
    /// ~/.config/openstack/ or /etc/openstack/)
    #[arg(long, value_name = "NAME", env = env::OS_CLOUD)]
    pub os_cloud: Option<String>,
    /// A Glance without Keystone: its URL (identity headers are sent as they are; never for a
    /// Glance others can reach)
    #[arg(long, value_name = "URL", env = env::VMC_GLANCE_URL)]
    pub glance_url: Option<String>,
    /// With --glance-url: the project id sent as X-Project-Id
    #[arg(long, value_name = "PROJECT", env = env::VMC_GLANCE_PROJECT, requires = "glance_url")]
    pub glance_project: Option<String>,
    /// Who may see published images
    #[arg(long, value_name = "VISIBILITY", env = env::VMC_PUBLISH_VISIBILITY, default_value = "private")]
    pub visibility: VisibilityArg,
    /// Share published images with this project (repeatable; implies --visibility shared)
    #[arg(long = "share-with", value_name = "PROJECT")]
    pub share_with: Vec<String>,
    /// The images of lists of this VO (ad:vo) are owned by this project (repeatable)
    #[arg(long = "vo-project", value_name = "VO=PROJECT")]
    pub vo_projects: Vec<String>,
    /// How long a replaced or expired image stays deactivated before it is deleted
    #[arg(long, value_name = "DURATION", env = env::VMC_PUBLISH_GRACE, default_value = "7d")]
    pub grace: String,
    /// The disk format the cloud wants (raw for a Ceph-backed Glance, qcow2 otherwise);
    /// images in another format are converted with qemu-img [default: as the list declares]
    #[arg(long, value_name = "FORMAT", env = env::VMC_PUBLISH_DISK_FORMAT)]
    pub disk_format: Option<DiskFormatArg>,
    /// Where converted files are kept [default: converted/ beside the cache directory]
    #[arg(long, value_name = "DIR", env = env::VMC_CONVERTED_DIR)]
    pub converted_dir: Option<PathBuf>,
}

/// A disk format vmc converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiskFormatArg {
    /// Raw disk (Ceph RBD backends want it).
    Raw,
    /// QEMU copy-on-write v2.
    Qcow2,
    /// VMware disk.
    Vmdk,
}

/// Glance visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VisibilityArg {
    /// Only the owner project.
    Private,
    /// The owner and the projects it is shared with.
    Shared,
    /// Anyone who asks by id or lists community images.
    Community,
    /// Every project.
    Public,
}
