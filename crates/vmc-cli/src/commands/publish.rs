//! `vmc publish …`: the cloud settings (clouds.yaml / OS_CLOUD, the OS_* variables, or a
//! Glance without Keystone) into a Glance client, and the publisher's runs and listings.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use vmc_publish::cloud::{self, CloudSettings};
use vmc_publish::{
    Glance, GlanceAuth, Keystone, Outcome as ActionOutcome, PublishConfig, PublishReport,
    Publisher, Route, RouteMatch, Visibility,
};

use super::Ctx;
use super::cache::parse_duration;
use crate::args::{DiskFormatArg, PublishArgs, PublishCmd, VisibilityArg};
use crate::output::{self, Format};
use crate::{Outcome, UsageError, env, report};

/// Runs a publish command.
pub fn run(ctx: &Ctx, cmd: PublishCmd) -> anyhow::Result<Outcome> {
    match cmd {
        PublishCmd::Sync {
            dry_run,
            lock,
            publish_args,
        } => {
            let _lock = ctx
                .vmc
                .lock(Duration::from_secs(lock.lock_wait), &ctx.who)?;
            sync(ctx, &publish_args, dry_run)
        }
        PublishCmd::List { target } => {
            let publications = ctx.vmc.store().publications(target.as_deref())?;
            let rows: Vec<_> = publications.iter().map(report::publication).collect();
            match ctx.format {
                Format::Json => output::json(&rows),
                Format::Text => {
                    for p in &publications {
                        output::line(format!(
                            "{}\t{}\t{}\t{}\t{}{}",
                            p.target,
                            p.identifier,
                            p.version,
                            p.state,
                            p.remote_id.as_deref().unwrap_or("-"),
                            p.last_error
                                .as_deref()
                                .map(|e| format!("\t{e}"))
                                .unwrap_or_default()
                        ));
                    }
                }
            }
            Ok(Outcome::Success)
        }
    }
}

/// One publisher run (the caller holds the instance lock); prints its report.
pub fn sync(ctx: &Ctx, args: &PublishArgs, dry_run: bool) -> anyhow::Result<Outcome> {
    let (glance, default_target) = service(ctx, args)?;
    let cache_dir = &ctx.vmc.config().cache_dir;
    let converted_dir = args
        .converted_dir
        .clone()
        .unwrap_or_else(|| cache_dir.parent().unwrap_or(cache_dir).join("converted"));
    let mut config = publish_config(
        args,
        default_target,
        converted_dir,
        ctx.vmc.config().node.clone(),
    )?;
    config.lease_time = ctx.vmc.config().lease_time;
    let vmc = &ctx.vmc;
    // The run joins the site (registers and beats), so other nodes respect its claims while
    // it is alive and take them over soon after it is gone. A dry run writes nothing.
    let _node = if dry_run {
        None
    } else {
        Some(vmc.join_site(&format!("publish sync {}", config.target))?)
    };
    // Taken after registering: a claim is never older than the run that made it.
    let now = vmc.config().clock.now();
    let publisher = Publisher::new(vmc.store(), &vmc.config().cache_dir, &glance, &config);
    let r = publisher
        .sync(now, dry_run)
        .with_context(|| format!("publishing into {}", config.target))?;
    Ok(print(ctx, &config.target, &r))
}

fn print(ctx: &Ctx, target: &str, r: &PublishReport) -> Outcome {
    match ctx.format {
        Format::Json => output::json(&report::publish_run(target, r)),
        Format::Text => {
            for a in &r.actions {
                let (state, message) = match &a.outcome {
                    ActionOutcome::Done => ("", a.detail.clone()),
                    ActionOutcome::Planned => ("would ", a.detail.clone()),
                    ActionOutcome::Failed(e) => ("failed to ", Some(e.clone())),
                };
                output::line(format!(
                    "{state}{}\t{}\t{}\t{}{}",
                    a.kind.as_str(),
                    a.identifier,
                    a.version,
                    a.remote_id.as_deref().unwrap_or("-"),
                    message.map(|m| format!("\t{m}")).unwrap_or_default()
                ));
            }
        }
    }
    if r.has_failures() {
        Outcome::Failed
    } else {
        Outcome::Success
    }
}

/// The Glance client the settings name, and the default target name.
fn service(ctx: &Ctx, args: &PublishArgs) -> anyhow::Result<(Glance, String)> {
    let agent = ctx.vmc.client()?.agent().clone();
    if let Some(url) = &args.glance_url {
        let project = args.glance_project.as_deref().ok_or_else(|| {
            UsageError("--glance-url needs --glance-project (VMC_GLANCE_PROJECT)".into())
        })?;
        let headers = vec![
            ("X-Identity-Status".to_owned(), "Confirmed".to_owned()),
            ("X-Roles".to_owned(), "admin,member,reader".to_owned()),
            ("X-Project-Id".to_owned(), project.to_owned()),
            ("X-User-Id".to_owned(), "vmc".to_owned()),
        ];
        return Ok((
            Glance::new(agent, url, GlanceAuth::TrustedHeaders(headers)),
            "openstack".to_owned(),
        ));
    }
    let (settings, name): (CloudSettings, String) = match &args.os_cloud {
        Some(cloud_name) => {
            let path = clouds_yaml().ok_or_else(|| {
                UsageError(format!(
                    "OS_CLOUD={cloud_name} but no clouds.yaml was found (OS_CLIENT_CONFIG_FILE, \
                     ./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)"
                ))
            })?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let settings = cloud::from_clouds_yaml(&text, &path.display().to_string(), cloud_name)
                .map_err(|e| UsageError(e.to_string()))?;
            (settings, cloud_name.clone())
        }
        None => {
            let settings = cloud::from_env_vars(|k| std::env::var(k).ok())
                .map_err(|e| UsageError(e.to_string()))?
                .ok_or_else(|| {
                    UsageError(
                        "publishing needs a cloud: set OS_CLOUD (clouds.yaml), the OS_* \
                         variables (OS_AUTH_URL…), or --glance-url"
                            .into(),
                    )
                })?;
            (settings, "openstack".to_owned())
        }
    };
    let keystone = Keystone::new(agent.clone(), settings.keystone);
    let glance = Glance::from_keystone(agent, keystone, settings.image_endpoint.as_deref())?;
    Ok((glance, name))
}

/// The first clouds.yaml of the places the OpenStack tools look in.
fn clouds_yaml() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(file) = env::first(&[env::OS_CLIENT_CONFIG_FILE]) {
        candidates.push(PathBuf::from(file));
    }
    candidates.push(PathBuf::from("clouds.yaml"));
    if let Some(config) = env::first(&["XDG_CONFIG_HOME"]) {
        candidates.push(PathBuf::from(config).join("openstack/clouds.yaml"));
    } else if let Some(home) = env::first(&["HOME"]) {
        candidates.push(PathBuf::from(home).join(".config/openstack/clouds.yaml"));
    }
    candidates.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    candidates.into_iter().find(|p| p.is_file())
}

/// The publisher's settings; `node` is this node's name (the global `--node`), which claims
/// carry.
fn publish_config(
    args: &PublishArgs,
    default_target: String,
    converted_dir: PathBuf,
    node: String,
) -> anyhow::Result<PublishConfig> {
    let mut config = PublishConfig::new(
        args.target.clone().unwrap_or(default_target),
        node,
        converted_dir,
    );
    config.converter.want = args.disk_format.map(|f| {
        match f {
            DiskFormatArg::Raw => "raw",
            DiskFormatArg::Qcow2 => "qcow2",
            DiskFormatArg::Vmdk => "vmdk",
        }
        .to_owned()
    });
    config.grace = parse_duration(&args.grace)?;
    let visibility = if args.share_with.is_empty() {
        match args.visibility {
            VisibilityArg::Private => Visibility::Private,
            VisibilityArg::Shared => Visibility::Shared,
            VisibilityArg::Community => Visibility::Community,
            VisibilityArg::Public => Visibility::Public,
        }
    } else {
        Visibility::Shared
    };
    config.default_route.visibility = visibility;
    config.default_route.members = args.share_with.clone();
    for pair in &args.vo_projects {
        let (vo, project) = pair
            .split_once('=')
            .filter(|(vo, project)| !vo.is_empty() && !project.is_empty())
            .ok_or_else(|| UsageError(format!("--vo-project {pair:?} is not VO=PROJECT")))?;
        config.routes.push(Route {
            matches: RouteMatch::Vo(vo.to_owned()),
            owner: Some(project.to_owned()),
            visibility,
            members: args.share_with.clone(),
        });
    }
    Ok(config)
}
