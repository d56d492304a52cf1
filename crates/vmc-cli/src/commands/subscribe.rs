//! `vmc subscribe …`

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use vmc_cache::store::SubscriptionChange;
use vmc_cache::{Dispatcher, NewSubscriptionRequest, Source, SyncReport};
use vmc_model::{NewImagePolicy, SubscriptionAuth};

use super::{Ctx, print_run};
use crate::args::{CredentialArgs, KindArg, NewImagesArg, SubscribeCmd};
use crate::output::{self, Format};
use crate::progress::Bars;
use crate::{Outcome, report};

fn policy(arg: NewImagesArg) -> NewImagePolicy {
    match arg {
        NewImagesArg::Refuse => NewImagePolicy::Refuse,
        NewImagesArg::Accept => NewImagePolicy::Accept,
        NewImagesArg::Subscribe => NewImagePolicy::Subscribe,
    }
}

fn first_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim_end().to_owned())
}

fn credentials(args: &CredentialArgs) -> anyhow::Result<Option<SubscriptionAuth>> {
    if let Some(token) = &args.token_file {
        return Ok(Some(SubscriptionAuth::Bearer {
            token: first_line(token)?,
        }));
    }
    match (&args.username, &args.password_file) {
        (Some(username), Some(file)) => Ok(Some(SubscriptionAuth::Basic {
            username: username.clone(),
            password: first_line(file)?,
        })),
        (Some(username), None) => Ok(Some(SubscriptionAuth::Basic {
            username: username.clone(),
            password: String::new(),
        })),
        _ => Ok(None),
    }
}

/// Runs a subscribe command.
pub fn run(ctx: &Ctx, cmd: SubscribeCmd) -> anyhow::Result<Outcome> {
    let store = ctx.vmc.store();
    match cmd {
        SubscribeCmd::Add {
            url,
            kind,
            allow,
            auto_endorse,
            endorsers,
            new_images,
            credentials: creds,
        } => {
            let request = NewSubscriptionRequest {
                url,
                endorsers,
                auto_endorse,
                new_images: policy(new_images),
                auth: credentials(&creds)?,
            };
            let dispatcher = Dispatcher::new(ctx.vmc.config());
            let oci = match kind {
                Some(k) => k == KindArg::Oci,
                None => vmc_cache::oci::is_oci(&request.url),
            };
            let list = if oci {
                if !request.endorsers.is_empty() || request.auto_endorse {
                    return Err(vmc_cache::CacheError::Invalid(
                        "--endorser and --auto-endorse are for signed lists; an OCI source is trusted through --allow".into(),
                    )
                    .into());
                }
                let mut request = request;
                if !vmc_cache::oci::is_oci(&request.url) {
                    request.url = format!("{}{}", vmc_cache::oci::SCHEME, request.url);
                }
                ctx.vmc
                    .subscribe_oci(&request, allow.as_deref(), &dispatcher)?
            } else {
                if allow.is_some() {
                    return Err(vmc_cache::CacheError::Invalid(
                        "--allow is for OCI sources; a list is trusted through --endorser".into(),
                    )
                    .into());
                }
                ctx.vmc.subscribe(&request, &dispatcher)?
            };
            let r = SyncReport {
                subscriptions: vec![list],
                handler_failures: dispatcher.failures(),
                ..SyncReport::default()
            };
            Ok(print_run(ctx, &r, "subscribe add"))
        }
        SubscribeCmd::List => {
            let subs: Vec<_> = store
                .subscriptions()?
                .iter()
                .map(report::subscription)
                .collect();
            match ctx.format {
                Format::Json => output::json(&subs),
                Format::Text => {
                    for s in &subs {
                        output::line(format!(
                            "{}\t{}\t{}\t{}\t{}",
                            s.identifier.as_deref().unwrap_or("-"),
                            if s.enabled { "enabled" } else { "disabled" },
                            s.version.as_deref().unwrap_or("-"),
                            s.last_error
                                .as_ref()
                                .map(|e| e.code.as_str())
                                .unwrap_or("ok"),
                            s.url
                        ));
                    }
                }
            }
            Ok(Outcome::Success)
        }
        SubscribeCmd::Show { subscription } => {
            let s = ctx.subscription(&subscription)?;
            let json = report::subscription(&s);
            match ctx.format {
                Format::Json => output::json(&json),
                Format::Text => {
                    output::line(format!(
                        "identifier  {}",
                        json.identifier.as_deref().unwrap_or("-")
                    ));
                    output::line(format!("url         {}", json.url));
                    output::line(format!(
                        "title       {}",
                        json.title.as_deref().unwrap_or("-")
                    ));
                    output::line(format!("enabled     {}", json.enabled));
                    output::line(format!("new images  {}", json.new_images));
                    output::line(format!(
                        "version     {}",
                        json.version.as_deref().unwrap_or("-")
                    ));
                    output::line(format!(
                        "created     {}",
                        json.created.as_deref().unwrap_or("-")
                    ));
                    output::line(format!(
                        "expires     {}",
                        json.expires.as_deref().unwrap_or("-")
                    ));
                    output::line(format!(
                        "updated     {}",
                        json.updated.as_deref().unwrap_or("-")
                    ));
                    output::line(format!(
                        "credentials {}",
                        if json.has_credentials {
                            "stored"
                        } else {
                            "none"
                        }
                    ));
                    match &json.last_error {
                        None => output::line("last error  none"),
                        Some(e) => output::line(format!("last error  {}: {}", e.code, e.message)),
                    }
                }
            }
            Ok(Outcome::Success)
        }
        SubscribeCmd::Remove { subscription } => {
            let s = ctx.subscription(&subscription)?;
            store.remove_subscription(s.id)?;
            let name = s
                .identifier
                .unwrap_or_else(|| vmc_cache::fetch::redact_url(&s.url));
            if ctx.format == Format::Json {
                output::json(&serde_json::json!({ "removed": name }));
            } else {
                output::line(format!(
                    "removed subscription {name}; its images expire at the next sync"
                ));
            }
            Ok(Outcome::Success)
        }
        SubscribeCmd::Update {
            subscriptions,
            lock_wait,
        } => {
            let _lock = ctx.vmc.lock(Duration::from_secs(lock_wait), &ctx.who)?;
            let _node = ctx.vmc.join_site("subscribe update")?;
            let subs = if subscriptions.is_empty() {
                None
            } else {
                Some(
                    subscriptions
                        .iter()
                        .map(|s| ctx.subscription(s))
                        .collect::<anyhow::Result<Vec<_>>>()?,
                )
            };
            let dispatcher = Dispatcher::new(ctx.vmc.config());
            let bars = Bars::new(ctx.bars);
            let lists = ctx.vmc.update_all(subs, &dispatcher, &bars)?;
            let r = SyncReport {
                subscriptions: lists,
                handler_failures: dispatcher.failures(),
                ..SyncReport::default()
            };
            Ok(print_run(ctx, &r, "subscribe update"))
        }
        SubscribeCmd::Set {
            subscription,
            new_images,
            credentials: creds,
            no_credentials,
            allow,
            enable,
            disable,
        } => {
            let s = ctx.subscription(&subscription)?;
            if let Some(allow) = &allow {
                if !vmc_cache::oci::is_oci(&s.url) {
                    return Err(vmc_cache::CacheError::Invalid(
                        "--allow is for OCI sources; a list is trusted through its endorsers"
                            .into(),
                    )
                    .into());
                }
                let rule = vmc_model::oci::AllowRule::parse(allow)
                    .map_err(|e| vmc_cache::CacheError::Invalid(format!("--allow {allow}: {e}")))?;
                store.set_oci_allow(s.id, &rule.to_string())?;
            }
            let auth = if no_credentials {
                Some(None)
            } else {
                credentials(&creds)?.map(Some)
            };
            store.update_subscription(
                s.id,
                &SubscriptionChange {
                    new_images: new_images.map(policy),
                    auth,
                    enabled: if enable {
                        Some(true)
                    } else if disable {
                        Some(false)
                    } else {
                        None
                    },
                },
            )?;
            let s = store.subscription(s.id)?;
            let json = report::subscription(&s);
            match ctx.format {
                Format::Json => output::json(&json),
                Format::Text => output::line(format!(
                    "{}: {}, new images {}, credentials {}",
                    json.identifier.as_deref().unwrap_or(&json.url),
                    if json.enabled { "enabled" } else { "disabled" },
                    json.new_images,
                    if json.has_credentials {
                        "stored"
                    } else {
                        "none"
                    }
                )),
            }
            Ok(Outcome::Success)
        }
        SubscribeCmd::Check { source, endorser } => {
            let r = if vmc_cache::oci::is_oci(&source) {
                if endorser.is_some() {
                    return Err(vmc_cache::CacheError::Invalid(format!(
                        "{source} is an OCI registry: its trust is the allow rule \
                         (`subscribe add --allow`), not an endorser"
                    ))
                    .into());
                }
                ctx.vmc.check_oci(&source)?
            } else {
                ctx.vmc
                    .check(&Source::parse(&source), endorser.as_deref())?
            };
            let json = report::check(&r);
            match ctx.format {
                Format::Json => output::json(&json),
                Format::Text => {
                    output::line(format!("verdict   {}", json.verdict));
                    if let Some(e) = &json.error {
                        output::line(format!("error     {}: {}", e.code, e.message));
                    }
                    if let Some(s) = &json.signer {
                        output::line(format!("signer    {}\nissuer    {}", s.subject, s.issuer));
                    }
                    if let Some(l) = &json.list {
                        output::line(format!("list      {} ({})", l.identifier, l.title));
                        output::line(format!("version   {}", l.version));
                        output::line(format!("created   {}\nexpires   {}", l.created, l.expires));
                        output::line(format!("images    {}", l.images));
                    }
                    for x in &json.rejected_images {
                        output::line(format!(
                            "left out  {}: image_invalid: {}",
                            x.identifier.as_deref().unwrap_or("?"),
                            x.message
                        ));
                    }
                }
            }
            Ok(if r.error.is_none() {
                Outcome::Success
            } else {
                Outcome::Failed
            })
        }
    }
}
